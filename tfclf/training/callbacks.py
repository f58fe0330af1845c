"""Training callbacks: resumable checkpoints, best weights, epoch statistics, time budget,
divergence warning, precise batch-norm statistics."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from absl import logging

from tfclf.io import atomic_save_weights, atomic_write_json
from tfclf.keras import keras


class ResumableCheckpoint(keras.callbacks.Callback):
    """Saves model, optimizer (its step counter drives the LR schedule), stage and finished
    epochs after every epoch with ``tf.train.CheckpointManager``, whose index file is only
    rewritten, atomically, after the data files are complete."""

    def __init__(
        self,
        manager: tf.train.CheckpointManager,
        stage_var,
        epoch_var,
        stage: int,
        history: dict,
        history_path: Path,
        is_chief: bool = True,
    ):
        super().__init__()
        self.manager, self.stage_var, self.epoch_var = manager, stage_var, epoch_var
        self.stage, self.history, self.history_path = stage, history, history_path
        self.is_chief = is_chief

    def on_epoch_end(self, epoch, logs=None):
        if not _finite_loss(logs):  # never checkpoint diverged weights
            return
        row = {
            "stage": self.stage,
            "epoch": epoch + 1,
            **{k: float(v) for k, v in (logs or {}).items()},
        }
        self.history.setdefault("epochs", []).append(row)
        self._save(epoch + 1)

    def finish_stage_early(self, stage_epochs: int):
        """Marks the stage finished (early stopping): a rerun goes on to the next stage
        instead of training this one further."""
        self.history.setdefault("stopped_early", []).append(self.stage)
        self._save(stage_epochs)

    def _save(self, finished_epochs: int):
        self.stage_var.assign(self.stage)
        self.epoch_var.assign(finished_epochs)
        self.manager.save()
        if self.is_chief:  # history after the checkpoint: never ahead of it
            atomic_write_json(self.history, self.history_path)


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights with the best validation accuracy of the stage (atomic writes) of
    ``saved``: the trained model or, for a phase that wraps it, the part it keeps. Only at
    ``epochs`` (1-based) when given: a schedule with warm restarts keeps its best cycle end,
    never a model caught at a high learning rate that a small validation set flattered; of
    equal cycle ends the later, which has trained longer.

    In a multi-worker run every worker saves (reading batch-norm statistics is a collective
    op all workers must join); non-chief workers write into their own scratch directory.
    """

    def __init__(
        self,
        path: Path,
        saved: keras.Model | None = None,
        monitor: str = "val_accuracy",
        best: float = -np.inf,
        epochs=None,
    ):
        super().__init__()
        self.path, self.saved, self.monitor, self.best = path, saved, monitor, best
        self.epochs = None if epochs is None else set(epochs)

    def on_epoch_end(self, epoch, logs=None):
        if self.epochs is not None and epoch + 1 not in self.epochs:
            return
        value = (logs or {}).get(self.monitor)
        at_ends = self.epochs is not None  # of equal cycle ends, the later
        better = value is not None and (value >= self.best if at_ends else value > self.best)
        if better and _finite_loss(logs):
            self.best = float(value)
            atomic_save_weights(self.saved or self.model, self.path)


class Snapshots(keras.callbacks.Callback):
    """Saves the weights of ``saved`` after each of ``epochs`` (1-based; the ends of the
    learning-rate cycles) as ``folder/stage{S}_epoch{E:03d}.weights.h5`` (atomic writes).
    Validation runs at those epochs, so precise batch-norm statistics are in the weights."""

    def __init__(self, folder: Path, saved: keras.Model, epochs, stage: int):
        super().__init__()
        self.folder, self.saved, self.epochs, self.stage = folder, saved, set(epochs), stage

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 in self.epochs and _finite_loss(logs):
            self.folder.mkdir(parents=True, exist_ok=True)
            name = f"stage{self.stage}_epoch{epoch + 1:03d}.weights.h5"
            atomic_save_weights(self.saved, self.folder / name)


class EpochStats(keras.callbacks.Callback):
    """Adds epoch time, images/s and the learning rate to the logs (console, TensorBoard)."""

    def __init__(self, images_per_epoch: int):
        super().__init__()
        self.images = images_per_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.start
        if logs is not None:
            logs["epoch_seconds"] = seconds
            logs["images_per_second"] = self.images / seconds
            opt = self.model.optimizer
            lr = opt.learning_rate
            if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
                lr = lr(keras.backend.get_value(opt.iterations) - 1)
            logs["lr"] = float(keras.backend.get_value(lr))


