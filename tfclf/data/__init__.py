"""Input pipelines: sources (built-in MNIST-5k, TFDS, folders, arrays), splits,
normalisation, batched augmentation and class balancing."""

from tfclf.data.augment import apply_augment, list_augmentations, parse_augment
from tfclf.data.pipeline import (
    BALANCE,
    Normalizer,
    TrainStream,
    class_weights,
    eval_dataset,
    prepare_data,
    stratified_split,
    train_dataset,
)
from tfclf.data.sources import DataError, ImageData, Split, load_source

__all__ = [
    "BALANCE",
    "DataError",
    "ImageData",
    "Normalizer",
    "Split",
    "TrainStream",
    "apply_augment",
    "class_weights",
    "eval_dataset",
    "list_augmentations",
    "load_source",
    "parse_augment",
    "prepare_data",
    "stratified_split",
    "train_dataset",
]
