"""Name-keyed model registry (after timm's ``_registry.py``).

A model is registered by decorating a function ``fn(input_shape, num_classes, **overrides)``
that returns a functional ``keras.Model`` of stock layers with logits out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from tfclf.keras import keras


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    fn: Callable[..., keras.Model]
    default_size: int
    min_size: int
    source: str
    description: str


_MODELS: dict[str, ModelSpec] = {}


def register_model(*, default_size: int, min_size: int, source: str = "", description: str = ""):
    """Registers the decorated builder under its function name."""

    def decorator(fn):
        add_model(
            fn.__name__,
            fn,
            default_size=default_size,
            min_size=min_size,
            source=source,
            description=description or (fn.__doc__ or "").strip(),
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
) -> None:
    """Registers ``fn`` under ``name``; used for families generated in a loop."""
    if name in _MODELS:
        raise ValueError(f"model {name!r} is registered twice")
    _MODELS[name] = ModelSpec(name, fn, default_size, min_size, source, description)


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
    return spec.fn(input_shape, num_classes, **overrides)
