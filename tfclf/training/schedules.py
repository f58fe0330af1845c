"""Learning-rate schedules, per optimizer step, from Keras' own where they exist.

constant; step (x gamma every N epochs); multistep (x gamma at listed epochs, e.g. 60, 90 as
in report 002); exponential (x gamma each epoch, report 001's 0.7); cosine; cosine_restarts
(SGDR: report 000 starts at 1e-3, first cycle 20 epochs, each cycle t_mul=2 longer);
linear (straight down to min_lr at the end of the stage, the budgeted-training schedule of
Li et al. 2020); cyclic (triangular, Smith 2017); plateau (a constant schedule driven by
``ReduceLROnPlateau``). Any of them may be preceded by a linear warm-up.
"""

from __future__ import annotations

import tensorflow as tf

from tfclf.config import SCHEDULES, ScheduleConfig
from tfclf.keras import keras

__all__ = ["SCHEDULES", "ScheduleConfig", "cycle_ends", "make_schedule", "schedule_values"]


@keras.utils.register_keras_serializable("tfclf")
class Constant(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, lr):
        self.lr = lr

    def __call__(self, step):
        return tf.fill([], tf.cast(self.lr, tf.float32))

    def get_config(self):
        return {"lr": self.lr}


@keras.utils.register_keras_serializable("tfclf")
class Triangular(keras.optimizers.schedules.LearningRateSchedule):
    """Cyclic LR, triangular policy: min_lr -> max_lr -> min_lr every ``cycle_steps``."""

    def __init__(self, min_lr, max_lr, cycle_steps):
        self.min_lr, self.max_lr, self.cycle_steps = min_lr, max_lr, cycle_steps

    def __call__(self, step):
        phase = tf.math.floormod(tf.cast(step, tf.float32), self.cycle_steps) / self.cycle_steps
        tri = 1.0 - tf.abs(2.0 * phase - 1.0)
        return self.min_lr + (self.max_lr - self.min_lr) * tri

    def get_config(self):
        return {"min_lr": self.min_lr, "max_lr": self.max_lr, "cycle_steps": self.cycle_steps}


@keras.utils.register_keras_serializable("tfclf")
class WarmUp(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 over ``warmup_steps``, then ``after`` (shifted to start at 0)."""

    def __init__(self, after, warmup_steps, peak_lr):
        self.after, self.warmup_steps, self.peak_lr = after, warmup_steps, peak_lr

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = self.peak_lr * (step + 1) / self.warmup_steps
        return tf.where(
            step < self.warmup_steps,
            warm,
            tf.cast(self.after(tf.maximum(step - self.warmup_steps, 0)), tf.float32),
        )

    def get_config(self):
        return {
            "after": keras.optimizers.schedules.serialize(self.after),
            "warmup_steps": self.warmup_steps,
            "peak_lr": self.peak_lr,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["after"] = keras.optimizers.schedules.deserialize(config["after"])
        return cls(**config)


def make_schedule(cfg: ScheduleConfig, steps_per_epoch: int):
    """The schedule over optimizer steps (``optimizer.iterations``, restored on resume)."""
    cfg.validate()
    spe = steps_per_epoch
    warm = int(round(cfg.warmup_epochs * spe))
    total = max(1, cfg.epochs * spe - warm)
    s = keras.optimizers.schedules
    if cfg.kind in ("constant", "plateau"):
        sched = Constant(cfg.lr)
    elif cfg.kind in ("step", "multistep"):
        if cfg.kind == "step":
            ms = list(range(cfg.step_epochs, cfg.epochs, cfg.step_epochs))
        else:
            ms = sorted(m for m in cfg.milestones if m < cfg.epochs)
        # PiecewiseConstantDecay keeps a value while step <= boundary: the new value must
        # apply from the first step of the milestone epoch, step m * spe.
        sched = (
            s.PiecewiseConstantDecay(
                [m * spe - 1 for m in ms], [cfg.lr * cfg.gamma**i for i in range(len(ms) + 1)]
            )
            if ms
            else Constant(cfg.lr)
        )
    elif cfg.kind == "exponential":
        sched = s.ExponentialDecay(cfg.lr, decay_steps=spe, decay_rate=cfg.gamma, staircase=True)
    elif cfg.kind == "cosine":
        sched = s.CosineDecay(cfg.lr, decay_steps=total, alpha=cfg.min_lr / cfg.lr)
    elif cfg.kind == "cosine_restarts":
        sched = s.CosineDecayRestarts(
            cfg.lr,
            first_decay_steps=int(cfg.restart_epochs * spe),
            t_mul=cfg.t_mul,
            m_mul=cfg.m_mul,
            alpha=cfg.min_lr / cfg.lr,
        )
    elif cfg.kind == "linear":
        sched = s.PolynomialDecay(
            cfg.lr, decay_steps=total, end_learning_rate=cfg.min_lr, power=1.0
        )
    else:  # cyclic
        sched = Triangular(cfg.min_lr, cfg.lr, int(cfg.cycle_epochs * spe))
    return WarmUp(sched, warm, cfg.lr) if warm else sched


def schedule_values(cfg: ScheduleConfig, steps_per_epoch: int) -> list[float]:
    """The learning rate at every step (for plots and tests)."""
    sched = make_schedule(cfg, steps_per_epoch)

    @tf.function(autograph=False)  # one graph loop: eager map_fn over a long schedule is slow
    def every_step():
        steps = tf.range(cfg.epochs * steps_per_epoch)
        return tf.map_fn(
            lambda t: tf.cast(sched(t), tf.float32), steps, fn_output_signature=tf.float32
        )

    return every_step().numpy().tolist()


def cycle_ends(cfg: ScheduleConfig, steps_per_epoch: int) -> list[int]:
    """The epochs (1-based) that end at a low point of the learning rate, lower than half
    an epoch before and after (the end of a cosine_restarts or cyclic cycle), and the last
    epoch. Where snapshot ensembles take their members (Huang et al. 2017)."""
    lr = schedule_values(cfg, steps_per_epoch)
    half = max(1, steps_per_epoch // 2)
    ends = []
    for e in range(1, cfg.epochs):
        end = e * steps_per_epoch - 1
        if lr[end] < lr[end - half] and lr[end] < lr[end + half]:
            ends.append(e)
    return ends + [cfg.epochs]
