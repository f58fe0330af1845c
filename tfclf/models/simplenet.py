"""SimpleNet v1 (Hasanpour et al. 2016, arXiv:1608.06037), as used in report 004.

13 conv layers, 3x3 kernels except the 11th and 12th (1x1), 2x2 max pooling, batch norm
with moving-average fraction 0.95 before every ReLU, global max pooling, one FC layer.
5.48 M parameters on CIFAR-10.
"""

from __future__ import annotations

from tfclf.keras import keras, layers
from tfclf.models.layers import classifier, conv_bn_act, inputs
from tfclf.models.registry import register_model

# (width, kernel) per conv; "M" is a 2x2 max pool followed by dropout.
SIMPLENET_V1 = [
    (64, 3),
    (128, 3),
    (128, 3),
    (128, 3),
    "M",
    (128, 3),
    (128, 3),
    (256, 3),
    "M",
    (256, 3),
    (256, 3),
    "M",
    (512, 3),
    "M",
    (2048, 1),
    (256, 1),
    "M",
    (256, 3),
]


def simplenet_builder(
    input_shape,
    num_classes,
    *,
    width_mult: float = 1.0,
    dropout: float = 0.1,
    head_dropout: float = 0.1,
    bn_momentum: float = 0.95,
    name: str = "simplenet",
) -> keras.Model:
    img = inputs(input_shape)
    x = img
    conv_i = pool_i = 0
    for item in SIMPLENET_V1:
        if item == "M":
            pool_i += 1
            x = layers.MaxPooling2D(2, name=f"pool{pool_i}")(x)
            if dropout:
                x = layers.Dropout(dropout, name=f"pool{pool_i}_dropout")(x)
            continue
        width, kernel = item
        conv_i += 1
        x = conv_bn_act(
            x,
            max(8, int(width * width_mult)),
            kernel,
            use_bias=True,
            bn_momentum=bn_momentum,
            name=f"conv{conv_i}",
        )
    x = layers.GlobalMaxPooling2D(name="global_pool")(x)
    return keras.Model(img, classifier(x, num_classes, dropout=head_dropout), name=name)


@register_model(
    default_size=32,
    min_size=32,
    source="Hasanpour et al. 2016; report 004",
    forwards=(simplenet_builder,),
)
def simplenet(input_shape, num_classes, **overrides):
    """SimpleNet v1, 13 layers (5.48 M parameters on CIFAR-10)."""
    return simplenet_builder(input_shape, num_classes, **{"name": "simplenet", **overrides})


@register_model(
    default_size=32,
    min_size=32,
    source="Hasanpour et al. 2016; report 004",
    forwards=(simplenet_builder,),
)
def simplenet_slim(input_shape, num_classes, **overrides):
    """SimpleNet v1 at a quarter of the width (about 0.35 M parameters)."""
    return simplenet_builder(
        input_shape, num_classes, **{"width_mult": 0.25, "name": "simplenet_slim", **overrides}
    )
