"""Knowledge distillation (Hinton, Vinyals & Dean 2015; reports 000 and 003).

``Distiller(student=..., teacher=...)`` is a ``keras.Model`` with the conventional Keras
interface (keras.io "Knowledge Distillation")::

    distiller.compile(optimizer, metrics, student_loss_fn, distillation_loss_fn,
                      alpha=0.9, temperature=4)

and overridden ``train_step`` / ``test_step``. The teacher is frozen and always called with
``training=False``; gradients reach the student only. The loss is

    alpha * kd_scale * T^2 * KL(softmax(teacher / T) || softmax(student / T))
        + (1 - alpha) * student_loss(labels, student)

Note the weighting: here ``alpha`` weights the distillation term (keras.io's example weights
the student term with it). ``T^2`` keeps the soft-target gradients' scale independent of T.
Report 000 scales the KL term by ``2 * alpha * T^2``: pass ``kd_scale=2``.
Losses are computed in float32 (mixed precision) per example and averaged over the global
batch (``tf.nn.compute_average_loss``), so a distribution strategy sums them correctly;
the student's regularisation losses are added. Labels may be soft (label smoothing, MixUp,
CutMix): ``student_loss_fn`` is whatever the trainer uses for them.

``DistillPhase`` plugs the Distiller into the training loop: the saved and exported model
is the student alone. The teacher is a tfclf run directory, a ``.keras`` file or an
inference SavedModel; it takes raw pixels (its own normalisation is inside it), so the
student's normalised batch is mapped back to pixels and resized to the teacher's resolution
inside the step. Several teachers (``--teacher=A,B,C``) form an ensemble whose logits are
averaged: the soft targets of several runs of the same recipe (other seeds) carry more
than one run's, as in Hinton et al.'s distillation of an ensemble into one model.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from absl import logging

from tfclf.errors import UsageError
from tfclf.keras import keras
from tfclf.rundir import MODEL_FILE, SAVED_MODEL, RunDir, run_holding
from tfclf.training.phases import Phase, PhaseContext


def _per_example(fn):
    """``fn`` (a Keras loss) returning per-example values, so the step can average them
    over the global batch."""
    if isinstance(fn, keras.losses.Loss):
        return type(fn).from_config({**fn.get_config(), "reduction": "none"})
    return fn


class Distiller(keras.Model):
    def __init__(self, student: keras.Model, teacher, teacher_input=None, **kwargs):
        """``teacher``: a Keras model or any callable returning logits; ``teacher_input``
        maps the student's input batch to the teacher's (default: the same batch)."""
        super().__init__(**kwargs)
        self.student = student
        self.teacher = teacher
        if isinstance(teacher, keras.Model):
            teacher.trainable = False
        self.teacher_input = teacher_input or (lambda x: x)
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")

    def compile(
        self,
        optimizer="sgd",
        metrics=None,
        student_loss_fn=None,
        distillation_loss_fn=None,
        alpha: float = 0.9,
        temperature: float = 4.0,
        kd_scale: float = 1.0,
        **kwargs,
    ):
        if not 0 <= alpha <= 1:
            raise ValueError(f"--kd_alpha must be in [0, 1], got {alpha}")
        if temperature <= 0:
            raise ValueError(f"--kd_temperature must be positive, got {temperature}")
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
        self.student_loss_fn = _per_example(
            student_loss_fn or keras.losses.CategoricalCrossentropy(from_logits=True)
        )
        self.distillation_loss_fn = _per_example(
            distillation_loss_fn or keras.losses.KLDivergence()
        )
        self.alpha, self.temperature, self.kd_scale = alpha, temperature, kd_scale

    @property
    def metrics(self):
        return [
            self.student_loss_tracker,
            self.distillation_loss_tracker,
            *super().metrics,
        ]

    def call(self, x, training=False):
        return self.student(x, training=training)

    def teacher_logits(self, x):
        return tf.cast(self.teacher(self.teacher_input(x), training=False), tf.float32)

    def distillation_losses(self, y, student_logits, teacher_logits, sample_weight=None):
        """(total, student, distillation) losses, each image's weighted by
        ``sample_weight`` (``--balance=class_weight``) when given."""
        t = self.temperature
        s = tf.cast(student_logits, tf.float32)
        student = tf.nn.compute_average_loss(
            self.student_loss_fn(y, s), sample_weight=sample_weight
        )
        kd = tf.nn.compute_average_loss(
            self.distillation_loss_fn(tf.nn.softmax(teacher_logits / t), tf.nn.softmax(s / t)),
            sample_weight=sample_weight,
        )
        total = (1 - self.alpha) * student + self.alpha * self.kd_scale * t**2 * kd
        return total, student, kd

    def train_step(self, data):
        x, y = data[0], data[1]
        weights = data[2] if len(data) > 2 else None  # per-image class weights
        if isinstance(x, (tuple, list)):  # the teacher's logits, computed once (cached)
            x, teacher_logits = x
        else:
            teacher_logits = tf.stop_gradient(self.teacher_logits(x))
        with tf.GradientTape() as tape:
            student_logits = self.student(x, training=True)
            loss, student, kd = self.distillation_losses(y, student_logits, teacher_logits, weights)
            if self.student.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.student.losses))
        self.optimizer.minimize(loss, self.student.trainable_variables, tape=tape)
        return self._update(y, student_logits, student, kd)

    def test_step(self, data):
        x, y = data[0], data[1]
        student_logits = self.student(x, training=False)
        _, student, kd = self.distillation_losses(y, student_logits, self.teacher_logits(x))
        return self._update(y, student_logits, student, kd)

    def _update(self, y, student_logits, student, kd):
        self.student_loss_tracker.update_state(student)
        self.distillation_loss_tracker.update_state(kd)
        self.compiled_metrics.update_state(y, student_logits)
        # "loss" is what the rest of the loop (best weights, plateau LR) reads.
        return {"loss": self.student_loss_tracker.result()} | {
            m.name: m.result() for m in self.metrics
        }


class TeacherError(UsageError):
    """A teacher that cannot be used (the message names the file and what is wrong)."""


def load_teacher(source: str | Path):
    """The teacher's raw-pixel model from an existing run directory, ``.keras`` file or
    SavedModel, its input shape (H, W, C) and its number of classes."""
    from tfclf.export.deploy import trained_part

    path = Path(source)
    if RunDir(path).model_file.exists():
        path = RunDir(path).model_file
    if path.suffix == ".keras":
        from tfclf.export.load import ModelFileError, load_keras_model

        try:
            model = load_keras_model(path)
        except ModelFileError as e:
            raise TeacherError(f"--teacher: {e}") from None
        if trained_part(model) is model:
            raise TeacherError(
                f"--teacher: {path} takes normalised images (exported before raw-pixel "
                "models); re-export it by rerunning its training command"
            )
        return model, tuple(int(d) for d in model.input_shape[1:]), int(model.output_shape[-1])
    if (path / "saved_model.pb").exists() or (path / SAVED_MODEL / "saved_model.pb").exists():
        sm = path if (path / "saved_model.pb").exists() else path / SAVED_MODEL
        fn = tf.saved_model.load(str(sm)).signatures["serving_default"]
        spec = list(fn.structured_input_signature[1].values())[0]
        name = list(fn.structured_input_signature[1])[0]
        out = list(fn.structured_outputs.values())[0]

        def call(x, training=False):
            return list(fn(**{name: x}).values())[0]

        return call, tuple(int(d) for d in spec.shape[1:]), int(out.shape[-1])
    raise TeacherError(f"--teacher: {source} is not a tfclf run, a .keras file or a SavedModel")


def teacher_sources(teacher: str) -> list[str]:
    """The teachers ``--teacher`` names: one, or several separated by commas."""
    sources = [part.strip() for part in teacher.split(",")]
    if not all(sources):
        raise TeacherError(f"--teacher={teacher!r}: an empty name between commas")
    return sources


def expand_snapshots(source: str) -> list[str]:
    """A run's ``snapshots`` folder (``--snapshots``) as its members' ``model.keras``
    files; any other source as itself."""
    path = Path(source)
    members = sorted(path.glob(f"*/{MODEL_FILE}")) if path.is_dir() else []
    if not members or RunDir(path).best_model.exists() or (path / "saved_model.pb").exists():
        return [source]
    return [str(m) for m in members]


class Teacher:
    """The frozen teacher of a distillation: one model, or an ensemble whose logits are
    averaged. Called with raw pixels of any resolution, it resizes them to each member's
    own and returns float32 logits."""

    def __init__(self, teacher: str):
        names = teacher_sources(teacher)
        for name in names:  # every name before loading any
            if not Path(name).exists():
                raise TeacherError(
                    f"--teacher: {name} not found (a run directory, .keras or SavedModel)"
                )
        self.sources = [member for name in names for member in expand_snapshots(name)]
        self.members, self.shapes, classes = [], [], []
        for source in self.sources:
            model, shape, n = load_teacher(source)
            if isinstance(model, keras.Model):
                model.trainable = False
            self.members.append(model)
            self.shapes.append(shape)
            classes.append(n)
        for source, shape, n in zip(self.sources[1:], self.shapes[1:], classes[1:]):
            if (n, shape[-1]) != (classes[0], self.shapes[0][-1]):
                raise TeacherError(
                    f"--teacher: {source} takes {shape[-1]}-channel images into {n} classes "
                    f"but {self.sources[0]} takes {self.shapes[0][-1]} into {classes[0]}: "
                    "an ensemble's members must agree"
                )
        self.classes, self.channels = classes[0], self.shapes[0][-1]

    def __str__(self):
        return ",".join(self.sources)

    def member_logits(self, pixels) -> list[tf.Tensor]:
        pixels = tf.cast(pixels, tf.float32)
        logits = []
        for model, (h, w, _) in zip(self.members, self.shapes):
            x = pixels
            if tuple(x.shape[1:3]) != (h, w):
                x = tf.image.resize(x, (h, w), antialias=True)
            logits.append(tf.cast(model(x, training=False), tf.float32))
        return logits

    def logits_of(self, images, batch: int = 256) -> list[np.ndarray]:
        """Each member's logits for a whole array of raw-pixel images, a batch at a time."""
        batches = [self.member_logits(images[i : i + batch]) for i in range(0, len(images), batch)]
        return [np.concatenate([b[m] for b in batches]) for m in range(len(self.members))]

    def __call__(self, pixels, training=False):
        logits = self.member_logits(pixels)
        return logits[0] if len(logits) == 1 else tf.add_n(logits) / len(logits)