def _finite_loss(logs) -> bool:
    return bool(np.isfinite((logs or {}).get("loss", 0.0)))


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the first batch whose loss is NaN or infinite (as Keras's
    ``TerminateOnNaN``) and remembers where, so the trainer can name the epoch and the last
    good checkpoint; the checkpoint and best-weights callbacks skip that epoch."""

    def __init__(self):
        super().__init__()
        self.where: tuple[int, int, float] | None = None  # (epoch, batch, loss), 1-based
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            self.where = (self._epoch + 1, batch + 1, float(loss))
            self.model.stop_training = True


class DivergenceWarning(keras.callbacks.Callback):
    """Warns once when the training loss of two epochs in a row is more than twice the
    lowest so far and above it by more than a uniform guess's loss, ln(classes): a learning
    rate too high for the model diverges this way without ever reaching NaN (a MobileNet
    student at the quick start's lr 0.2: 3.0, 13.0, 64.6, ...). A warm restart's rise from a
    small loss stays under the second bound; a one-epoch rise it recovers from (a FixRes
    stage's first Adam steps at a new resolution: 0.62, 1.32, 1.10) is not divergence."""

    def __init__(self, num_classes: int, lr: float, losses=()):
        super().__init__()
        self.margin = float(np.log(num_classes))
        self.lr = lr
        self.best = np.inf
        self.high = 0  # epochs in a row above the bounds
        self.warned = False
        for loss in losses:  # earlier epochs of this stage (a resume)
            self._see(loss)

    def _see(self, loss) -> bool:
        high = loss > 2 * self.best and loss - self.best > self.margin
        self.high = self.high + 1 if high else 0
        self.best = min(self.best, loss)
        return self.high >= 2

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or not np.isfinite(loss):
            return
        best = self.best
        if self._see(loss) and not self.warned:
            self.warned = True
            logging.warning(
                "epoch %d: training loss %.4g is more than twice the lowest so far (%.4g) "
                "for the second epoch running: training is diverging; try a lower --lr (this "
                "stage's peak is %g)",
                epoch + 1, loss, best, self.lr,
            )  # fmt: skip


class TimeBudget(keras.callbacks.Callback):
    """Stops training cleanly (after the current batch) once ``deadline`` has passed."""

    def __init__(self, deadline: float):
        super().__init__()
        self.deadline = deadline
        self.expired = False

    def on_train_batch_end(self, batch, logs=None):
        if time.time() >= self.deadline:
            self.expired = True
            self.model.stop_training = True


def _input_in(net: keras.Model, layer: keras.layers.Layer):
    """``layer``'s input in ``net``'s graph. A layer can be in two models: the clone that
    wraps a model's kernels for pruning keeps its other layers, which then have an input in
    each (``layer.input`` is the first)."""
    if len(layer.inbound_nodes) == 1:
        return layer.input
    for i in range(len(layer.inbound_nodes)):
        x = layer.get_input_at(i)
        try:
            keras.Model(net.inputs, x)
            return x
        except ValueError:  # "Graph disconnected": another model's
            continue
    raise ValueError(f"layer {layer.name} has no input in model {net.name}")


class PreciseBatchNorm(keras.callbacks.Callback):
    """Before each validation, sets every trainable batch norm's moving mean and variance
    to the statistics its input has over ``dataset`` (training images without
    augmentation) in one training-mode pass: "precise BN" (Wu & Johnson 2021; pycls,
    Detectron2). The moving averages lag the weights by ~1 / (1 - momentum) steps, which is
    most of a short run: a 120-photo folder trained 22 steps validated at 54 % with them and
    100 % with these (docs/decisions/precise-bn.md). Training itself uses batch
    statistics, so it is unchanged; what is validated, checkpointed and exported is."""

    def __init__(self, net: keras.Model, dataset: tf.data.Dataset):
        super().__init__()
        self.bns = [
            layer
            for layer in net.layers
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
        ]
        self.dataset = dataset
        if self.bns:
            probe = keras.Model(net.inputs, [_input_in(net, bn) for bn in self.bns])

            @tf.function
            def moments(x):
                outs = tf.nest.flatten(probe(x, training=True))
                return [
                    tf.nn.moments(v, list(range(v.shape.rank - 1)))
                    for v in (tf.cast(o, tf.float32) for o in outs)
                ]

            self.moments = moments

    def on_test_begin(self, logs=None):
        if not self.bns:
            return
        batches = []  # (images, [(mean, variance) per batch norm])
        for x, _ in self.dataset:
            stats = [(m.numpy().astype(np.float64), v.numpy()) for m, v in self.moments(x)]
            batches.append((int(x.shape[0]), stats))
        count = sum(n for n, _ in batches)
        for k, bn in enumerate(self.bns):
            # pooled over all images: the batches' own (centred) variances plus the spread
            # of their means, in float64, so no large mean cancels a small variance
            mean = sum(n * stats[k][0] for n, stats in batches) / count
            var = sum(n * (stats[k][1] + (stats[k][0] - mean) ** 2) for n, stats in batches)
            bn.moving_mean.assign(mean.astype(np.float32))
            bn.moving_variance.assign((var / count).astype(np.float32))
