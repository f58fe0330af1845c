"""tf.data input pipelines over in-memory splits.

Training: per epoch, a stateless shuffle (or class-balanced draw) of indices, batched first
and then one parallel map that gathers the batch, augments it with vectorised ops and
normalises it: per-element overhead is paid once per batch (batch before map).
Every random choice derives from ``(seed, epoch, step)``, so the stream is the same after a
resume and under any parallelism. Images are resized once per stage resolution (FixRes).

tf.data's autotuning thread is switched off (``without_autotune``): in TF 2.21,
tearing down an iterator at the end of ``fit`` can wait out that thread's sleep, up to 60 s
(measured: 13-45 s stalls after the last epoch in 5 of 17 runs; docs/decisions/no-autotune.md). The map
then runs one call per core and prefetch keeps its own buffer heuristic; the pipeline is
far faster than training either way (``tools/bench_data.py``).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import tensorflow as tf

from tfclf.config import BALANCE
from tfclf.data.augment import apply_augment, parse_augment
from tfclf.data.sources import DataError, ImageData, Split, load_source


@dataclasses.dataclass(frozen=True)
class Normalizer:
    """Per-channel ``(x / 255 - mean) / std``, used identically in training, evaluation and
    export (its JSON travels with every run and exported model)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self):
        if len(self.mean) != len(self.std) or min(self.std) <= 0:
            raise ValueError(f"bad normalisation mean={self.mean} std={self.std}")

    @classmethod
    def from_images(cls, images: np.ndarray) -> Normalizer:
        x = images.reshape(-1, images.shape[-1])
        s1 = np.zeros(x.shape[-1])
        s2 = np.zeros(x.shape[-1])
        for chunk in np.array_split(x, max(1, len(x) // 2**22)):  # bounded memory
            c = chunk.astype(np.float64) / 255
            s1 += c.sum(0)
            s2 += (c**2).sum(0)
        mean = s1 / len(x)
        std = np.sqrt(np.maximum(s2 / len(x) - mean**2, 1e-12))
        return cls(tuple(float(m) for m in mean), tuple(float(s) for s in std))

    @classmethod
    def from_values(cls, mean, std, channels: int) -> Normalizer:
        mean = tuple(mean) * channels if len(mean) == 1 else tuple(mean)
        std = tuple(std) * channels if len(std) == 1 else tuple(std)
        if len(mean) != channels or len(std) != channels:
            raise ValueError(
                f"normalisation needs 1 or {channels} values, got mean={mean} std={std}"
            )
        return cls(mean, std)

    def __call__(self, images01: tf.Tensor) -> tf.Tensor:
        return (images01 - tf.constant(self.mean)) / tf.constant(self.std)

    def as_layer(self, name: str = "normalize"):
        """The same normalisation for raw pixels (0-255) as a stock Keras ``Normalization``
        layer: ``(p / 255 - mean) / std == (p - 255 mean) / sqrt((255 std)^2)``. Export puts
        it at the front of every deployed graph, so deployed files take raw pixels."""
        from tfclf.keras import layers

        return layers.Normalization(
            mean=[255.0 * m for m in self.mean],
            variance=[(255.0 * s) ** 2 for s in self.std],
            name=name,
        )

    def invert(self, x):
        return x * np.asarray(self.std) + np.asarray(self.mean)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Normalizer:
        d = json.loads(text)
        return cls(tuple(d["mean"]), tuple(d["std"]))


def stratified_split(
    split: Split, val_fraction: float, seed: int = 0, class_names=None
) -> tuple[Split, Split]:
    """Holds out ``val_fraction`` of every class (report 000: 1000 of 5000, 100 a class)."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    val_idx = []
    for c in np.unique(split.labels):
        idx = np.flatnonzero(split.labels == c)
        rng.shuffle(idx)
        n_val = int(round(val_fraction * len(idx)))
        if n_val == 0 or n_val == len(idx):
            name = repr(class_names[c]) if class_names is not None else c
            raise DataError(
                f"class {name} has {len(idx)} image(s): too few to hold out "
                f"{val_fraction:.0%} for validation (--val_fraction; or give the source a "
                "validation split)"
            )
        val_idx.append(idx[:n_val])
    val_idx = np.sort(np.concatenate(val_idx))
    train_mask = np.ones(len(split), bool)
    train_mask[val_idx] = False
    return split.subset(np.flatnonzero(train_mask)), split.subset(val_idx)


def class_weights(counts: np.ndarray) -> np.ndarray:
    """``n / (classes * count)`` per class: every class carries the same total weight."""
    counts = np.asarray(counts, np.float64)
    if (counts == 0).any():
        raise DataError(f"class(es) {np.flatnonzero(counts == 0).tolist()} have no example")
    return (counts.sum() / (len(counts) * counts)).astype(np.float32)


def resize_images(images: np.ndarray, size: int | None, batch: int = 1024) -> tf.Tensor:
    """uint8 images resized once to ``size`` x ``size`` (antialiased bilinear), as a tensor."""
    if size is None or images.shape[1:3] == (size, size):
        return tf.constant(images)
    out = [
        tf.cast(
            tf.clip_by_value(
                tf.round(tf.image.resize(images[i : i + batch], (size, size), antialias=True)),
                0,
                255,
            ),
            tf.uint8,
        )
        for i in range(0, len(images), batch)
    ]
    return tf.concat(out, 0)


@dataclasses.dataclass(frozen=True)
class TrainStream:
    dataset: tf.data.Dataset  # infinite; take ``steps_per_epoch`` per epoch
    steps_per_epoch: int


def train_dataset(
    split: Split,
    num_classes: int,
    normalizer: Normalizer,
    *,
    batch_size: int,
    image_size: int | None = None,
    augment: str = "",
    balance: str = "none",
    seed: int = 0,
    start_epoch: int = 0,
    per_example: np.ndarray | None = None,
) -> TrainStream:
    """The training stream from ``start_epoch`` on: (images, soft labels[, sample weights]);
    with ``per_example`` (one row per image), ((images, rows), soft labels[, weights])."""
    if balance not in BALANCE:
        raise ValueError(f"balance must be one of {', '.join(BALANCE)}, got {balance!r}")
    n = len(split)
    if n < batch_size:
        raise DataError(
            f"training split has {n} images, fewer than one batch of {batch_size} (--batch_size)"
        )
    steps = n // batch_size
    ops = parse_augment(augment)
    images = resize_images(split.images, image_size)
    labels = tf.constant(split.labels)
    counts = split.counts(num_classes)
    by_class = tf.constant(np.argsort(split.labels, kind="stable").astype(np.int32))
    offsets = tf.constant(np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int32))
    counts_t = tf.constant(counts.astype(np.int32))
    weights = tf.constant(class_weights(counts)) if balance == "class_weight" else None
    extra = None if per_example is None else tf.constant(per_example)

    def epoch_indices(epoch):
        s = tf.stack([tf.constant(seed, tf.int64), epoch])
        if balance == "oversample":  # each class equally likely, members uniform (with replacement)
            s1, s2 = tf.unstack(tf.random.experimental.stateless_split(s, 2))
            present = tf.constant(np.flatnonzero(counts).astype(np.int32))
            cls = tf.gather(
                present, tf.random.stateless_uniform([n], s1, 0, len(present), dtype=tf.int32)
            )
            member = tf.cast(
                tf.random.stateless_uniform([n], s2)
                * tf.cast(tf.gather(counts_t, cls), tf.float32),
                tf.int32,
            )
            idx = tf.gather(by_class, tf.gather(offsets, cls) + member)
        else:
            idx = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int32), s)
        return tf.reshape(idx[: steps * batch_size], [steps, batch_size])

    def epoch_batches(epoch):
        batches = tf.data.Dataset.from_tensor_slices(epoch_indices(epoch))
        return tf.data.Dataset.zip(tf.data.Dataset.range(steps), batches).map(
            lambda step, idx: (epoch, step, idx)
        )

    def load(epoch, step, idx):
        y = tf.one_hot(tf.gather(labels, idx), num_classes)
        x, y = apply_augment(
            ops,
            tf.gather(images, idx),
            y,  # uint8 in, float [0, 1] out
            tf.stack([tf.constant(seed, tf.int64) + 1, epoch * steps + step]),
        )
        x = normalizer(x)
        if extra is not None:
            x = (x, tf.gather(extra, idx))
        if weights is not None:
            return x, y, tf.linalg.matvec(y, weights)
        return x, y

    ds = tf.data.Dataset.range(start_epoch, 2**62).flat_map(epoch_batches)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return TrainStream(without_autotune(ds.prefetch(tf.data.AUTOTUNE)), steps)


def eval_dataset(
    split: Split,
    num_classes: int,
    normalizer: Normalizer | None,
    *,
    batch_size: int,
    image_size: int | None = None,
) -> tf.data.Dataset:
    """(images, one-hot labels) in order, no augmentation, last batch kept. With no
    normalizer the images are raw pixels (float32, 0-255): what deployed models take."""
    images = resize_images(split.images, image_size)
    ds = tf.data.Dataset.from_tensor_slices((images, split.labels)).batch(batch_size)

    def prepare(x, y):
        x = tf.cast(x, tf.float32)
        return (x if normalizer is None else normalizer(x / 255.0)), tf.one_hot(y, num_classes)

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    return without_autotune(ds)


def array_batches(images: np.ndarray, batch_size: int = 256) -> tf.data.Dataset:
    """Batches of ``images`` (float32) in order, for ``Model.predict``: given NumPy arrays,
    Keras builds its own dataset with autotuning on, which here ran 5-20 % slower
    (docs/benchmarks/cpu-speed.md)."""
    ds = tf.data.Dataset.from_tensor_slices(images.astype(np.float32)).batch(batch_size)
    return without_autotune(ds.prefetch(1))


def without_autotune(ds: tf.data.Dataset) -> tf.data.Dataset:
    """``ds`` with tf.data's autotuning model off: AUTOTUNE parallelism becomes the core
    count, and the iterator no longer owns the optimisation thread whose sleep an iterator
    teardown could wait out (module docstring)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def prepare_data(cfg) -> tuple[ImageData, Normalizer]:
    """The run's data (``cfg``: a ``tfclf.config.TrainConfig``) with its validation split
    and normaliser."""
    data = load_source(
        cfg.source,
        data_dir=cfg.data_dir,
        channels=cfg.channels,
        image_size=cfg.load_size,
        resize=cfg.load_resize,
        download=cfg.download,
    )
    h, w = data.image_shape[:2]
    if h != w and not all(stage.size for stage in cfg.stages):
        raise DataError(
            f"the images are {h}x{w} (height x width) and the models take square ones: resize "
            f"them on loading with --load_size=N, or train at --image_size=N"
        )
    if data.val is None:
        split_seed = cfg.seed if cfg.split_seed is None else cfg.split_seed
        data.train, data.val = stratified_split(
            data.train, cfg.val_fraction, seed=split_seed, class_names=data.class_names
        )
    c = data.image_shape[-1]
    if cfg.mean is None or cfg.std is None:
        norm = Normalizer.from_images(data.train.images)
    if cfg.mean is not None or cfg.std is not None:  # what is not given is the split's
        mean, std = cfg.mean or norm.mean, cfg.std or norm.std
        if {len(mean), len(std)} - {1, c}:
            raise DataError(
                f"--mean/--std: the images have {c} channel(s), so give 1 or {c} "
                f"values each; got mean={list(mean)}, std={list(std)}"
            )
        norm = Normalizer.from_values(mean, std, c)
    return data, norm
