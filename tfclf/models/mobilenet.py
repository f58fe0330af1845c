"""Report 003's MobileNet-v1-style student (Howard et al. 2017).

Stem 3x3 conv to 16, then depthwise 3x3 + pointwise 1x1 to 32, 64, 128, 256, 256, 256, 256,
max pooling after the stem and the first three pointwise convs, global average pooling, FC.
BN and ReLU6 follow the stem and each depthwise conv; the pointwise conv has no activation,
as in the report's sample code. 256,779 parameters at 128x128 with 11 classes.
"""

from __future__ import annotations

from tfclf.keras import keras, layers
from tfclf.models.layers import batch_norm, classifier, conv_bn_act, inputs
from tfclf.models.registry import register_model


def mobilenet_student_builder(
    input_shape,
    num_classes,
    *,
    base: int = 16,
    multipliers=(2, 4, 8, 16, 16, 16, 16),
    pools: int = 3,
    name: str = "mobilenet_student",
) -> keras.Model:
    img = inputs(input_shape)
    x = conv_bn_act(img, base, 3, use_bias=True, act="relu6", name="stem")
    x = layers.MaxPooling2D(2, name="stem_pool")(x)
    for i, m in enumerate(multipliers, start=1):
        name_i = f"block{i}"
        x = layers.DepthwiseConv2D(3, padding="same", name=f"{name_i}_dw")(x)
        x = batch_norm(x, name=f"{name_i}_dw_bn")
        x = layers.ReLU(6.0, name=f"{name_i}_dw_act")(x)
        x = layers.Conv2D(base * m, 1, name=f"{name_i}_pw")(x)
        if i <= pools:
            x = layers.MaxPooling2D(2, name=f"{name_i}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(img, classifier(x, num_classes), name=name)


@register_model(
    default_size=128, min_size=16, source="report 003", forwards=(mobilenet_student_builder,)
)
def mobilenet_student(input_shape, num_classes, **overrides):
    """Report 003's MobileNet-v1-style student (256,779 params at 128x128/11)."""
    return mobilenet_student_builder(input_shape, num_classes, **overrides)
