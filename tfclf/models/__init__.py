"""The model zoo: ``create_model(name, input_shape, num_classes, **overrides)``.

Every model is a functional Keras model of stock layers with named layers and logits out.
Importing this package registers every family. It imports TensorFlow first without its
start-up lines (``tfclf.native_stderr``): ``python -m tfclf.models`` runs this file before
its CLI can.
"""

from tfclf.native_stderr import import_tensorflow_quietly

import_tensorflow_quietly()

from tfclf.models import (  # noqa: E402, F401  (registration)
    applications,
    baselines,
    mobilenet,
    resnet,
    simplenet,
)
from tfclf.models.registry import (  # noqa: E402
    ModelSpec,
    create_model,
    get_spec,
    list_models,
    register_model,
)
from tfclf.models.summary import ModelStats, format_stats, model_stats  # noqa: E402

__all__ = [
    "ModelSpec",
    "ModelStats",
    "create_model",
    "format_stats",
    "get_spec",
    "list_models",
    "model_stats",
    "register_model",
]
