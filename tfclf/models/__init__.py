"""The model zoo: ``create_model(name, input_shape, num_classes, **overrides)``.

Every model is a functional Keras model of stock layers with named layers and logits out.
Importing this package registers every family.
"""

from tfclf.models import (  # noqa: F401  (registration)
    applications,
    baselines,
    mobilenet,
    resnet,
    simplenet,
)
from tfclf.models.registry import ModelSpec, create_model, get_spec, list_models, register_model
from tfclf.models.summary import ModelStats, format_stats, model_stats

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
