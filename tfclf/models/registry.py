"""Name-keyed model registry (after timm's ``_registry.py``).

A model is registered by decorating a function ``fn(input_shape, num_classes, **overrides)``
that returns a functional ``keras.Model`` of stock layers with logits out.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence

from tfclf.keras import keras


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    fn: Callable[..., keras.Model]
    default_size: int
    min_size: int
    source: str
    description: str
    args: tuple[str, ...] = ()  # the keyword arguments ``create_model`` accepts for it


_MODELS: dict[str, ModelSpec] = {}


def register_model(
    *,
    default_size: int,
    min_size: int,
    source: str = "",
    description: str = "",
    forwards: Sequence[Callable] = (),
):
    """Registers the decorated builder under its function name. ``forwards``: the builders
    its ``**overrides`` go to, whose keyword arguments it therefore accepts."""

    def decorator(fn):
        add_model(
            fn.__name__,
            fn,
            default_size=default_size,
            min_size=min_size,
            source=source,
            description=description or (fn.__doc__ or "").strip(),
            forwards=forwards,
        )
        return fn

    return decorator


def add_model(
    name: str,
    fn: Callable[..., keras.Model],
    *,
    default_size: int,
    min_size: int,
    source: str = "",
    description: str = "",
    forwards: Sequence[Callable] = (),
) -> None:
    """Registers ``fn`` under ``name``; used for families generated in a loop."""
    if name in _MODELS:
        raise ValueError(f"model {name!r} is registered twice")
    args = sorted({a for f in (fn, *forwards) for a in _keyword_args(f)})
    _MODELS[name] = ModelSpec(name, fn, default_size, min_size, source, description, tuple(args))


def _keyword_args(fn: Callable) -> list[str]:
    fixed = {"input_shape", "num_classes", "name", "x", "filters", "kernel_size"}
    return [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in fixed
    ]


def check_model_args(name: str, args: dict) -> str | None:
    """None if ``create_model(name, ..., **args)`` accepts every key of ``args``, else a
    one-line message naming the first unknown key and the model's arguments."""
    spec = get_spec(name)
    unknown = sorted(set(args) - set(spec.args))
    if not unknown:
        return None
    takes = ", ".join(spec.args) if spec.args else "none"
    return f"model {name!r} has no argument {unknown[0]!r}; its arguments: {takes}"


def list_models() -> list[str]:
    return sorted(_MODELS)


def get_spec(name: str) -> ModelSpec:
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; known models: {', '.join(list_models())}"
        ) from None


def create_model(
    name: str, input_shape: tuple[int, int, int] | None = None, num_classes: int = 10, **overrides
) -> keras.Model:
    """Builds a registered model.

    Args:
      name: a name from ``list_models()``.
      input_shape: (height, width, channels); ``None`` means the model's default size, RGB.
      num_classes: number of logits.
      **overrides: keyword arguments of the model's builder (e.g. ``dropout=0.3``).
    """
    spec = get_spec(name)
    if input_shape is None:
        input_shape = (spec.default_size, spec.default_size, 3)
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape}")
    if min(input_shape[:2]) < spec.min_size:
        raise ValueError(
            f"model {name!r} needs inputs of at least {spec.min_size}x{spec.min_size}, "
            f"got {input_shape[0]}x{input_shape[1]}"
        )
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    problem = check_model_args(name, overrides)
    if problem:
        raise ValueError(problem)
    return spec.fn(input_shape, num_classes, **overrides)
