"""Input pipelines: sources (built-in MNIST-5k, TFDS, folders, arrays), splits,
normalisation, batched augmentation and class balancing.

The names below are imported from their modules on first use: ``tfclf.data.sources``
(reading images, no TensorFlow) stays free of TensorFlow for ``tfclf.predict`` on a
``.tflite`` file.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "augment": ["apply_augment", "list_augmentations", "parse_augment"],
        "pipeline": [
            "BALANCE",
            "Normalizer",
            "TrainStream",
            "class_weights",
            "eval_dataset",
            "prepare_data",
            "stratified_split",
            "train_dataset",
        ],
        "sources": ["DataError", "ImageData", "Split", "load_source"],
    },
)
