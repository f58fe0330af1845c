"""The training loop: data, model, optimiser, FixRes stages, resume, TensorBoard.

FixRes (Touvron et al. 2019; report 000): ordered stages, each with its own resolution,
epochs, LR schedule and trainable layers, in one run. A run directory holds everything;
rerunning the same command after a kill resumes after the last finished epoch with the
optimiser (and so the LR schedule's step) restored.

What is trained is decided by a ``Phase`` (``tfclf.training.phases``): plain training, or
distillation, pruning, clustering, QAT plugged in without touching this loop. The loop
neither exports nor reports: ``train`` returns the final float32 model and the CLI hands it
to ``tfclf.export`` and ``tfclf.report``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf
from absl import logging
from tensorflow.python.framework import config as tf_config  # op determinism's switch off

from tfclf.config import CYCLIC_SCHEDULES, TRAINABLE, Stage, TrainConfig
from tfclf.data import ImageData, Normalizer, eval_dataset, prepare_data, train_dataset
from tfclf.errors import UsageError
from tfclf.io import atomic_write_text
from tfclf.keras import keras, layers
from tfclf.models import create_model
from tfclf.models.applications import pretrained_normalizer
from tfclf.models.summary import human, model_stats
from tfclf.rundir import RunDir
from tfclf.system import describe_kernels, make_strategy, precision_problem, resolve_precision
from tfclf.training import callbacks as cb
from tfclf.training.init_from import init_from, source_normalizer
from tfclf.training.phases import Phase, PhaseContext
from tfclf.training.schedules import cycle_ends, make_schedule


@dataclasses.dataclass
class TrainResult:
    """The final model (float32, best weights, built outside any strategy, phase finished)
    and what the report and export need beside it. ``model`` is None on non-chief workers."""

    model: keras.Model | None
    metrics: dict
    history: list[dict]
    data: ImageData
    normalizer: Normalizer
    image_size: int


def make_optimizer(cfg: TrainConfig, lr):
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(lr)
    if cfg.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adadelta":  # PyTorch's rho and epsilon, as report 001 trained
        return keras.optimizers.Adadelta(lr, rho=0.9, epsilon=1e-6)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


REGULARIZED = {"kernel_regularizer": "kernel", "depthwise_regularizer": "depthwise_kernel"}


def with_regularizers(model: keras.Model, l2: float, bn_l1: float = 0.0) -> keras.Model:
    """``model`` rebuilt with an L2 kernel regulariser (``l2 * sum(w^2)``) on every conv and
    dense kernel (not batch norm, not biases) and, with ``bn_l1``, an L1 penalty on every
    batch-norm scale (network slimming, ``tfclf.compress.slim``). Regularisers are part of
    each layer's config, so they are saved with the model and survive TF-MOT's cloning and
    wrapping (tested). The rebuilt model keeps ``model``'s weights: a penalty must not
    re-draw the initialisation, or one seed would start from other weights with ``--l2``
    than without (it did before 0.1.0, which cost the quick start 0.4 points on its
    default seed; docs/decisions/weights-kept-on-rebuild.md)."""
    if not l2 and not bn_l1:
        return model
    config = model.get_config()
    for layer in config["layers"]:
        for key in REGULARIZED:
            if l2 and key in layer["config"]:
                layer["config"][key] = keras.regularizers.serialize(keras.regularizers.L2(l2))
        if bn_l1 and layer["class_name"] == "BatchNormalization" and layer["config"]["scale"]:
            reg = keras.regularizers.L1(bn_l1)
            layer["config"]["gamma_regularizer"] = keras.regularizers.serialize(reg)
    rebuilt = model.__class__.from_config(config)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def set_trainable(model: keras.Model, which: str, bn: str = "train") -> None:
    """Which layers train: ``all``; ``classifier_bn`` (the classifier and the last batch
    norm: FixRes' fine-tuning); ``head`` (the classifier alone). ``bn="frozen"`` also
    freezes every batch norm, which then keeps its statistics (Keras runs a frozen batch
    norm in inference mode)."""
    if which not in TRAINABLE:
        raise ValueError(f"stage train must be one of {', '.join(TRAINABLE)}, got {which!r}")
    bns = [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]
    if which == "all":
        model.trainable = True
    else:
        keep = {"logits"} | ({bns[-1].name} if bns and which == "classifier_bn" else set())
        for layer in model.layers:
            layer.trainable = layer.name in keep
    if bn == "frozen":
        for layer in bns:
            layer.trainable = False


def transfer_weights(source: keras.Model, target: keras.Model) -> None:
    """Copies every weighted layer of ``target`` from the layer of the same name in
    ``source`` (two builds of one model, e.g. at two FixRes resolutions). The first layer
    that is missing or whose weights differ in shape is named in the error."""
    by_name = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
        if not layer.weights:
            continue
        src = by_name.get(layer.name)
        if src is None:
            raise ValueError(
                f"cannot move weights from {source.name} to {target.name}: "
                f"{target.name} has layer {layer.name!r}, {source.name} has not"
            )
        mine, theirs = layer.get_weights(), src.get_weights()
        shapes = [w.shape for w in mine], [w.shape for w in theirs]
        if shapes[0] != shapes[1]:
            hint = (
                " (its input depends on the resolution: FixRes stages need a model with "
                "global pooling)"
                if isinstance(layer, layers.Dense)
                else ""
            )
            raise ValueError(
                f"cannot move weights from {source.name} to {target.name}: layer "
                f"{layer.name!r} has shapes {shapes[1]} there and {shapes[0]} "
                f"here{hint}"
            )
        layer.set_weights(theirs)


def restore_model(
    model: keras.Model, path: str, checkpoint: tf.train.Checkpoint | None = None
) -> None:
    """Restores the model's weights from a training checkpoint, strictly: every model
    variable must be in it (a mismatch is an error, never silently random weights). The
    checkpoint's optimizer and counters may go unused, unless ``checkpoint`` (the model with
    its optimizer and counters) is given: then all of it is restored."""
    partial = checkpoint is None  # the model alone: the optimizer and counters go unused
    if partial:
        checkpoint = tf.train.Checkpoint(model=model)
    try:
        status = checkpoint.restore(path)
        status.assert_existing_objects_matched()
        if partial:
            status.expect_partial()
    except (AssertionError, ValueError) as e:
        first = str(e).strip().splitlines()[0][:200]
        raise ValueError(f"checkpoint {path} does not match model {model.name}: {first}") from e


def read_resume_state(ckpt_dir: Path) -> tuple[int, int] | None:
    """(stage, finished epochs) of the latest checkpoint, or None."""
    latest = tf.train.latest_checkpoint(str(ckpt_dir))
    if not latest:
        return None
    reader = tf.train.load_checkpoint(latest)
    return (
        int(reader.get_tensor("stage/.ATTRIBUTES/VARIABLE_VALUE")),
        int(reader.get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE")),
    )


class LossNotFinite(UsageError):
    """The training loss became NaN or infinite; nothing after the last good epoch is kept."""


class StageCounters:
    """A stage's checkpointing: the model, its optimizer and two counters (stage, finished
    epochs) saved together each epoch, the two latest kept."""

    def __init__(self, model: keras.Model, s: int, ckpt_dir: Path):
        self.stage = tf.Variable(s, dtype=tf.int64, trainable=False)
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=model.optimizer, stage=self.stage, epoch=self.epoch
        )
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(ckpt_dir), max_to_keep=2)
        self.callback = None  # the stage's ResumableCheckpoint


class StageGuards:
    """The callbacks that can end a stage early: a non-finite loss, early stopping, the
    time budget."""

    def __init__(self, cfg: TrainConfig, deadline: float | None):
        self.nan_guard = cb.StopOnNonFiniteLoss()
        self.early = (
            keras.callbacks.EarlyStopping("val_accuracy", patience=cfg.early_stopping, mode="max")
            if cfg.early_stopping
            else None
        )
        self.budget = cb.TimeBudget(deadline) if deadline else None


class Trainer:
    def __init__(
        self, cfg: TrainConfig, phase: Phase | None = None, on_ready: Callable | None = None
    ):
        self.cfg = cfg
        self.phase = phase or Phase()
        self.on_ready = on_ready
        self.rundir = RunDir(cfg.run_dir)
        self.history: dict = {"epochs": []}

    # -------------------------------------------------------------- set-up
    def _setup(self):
        cfg = self.cfg
        keras.utils.set_random_seed(cfg.seed)
        if cfg.deterministic:
            tf.config.experimental.enable_op_determinism()
        self.strategy = make_strategy(cfg.strategy)
        resolver = getattr(self.strategy, "cluster_resolver", None)
        self.is_chief = (
            resolver is None
            or resolver.task_type in (None, "chief")
            or (resolver.task_type == "worker" and resolver.task_id == 0)
        )
        # Non-chief workers of a multi-worker run write to their own scratch directory.
        self.out = (
            self.rundir
            if self.is_chief
            else RunDir(self.rundir.path / ".workers" / str(resolver.task_id))
        )
        self.out.path.mkdir(parents=True, exist_ok=True)
        self.data, self.norm = prepare_data(cfg)
        if cfg.init_from and cfg.mean is None and cfg.std is None:
            self.norm = source_normalizer(cfg.init_from, self.norm)
        elif cfg.weights and cfg.mean is None and cfg.std is None:
            self.norm = pretrained_normalizer(cfg.model, self.norm)
        logging.info("data: %s", self.data.describe())
        self.precision, why = self._pick_precision()
        keras.mixed_precision.set_global_policy(self.precision)
        logging.info(
            "%s; precision %s (--precision=%s%s)",
            describe_kernels(),
            self.precision,
            cfg.precision,
            why,
        )

    def _pick_precision(self) -> tuple[str, str]:
        """``--precision`` resolved; for ``auto`` where bfloat16 is native, a float32 build of
        the first stage's model is measured first, as tiny models train faster in float32."""
        cfg = self.cfg
        precision = resolve_precision(cfg.precision)
        if problem := precision_problem(precision):
            kind, why = problem
            if kind == "error":
                raise UsageError(why)
            logging.warning(why)
        if cfg.precision != "auto" or precision != "mixed_bfloat16":
            return precision, ""
        keras.mixed_precision.set_global_policy("float32")
        macs = model_stats(self._architecture(cfg.stages[0])).macs
        keras.utils.set_random_seed(cfg.seed)  # the probe drew initial weights
        return resolve_precision("auto", macs=macs), f": {human(macs)} MACs an image"

    def _ready(self):
        """The data loaded and the first model built: only now does the run directory of an
        earlier run get this run's files, so a bad input leaves it as it was."""
        if self.is_chief:
            atomic_write_text(self.norm.to_json(), self.rundir.normalizer_file)
            atomic_write_text(json.dumps(self.data.class_names), self.rundir.classes_file)
        if self.on_ready and self.is_chief:
            self.on_ready()
        self.on_ready = None

    def _architecture(self, stage: Stage) -> keras.Model:
        size = stage.size or self.data.image_shape[0]
        try:
            return create_model(
                self.cfg.model,
                (size, size, self.data.image_shape[-1]),
                self.data.num_classes,
                **self.cfg.model_args,
            )
        except ValueError as e:  # the model's own checks: input size, argument values
            raise UsageError(f"--model={self.cfg.model}: {e}") from None

    def _create(self, stage: Stage) -> keras.Model:
        return with_regularizers(self._architecture(stage), self.cfg.l2, self.cfg.bn_l1)

    def _context(self, s: int, steps_per_epoch: int) -> PhaseContext:
        return PhaseContext(
            self.cfg,
            self.cfg.stages[s],
            s,
            steps_per_epoch,
            self.data.num_classes,
            self.rundir.path,
            self.norm,
        )

    def _build(self, ctx: PhaseContext) -> keras.Model:
        with self.strategy.scope():
            return self.phase.wrap(self._create(ctx.stage), ctx)

    def _compile(self, model, ctx: PhaseContext):
        cfg, stage = self.cfg, ctx.stage
        with self.strategy.scope():
            set_trainable(self.phase.saved(model), stage.train, stage.bn)
            lr = (
                stage.schedule.lr
                if stage.schedule.kind == "plateau"
                else make_schedule(stage.schedule, ctx.steps_per_epoch)
            )
            metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
            if self.data.num_classes > 10:
                metrics.append(keras.metrics.TopKCategoricalAccuracy(5, name="top5"))
            loss = keras.losses.CategoricalCrossentropy(
                from_logits=True, label_smoothing=cfg.label_smoothing
            )
            self.phase.compile(
                model,
                ctx,
                optimizer=make_optimizer(cfg, lr),
                loss=loss,
                metrics=metrics,
                jit_compile=cfg.xla,
                steps_per_execution=cfg.steps_per_execution,
            )
            model.optimizer.build(model.trainable_variables)

    # -------------------------------------------------------------- run
    def run(self) -> TrainResult:
        """Trains every stage not yet finished and returns the final model. Process-wide
        state the run sets (the mixed-precision policy, op determinism) is put back after
        it, whether it finishes or fails."""
        policy = keras.mixed_precision.global_policy()
        determinism = tf_config.is_op_determinism_enabled()
        try:
            return self._run()
        finally:
            keras.mixed_precision.set_global_policy(policy)
            if not determinism:
                tf_config.disable_op_determinism()

    def _run(self) -> TrainResult:
        cfg = self.cfg
        self._setup()
        start_stage, start_epoch = self._restore_history()
        deadline = time.time() + cfg.time_budget if cfg.time_budget else None
        model, stopped_by_budget = None, False
        for s in range(start_stage, len(cfg.stages)):
            first_epoch = start_epoch if s == start_stage else 0
            if first_epoch >= cfg.stages[s].epochs:
                continue
            model, stopped_by_budget = self._train_stage(
                s, first_epoch, model, first=s == start_stage, deadline=deadline
            )
            if stopped_by_budget:
                break
        if model is None:  # everything was already done: rebuild the final model
            model = self._build(self._context(len(cfg.stages) - 1, 1))
            self._resume(model, tf.train.latest_checkpoint(str(self.out.checkpoints)))
        return self._finish(model, stopped_by_budget)

    def _restore_history(self) -> tuple[int, int]:
        """(stage, finished epochs) to start from: the latest checkpoint's, with the history
        cut to the epochs it holds (history is written after the checkpoint)."""
        self.resume = read_resume_state(self.out.checkpoints)
        start = self.resume or (0, 0)
        if self.resume and self.rundir.history_file.exists():
            self.history = json.loads(self.rundir.history_file.read_text())
            self.history["epochs"] = [
                r for r in self.history["epochs"] if (r["stage"], r["epoch"]) <= start
            ]
        if self.resume:
            logging.info("resuming at stage %d after epoch %d", start[0] + 1, start[1])
        return start

    def _train_stage(self, s: int, first_epoch: int, previous, *, first: bool, deadline):
        """Trains stage ``s`` from ``first_epoch``: (its model, whether the time budget
        ran out). ``previous`` is the last stage's model in this process, if any."""
        cfg, stage = self.cfg, self.cfg.stages[s]
        ctx = self._context(s, len(self.data.train) // cfg.batch_size)
        stream = train_dataset(
            self.data.train,
            self.data.num_classes,
            self.norm,
            batch_size=cfg.batch_size,
            image_size=stage.size,
            augment=cfg.augment if stage.augment is None else stage.augment,
            balance=cfg.balance,
            seed=cfg.seed + 1000 * s,
            start_epoch=first_epoch,
            per_example=self.phase.per_example(self.data.train, ctx),
        )
        model = self._build(ctx)
        self._compile(model, ctx)
        counters = StageCounters(model, s, self.out.checkpoints)
        if self.resume and first and first_epoch > 0:  # mid-stage: everything
            self._resume(model, counters.manager.latest_checkpoint, counters.checkpoint)
        elif previous is not None:  # next stage in this process
            transfer_weights(previous, model)
        elif self.resume:  # a stage boundary after a restart: weights, fresh optimizer
            self._resume(model, counters.manager.latest_checkpoint)
        elif self.cfg.init_from:  # a new run's start: a fine-tune
            init_from(self.phase.saved(model), self.cfg.init_from)
        if first:  # after the restore: a run that cannot resume changes nothing
            self._ready()
        # warm restarts: the best model and the snapshots are taken at cycle ends only
        ends = None
        if stage.schedule.kind in CYCLIC_SCHEDULES:
            ends = cycle_ends(stage.schedule, ctx.steps_per_epoch)
        guards = StageGuards(cfg, deadline)
        callbacks = self._callbacks(model, ctx, stream, counters, guards, ends)
        logging.info(
            "stage %d/%d (%s): %s at %s px, epochs %d..%d, train=%s",
            s + 1,
            len(cfg.stages),
            self.phase.name,
            cfg.model,
            stage.size or self.data.image_shape[0],
            first_epoch + 1,
            stage.epochs,
            stage.train,
        )
        if first and first_epoch == 0 and self.is_chief:
            self._log_inputs(stream, self.out.tensorboard)
        model.fit(
            stream.dataset,
            epochs=stage.epochs,
            initial_epoch=first_epoch,
            steps_per_epoch=stream.steps_per_epoch,
            validation_data=self._eval_stream(self.data.val, stage, cfg.eval_batch_size),
            validation_freq=[
                e
                for e in range(first_epoch + 1, stage.epochs + 1)
                if e % cfg.resolved_val_every == 0 or e == stage.epochs or e in (ends or ())
            ],
            callbacks=callbacks,
            verbose={"bar": 1, "line": 2}.get(cfg.verbose, 1 if sys.stdout.isatty() else 2),
        )
        return model, self._after_stage(s, guards, counters)

    def _eval_stream(self, split, stage: Stage, batch_size: int):
        return eval_dataset(
            split, self.data.num_classes, self.norm, batch_size=batch_size, image_size=stage.size
        )

    def _callbacks(self, model, ctx: PhaseContext, stream, counters, guards, ends) -> list:
        """The stage's callbacks, in the order they must run at an epoch's end: guards and
        statistics first, the best weights and snapshots before the checkpoint (a resumed
        run never skips one), the checkpoint, then the budget and the divergence warning."""
        cfg, stage, s = self.cfg, ctx.stage, ctx.stage_index
        saved = self.phase.saved(model)
        best_so_far = max(
            [
                r.get("val_accuracy", -1)
                for r in self.history["epochs"]
                if r["stage"] == s and (ends is None or r["epoch"] in ends)
            ]
            or [-np.inf]
        )
        callbacks = [guards.nan_guard]
        if guards.early is not None:
            callbacks.append(guards.early)
        if stage.schedule.kind == "plateau":
            callbacks.append(
                keras.callbacks.ReduceLROnPlateau(
                    "val_loss",
                    factor=cfg.plateau_factor,
                    patience=cfg.plateau_patience,
                    min_lr=stage.schedule.min_lr,
                )
            )
        if cfg.precise_bn:
            callbacks.append(self._precise_bn(saved, stage))
        callbacks += [
            cb.EpochStats(stream.steps_per_epoch * cfg.batch_size),
            *self.phase.callbacks(model, ctx),
            cb.BestWeights(self.out.best_weights(s), saved, best=best_so_far, epochs=ends),
            keras.callbacks.TensorBoard(
                str(self.out.tensorboard), write_graph=False, profile_batch=0
            ),
        ]
        if cfg.snapshots and ends:
            callbacks.append(cb.Snapshots(self.out.snapshot_weights, saved, ends, s))
        counters.callback = cb.ResumableCheckpoint(
            counters.manager,
            counters.stage,
            counters.epoch,
            s,
            self.history,
            self.rundir.history_file,
            is_chief=self.is_chief,
        )
        callbacks.append(counters.callback)
        if guards.budget is not None:
            callbacks.append(guards.budget)
        earlier = [r["loss"] for r in self.history["epochs"] if r["stage"] == s and "loss" in r]
        callbacks.append(cb.DivergenceWarning(self.data.num_classes, stage.schedule.lr, earlier))
        return callbacks

    def _precise_bn(self, saved: keras.Model, stage: Stage):
        cfg = self.cfg
        pick = np.random.default_rng(cfg.seed).permutation(len(self.data.train))
        images = self._eval_stream(
            self.data.train.subset(pick[: cfg.precise_bn]), stage, cfg.batch_size
        )
        precise = cb.PreciseBatchNorm(saved, images)
        if precise.bns:
            logging.info(
                "precise BN: %d batch norms get the statistics of %d training images "
                "before each validation (--precise_bn)",
                len(precise.bns),
                min(cfg.precise_bn, len(self.data.train)),
            )
        return precise

    def _after_stage(self, s: int, guards: StageGuards, counters: StageCounters) -> bool:
        """Acts on how the stage ended; True when the time budget ran out."""
        cfg = self.cfg
        if guards.nan_guard.where:
            raise LossNotFinite(self._diverged_message(s, guards.nan_guard.where, counters))
        if guards.early is not None and guards.early.stopped_epoch > 0:
            logging.info(
                "early stopping ended stage %d after epoch %d (no val_accuracy gain in %d epochs)",
                s + 1,
                guards.early.stopped_epoch + 1,
                cfg.early_stopping,
            )
            counters.callback.finish_stage_early(cfg.stages[s].epochs)
        if guards.budget is not None and guards.budget.expired:
            logging.warning(
                "time budget of %.0f s used up: stopping after stage %d epoch %d",
                cfg.time_budget,
                s + 1,
                int(counters.epoch.numpy()),
            )
            return True
        return False

    def _resume(self, model, path: str, checkpoint: tf.train.Checkpoint | None = None):
        """Restores a checkpoint of this run directory; one that does not fit this model is
        a usage error naming the run the directory holds."""
        try:
            restore_model(model, path, checkpoint)
        except ValueError as e:
            raise UsageError(
                f"--run_dir={self.rundir} holds {self.rundir.describe()} that this run "
                f"cannot resume ({e}): pass another --run_dir, or delete it to start over"
            ) from e

    def _diverged_message(self, s: int, where, counters: StageCounters) -> str:
        epoch, batch, loss = where
        last = counters.manager.latest_checkpoint
        if last:
            stage, done = read_resume_state(Path(last).parent)
            good = f"the last good checkpoint is {last} (stage {stage + 1}, epoch {done})"
        else:
            good = "there is no earlier checkpoint"
        return (
            f"the training loss became {loss} in stage {s + 1}, epoch {epoch}, batch {batch}; "
            f"{good}. Lower --lr (or --stage lr=) and rerun the same command: it resumes "
            "from that checkpoint"
        )

    def _log_inputs(self, stream, tb_dir):
        x = next(iter(stream.dataset))[0]
        x = (x[0] if isinstance(x, tuple) else x)[:16].numpy()
        x = np.clip(self.norm.invert(x), 0, 1)
        with tf.summary.create_file_writer(str(tb_dir / "inputs")).as_default():
            tf.summary.image("augmented_inputs", x, step=0, max_outputs=16)
        try:
            from tensorboard.plugins.hparams import api as hp

            hparams = {
                k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                for k, v in dataclasses.asdict(self.cfg).items()
                if k != "stages"
            }
            hparams["stages"] = str(
                [(st.size, st.epochs, st.schedule.kind, st.schedule.lr) for st in self.cfg.stages]
            )
            with tf.summary.create_file_writer(str(tb_dir / "hparams")).as_default():
                hp.hparams({k: v for k, v in hparams.items() if v is not None})
        except ImportError:
            logging.warning("tensorboard's hparams plugin is missing: no hparams logged")

    def _finish(self, model: keras.Model, stopped_by_budget: bool) -> TrainResult:
        cfg = self.cfg
        identical = replicas_identical(model)  # before the best weights are loaded everywhere
        final_stage = max([r["stage"] for r in self.history["epochs"]] or [len(cfg.stages) - 1])
        best_path = self.out.best_weights(final_stage)
        metrics = {
            "stopped_by_time_budget": stopped_by_budget,
            "stopped_early": [s + 1 for s in self.history.get("stopped_early", [])],
            "final_stage": final_stage + 1,
            "precision": self.precision,
            "replicas": self.strategy.num_replicas_in_sync,
            "replicas_identical": identical,
            "epochs_run": len(self.history["epochs"]),
            "train_seconds": sum(r.get("epoch_seconds", 0) for r in self.history["epochs"]),
        }
        size = cfg.stages[final_stage].size or self.data.image_shape[0]
        final = None
        if self.is_chief:
            # The stage's best weights (else the last) in a float32 build outside any
            # strategy: what is exported and reported.
            keras.mixed_precision.set_global_policy("float32")
            ctx = self._context(final_stage, 1)
            f32 = self.phase.wrap(self._create(cfg.stages[final_stage]), ctx)
            if best_path.exists():
                self.phase.saved(f32).load_weights(best_path)
            else:
                self.phase.saved(f32).set_weights(self.phase.saved(model).get_weights())
            final = self.phase.finish(f32)
        return TrainResult(final, metrics, self.history["epochs"], self.data, self.norm, size)


def replicas_identical(model: keras.Model) -> bool:
    """True when every trained (mirrored) variable holds the same value on every local
    replica. Batch-norm moving statistics are sync-on-read by design (each replica keeps its
    own, reads average them), so they are not compared."""
    for v in model.trainable_weights:
        values = getattr(v, "values", None)
        if values and len(values) > 1:
            first = values[0].numpy()
            if any(not np.array_equal(first, other.numpy()) for other in values[1:]):
                return False
    return True


def train(
    cfg: TrainConfig, phase: Phase | None = None, on_ready: Callable | None = None
) -> TrainResult:
    """Trains ``cfg`` through ``phase`` (default: plain training; with ``cfg.teacher`` set,
    distillation). ``on_ready()`` runs once the data and the first model are known good,
    before the first epoch (the CLI writes the run's ``flags.txt`` there)."""
    if phase is None and cfg.teacher:
        from tfclf.distill import DistillPhase

        phase = DistillPhase(
            cfg.teacher,
            alpha=cfg.kd_alpha,
            temperature=cfg.kd_temperature,
            kd_scale=cfg.kd_scale,
            cache=cfg.kd_cache_teacher,
        )
    return Trainer(cfg, phase, on_ready).run()
