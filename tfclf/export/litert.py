"""Running, reading and measuring ``.tflite`` files with LiteRT alone: no TensorFlow.

``tfclf.predict`` on a ``.tflite`` file and anything that only runs or reads exported files
import this module, not TensorFlow (4-5 s of a CLI's start-up on these machines); the
files are made by ``tfclf.export.tflite``. ``read_card`` reads the model card ``convert``
writes into a file; ``interpreter`` opens one with XNNPACK or, where XNNPACK refuses it,
LiteRT's builtin kernels; ``predict`` takes raw pixels as the file's input wants them;
``verify`` scores the file itself on real images: accuracy, top-1 agreement with the float
Keras model, file and gzip size, and batch-1 latency (median of N single-threaded
invocations).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import struct
import time
from pathlib import Path

import numpy as np
from absl import logging

from tfclf.errors import UsageError
from tfclf.native_stderr import quiet_litert

CARD_METADATA = "tfclf_model_card"


class TFLiteFileError(UsageError):
    """A file LiteRT cannot open; the message names it in one line."""


def _metadata(blob: bytes, name: str) -> bytes | None:
    """The bytes of the ``.tflite`` file's metadata entry ``name``, or None."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        root = schema.Model.GetRootAs(blob, 0)
        for i in range(root.MetadataLength()):
            entry = root.Metadata(i)
            if entry.Name() == name.encode():
                return root.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    except (struct.error, IndexError, TypeError, AttributeError):
        pass  # not a flatbuffer: the interpreter reports such a file
    return None


def read_card(model: bytes | str | Path) -> dict | None:
    """The model card written into a ``.tflite`` file by ``convert``, or None (a file from
    elsewhere, or one written before 0.1.0)."""
    blob = model if isinstance(model, bytes) else Path(model).read_bytes()
    data = _metadata(blob, CARD_METADATA)
    try:
        return json.loads(data) if data else None
    except ValueError:
        return None


def interpreter(
    model: bytes | str | Path,
    num_threads: int | None = None,
    xnnpack: bool = True,
    warn: bool = True,
):
    """A LiteRT interpreter of the file, allocated, with its default XNNPACK delegate.

    XNNPACK refuses a few valid int8 graphs: a unit that is zero on every calibration image
    (a dead ReLU in a 1-channel SE squeeze, seen here) gets a near-zero output scale whose
    requantisation XNNPACK does not support. Such a file still runs with LiteRT's builtin
    kernels, which is what the interpreter falls back to, with a warning (``xnnpack=False``
    goes there directly, ``warn=False`` falls back silently); ``interp.xnnpack`` says which
    one runs. A phone app must then turn the default delegate off too, so ``verify`` reports
    it. XNNPACK also refuses an int8 fully connected layer with sparse-encoded weights.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    where = "the model bytes" if isinstance(model, bytes) else str(model)
    source = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}

    def make(resolver, delegated):
        interp = Interpreter(
            **source, num_threads=num_threads, experimental_op_resolver_type=resolver
        )
        with quiet_litert():  # the delegate, made at the first allocation, says so
            interp.allocate_tensors()
            if delegated:  # XNNPACK may accept a graph and fail to build its runtime at
                # the first invoke (seen: EfficientNet-B0's QAT int8 file): find out here
                detail = interp.get_input_details()[0]
                interp.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
                interp.invoke()
        interp.xnnpack = delegated
        return interp

    try:
        if xnnpack:
            try:
                return make(OpResolverType.AUTO, True)
            except RuntimeError as exc:
                if "xnnpack" not in str(exc).lower():  # also "TfLiteXNNPackDelegate"
                    raise
                (logging.warning if warn else logging.debug)(
                    "%s does not run in LiteRT's XNNPACK delegate (%s); using the builtin kernels",
                    where,
                    _line(exc),
                )
        return make(OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES, False)
    except (ValueError, RuntimeError) as exc:
        raise TFLiteFileError(f"{where} is not a valid .tflite file: {_line(exc)}") from None


def _line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def io_spec(interp) -> dict:
    """Input/output dtype, shape and quantisation (scale, zero point) of a file."""
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]

    def spec(d):
        scale, zero = d["quantization"]
        q = {"scale": float(scale), "zero_point": int(zero)} if scale else None
        return {"dtype": np.dtype(d["dtype"]).name, "shape": d["shape"].tolist(), "quant": q}

    return {"input": spec(inp), "output": spec(out)}


def _to_input(pixels: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return pixels.astype(dtype)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    q = np.round(pixels.astype(np.float32) / scale + zero)
    return np.clip(q, info.min, info.max).astype(dtype)


def _from_output(values: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if np.dtype(detail["dtype"]).kind == "f" or not scale:
        return values.astype(np.float32)
    return (values.astype(np.float32) - zero) * scale


def predict(interp, pixels: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Float logits of the file on raw-pixel images (uint8 or float 0-255, NHWC)."""
    inp = interp.get_input_details()[0]
    out_index = interp.get_output_details()[0]["index"]
    outputs, allocated = [], None
    for i in range(0, len(pixels), batch_size):
        batch = pixels[i : i + batch_size]
        if allocated != len(batch):
            interp.resize_tensor_input(inp["index"], [len(batch), *pixels.shape[1:]])
            interp.allocate_tensors()
            allocated = len(batch)
            inp = interp.get_input_details()[0]
        interp.set_tensor(inp["index"], _to_input(batch, inp))
        interp.invoke()
        outputs.append(_from_output(interp.get_tensor(out_index), interp.get_output_details()[0]))
    return np.concatenate(outputs)


