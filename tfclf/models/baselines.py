"""Plain CNN baselines: LeNet-5, report 001's baseline CNN, report 000's VGG-style first
network and report 003's CNNs.

Report 001's baseline is PyTorch's MNIST example at smaller widths: conv 8@3x3, conv
16@3x3, 2x2 max pool, dropout 0.25, FC 64, dropout 0.5, FC 10; 149,418 parameters at
28x28x1 and 10 classes, the report's count. It trained with Adadelta at lr 0.1, x0.7 every
epoch (``configs/report001_baseline.flags``).

Report 003's networks are reproduced with its PyTorch conventions (conv bias on, BN affine,
ReLU), so their trainable-parameter counts equal the report's at 128x128 with 11 classes:
large CNN 12,956,235; small CNN 241,099; its depthwise version 188,971; its group-conv
(groups=4) version 200,059. The depthwise version of the large CNN is 5,671,785 in the
report; our reading (every 3x3 conv of stages 2-5 becomes a biased depthwise 3x3 and a
biased pointwise 1x1 with the original output width, BN and ReLU unchanged) gives
5,705,419 (+0.6 %), see docs/benchmarks/models.md.
"""

from __future__ import annotations

from tfclf.keras import keras, layers
from tfclf.models.layers import activation, classifier, conv_bn_act, inputs
from tfclf.models.registry import register_model

CONV_KINDS = ("full", "dw", "group4")


def _conv_unit(x, filters: int, *, kind: str, name: str):
    """A report-003 conv layer: full 3x3, depthwise+pointwise, or grouped(4)+pointwise; BN; ReLU."""
    if kind == "full":
        return conv_bn_act(x, filters, 3, use_bias=True, name=name)
    if kind == "dw":
        x = layers.DepthwiseConv2D(3, padding="same", name=f"{name}_dw")(x)
    elif kind == "group4":
        x = layers.Conv2D(x.shape[-1], 3, padding="same", groups=4, name=f"{name}_gconv")(x)
    else:
        raise ValueError(f"unknown conv kind {kind!r}; choose one of {', '.join(CONV_KINDS)}")
    return conv_bn_act(x, filters, 1, use_bias=True, name=f"{name}_pw")


def _pool(x, name):
    return layers.MaxPooling2D(2, name=name)(x)


def _fc(x, units, *, dropout, name):
    """Report 003's FC layer: Linear -> Dropout -> ReLU."""
    x = layers.Dense(units, name=f"{name}_dense")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return activation(x, name=f"{name}_act")


def report003_cnn_builder(
    input_shape, num_classes, *, stages, kinds, fc=(), dropout=0.5, name="report003_cnn"
) -> keras.Model:
    """Conv stages, each followed by a 2x2 max pool, then Flatten and FC layers."""
    img = inputs(input_shape)
    x = img
    for s, (widths, kind) in enumerate(zip(stages, kinds), start=1):
        for c, width in enumerate(widths, start=1):
            x = _conv_unit(x, width, kind=kind, name=f"stage{s}_conv{c}")
        x = _pool(x, f"stage{s}_pool")
    x = layers.Flatten(name="flatten")(x)
    for i, units in enumerate(fc, start=1):
        x = _fc(x, units, dropout=dropout, name=f"fc{i}")
    return keras.Model(img, classifier(x, num_classes), name=name)


_LARGE = ((64, 64), (128, 128), (256, 256), (512, 512), (512, 256))


@register_model(
    default_size=128, min_size=32, source="report 003", forwards=(report003_cnn_builder,)
)
def report003_cnn(input_shape, num_classes, **overrides):
    """Report 003's large CNN: 5 conv stages, FC 1024-512 (12,956,235 params at 128x128/11)."""
    return report003_cnn_builder(
        input_shape,
        num_classes,
        **{
            "stages": _LARGE,
            "kinds": ("full",) * 5,
            "fc": (1024, 512),
            "name": "report003_cnn",
            **overrides,
        },
    )


@register_model(
    default_size=128, min_size=32, source="report 003", forwards=(report003_cnn_builder,)
)
def report003_cnn_dw(input_shape, num_classes, **overrides):
    """Report 003's large CNN with stages 2-5 depthwise-separable."""
    return report003_cnn_builder(
        input_shape,
        num_classes,
        **{
            "stages": _LARGE,
            "kinds": ("full",) + ("dw",) * 4,
            "fc": (1024, 512),
            "name": "report003_cnn_dw",
            **overrides,
        },
    )


