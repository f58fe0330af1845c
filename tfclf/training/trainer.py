"""The training loop: data, model, optimiser, FixRes stages, resume, TensorBoard, report.

FixRes (Touvron et al. 2019; report 000): ordered stages, each with its own resolution,
epochs, LR schedule and trainable layers, in one run. A run directory holds everything;
rerunning the same command after a kill resumes after the last finished epoch with the
optimiser (and so the LR schedule's step) restored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from absl import logging

from tfclf.data import (
    ImageData,
    Normalizer,
    eval_dataset,
    load_source,
    stratified_split,
    train_dataset,
)
from tfclf.keras import keras, layers
from tfclf.models import create_model
from tfclf.training import callbacks as cb
from tfclf.training.schedules import ScheduleConfig, make_schedule

OPTIMIZERS = ("sgd", "adam", "adamw")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("default", "mirrored", "multi_worker")
TRAINABLE = ("all", "classifier_bn")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One FixRes stage: resolution, epochs, schedule, which layers train."""

    size: int | None
    epochs: int
    schedule: ScheduleConfig
    train: str = "all"  # all | classifier_bn (FixRes fine-tuning: classifier + last BN)
    augment: str | None = None  # None: the run's augmentation


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    run_dir: str
    model: str = "se_resnet20"
    model_args: dict = dataclasses.field(default_factory=dict)
    source: str = "mnist5k"
    data_dir: str | None = None
    download: bool = False
    channels: int | None = None
    load_size: int | None = None
    val_fraction: float = 0.2
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    augment: str = ""
    balance: str = "none"
    batch_size: int = 128
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0
    l2: float = 0.0
    label_smoothing: float = 0.0
    stages: tuple[Stage, ...] = ()
    early_stopping: int = 0
    plateau_patience: int = 5
    plateau_factor: float = 0.1
    time_budget: float = 0.0
    precision: str = "float32"
    xla: bool = False
    strategy: str = "default"
    seed: int = 0
    deterministic: bool = False
    verbose: int = 2
    eval_batch_size: int = 256
    val_every: int = 1


def cpu_has_native_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            words = set(f.read().split())
    except OSError:
        return False
    return bool(words & {"avx512_bf16", "amx_bf16"})


def resolve_precision(precision: str) -> str:
    """``auto``: mixed_float16 on a GPU; mixed_bfloat16 on a CPU with native bf16
    (AVX512-BF16/AMX), float32 otherwise: on this AVX2-only CPU bf16 trains 5-8x slower
    (BUILD_NOTES.md)."""
    if precision != "auto":
        return precision
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_has_native_bf16() else "float32"


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def make_optimizer(cfg: TrainConfig, lr):
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(lr)
    if cfg.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def add_l2(model: keras.Model, l2: float) -> None:
    """L2 penalty ``l2 * sum(w^2)`` on every conv/dense kernel (not BN, not biases)."""
    if not l2:
        return
    for layer in model.layers:
        for attr in ("kernel", "depthwise_kernel"):
            w = getattr(layer, attr, None)
            if w is not None:
                model.add_loss(lambda w=w: l2 * tf.reduce_sum(tf.square(tf.cast(w, tf.float32))))


def set_trainable(model: keras.Model, which: str) -> None:
    if which not in TRAINABLE:
        raise ValueError(f"stage train must be one of {', '.join(TRAINABLE)}, got {which!r}")
    if which == "all":
        model.trainable = True
        return
    bns = [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]
    keep = {"logits"} | ({bns[-1].name} if bns else set())
    for layer in model.layers:
        layer.trainable = layer.name in keep


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


