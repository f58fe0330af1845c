"""Input pipelines: sources (built-in MNIST-5k, TFDS, folders, arrays), splits,
normalisation, batched augmentation and class balancing.

The names below are imported from their modules on first use: ``tfclf.data.sources``
(reading images, no TensorFlow) stays free of TensorFlow for ``tfclf.predict`` on a
``.tflite`` file.
"""

import importlib

_HOMES = {
    "tfclf.data.augment": ("apply_augment", "list_augmentations", "parse_augment"),
    "tfclf.data.pipeline": (
        "BALANCE",
        "Normalizer",
        "TrainStream",
        "class_weights",
        "eval_dataset",
        "prepare_data",
        "stratified_split",
        "train_dataset",
    ),
    "tfclf.data.sources": ("DataError", "ImageData", "Split", "load_source"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name in _MODULE_OF:
        return getattr(importlib.import_module(_MODULE_OF[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