def _small(kind):
    # Conv 16, pool, conv 32, pool, conv 64, conv 64, pool (report 003, question 4).
    return dict(
        stages=((16,), (32,), (64, 64)),
        kinds=("full", kind, kind),
        fc=(),
        name=f"report003_small_cnn{'' if kind == 'full' else '_' + kind}",
    )


@register_model(
    default_size=128, min_size=8, source="report 003", forwards=(report003_cnn_builder,)
)
def report003_small_cnn(input_shape, num_classes, **overrides):
    """Report 003's ~1 MB CNN, question 4a (241,099 params at 128x128/11)."""
    return report003_cnn_builder(input_shape, num_classes, **{**_small("full"), **overrides})


@register_model(
    default_size=128, min_size=8, source="report 003", forwards=(report003_cnn_builder,)
)
def report003_small_cnn_dw(input_shape, num_classes, **overrides):
    """Question 4b: convs 2-4 depthwise + pointwise (188,971 params at 128x128/11)."""
    return report003_cnn_builder(input_shape, num_classes, **{**_small("dw"), **overrides})


@register_model(
    default_size=128, min_size=8, source="report 003", forwards=(report003_cnn_builder,)
)
def report003_small_cnn_group4(input_shape, num_classes, **overrides):
    """Question 4c: convs 2-4 group conv (groups=4) + pointwise (200,059 params at 128x128/11)."""
    return report003_cnn_builder(input_shape, num_classes, **{**_small("group4"), **overrides})


@register_model(default_size=32, min_size=16, source="LeCun et al. 1998; reports 000, 001")
def lenet5(input_shape, num_classes, **overrides):
    """LeNet-5 with ReLU and max pooling: conv 6@5x5, pool, conv 16@5x5, pool, FC 120-84."""
    img = inputs(input_shape)
    x = layers.Conv2D(6, 5, name="conv1")(img)
    x = activation(x, name="conv1_act")
    x = _pool(x, "pool1")
    x = layers.Conv2D(16, 5, name="conv2")(x)
    x = activation(x, name="conv2_act")
    x = _pool(x, "pool2")
    x = layers.Flatten(name="flatten")(x)
    x = _fc(x, 120, dropout=0.0, name="fc1")
    x = _fc(x, 84, dropout=0.0, name="fc2")
    return keras.Model(img, classifier(x, num_classes), name="lenet5")


@register_model(default_size=28, min_size=8, source="report 001")
def report001_baseline(
    input_shape, num_classes, *, dropout=0.25, head_dropout=0.5, widths=(8, 16, 64)
):
    """Report 001's baseline CNN: conv 8, conv 16, pool, FC 64 (149,418 params at 28x28x1/10)."""
    img = inputs(input_shape)
    x = layers.Conv2D(widths[0], 3, name="conv1")(img)
    x = activation(x, name="conv1_act")
    x = layers.Conv2D(widths[1], 3, name="conv2")(x)
    x = activation(x, name="conv2_act")
    x = _pool(x, "pool")
    x = layers.Dropout(dropout, name="pool_dropout")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(widths[2], name="fc1_dense")(x)
    x = activation(x, name="fc1_act")
    return keras.Model(
        img, classifier(x, num_classes, dropout=head_dropout), name="report001_baseline"
    )


@register_model(
    default_size=96,
    min_size=16,
    source="report 000 (Figure 15; our reading)",
    forwards=(conv_bn_act,),
)
def report000_vgg(input_shape, num_classes, *, widths=(32, 64, 128, 256), dropout=0.5, **overrides):
    """Report 000's VGG-style first network: 4 stages of two 3x3 conv-BN-ReLU and a 2x2 pool,
    global average pooling, FC 256. The report shows it only as a figure; this is our reading.
    """
    img = inputs(input_shape)
    x = img
    for s, width in enumerate(widths, start=1):
        for c in (1, 2):
            x = conv_bn_act(x, width, 3, name=f"stage{s}_conv{c}", **overrides)
        x = _pool(x, f"stage{s}_pool")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = _fc(x, 256, dropout=0.0, name="fc1")
    return keras.Model(img, classifier(x, num_classes, dropout=dropout), name="report000_vgg")