def run_of(teacher: str) -> str:
    """The run directory a teacher comes from: itself, or the run holding the model file or
    snapshot (``RUN/best_model/model.keras``, ``RUN/snapshots/NAME/model.keras``)."""
    run = run_holding(teacher)
    return str(run) if run else teacher


def split_leak_warning(teacher: str, cfg) -> str | None:
    """A warning when the teacher is a run on the same data with another train/val split:
    it has then trained on some of the student's validation images, so the student's
    validation accuracy is optimistic. None when the splits match or cannot be compared."""
    teacher = run_of(teacher)
    seen = RunDir(teacher).recorded_flags()
    if not seen:
        return None
    if seen.get("source", "mnist5k") != cfg.source:
        return None
    seed = int(seen.get("seed", 0))
    teacher_split = (int(seen.get("split_seed") or seed), float(seen.get("val_fraction", 0.2)))
    own = cfg.seed if cfg.split_seed is None else cfg.split_seed
    if teacher_split == (own, cfg.val_fraction):
        return None
    return (
        f"the teacher {teacher} was trained on another train/val split of {cfg.source} "
        f"(split seed {teacher_split[0]}, val fraction {teacher_split[1]:g}; the student's: "
        f"{own}, {cfg.val_fraction:g}), so it has seen some of the student's validation "
        f"images and the student's validation accuracy is optimistic; "
        f"--split_seed={teacher_split[0]} --val_fraction={teacher_split[1]:g} keeps them apart"
    )


