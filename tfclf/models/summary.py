"""Model statistics: parameters, multiply-accumulates (MACs), sizes, per-layer table."""

from __future__ import annotations

import dataclasses

import numpy as np

from tfclf.keras import keras, layers


def _count(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


def layer_macs(layer: keras.layers.Layer) -> int:
    """MACs of one layer for one image (convs and dense layers; the rest is negligible).
    A wrapper (TF-MOT's QAT and pruning wrappers) counts as the layer it wraps."""
    node = layer  # the layer in the graph, which knows the shapes
    if isinstance(layer, layers.Wrapper):
        layer = layer.layer
    if isinstance(layer, layers.DepthwiseConv2D):
        _, h, w, c = node.output_shape
        kh, kw = layer.kernel_size
        return int(h * w * c * kh * kw)
    if isinstance(layer, layers.Conv2D):
        _, h, w, c = node.output_shape
        kh, kw = layer.kernel_size
        cin = node.input_shape[-1]
        return int(h * w * c * kh * kw * cin // layer.groups)
    if isinstance(layer, layers.Dense):
        out = node.output_shape
        spatial = int(np.prod(out[1:-1])) if len(out) > 2 else 1
        return int(spatial * node.input_shape[-1] * layer.units)
    return 0


@dataclasses.dataclass(frozen=True)
class ModelStats:
    name: str
    input_shape: tuple
    trainable_params: int
    total_params: int
    macs: int
    float32_bytes: int
    layers: list  # (name, class, output shape, params, MACs)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("layers")
        return d


def _flat_layers(model: keras.Model):
    """Layers in order, nested models (a deployed model holds the trained one) opened up."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _flat_layers(layer)
        else:
            yield layer


def model_stats(model: keras.Model) -> ModelStats:
    rows = []
    for layer in _flat_layers(model):
        shape = layer.output_shape
        rows.append(
            (
                layer.name,
                type(layer).__name__,
                tuple(shape) if isinstance(shape, tuple) else shape,
                _count(layer.weights),
                layer_macs(layer),
            )
        )
    total = _count(model.weights)
    return ModelStats(
        name=model.name,
        input_shape=tuple(model.input_shape[1:]),
        trainable_params=_count(model.trainable_weights),
        total_params=total,
        macs=sum(r[4] for r in rows),
        float32_bytes=4 * total,
        layers=rows,
    )


def human(n: float, unit: str = "") -> str:
    for suffix in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.3g}{suffix}{unit}" if suffix else f"{n:g}{unit}"
        n /= 1000
    return f"{n:.3g}P{unit}"


def format_stats(stats: ModelStats, per_layer: bool = True) -> str:
    lines = [
        f"model            {stats.name}",
        f"input            {'x'.join(str(d) for d in stats.input_shape)}",
        f"trainable params {stats.trainable_params:,}",
        f"total params     {stats.total_params:,}",
        f"MACs             {stats.macs:,} ({human(stats.macs)})",
        f"float32 size     {stats.float32_bytes / 2**20:.2f} MiB",
    ]
    if per_layer:
        lines += ["", f"{'layer':40s} {'type':24s} {'output':>20s} {'params':>12s} {'MACs':>14s}"]
        for name, kind, shape, params, macs in stats.layers:
            shape_s = "x".join(str(d) for d in shape[1:]) if isinstance(shape, tuple) else "-"
            lines.append(f"{name:40s} {kind:24s} {shape_s:>20s} {params:>12,} {macs:>14,}")
    return "\n".join(lines)
