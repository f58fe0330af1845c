"""Network slimming (Liu et al. 2017, report 001): channels whose batch-norm scale is small
are removed across the network, and a genuinely smaller dense functional model is rebuilt
with the kept weights.

Train with an L1 penalty on the batch-norm scales (``--bn_l1``, e.g. 1e-4) so that the
scales say which channels matter, then ``slim_model(net, 0.5)`` removes the half of the
prunable channels with the smallest ``|gamma|`` (one global threshold, as in the paper) and
``SlimPhase`` fine-tunes the result through the training loop.

Channel bookkeeping: every tensor's last axis is a *channel space*. A convolution or dense
layer creates one (its filters/units can shrink); batch norm, activations, pooling, dropout
and a depthwise convolution pass theirs through; ``Add``/``Multiply`` (residual additions,
the squeeze-and-excitation gate) tie their inputs' spaces into one group that shares a
single keep-mask. A group that reaches the model's input or output, a concatenation, a
grouped convolution or any other layer is kept whole (``frozen``). ``Flatten`` after a
convolution maps the kept channels to the dense layer's kept rows. A group is prunable when
it is not frozen and at least one batch norm reads it; a channel's score is the largest
``|gamma|`` over those batch norms. At least ``MIN_KEEP`` of each group's channels stay.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from tfclf.keras import keras, layers
from tfclf.models.summary import model_stats
from tfclf.training.phases import Phase

MIN_KEEP = 0.1  # fraction of a group's channels that always stays (at least one channel)

PASSTHROUGH = (
    layers.BatchNormalization,
    layers.Activation,
    layers.ReLU,
    layers.LeakyReLU,
    layers.Dropout,
    layers.SpatialDropout2D,
    layers.MaxPooling2D,
    layers.AveragePooling2D,
    layers.GlobalAveragePooling2D,
    layers.GlobalMaxPooling2D,
    layers.ZeroPadding2D,
    layers.Cropping2D,
)
MERGE = (
    layers.Add,
    layers.Multiply,
    layers.Subtract,
    layers.Average,
    layers.Maximum,
    layers.Minimum,
)


class _Space:
    """One tensor's channel axis; union-find node (groups share one keep-mask)."""

    def __init__(self, size: int, *, frozen: bool = False, flat_of=None):
        self.size, self.frozen, self.flat_of = size, frozen, flat_of
        self.parent = self

    def root(self) -> _Space:
        while self.parent is not self:
            self.parent = self.parent.parent
            self = self.parent
        return self


def _union(a: _Space, b: _Space) -> _Space:
    a, b = a.root(), b.root()
    if a is not b:
        b.parent = a
        a.frozen = a.frozen or b.frozen or a.size != b.size
    return a


def _freeze(space: _Space) -> None:
    space.root().frozen = True


def _inbound(layer) -> list:
    if not layer._inbound_nodes:
        return []
    parents = layer._inbound_nodes[0].inbound_layers
    return list(parents) if isinstance(parents, (list, tuple)) else [parents]


def _channels(shape) -> int:
    shape = shape[0] if isinstance(shape, list) else shape
    return int(shape[-1])


def channel_spaces(model: keras.Model) -> dict[str, _Space]:
    """The channel space of every layer's output, groups tied and frozen as described in
    the module docstring."""
    out: dict[str, _Space] = {}
    for layer in model.layers:
        parents = [out[p.name] for p in _inbound(layer)]
        shared = len(layer._inbound_nodes) > 1
        size = _channels(layer.output_shape)
        if isinstance(layer, layers.InputLayer):
            space = _Space(size, frozen=True)
        elif shared or isinstance(layer, keras.Model):
            space = _Space(size, frozen=True)
            for p in parents:
                _freeze(p)
        elif isinstance(layer, layers.DepthwiseConv2D):
            if layer.depth_multiplier == 1:
                space = parents[0]
            else:
                _freeze(parents[0])
                space = _Space(size, frozen=True)
        elif isinstance(layer, layers.Conv2D):
            if layer.groups > 1:
                _freeze(parents[0])
            space = _Space(size, frozen=layer.groups > 1)
        elif isinstance(layer, layers.Dense):
            space = _Space(size)
        elif isinstance(layer, PASSTHROUGH):
            space = parents[0]
        elif isinstance(layer, MERGE):
            space = parents[0]
            for p in parents[1:]:
                space = _union(space, p)
        elif isinstance(layer, layers.Flatten) and len(layer.input_shape) == 4:
            spatial = int(np.prod(layer.input_shape[1:3]))
            space = _Space(size, frozen=True, flat_of=(parents[0], spatial))
        else:  # concatenation, reshape, lambdas, anything unknown: kept whole
            for p in parents:
                _freeze(p)
            space = _Space(size, frozen=True)
        out[layer.name] = space
    for name in model.output_names:
        _freeze(out[name])
    return out