class DistillPhase(Phase):
    """Training the student through a ``Distiller`` (``--teacher``)."""

    name = "distill"

    def __init__(
        self, teacher: str, *, alpha=0.9, temperature=4.0, kd_scale=1.0, cache: bool = False
    ):
        self.teacher = Teacher(teacher)
        if len(self.teacher.members) > 1:
            logging.info(
                "teacher: the ensemble of %d models (the mean of their logits): %s",
                len(self.teacher.members),
                ", ".join(self.teacher.sources),
            )
        self.alpha, self.temperature, self.kd_scale = alpha, temperature, kd_scale
        self.cache = cache

    def per_example(self, split, ctx: PhaseContext):
        """With ``cache``: the teacher's float32 logits for every training image, computed
        once from the raw pixels."""
        if not self.cache:
            return None
        from tfclf.data.augment import parse_augment

        augment = ctx.cfg.augment if ctx.stage.augment is None else ctx.stage.augment
        if parse_augment(augment):
            raise UsageError(
                f"--kd_cache_teacher needs --augment='' (got {augment!r}): with augmentation "
                "the teacher must see each augmented batch, so its logits cannot be cached"
            )
        self.check(ctx.num_classes, split.images.shape[-1])
        start = time.perf_counter()
        members = self.teacher.logits_of(split.images)
        logging.info(
            "teacher logits cached for %d training images in %.1f s",
            len(split),
            time.perf_counter() - start,
        )
        return sum(members) / len(members)

    def check(self, num_classes: int, channels: int) -> None:
        if self.teacher.classes != num_classes:
            raise TeacherError(
                f"--teacher: {self.teacher} has {self.teacher.classes} classes but the "
                f"student's data has {num_classes}"
            )
        if self.teacher.channels != channels:
            raise TeacherError(
                f"--teacher: {self.teacher} takes {self.teacher.channels}-channel images but "
                f"the student's data has {channels}"
            )

    def wrap(self, model, ctx: PhaseContext):
        self.check(ctx.num_classes, model.input_shape[-1])
        if ctx.stage_index == 0:
            for run in dict.fromkeys(run_of(source) for source in self.teacher.sources):
                warning = split_leak_warning(run, ctx.cfg)
                if warning:
                    logging.warning(warning)
        mean = tf.constant(ctx.normalizer.mean, tf.float32)
        std = tf.constant(ctx.normalizer.std, tf.float32)

        def to_teacher(x):  # the student's normalised batch -> raw pixels
            return (tf.cast(x, tf.float32) * std + mean) * 255.0

        return Distiller(model, self.teacher, to_teacher, name="distiller")

    def compile(self, model, ctx, *, optimizer, loss, metrics, **compile_args):
        model.compile(
            optimizer=optimizer,
            metrics=metrics,
            student_loss_fn=loss,
            distillation_loss_fn=keras.losses.KLDivergence(),
            alpha=self.alpha,
            temperature=self.temperature,
            kd_scale=self.kd_scale,
            **compile_args,
        )

    def saved(self, model):
        return model.student
