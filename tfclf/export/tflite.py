"""TFLite export and verification of the file itself with the LiteRT interpreter.

Every file takes raw pixels, like the Keras model it comes from (``deploy.deployable``):
float32 0-255 for the float, float16 and dynamic-range files, and for full-integer files
``uint8`` (or ``int8``) whose quantisation is pinned to scale 1: a uint8 input *is* the
pixel value (int8: pixel - 128). The representative dataset (real training images, batch 1
per sample, tensorflow#47027) gets one extra sample holding a 0 and a 255 so that the
input's calibrated range is exactly 0-255 whatever the images' own extremes; the scale and
zero point actually written are read back from the file into its model card.

Each file names its classes itself, so a file copied on its own still does: its model card
(``card``: class names in output order, the input it takes, the normalisation inside) as
JSON in a flatbuffer metadata entry named ``tfclf_model_card`` (``read_card``), and TFLite
Support's ``TFLITE_METADATA`` with ``labels.txt`` zipped onto the file
(``support_metadata``), which MediaPipe Tasks and Android's TFLite tools read. LiteRT
ignores both.

Verification (``verify``) runs the ``.tflite`` bytes with ``ai_edge_litert`` on real
images: accuracy, top-1 agreement with the float Keras model, file and gzip size, and
batch-1 latency (median of N single-threaded invocations).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import io
import json
import os
import re
import struct
import sys
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import tensorflow as tf
from absl import logging

from tfclf.errors import UsageError
from tfclf.keras import keras

MODES = ("float32", "float16", "dynamic", "int8")
IO_DTYPES = ("uint8", "int8")
CARD_METADATA = "tfclf_model_card"
SUPPORT_METADATA = "TFLITE_METADATA"  # TFLite Support's entry (support_metadata)
INPUT_NOTES = {
    "float32": "float32 input = raw pixel value 0-255",
    "uint8": "uint8 input = raw pixel value",
    "int8": "int8 input = raw pixel value - 128",
}


class ConversionError(UsageError):
    """A model that the TFLite converter refuses; the message is one line."""


@contextlib.contextmanager
def _without_quantizer_chatter(prefix: str = "fully_quantize: "):
    """Drops the line TFLite's C++ quantiser prints on stderr for every integer file
    (``fully_quantize: 0, inference_type: 6, input_inference_type: UINT8, ...``) and passes
    anything else written to stderr meanwhile through, after the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            lines = caught.read().decode(errors="replace").splitlines(keepends=True)
            rest = "".join(line for line in lines if not line.startswith(prefix))
            if rest:
                sys.stderr.write(rest)
                sys.stderr.flush()


def _representative(images: np.ndarray, count: int, seed: int):
    """A generator function over ``count`` training images (uint8 NHWC), float32 batch 1,
    preceded by the range anchor described in the module docstring."""
    rng = np.random.default_rng(seed)
    picked = images[rng.choice(len(images), min(count, len(images)), replace=False)]

    def gen():
        anchor = picked[0].astype(np.float32).copy()
        anchor.flat[0], anchor.flat[-1] = 0.0, 255.0
        yield [anchor[None]]
        for image in picked:
            yield [image[None].astype(np.float32)]

    return gen


def _first_error_line(exc: Exception) -> str:
    """The converter's first ``error:`` line and the layer it names, from its long log."""
    text = str(exc)
    line = next((ln for ln in text.splitlines() if "error:" in ln), text.splitlines()[0])
    layer = re.search(r'loc\((?:fused\[)?"([^"@:]+)', line)
    message = line.split("error:", 1)[-1].strip()
    return f"layer {layer.group(1)!r}: {message}" if layer else message