@dataclasses.dataclass
class SlimPlan:
    """Which channels of each prunable group stay (indices into the group's channels)."""

    ratio: float
    spaces: dict  # layer name -> _Space
    keep: dict  # root _Space -> sorted kept indices
    producers: dict  # root _Space -> names of the conv/dense layers that create it

    def mask(self, space: _Space):
        """Kept indices along a space's axis, or None when it is kept whole."""
        if space.flat_of is not None:
            channels, spatial = space.flat_of
            inner = self.mask(channels)
            if inner is None:
                return None
            width = channels.size
            return (np.arange(spatial)[:, None] * width + inner[None, :]).ravel()
        return self.keep.get(space.root())

    def widths(self) -> list[dict]:
        return [
            {"layers": self.producers[r], "channels": r.size, "kept": len(k)}
            for r, k in self.keep.items()
        ]


def plan_slimming(model: keras.Model, ratio: float) -> SlimPlan:
    """Removes the ``ratio`` fraction of all prunable channels with the smallest
    batch-norm scales (one threshold across the network; ``MIN_KEEP`` per group)."""
    if not 0 < ratio < 1:
        raise ValueError(f"--slim: a ratio must be in (0, 1), got {ratio}")
    spaces = channel_spaces(model)
    scores: dict[_Space, np.ndarray] = {}
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization) and layer.scale:
            root = spaces[_inbound(layer)[0].name].root()
            if not root.frozen:
                gamma = np.abs(layer.gamma.numpy())
                scores[root] = np.maximum(scores.get(root, gamma), gamma)
    producers: dict[_Space, list[str]] = {}
    for layer in model.layers:
        if isinstance(layer, (layers.Conv2D, layers.Dense)) and not isinstance(
            layer, layers.DepthwiseConv2D
        ):
            root = spaces[layer.name].root()
            if root in scores:
                producers.setdefault(root, []).append(layer.name)
    if not scores:
        raise ValueError(
            f"--slim: {model.name} has no channels that network slimming can remove (it needs "
            "convolutions followed by batch normalisation, outside concatenations)"
        )
    order = sorted((s, id(r), i, r) for r, v in scores.items() for i, s in enumerate(v))
    total = sum(len(v) for v in scores.values())
    left = {r: len(v) for r, v in scores.items()}
    floor = {r: max(1, math.ceil(MIN_KEEP * len(v))) for r, v in scores.items()}
    dropped = {r: set() for r in scores}
    todo = int(round(ratio * total))
    for _, _, i, r in order:
        if todo == 0:
            break
        if left[r] > floor[r]:
            dropped[r].add(i)
            left[r] -= 1
            todo -= 1
    keep = {
        r: np.array([i for i in range(r.size) if i not in dropped[r]], dtype=np.int64)
        for r in scores
        if dropped[r]
    }
    return SlimPlan(ratio, spaces, keep, {r: producers[r] for r in keep})


def _sliced(layer, old_weights, plan: SlimPlan, spaces) -> list[np.ndarray]:
    parents = _inbound(layer)
    cin = plan.mask(spaces[parents[0].name]) if parents else None
    cout = plan.mask(spaces[layer.name])

    def take(w, idx, axis):
        return w if idx is None else np.take(w, idx, axis=axis)

    if isinstance(layer, layers.DepthwiseConv2D):
        return [take(old_weights[0], cin, 2), *(take(b, cin, 0) for b in old_weights[1:])]
    if isinstance(layer, (layers.Conv2D, layers.Dense)):
        kernel = take(take(old_weights[0], cin, -2), cout, -1)
        return [kernel, *(take(b, cout, 0) for b in old_weights[1:])]
    if isinstance(layer, layers.BatchNormalization):
        return [take(w, cin, 0) for w in old_weights]
    return old_weights  # every other weighted layer reads a frozen (whole) space


def slim_model(model: keras.Model, ratio: float) -> tuple[keras.Model, dict]:
    """A smaller functional copy of ``model`` without the channels ``plan_slimming``
    removes, holding the kept weights, and a report: parameters and MACs before and after
    and each slimmed group's width. The copy drops the batch-norm L1 penalty (fine-tuning
    runs without it, as in the paper)."""
    plan = plan_slimming(model, ratio)
    sizes = {}
    for root, kept in plan.keep.items():
        for name in plan.producers[root]:
            sizes[name] = len(kept)
    config = model.get_config()
    for entry in config["layers"]:
        cfg = entry["config"]
        if entry["config"].get("name") in sizes:
            key = "filters" if "filters" in cfg else "units"
            cfg[key] = sizes[cfg["name"]]
        if "gamma_regularizer" in cfg:
            cfg["gamma_regularizer"] = None
    slim = model.__class__.from_config(config)
    for layer in slim.layers:
        if layer.weights:
            old = model.get_layer(layer.name).get_weights()
            layer.set_weights(_sliced(model.get_layer(layer.name), old, plan, plan.spaces))
    before, after = model_stats(model), model_stats(slim)
    report = {
        "ratio": ratio,
        "params_before": before.total_params,
        "params_after": after.total_params,
        "macs_before": before.macs,
        "macs_after": after.macs,
        "groups": plan.widths(),
    }
    return slim, report


class SlimPhase(Phase):
    """Fine-tunes the slimmed copy of a trained network (same layer names every build, so
    checkpoints and the best weights load into it)."""

    name = "slim"

    def __init__(self, trained: keras.Model, ratio: float):
        plan_slimming(trained, ratio)  # fails early, naming the flag
        self.trained, self.ratio = trained, ratio
        self.report: dict | None = None

    def wrap(self, model, ctx):
        slim, self.report = slim_model(self.trained, self.ratio)
        return slim
