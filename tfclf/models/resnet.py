"""Residual networks: one builder, every variant as arguments.

Implements ResNet (He et al. 2016, basic and bottleneck blocks, CIFAR depths), the
pre-activation ResNet (He et al. 2016b), Wide-ResNet (Zagoruyko & Komodakis 2016),
ResNeXt (Xie et al. 2017, grouped 3x3), Res2Net modules in ResNeXt-29 (Gao et al. 2019,
report 004), squeeze-and-excitation in any block (Hu et al. 2018, reports 001 and 002),
report 001's "light" ResNet with 1x1 bottlenecks and report 000's customised ResNet
(stem 4x4 stride 1; stages 4x30 s1, 9x60 s2, 3x90 s2; ReLU or LeakyReLU(0.1)).
"""

from __future__ import annotations

from collections.abc import Sequence

from tfclf.keras import keras, layers
from tfclf.models.layers import (
    BN_MOMENTUM,
    activation,
    batch_norm,
    classifier,
    conv,
    conv_bn_act,
    inputs,
    squeeze_excite,
)
from tfclf.models.registry import add_model, register_model

BLOCKS = ("basic", "bottleneck", "light")


def _conv_plan(block: str, filters: int, mid: int, kernel_size: int, stride: int, groups: int):
    """The (filters, kernel, stride, groups) of each conv in a block's residual branch."""
    if block == "basic":
        return [(filters, kernel_size, stride, 1), (filters, kernel_size, 1, 1)]
    if block == "bottleneck":
        return [(mid, 1, 1, 1), (mid, kernel_size, stride, groups), (filters, 1, 1, 1)]
    if block == "light":  # report 001: a 1x1 reduction in front of the 3x3
        return [(mid, 1, 1, 1), (filters, kernel_size, stride, 1)]
    raise ValueError(f"unknown block {block!r}; choose one of {', '.join(BLOCKS)}")


def _res2_branch(
    x,
    *,
    filters,
    width,
    scale,
    kernel_size,
    stride,
    groups,
    first,
    act,
    leaky_slope,
    bn_momentum,
    zero_gamma,
    name,
):
    """Res2Net bottleneck branch (Gao et al. 2019), post-activation.

    The 1x1 conv's output split into ``scale`` groups is built as ``scale`` 1x1 convs of
    ``width`` channels each: the same function and parameters as one conv followed by a
    split, without slicing ops that would become TFOpLambda layers.
    """
    kw = dict(act=act, leaky_slope=leaky_slope, bn_momentum=bn_momentum)
    splits = [conv_bn_act(x, width, 1, name=f"{name}_1_split{i}", **kw) for i in range(scale)]
    outs = []
    for i in range(scale - 1):
        sp = splits[i]
        if i > 0 and not first:
            sp = layers.Add(name=f"{name}_2_add{i}")([outs[-1], sp])
        outs.append(
            conv_bn_act(
                sp,
                width,
                kernel_size,
                strides=stride,
                groups=groups,
                name=f"{name}_2_scale{i}",
                **kw,
            )
        )
    last = splits[-1]
    if first:
        last = layers.AveragePooling2D(3, strides=stride, padding="same", name=f"{name}_2_pool")(
            last
        )
    outs.append(last)
    y = layers.Concatenate(name=f"{name}_2_concat")(outs)
    return conv_bn_act(
        y, filters, 1, act=None, bn_momentum=bn_momentum, zero_gamma=zero_gamma, name=f"{name}_3"
    )


