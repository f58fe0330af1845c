"""Building blocks shared by the model families.

Every function takes a tensor and returns a tensor, with keyword-only arguments and a
required ``name`` from which every layer's name is derived, so layer names are stable
(pruning/QAT per-layer settings, teacher feature taps and TFLite debugging rely on them).
Only stock layers are used: no ``Lambda``, no raw TF ops on Keras tensors.

Defaults follow PyTorch, in which the source reports were written: batch-norm momentum
0.9 (PyTorch's 0.1) and epsilon 1e-5.
"""

from __future__ import annotations

import re

from tfclf.keras import keras, layers

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
ACTIVATIONS = ("relu", "relu6", "leaky_relu")


def keras_auto_name(layer) -> str:
    """The name Keras gives an unnamed layer of this class, without its counter: the class
    in snake case (tf_keras' ``to_snake_case``)."""
    name = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", type(layer).__name__)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def is_auto_named(layer) -> bool:
    """Whether ``layer`` has the name Keras gave it (``keras_auto_name``, a counter after
    the first) rather than one the builder chose."""
    return re.fullmatch(rf"{re.escape(keras_auto_name(layer))}(_\d+)?", layer.name) is not None


def activation(x, *, kind: str = "relu", leaky_slope: float = 0.1, name: str):
    """ReLU, ReLU6 or LeakyReLU as a layer (QAT- and TFLite-friendly)."""
    if kind == "relu":
        return layers.ReLU(name=name)(x)
    if kind == "relu6":
        return layers.ReLU(6.0, name=name)(x)
    if kind == "leaky_relu":
        return layers.LeakyReLU(alpha=leaky_slope, name=name)(x)
    raise ValueError(f"unknown activation {kind!r}; choose one of {', '.join(ACTIVATIONS)}")


def batch_norm(x, *, momentum: float = BN_MOMENTUM, zero_gamma: bool = False, name: str):
    return layers.BatchNormalization(
        momentum=momentum,
        epsilon=BN_EPSILON,
        name=name,
        gamma_initializer="zeros" if zero_gamma else "ones",
    )(x)


def conv(
    x,
    filters: int,
    kernel_size: int = 3,
    *,
    strides: int = 1,
    groups: int = 1,
    use_bias: bool = False,
    zero_init: bool = False,
    name: str,
):
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        groups=groups,
        use_bias=use_bias,
        name=name,
        kernel_initializer="zeros" if zero_init else "he_normal",
    )(x)


def conv_bn_act(
    x,
    filters: int,
    kernel_size: int = 3,
    *,
    strides: int = 1,
    groups: int = 1,
    use_bias: bool = False,
    act: str | None = "relu",
    leaky_slope: float = 0.1,
    bn_momentum: float = BN_MOMENTUM,
    zero_gamma: bool = False,
    name: str,
):
    """Conv -> BN -> activation, named ``{name}_conv``, ``{name}_bn``, ``{name}_act``.

    The conv carries no ``activation=`` so TF-MOT folds the batch norm in QAT.
    """
    x = conv(
        x,
        filters,
        kernel_size,
        strides=strides,
        groups=groups,
        use_bias=use_bias,
        name=f"{name}_conv",
    )
    x = batch_norm(x, momentum=bn_momentum, zero_gamma=zero_gamma, name=f"{name}_bn")
    if act:
        x = activation(x, kind=act, leaky_slope=leaky_slope, name=f"{name}_act")
    return x


def squeeze_excite(x, *, ratio: int, name: str):
    """Squeeze-and-excitation (Hu et al. 2018): channel gates from global context.

    Written with stock layers (pool, two 1x1 convs, sigmoid, ``Multiply``) so that TFLite
    conversion works and QAT can annotate the ``Multiply``.
    """
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(x)
    s = layers.Conv2D(max(1, channels // ratio), 1, name=f"{name}_reduce")(s)
    s = layers.ReLU(name=f"{name}_relu")(s)
    s = layers.Conv2D(channels, 1, name=f"{name}_expand")(s)
    s = layers.Activation("sigmoid", name=f"{name}_gate")(s)
    return layers.Multiply(name=f"{name}_scale")([x, s])


def classifier(x, num_classes: int, *, dropout: float = 0.0, name: str = "logits"):
    """Dense logits kept in float32 so mixed-precision training stays numerically safe."""
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return layers.Dense(num_classes, dtype="float32", name=name)(x)


def inputs(input_shape) -> keras.Input:
    return keras.Input(shape=input_shape, name="image")