def prepare_data(cfg: TrainConfig) -> tuple[ImageData, Normalizer]:
    data = load_source(
        cfg.source,
        data_dir=cfg.data_dir,
        channels=cfg.channels,
        image_size=cfg.load_size,
        download=cfg.download,
    )
    if data.val is None:
        data.train, data.val = stratified_split(data.train, cfg.val_fraction, seed=cfg.seed)
    c = data.image_shape[-1]
    if cfg.mean is not None or cfg.std is not None:
        norm = Normalizer.from_values(cfg.mean or (0.0,), cfg.std or (1.0,), c)
    else:
        norm = Normalizer.from_images(data.train.images)
    return data, norm


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.run_dir = Path(cfg.run_dir)
        self.history: dict = {"epochs": []}

    # -------------------------------------------------------------- set-up
    def _setup(self):
        cfg = self.cfg
        keras.utils.set_random_seed(cfg.seed)
        if cfg.deterministic:
            tf.config.experimental.enable_op_determinism()
        self.precision = resolve_precision(cfg.precision)
        keras.mixed_precision.set_global_policy(self.precision)
        self.strategy = make_strategy(cfg.strategy)
        resolver = getattr(self.strategy, "cluster_resolver", None)
        self.is_chief = (
            resolver is None
            or resolver.task_type in (None, "chief")
            or (resolver.task_type == "worker" and resolver.task_id == 0)
        )
        # Non-chief workers of a multi-worker run write to their own scratch directory.
        self.out_dir = (
            self.run_dir if self.is_chief else self.run_dir / ".workers" / str(resolver.task_id)
        )
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.data, self.norm = prepare_data(cfg)
        if self.is_chief:
            (self.run_dir / "normalizer.json").write_text(self.norm.to_json())
            (self.run_dir / "classes.json").write_text(json.dumps(self.data.class_names))
        logging.info("data: %s", self.data.describe())

    def _create(self, stage: Stage) -> keras.Model:
        size = stage.size or self.data.image_shape[0]
        return create_model(
            self.cfg.model,
            (size, size, self.data.image_shape[-1]),
            self.data.num_classes,
            **self.cfg.model_args,
        )

    def _build(self, stage: Stage) -> keras.Model:
        with self.strategy.scope():
            return self._create(stage)

    def _compile(self, model, stage: Stage, steps_per_epoch: int):
        cfg = self.cfg
        with self.strategy.scope():
            set_trainable(model, stage.train)
            add_l2(model, cfg.l2)
            lr = (
                stage.schedule.lr
                if stage.schedule.kind == "plateau"
                else make_schedule(stage.schedule, steps_per_epoch)
            )
            metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
            if self.data.num_classes > 10:
                metrics.append(keras.metrics.TopKCategoricalAccuracy(5, name="top5"))
            model.compile(
                optimizer=make_optimizer(cfg, lr),
                loss=keras.losses.CategoricalCrossentropy(
                    from_logits=True, label_smoothing=cfg.label_smoothing
                ),
                metrics=metrics,
                jit_compile=cfg.xla,
            )
            model.optimizer.build(model.trainable_variables)

    # -------------------------------------------------------------- run
    def run(self) -> dict:
        cfg = self.cfg
        self._setup()
        ckpt_dir = self.out_dir / "checkpoints"
        resume = read_resume_state(ckpt_dir)
        start_stage, start_epoch = resume or (0, 0)
        hist_path = self.run_dir / "history.json"
        if resume and hist_path.exists():
            self.history = json.loads(hist_path.read_text())
            # keep only rows up to the checkpoint (history is written after it)
            self.history["epochs"] = [
                r
                for r in self.history["epochs"]
                if (r["stage"], r["epoch"]) <= (start_stage, start_epoch)
            ]
        if resume:
            logging.info("resuming at stage %d after epoch %d", start_stage + 1, start_epoch)
        deadline = time.time() + cfg.time_budget if cfg.time_budget else None
        tb_dir = self.out_dir / "tensorboard"
        model = None
        stopped_by_budget = False
        for s in range(start_stage, len(cfg.stages)):
            stage = cfg.stages[s]
            first_epoch = start_epoch if s == start_stage else 0
            if first_epoch >= stage.epochs:
                continue
            previous = model
            model = self._build(stage)
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
            )
            self._compile(model, stage, stream.steps_per_epoch)
            stage_var = tf.Variable(s, dtype=tf.int64, trainable=False)
            epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
            ckpt = tf.train.Checkpoint(
                model=model, optimizer=model.optimizer, stage=stage_var, epoch=epoch_var
            )
            manager = tf.train.CheckpointManager(ckpt, str(ckpt_dir), max_to_keep=2)
            if resume and s == start_stage and first_epoch > 0:  # mid-stage: everything
                ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
            elif previous is not None:  # next stage in this process
                transfer_weights(previous, model)
            elif resume:  # a stage boundary after a restart: weights, fresh optimizer
                tf.train.Checkpoint(model=model).restore(manager.latest_checkpoint).expect_partial()
            val_ds = eval_dataset(
                self.data.val,
                self.data.num_classes,
                self.norm,
                batch_size=cfg.eval_batch_size,
                image_size=stage.size,
            )
            best_path = self.out_dir / f"best_stage{s}.weights.h5"
            best_so_far = max(
                [r.get("val_accuracy", -1) for r in self.history["epochs"] if r["stage"] == s]
                or [-np.inf]
            )
            checkpoint = cb.ResumableCheckpoint(
                manager, stage_var, epoch_var, s, self.history, hist_path, is_chief=self.is_chief
            )
            callbacks = [
                cb.EpochStats(stream.steps_per_epoch * cfg.batch_size),
                cb.BestWeights(best_path, best=best_so_far),
                keras.callbacks.TensorBoard(str(tb_dir), write_graph=False, profile_batch=0),
                checkpoint,
            ]
            if stage.schedule.kind == "plateau":
                callbacks.insert(
                    0,
                    keras.callbacks.ReduceLROnPlateau(
                        "val_loss",
                        factor=cfg.plateau_factor,
                        patience=cfg.plateau_patience,
                        min_lr=stage.schedule.min_lr,
                    ),
                )
            early = None
            if cfg.early_stopping:
                early = keras.callbacks.EarlyStopping(
                    "val_accuracy", patience=cfg.early_stopping, mode="max"
                )
                callbacks.insert(0, early)
            budget = cb.TimeBudget(deadline) if deadline else None
            if budget:
                callbacks.append(budget)
            logging.info(
                "stage %d/%d: %s at %s px, epochs %d..%d, train=%s",
                s + 1,
                len(cfg.stages),
                cfg.model,
                stage.size or "native",
                first_epoch + 1,
                stage.epochs,
                stage.train,
            )
            if s == start_stage and first_epoch == 0 and self.is_chief:
                self._log_inputs(stream, tb_dir)
            model.fit(
                stream.dataset,
                epochs=stage.epochs,
                initial_epoch=first_epoch,
                steps_per_epoch=stream.steps_per_epoch,
                validation_data=val_ds,
                validation_freq=[
                    e
                    for e in range(first_epoch + 1, stage.epochs + 1)
                    if e % cfg.val_every == 0 or e == stage.epochs
                ],
                callbacks=callbacks,
                verbose=cfg.verbose,
            )
            if early is not None and early.stopped_epoch > 0:
                logging.info(
                    "early stopping ended stage %d after epoch %d (no val_accuracy "
                    "gain in %d epochs)",
                    s + 1,
                    early.stopped_epoch + 1,
                    cfg.early_stopping,
                )
                checkpoint.finish_stage_early(stage.epochs)
            if budget and budget.expired:
                stopped_by_budget = True
                logging.warning(
                    "time budget of %.0f s used up: stopping after stage %d epoch %d",
                    cfg.time_budget,
                    s + 1,
                    int(epoch_var.numpy()),
                )
                break
        if model is None:  # everything was already done: rebuild the final model
            model = self._build(cfg.stages[-1])
            tf.train.Checkpoint(model=model).restore(
                tf.train.latest_checkpoint(str(ckpt_dir))
            ).expect_partial()
        return self._finish(model, stopped_by_budget)

    def _log_inputs(self, stream, tb_dir):
        x = next(iter(stream.dataset))[0][:16].numpy()
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

    def _finish(self, model: keras.Model, stopped_by_budget: bool) -> dict:
        from tfclf.report import write_report

        cfg = self.cfg
        identical = replicas_identical(model)  # before the best weights are loaded everywhere
        last = len(cfg.stages) - 1
        final_stage = max([r["stage"] for r in self.history["epochs"]] or [last])
        best_path = self.out_dir / f"best_stage{final_stage}.weights.h5"
        size = cfg.stages[final_stage].size
        result = {
            "stopped_by_time_budget": stopped_by_budget,
            "stopped_early": [s + 1 for s in self.history.get("stopped_early", [])],
            "final_stage": final_stage + 1,
            "precision": self.precision,
            "replicas": self.strategy.num_replicas_in_sync,
            "replicas_identical": identical,
        }
        if not self.is_chief:
            return result
        keras.mixed_precision.set_global_policy("float32")
        start = time.perf_counter()
        export_dir, f32 = self._export_float32(model, cfg.stages[final_stage], best_path)
        logging.info(
            "best model exported to %s in %.1f s; writing the report",
            export_dir,
            time.perf_counter() - start,
        )
        files = {"keras": export_dir / "model.keras", "weights": best_path}
        report = write_report(
            self.run_dir / "report",
            f32,
            self.data.val,
            self.data.class_names,
            self.norm,
            image_size=size,
            batch_size=cfg.eval_batch_size,
            history=self.history["epochs"],
            files=files,
        )
        with tf.summary.create_file_writer(
            str(self.run_dir / "tensorboard" / "report")
        ).as_default():
            png = tf.io.read_file(str(self.run_dir / "report" / "confusion_matrix.png"))
            tf.summary.image(
                "confusion_matrix",
                tf.image.decode_png(png, 4)[None],
                step=len(self.history["epochs"]),
            )
        result.update({k: report[k] for k in ("top1", "loss", "macro_f1", "top5") if k in report})
        result.update(
            {
                "epochs_run": len(self.history["epochs"]),
                "train_seconds": sum(r.get("epoch_seconds", 0) for r in self.history["epochs"]),
                "trainable_params": report["model"]["trainable_params"],
                "macs": report["model"]["macs"],
            }
        )
        cb.atomic_write_json(result, self.run_dir / "metrics.json")
        return result

    def _export_float32(
        self, model: keras.Model, stage: Stage, best_path: Path
    ) -> tuple[Path, keras.Model]:
        """The stage's best weights (else the last) as a float32 model built outside any
        strategy, saved as ``.keras`` and SavedModel, written then renamed into place."""
        f32 = self._create(stage)  # outside the strategy, under the float32 policy
        if best_path.exists():
            f32.load_weights(best_path)
        else:
            f32.set_weights(model.get_weights())
        out = self.run_dir / "best_model"
        tmp = self.run_dir / ".best_model.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        f32.save(tmp / "model.keras")
        # An inference SavedModel (serving_default = the forward pass): what TF Serving and
        # the TFLite converter need, written ~10x faster than Keras' full SavedModel. It
        # prints its endpoint listing; its INFO records go with the CLI's library filter.
        with contextlib.redirect_stdout(io.StringIO()):
            f32.export(str(tmp / "saved_model"))
        old = self.run_dir / ".best_model.old"
        shutil.rmtree(old, ignore_errors=True)
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
        return out, f32


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


def transfer_weights(source: keras.Model, target: keras.Model) -> None:
    """Copies weights between two builds of one model at different resolutions."""
    try:
        target.set_weights(source.get_weights())
    except ValueError as e:
        raise ValueError(
            f"cannot move {source.name} from {source.input_shape[1:3]} to "
            f"{target.input_shape[1:3]}: its classifier depends on the input size "
            f"(Flatten). FixRes stages need a model with global pooling. ({e})"
        ) from None


def train(cfg: TrainConfig) -> dict:
    return Trainer(cfg).run()