def convert(
    model: keras.Model,
    mode: str,
    *,
    representative: np.ndarray | None = None,
    io_dtype: str = "uint8",
    num_calibration: int = 200,
    seed: int = 0,
    quantized: bool = False,
    per_channel: bool = True,
    keep_names: bool = False,
    sparse: bool = False,
    card: dict | None = None,
) -> bytes:
    """The ``.tflite`` bytes of ``model`` (a raw-pixel deployable model).

    ``mode``: ``float32``; ``float16`` (weights stored as float16); ``dynamic`` (int8
    weights, float activations); ``int8`` (full integer, ``io_dtype`` input and output,
    calibrated on ``representative`` uint8 images at the model's resolution). A QAT model
    (``quantized=True``) carries its own ranges and needs no representative data.
    ``per_channel=False`` gives each weight tensor of a post-training quantised file one
    scale instead of one per output channel (TFLite's experimental converter switch): a
    smaller file (TFLite stores a float32 scale and an int64 zero point per channel), at
    some accuracy that ``verify`` measures. QAT files keep the ranges they were trained with.
    Tensor names are removed (``strip_names``) unless ``keep_names``. ``sparse`` lets the
    converter store weight tensors with many zeros (pruned ones) in TFLite's sparse format,
    expanded once at load time by a ``DENSIFY`` op (``sparse_weights`` counts them): the
    only way pruning shrinks the file itself rather than its gzip. LiteRT and its XNNPACK
    delegate run such files with dense-speed kernels; TFLite Micro has no ``DENSIFY``.
    ``card`` (``deploy.model_card``) is written into the file with its input's dtype, with
    TFLite Support's metadata and labels.
    """
    if mode not in MODES:
        raise ValueError(f"TFLite mode {mode!r} is not one of {', '.join(MODES)}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if sparse:
        converter.optimizations = [*converter.optimizations, tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    if not per_channel and not quantized:
        converter._experimental_disable_per_channel = True
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        if representative is None and not quantized:
            raise ValueError("int8 conversion needs representative images")
        if representative is not None:
            converter.representative_dataset = _representative(
                representative, num_calibration, seed
            )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.as_dtype(io_dtype)
        converter.inference_output_type = tf.as_dtype(io_dtype)
    try:
        with warnings.catch_warnings(), _without_quantizer_chatter():
            warnings.filterwarnings("ignore", "Statistics for quantized inputs")  # on purpose
            blob = converter.convert()
    except Exception as exc:  # the converter raises ConverterError with pages of MLIR log
        raise ConversionError(
            f"model {model.name!r} does not convert to {mode} TFLite: {_first_error_line(exc)}"
        ) from None
    if card is not None:
        dtype = io_dtype if mode == "int8" else "float32"
        card = card | {"input": card["input"] | {"dtype": dtype, "meaning": INPUT_NOTES[dtype]}}
    return _rewrite(blob, strip=not keep_names, card=card)


def _rewrite(blob: bytes, *, strip: bool, card: dict | None) -> bytes:
    """The ``.tflite`` bytes with the inner tensors' names removed (``strip``) and ``card``
    as the ``tfclf_model_card`` and ``TFLITE_METADATA`` entries with ``labels.txt`` zipped
    onto the end (replacing earlier ones).

    The converter names every tensor after the Keras ops fused into it, often several
    hundred bytes each: 20 KB of the quick start's 340 KB int8 file, bytes a phone loads
    and never reads. The inputs' and outputs' names, the signature (``serving_default``
    and its ``pixels`` input) and the converter's metadata stay, so the signature runner
    and ``get_input_details`` work as before. TFLite's own
    ``flatbuffer_utils.strip_strings`` would drop the signature too.
    """
    if not strip and card is None:
        return blob
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(blob))
    if strip:
        for graph in model.subgraphs:
            keep = {int(i) for i in [*graph.inputs, *graph.outputs]}
            for i, tensor in enumerate(graph.tensors):
                if i not in keep:
                    tensor.name = None
    if card is None:
        return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    for name, data in (
        (CARD_METADATA, json.dumps(card, separators=(",", ":")).encode()),
        (SUPPORT_METADATA, support_metadata(card)),
    ):
        entry = next((m for m in model.metadata or [] if m.name == name.encode()), None)
        if entry is None:
            entry = schema.MetadataT()
            entry.name, entry.buffer = name, len(model.buffers)
            model.buffers.append(schema.BufferT())
            model.metadata = [*(model.metadata or []), entry]
        model.buffers[entry.buffer].data = np.frombuffer(data, np.uint8)
    out = io.BytesIO(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    with zipfile.ZipFile(out, "a") as archive:  # TFLite Support's associated files
        archive.writestr("labels.txt", "".join(f"{c}\n" for c in card["classes"]))
    return out.getvalue()


def _tables(b, tables: list[int]) -> int:
    """A flatbuffer vector of the table offsets ``tables``."""
    b.StartVector(4, len(tables), 4)
    for offset in reversed(tables):
        b.PrependUOffsetTRelative(offset)
    return b.EndVector()


def _table(b, fields: dict) -> int:
    """A table from ``{slot: offset}`` (other fields given as ``{slot: ("byte", value)}``)."""
    b.StartObject(max(fields) + 1)
    for slot, value in fields.items():
        if isinstance(value, tuple):
            b.PrependUint8Slot(slot, value[1], 0)
        else:
            b.PrependUOffsetTRelativeSlot(slot, value, 0)
    return b.EndObject()


def support_metadata(card: dict) -> bytes:
    """TFLite Support's ``ModelMetadata`` flatbuffer (``metadata_schema.fbs``, file
    identifier ``M001``) for an image classifier described by ``card``: the input as an
    RGB or grayscale image of values 0-255 whose normalisation is inside the graph (mean
    0, std 1), the output's class names in an associated ``labels.txt``. Written with the
    flatbuffers builder, field by field: the schema's Python writers (``tflite-support``,
    MediaPipe) do not install beside TensorFlow 2.21 (BUILD_NOTES.md). A field's slot is its
    position in its table in the schema, a union taking two (its type, then its value):
    TensorMetadata (name 0, description 1, content 3, process_units 4, stats 5,
    associated_files 6), Content (content_properties 0-1), ProcessUnit (options 0-1),
    SubGraphMetadata (input 2, output 3 tensor metadata), ModelMetadata (name 0,
    description 1, subgraph_metadata 3, min_parser_version 7). Checked with MediaPipe's
    generated reader and its ImageClassifier (``tools/check_mediapipe.py``)."""
    import flatbuffers

    image_props, normalization, axis_labels = 2, 1, 2  # the schema's enum values
    channels = card["input"]["shape"][-1]
    b = flatbuffers.Builder(1024)
    strings = {
        k: b.CreateString(v)
        for k, v in {
            "model": card["model"],
            "about": "Image classifier trained with tfclf: raw pixels in, logits out.",
            "input": "pixels",
            "input_about": card["input"]["meaning"],
            "output": "logits",
            "output_about": card["output"]["meaning"],
            "labels": "labels.txt",
            "parser": "1.0.0",  # the oldest metadata parser that reads these fields
        }.items()
    }
    floats = {
        k: b.CreateNumpyVector(np.array(v, np.float32))
        for k, v in {"mean": [0.0], "std": [1.0], "max": [255.0], "min": [0.0]}.items()
    }
    color = _table(b, {0: ("byte", 1 if channels == 3 else 2)})  # RGB or GRAYSCALE
    content = _table(b, {0: ("byte", image_props), 1: color})
    norm = _table(b, {0: floats["mean"], 1: floats["std"]})
    unit = _table(b, {0: ("byte", normalization), 1: norm})
    stats = _table(b, {0: floats["max"], 1: floats["min"]})
    image = _table(
        b,
        {
            0: strings["input"],
            1: strings["input_about"],
            3: content,
            4: _tables(b, [unit]),
            5: stats,
        },
    )
    labels = _table(b, {0: strings["labels"], 2: ("byte", axis_labels)})
    logits = _table(b, {0: strings["output"], 1: strings["output_about"], 6: _tables(b, [labels])})
    graph = _table(b, {2: _tables(b, [image]), 3: _tables(b, [logits])})
    root = _table(
        b, {0: strings["model"], 1: strings["about"], 3: _tables(b, [graph]), 7: strings["parser"]}
    )
    b.Finish(root, b"M001")
    return bytes(b.Output())


def strip_names(blob: bytes) -> bytes:
    """The ``.tflite`` bytes without the names of the graph's inner tensors (``_rewrite``)."""
    return _rewrite(blob, strip=True, card=None)


def _metadata(blob: bytes, name: str) -> bytes | None:
    """The bytes of the ``.tflite`` file's metadata entry ``name``, or None."""
    from tensorflow.lite.python import schema_py_generated as schema

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


def sparse_weights(blob: bytes) -> int:
    """How many tensors of the ``.tflite`` bytes are stored in the sparse format."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(blob))
    return sum(t.sparsity is not None for g in model.subgraphs for t in g.tensors)


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
        interp.allocate_tensors()
        if delegated:  # XNNPACK may accept a graph and fail to build its runtime at the
            # first invoke (seen: EfficientNet-B0's QAT int8 file): find out here
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
        raise ConversionError(f"{where} is not a valid .tflite file: {_line(exc)}") from None


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