def residual_block(
    x,
    *,
    filters: int,
    stride: int = 1,
    block: str = "basic",
    preact: bool = False,
    mid: int | None = None,
    groups: int = 1,
    kernel_size: int = 3,
    se_ratio: int | None = None,
    dropout: float = 0.0,
    act: str = "relu",
    leaky_slope: float = 0.1,
    res2_scale: int = 1,
    first: bool = False,
    bn_momentum: float = BN_MOMENTUM,
    zero_init_residual: bool = False,
    name: str,
):
    """A residual block; ``preact`` puts BN and activation before each conv.

    A 1x1 projection shortcut is used when the stride or the width changes. With
    ``zero_init_residual`` the branch's last layer starts at zero (the last BN's gamma, or
    the last conv of a pre-activation branch, as in Fixup), so every block starts as the
    identity (Goyal et al. 2017). The 1001-layer nets need it (without it their activations
    overflow at initialisation); on small nets and short runs it slows training down
    (MNIST-5k, ResNet-20: 17 % instead of 59 % after one epoch), so it is off by default.
    """
    mid = mid or filters
    project = stride != 1 or x.shape[-1] != filters
    plan = _conv_plan(block, filters, mid, kernel_size, stride, groups)
    kw = dict(act=act, leaky_slope=leaky_slope, bn_momentum=bn_momentum, name=name)
    if preact:
        if res2_scale > 1:
            raise ValueError("Res2Net modules are implemented for post-activation blocks only")
        shortcut, y = _preact_branch(
            x, plan, filters, stride, project, dropout, zero_init_residual, **kw
        )
    else:
        shortcut = x
        if project:
            shortcut = conv_bn_act(
                x, filters, 1, strides=stride, act=None, bn_momentum=bn_momentum, name=f"{name}_0"
            )
        if res2_scale > 1:
            if block != "bottleneck":
                raise ValueError("Res2Net modules replace the 3x3 of a bottleneck block")
            y = _res2_branch(
                x,
                filters=filters,
                width=mid,
                scale=res2_scale,
                kernel_size=kernel_size,
                stride=stride,
                groups=groups,
                first=first,
                zero_gamma=zero_init_residual,
                **kw,
            )
        else:
            y = _postact_branch(x, plan, dropout, zero_init_residual, **kw)
    if se_ratio:
        y = squeeze_excite(y, ratio=se_ratio, name=f"{name}_se")
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    if not preact:
        y = activation(y, name=f"{name}_out", kind=act, leaky_slope=leaky_slope)
    return y


def _preact_branch(
    x, plan, filters, stride, project, dropout, zero_last, *, act, leaky_slope, bn_momentum, name
):
    """(shortcut, branch) of a pre-activation block: BN and activation before each conv,
    the projection shortcut taken from the first activation."""
    actkw = dict(kind=act, leaky_slope=leaky_slope)
    pre = batch_norm(x, momentum=bn_momentum, name=f"{name}_preact_bn")
    pre = activation(pre, name=f"{name}_preact_act", **actkw)
    shortcut = conv(pre, filters, 1, strides=stride, name=f"{name}_0_conv") if project else x
    y = pre
    for i, (f, k, s, g) in enumerate(plan, start=1):
        if i > 1:
            y = batch_norm(y, momentum=bn_momentum, name=f"{name}_{i}_bn")
            y = activation(y, name=f"{name}_{i}_act", **actkw)
            if dropout and i == len(plan):
                y = layers.Dropout(dropout, name=f"{name}_dropout")(y)
        y = conv(
            y,
            f,
            k,
            strides=s,
            groups=g,
            name=f"{name}_{i}_conv",
            zero_init=zero_last and i == len(plan),
        )
    return shortcut, y


def _postact_branch(x, plan, dropout, zero_last, *, act, leaky_slope, bn_momentum, name):
    """The branch of a post-activation block: conv, BN, activation; none after the last."""
    y = x
    for i, (f, k, s, g) in enumerate(plan, start=1):
        last = i == len(plan)
        if dropout and last:
            y = layers.Dropout(dropout, name=f"{name}_dropout")(y)
        y = conv_bn_act(
            y,
            f,
            k,
            strides=s,
            groups=g,
            act=None if last else act,
            leaky_slope=leaky_slope,
            bn_momentum=bn_momentum,
            zero_gamma=zero_last and last,
            name=f"{name}_{i}",
        )
    return y