def latency_ms(
    model: bytes | str | Path, shape, runs: int = 50, warmup: int = 5, xnnpack: bool = True
) -> float:
    """Median single-threaded batch-1 latency in milliseconds."""
    interp = interpreter(model, num_threads=1, xnnpack=xnnpack)
    inp = interp.get_input_details()[0]
    x = _to_input(np.random.default_rng(0).uniform(0, 255, (1, *shape)), inp)
    times = []
    for i in range(warmup + runs):
        interp.set_tensor(inp["index"], x)
        t = time.perf_counter()
        interp.invoke()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


@dataclasses.dataclass
class FileReport:
    """What ``verify`` measured on one file."""

    path: str
    size_bytes: int
    gzip_bytes: int
    accuracy: float
    agreement: float | None  # top-1 agreement with the float Keras model
    latency_ms: float
    io: dict
    splits: dict  # split name -> accuracy
    xnnpack: bool = True  # runs in LiteRT's default XNNPACK delegate (else builtin kernels)

    @property
    def size_kb(self) -> float:
        return self.size_bytes / 1024


def verify(
    path: str | Path,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    reference: dict[str, np.ndarray] | None = None,
    latency_runs: int = 50,
) -> FileReport:
    """Scores the file at ``path`` on each ``splits[name] = (uint8 images, labels)`` (the
    first split is the headline accuracy), its agreement with ``reference[name]`` (the float
    model's logits) and its batch-1 latency."""
    data = Path(path).read_bytes()
    interp = interpreter(path)
    accuracies, agreement = {}, None
    for name, (images, labels) in splits.items():
        top1 = predict(interp, images).argmax(-1)
        accuracies[name] = float((top1 == labels).mean())
        if reference is not None and agreement is None and name in reference:
            agreement = float((top1 == reference[name].argmax(-1)).mean())
    first = next(iter(splits.values()))[0]
    return FileReport(
        path=str(path),
        size_bytes=len(data),
        gzip_bytes=len(gzip.compress(data, 9)),
        accuracy=accuracies[next(iter(splits))],
        agreement=agreement,
        latency_ms=latency_ms(path, first.shape[1:], runs=latency_runs, xnnpack=interp.xnnpack),
        io=io_spec(interp),
        splits=accuracies,
        xnnpack=interp.xnnpack,
    )
