"""Mobile backbones from Keras Applications (``tf_keras.applications``): MobileNetV2
(Sandler et al. 2018), MobileNetV3-Small and -Large (Howard et al. 2019) and EfficientNet-B0
(Tan and Le 2019), each with tfclf's classifier head (``logits``), at any input size
(at least 32) and channel count.

``weights``: None (random), ``"imagenet"`` (downloaded by Keras on a machine with network,
then cached in ``~/.keras/models``) or the path of a Keras weights file of the same
backbone (no top). ImageNet weights take 3 channels; for 1-channel inputs the first
convolution's kernel is summed over its input channels (a gray image is R = G = B).
Each backbone's layers are built into the model itself (``input_tensor``), not nested, so
TF-MOT can prune and quantise them and ``--init_from`` matches them by name.

MobileNetV3's hard-swish and hard-sigmoid are, in Keras, sums and products of tensors
(``TFOpLambda`` layers), which TF-MOT cannot quantise (tensorflow/model-optimization#1145).
Here they are built as two small layers (``HardSwish``, ``HardSigmoid``) that QAT quantises
by their output and that the TFLite converter turns into its HARD_SWISH op, which XNNPACK
runs. What each backbone expects as input for ImageNet weights: docs/transfer.md.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfclf.keras import keras, layers
from tfclf.models.layers import classifier, inputs, is_auto_named, keras_auto_name
from tfclf.models.registry import add_model, register_model


@keras.utils.register_keras_serializable("tfclf")
class HardSigmoid(layers.Layer):
    """relu6(x + 3) / 6, as MobileNetV3 defines it (not Keras' 0.2 x + 0.5)."""

    def call(self, x):
        return tf.nn.relu6(x + 3.0) * (1.0 / 6.0)


@keras.utils.register_keras_serializable("tfclf")
class HardSwish(layers.Layer):
    """x · relu6(x + 3) / 6 (MobileNetV3); TFLite's HARD_SWISH."""

    def call(self, x):
        return x * tf.nn.relu6(x + 3.0) * (1.0 / 6.0)


# QAT quantises these by their output (TF-MOT's registry has no config for them):
# MobileNetV3's activations, and EfficientNet's input rescaling and normalisation
OUTPUT_QUANTIZED = (HardSigmoid, HardSwish, layers.Rescaling, layers.Normalization)
BACKBONES = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0")
# Backbones whose QAT int8 file cannot be deployed, and what to do instead
NO_QAT = {
    "efficientnet_b0": "its QAT int8 file aborts LiteRT's XNNPACK delegate at the first "
    "inference (LiteRT 2.3; the builtin kernels run it): compress it without --qat, its "
    "post-training int8 file runs in XNNPACK",
}
# The input each backbone's ImageNet weights expect, as tfclf's (x / 255 - mean) / std:
# [-1, 1] for the MobileNets (MobileNetV3 built without its own rescaling), the pixel
# values themselves for EfficientNet (it rescales and normalises inside).
PRETRAINED_INPUT = {
    "mobilenet_v2": (0.5, 0.5),
    "mobilenet_v3_small": (0.5, 0.5),
    "mobilenet_v3_large": (0.5, 0.5),
    "efficientnet_b0": (0.0, 1.0 / 255.0),
}


@contextlib.contextmanager
def _stock_hard_activations():
    """MobileNetV3 built with ``HardSwish``/``HardSigmoid`` layers: Keras' module looks its
    activation functions up when it builds, so they are swapped for the duration."""
    from tf_keras.src.applications import mobilenet_v3

    saved = mobilenet_v3.hard_sigmoid, mobilenet_v3.hard_swish
    mobilenet_v3.hard_sigmoid = lambda x: HardSigmoid()(x)
    mobilenet_v3.hard_swish = lambda x: HardSwish()(x)
    try:
        yield
    finally:
        mobilenet_v3.hard_sigmoid, mobilenet_v3.hard_swish = saved


def _backbone(kind: str, img, weights, **kwargs):
    """The backbone's layers on ``img``, with ImageNet weights or none."""
    apps = keras.applications
    fn, extra = {
        "mobilenet_v2": (apps.MobileNetV2, {}),
        "mobilenet_v3_small": (apps.MobileNetV3Small, {"include_preprocessing": False}),
        "mobilenet_v3_large": (apps.MobileNetV3Large, {"include_preprocessing": False}),
        "efficientnet_b0": (apps.EfficientNetB0, {}),
    }[kind]
    hard = _stock_hard_activations() if "v3" in kind else contextlib.nullcontext()
    with hard:
        return fn(
            input_tensor=img, include_top=False, weights=weights, pooling="avg", **extra, **kwargs
        )


def _name_unnamed_layers(model) -> None:
    """Keras Applications leave some layers unnamed (a ReLU, the pooling, EfficientNet's
    rescaling), and Keras numbers those by how many were made before in the process: names
    that differ between processes would break ``--init_from`` and per-layer settings. Each
    gets its input layer's name and its kind instead, e.g. ``Conv_1/BatchNorm/re_lu``."""
    for layer in model.layers:
        if is_auto_named(layer) and layer._inbound_nodes:
            inbound = layer._inbound_nodes[0].inbound_layers
            parent = inbound[0] if isinstance(inbound, list) else inbound
            if parent is not None and parent is not layer:
                layer._name = f"{parent.name}/{keras_auto_name(layer)}"


def backbone_classifier(
    kind: str,
    input_shape,
    num_classes: int,
    *,
    weights: str | None = None,
    dropout: float = 0.2,
    **kwargs,
) -> keras.Model:
    """A Keras Applications backbone with tfclf's head; ``weights`` as the module says."""
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise ValueError(f"weights: {weights} is not a file (or None, or 'imagenet')")
    img = inputs(input_shape)
    base = _backbone(kind, img, None, **kwargs)
    _name_unnamed_layers(base)
    model = keras.Model(img, classifier(base.output, num_classes, dropout=dropout), name=kind)
    if weights is not None:
        _load_backbone_weights(kind, model, input_shape, weights, **kwargs)
    return model


def _load_backbone_weights(kind, model, input_shape, weights, **kwargs) -> None:
    """Loads ImageNet or a file's weights into ``model``'s backbone, through a 3-channel
    twin when the model takes another channel count."""
    twin_shape = (*input_shape[:2], 3)
    try:
        twin = _backbone(
            kind, inputs(twin_shape), "imagenet" if weights == "imagenet" else None, **kwargs
        )
        _name_unnamed_layers(twin)
    except Exception as e:  # Keras' download: no network, a proxy, a missing cache
        raise ValueError(
            f"weights='imagenet': Keras could not fetch the {kind} weights ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:160]}); on a machine without network pass a weights file"
        ) from None
    if weights != "imagenet":
        try:
            twin.load_weights(weights)
        except (ValueError, OSError, KeyError) as e:
            raise ValueError(f"weights: {weights} does not fit {kind}: {e}") from None
    for layer in twin.layers:
        if not layer.weights:
            continue
        theirs = layer.get_weights()
        mine = model.get_layer(layer.name)
        if theirs and theirs[0].shape != mine.get_weights()[0].shape:  # the first conv
            theirs = [np.sum(theirs[0], axis=2, keepdims=True), *theirs[1:]]
        mine.set_weights(theirs)


@register_model(default_size=224, min_size=32, source="Sandler et al. 2018; Keras Applications")
def mobilenet_v2(input_shape, num_classes, *, weights=None, alpha=1.0, dropout=0.2):
    """MobileNetV2 (Keras Applications) with tfclf's head; weights None, 'imagenet' or a file."""
    return backbone_classifier(
        "mobilenet_v2", input_shape, num_classes, weights=weights, alpha=alpha, dropout=dropout
    )


def _mobilenet_v3(kind: str):
    def build(
        input_shape, num_classes, *, weights=None, alpha=1.0, minimalistic=False, dropout=0.2
    ):
        return backbone_classifier(
            kind,
            input_shape,
            num_classes,
            weights=weights,
            alpha=alpha,
            minimalistic=minimalistic,
            dropout=dropout,
        )

    return build


for _size in ("small", "large"):
    add_model(
        f"mobilenet_v3_{_size}",
        _mobilenet_v3(f"mobilenet_v3_{_size}"),
        default_size=224,
        min_size=32,
        source="Howard et al. 2019; Keras Applications",
        description=f"MobileNetV3-{_size.title()} (Keras Applications), hard-swish as "
        "quantisable layers.",
    )


@register_model(default_size=224, min_size=32, source="Tan and Le 2019; Keras Applications")
def efficientnet_b0(input_shape, num_classes, *, weights=None, dropout=0.2):
    """EfficientNet-B0 (Keras Applications) with tfclf's head."""
    return backbone_classifier(
        "efficientnet_b0", input_shape, num_classes, weights=weights, dropout=dropout
    )


def pretrained_normalizer(model_name: str, own):
    """The normalisation a backbone's pretrained weights expect (``--weights``), or ``own``
    for a model without one."""
    from absl import logging

    from tfclf.data import Normalizer

    if model_name not in PRETRAINED_INPUT:
        return own
    mean, std = PRETRAINED_INPUT[model_name]
    logging.info(
        "--weights: %s's inputs normalised as its weights expect: mean %g, std %g",
        model_name,
        mean,
        std,
    )
    return Normalizer((mean,) * len(own.mean), (std,) * len(own.mean))