def resnet(
    input_shape,
    num_classes: int,
    *,
    depths: Sequence[int] = (3, 3, 3),
    widths: Sequence[int] = (16, 32, 64),
    strides: Sequence[int] = (1, 2, 2),
    mid_widths: Sequence[int] | None = None,
    block: str = "basic",
    preact: bool = False,
    stem_width: int | None = None,
    stem_kernel: int = 3,
    stem_stride: int = 1,
    stem_pool: bool = False,
    kernel_size: int = 3,
    groups: int = 1,
    se_ratio: int | None = None,
    activation_fn: str = "relu",
    leaky_slope: float = 0.1,
    dropout: float = 0.0,
    head_dropout: float = 0.0,
    res2_scale: int = 1,
    bn_momentum: float = BN_MOMENTUM,
    zero_init_residual: bool = False,
    name: str = "resnet",
) -> keras.Model:
    """The generic residual network every residual model here is an instance of.

    Args:
      depths, widths, strides: blocks, output channels and first-block stride per stage.
      mid_widths: inner width per stage of bottleneck/light blocks (per Res2Net split when
        ``res2_scale > 1``); default ``width // 4``.
      block: ``basic`` (two kxk), ``bottleneck`` (1x1, kxk, 1x1) or ``light`` (1x1, kxk).
      stem_width, stem_kernel, stem_stride, stem_pool: the first conv (and a 3x3/2 max pool).
      groups: cardinality of the bottleneck's kxk conv (ResNeXt).
      se_ratio: squeeze-and-excitation reduction ratio in every block (None: no SE).
      activation_fn: ``relu``, ``relu6`` or ``leaky_relu`` (slope ``leaky_slope``).
      dropout: dropout inside each block (Wide-ResNet); head_dropout: before the classifier.
      res2_scale: Res2Net scale (1: plain block).
      zero_init_residual: start each residual branch at zero (see ``residual_block``).
    """
    if not (len(depths) == len(widths) == len(strides)):
        raise ValueError(
            f"depths, widths and strides need one entry per stage, got "
            f"{len(depths)}, {len(widths)} and {len(strides)}"
        )
    if mid_widths is None:
        mid_widths = [max(1, w // 4) for w in widths]
    actkw = dict(act=activation_fn, leaky_slope=leaky_slope)
    img = inputs(input_shape)
    x = _stem(
        img,
        stem_width or widths[0],
        stem_kernel,
        stem_stride,
        stem_pool,
        preact=preact,
        bn_momentum=bn_momentum,
        **actkw,
    )
    block_args = dict(
        block=block,
        preact=preact,
        groups=groups,
        kernel_size=kernel_size,
        se_ratio=se_ratio,
        dropout=dropout,
        res2_scale=res2_scale,
        bn_momentum=bn_momentum,
        zero_init_residual=zero_init_residual,
        **actkw,
    )
    for s, stage in enumerate(zip(depths, widths, strides, mid_widths), start=1):
        x = _stage(x, *stage, name=f"stage{s}", **block_args)
    if preact:
        x = batch_norm(x, momentum=bn_momentum, name="final_bn")
        x = activation(x, kind=activation_fn, leaky_slope=leaky_slope, name="final_act")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(img, classifier(x, num_classes, dropout=head_dropout), name=name)


def _stage(x, depth: int, width: int, stride: int, mid: int, *, name: str, **block_args):
    """``depth`` residual blocks; the first one strides and may project its shortcut."""
    for b in range(1, depth + 1):
        x = residual_block(
            x,
            filters=width,
            stride=stride if b == 1 else 1,
            mid=mid,
            first=b == 1,
            name=f"{name}_block{b}",
            **block_args,
        )
    return x


def _stem(img, width, kernel, stride, pool, *, preact, bn_momentum, act, leaky_slope):
    """The first conv (with BN and activation unless ``preact``) and an optional max pool."""
    if preact:
        x = conv(img, width, kernel, strides=stride, name="stem_conv")
    else:
        x = conv_bn_act(
            img,
            width,
            kernel,
            strides=stride,
            bn_momentum=bn_momentum,
            name="stem",
            act=act,
            leaky_slope=leaky_slope,
        )
    if pool:
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    return x


def _cifar_resnet(depth: int, *, preact: bool, se_ratio: int | None = None):
    bottleneck = depth >= 164
    per_stage, rem = divmod(depth - 2, 9 if bottleneck else 6)
    if rem:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2 (basic) or 9n+2 (bottleneck): {depth}")
    config = dict(
        depths=(per_stage,) * 3,
        preact=preact,
        se_ratio=se_ratio,
        stem_width=16,
        zero_init_residual=depth >= 1001,
    )
    if bottleneck:
        config.update(block="bottleneck", widths=(64, 128, 256), mid_widths=(16, 32, 64))
    else:
        config.update(block="basic", widths=(16, 32, 64))
    return config


def _register(
    name: str,
    config: dict,
    *,
    min_size: int = 8,
    default_size: int = 32,
    source: str,
    description: str,
):
    def build(input_shape, num_classes, **overrides):
        return resnet(input_shape, num_classes, **{**config, "name": name, **overrides})

    add_model(
        name,
        build,
        default_size=default_size,
        min_size=min_size,
        source=source,
        description=description,
        forwards=(resnet,),
    )


for _depth in (20, 32, 44, 56, 110, 164, 1001):
    for _preact in (False, True):
        _kind = "bottleneck" if _depth >= 164 else "basic"
        _register(
            f"{'preact_' if _preact else ''}resnet{_depth}",
            _cifar_resnet(_depth, preact=_preact),
            source="He et al. 2016" + ("b" if _preact else "") + "; reports 000, 002",
            description=f"CIFAR ResNet-{_depth}, {_kind} blocks"
            + (", pre-activation" if _preact else ""),
        )
for _depth in (8, 20, 56):
    _register(
        f"se_resnet{_depth}",
        _cifar_resnet(_depth, preact=False, se_ratio=8),
        source="Hu et al. 2018; reports 001, 002",
        description=f"CIFAR ResNet-{_depth} with squeeze-and-excitation (ratio 8)",
    )


def _wrn(depth: int, k: int, *, se_ratio: int | None = None, dropout: float = 0.3):
    n, rem = divmod(depth - 4, 6)
    if rem:
        raise ValueError(f"WRN depth must be 6n+4, got {depth}")
    return dict(
        depths=(n,) * 3,
        widths=(16 * k, 32 * k, 64 * k),
        block="basic",
        preact=True,
        stem_width=16,
        dropout=dropout,
        se_ratio=se_ratio,
    )


for _d, _k in ((16, 4), (16, 8), (28, 10), (40, 4), (28, 2)):
    _register(
        f"wrn{_d}_{_k}",
        _wrn(_d, _k),
        source="Zagoruyko & Komodakis 2016; reports 002, 004",
        description=f"Wide-ResNet WRN-{_d}-{_k}, pre-activation, dropout 0.3",
    )
for _d, _k in ((28, 10), (16, 4)):
    _register(
        f"se_wrn{_d}_{_k}",
        _wrn(_d, _k, se_ratio=16),
        source="report 002",
        description=f"pre-activation WRN-{_d}-{_k} with squeeze-and-excitation "
        "(report 002's best model is SE-WRN-28-10)",
    )


def _resnext29(cardinality: int, base_width: int, scale: int = 1):
    """ResNeXt-29 for CIFAR: 3 stages of 3 bottleneck blocks, outputs 256/512/1024."""
    return dict(
        depths=(3, 3, 3),
        widths=(256, 512, 1024),
        strides=(1, 2, 2),
        block="bottleneck",
        mid_widths=tuple(cardinality * base_width * 2**i for i in range(3)),
        groups=cardinality,
        stem_width=64,
        res2_scale=scale,
    )


for _c, _w in ((8, 64), (16, 64), (2, 32), (4, 16)):
    _register(
        f"resnext29_{_c}x{_w}d",
        _resnext29(_c, _w),
        source="Xie et al. 2017; reports 002, 004",
        description=f"ResNeXt-29 {_c}x{_w}d (cardinality x bottleneck width)",
    )
for _c, _w, _s in ((6, 24, 4), (2, 8, 4)):
    _register(
        f"res2next29_{_c}cx{_w}wx{_s}s",
        _resnext29(_c, _w, _s),
        source="Gao et al. 2019; report 004",
        description=f"Res2NeXt-29 {_c}c x {_w}w x {_s}s (Res2Net modules in ResNeXt-29)",
    )

_REPORT000 = dict(
    depths=(4, 9, 3),
    widths=(30, 60, 90),
    strides=(1, 2, 2),
    block="basic",
    stem_width=30,
    stem_kernel=4,
    stem_stride=1,
)
_register(
    "report000_resnet",
    _REPORT000,
    default_size=120,
    source="report 000",
    description="report 000's customised ResNet: stem 4x4/1; stages 4x30 s1, 9x60 s2, 3x90 s2",
)
_register(
    "report000_resnet_leaky",
    {**_REPORT000, "activation_fn": "leaky_relu"},
    default_size=120,
    source="report 000",
    description="report 000's customised ResNet with LeakyReLU(0.1)",
)

_LIGHT = dict(
    depths=(2, 2, 2, 2),
    widths=(64, 128, 256, 512),
    strides=(1, 2, 2, 2),
    block="light",
    preact=True,
    stem_width=64,
)
_register(
    "light_resnet",
    _LIGHT,
    default_size=28,
    source="report 001",
    description="report 001's light pre-activation ResNet: 1x1 reduction before each 3x3",
)
_register(
    "se_light_resnet",
    {**_LIGHT, "se_ratio": 16},
    default_size=28,
    source="report 001",
    description="report 001's SE-ResNet: light ResNet with squeeze-and-excitation",
)


@register_model(default_size=32, min_size=8, source="reports 000, 001, 002", forwards=(resnet,))
def resnet_custom(input_shape, num_classes, **overrides):
    """Fully customisable ResNet (defaults: ResNet-20); every ``resnet()`` argument applies."""
    return resnet(input_shape, num_classes, **{"name": "resnet_custom", **overrides})
