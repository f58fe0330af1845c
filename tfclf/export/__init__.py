"""Deployable models: raw pixels in, logits out, class names inside and beside them.

Every artefact a user deploys takes raw pixels (values 0-255 at the model's resolution;
float32 here and in float TFLite files, uint8 or int8 in full-integer ones) because the
normalisation is a layer at the front of its graph (``Normalizer.as_layer``). Each
``.tflite`` file carries its model card (``litert.read_card``). Beside the files:
``labels.txt`` (one class name a line, in output order) and ``model_card.json`` (input
shape, dtype and range, output, classes, normalisation, accuracy measured on the file).

The names below are imported from ``tfclf.export.deploy`` on first use, so that importing
``tfclf.export.litert`` (running files, no TensorFlow) does not import TensorFlow.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "deploy": ["deployable", "model_card", "trained_part", "write_best_model", "write_labels"]
    },
)
