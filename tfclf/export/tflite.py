"""TFLite export: a Keras model to the ``.tflite`` bytes a phone runs, with its model card.

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

Running, reading and measuring the files (``interpreter``, ``read_card``, ``predict``,
``verify``) is ``tfclf.export.litert``'s, which needs no TensorFlow.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import tempfile
import warnings
import zipfile

import numpy as np
import tensorflow as tf

from tfclf.errors import UsageError
from tfclf.export.litert import CARD_METADATA
from tfclf.keras import keras
from tfclf.native_stderr import dropping

MODES = ("float32", "float16", "dynamic", "int8")
IO_DTYPES = ("uint8", "int8")
SUPPORT_METADATA = "TFLITE_METADATA"  # TFLite Support's entry (support_metadata)
INPUT_NOTES = {
    "float32": "float32 input = raw pixel value 0-255",
    "uint8": "uint8 input = raw pixel value",
    "int8": "int8 input = raw pixel value - 128",
}


class ConversionError(UsageError):
    """A model that the TFLite converter refuses; the message is one line."""


def _without_quantizer_chatter():
    """Drops the line TFLite's C++ quantiser prints on stderr for every integer file
    (``fully_quantize: 0, inference_type: 6, input_inference_type: UINT8, ...``) and passes
    anything else written to stderr meanwhile through, after the block."""
    return dropping(lambda line: line.startswith("fully_quantize: "))


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


def _inference_saved_model(model: keras.Model, path: str) -> None:
    """Writes ``model``'s forward pass (``training=False``) as an inference-only
    SavedModel: its variables and one ``serving_default`` signature, input and output named
    as ``from_keras_model`` names them (the model's input and output layers).

    ``TFLiteConverter.from_keras_model`` first writes Keras' full SavedModel, which traces
    every layer's call functions so that Keras could reload it: most of a conversion's time
    (docs/decisions/tflite-conversion.md). The converter reads nothing but the signature:
    from this SavedModel it makes the same operators, weights and signature; only the
    conversion metadata's record of the source and some inner tensors' names (which a file
    drops unless ``keep_names``) differ.
    """
    (output,) = model.output_names
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default",
        lambda images: {output: model(images, training=False)},
        [tf.TensorSpec(x.shape, x.dtype, name=x.name) for x in model.inputs],
    )
    with contextlib.redirect_stdout(io.StringIO()):  # its endpoint listing
        archive.write_out(path)


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
    (``quantized=True``) carries its own ranges (the converter still asks for the images).
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
    if mode == "int8" and representative is None:  # TFLite's converter asks, QAT or not
        raise ValueError("int8 conversion needs representative images")
    with tempfile.TemporaryDirectory(prefix="tfclf_tflite_") as saved_model:
        try:  # the converter raises ConverterError with pages of MLIR log
            _inference_saved_model(model, saved_model)
            converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
            blob = run_converter(converter, mode, representative, io_dtype=io_dtype,
                                 num_calibration=num_calibration, seed=seed,
                                 quantized=quantized, per_channel=per_channel, sparse=sparse)  # fmt: skip
        except Exception as exc:
            raise ConversionError(
                f"model {model.name!r} does not convert to {mode} TFLite: {_first_error_line(exc)}"
            ) from None
    if card is not None:
        dtype = io_dtype if mode == "int8" else "float32"
        card = card | {"input": card["input"] | {"dtype": dtype, "meaning": INPUT_NOTES[dtype]}}
    return _rewrite(blob, strip=not keep_names, card=card)


def run_converter(
    converter,
    mode: str,
    representative: np.ndarray | None,
    *,
    io_dtype: str = "uint8",
    num_calibration: int = 200,
    seed: int = 0,
    quantized: bool = False,
    per_channel: bool = True,
    sparse: bool = False,
) -> bytes:
    """The bytes ``converter`` makes with ``convert``'s options for ``mode`` (whatever the
    converter was made from: ``tools/bench_convert.py`` times ``from_keras_model``'s), with
    the quantiser's chatter dropped."""
    if mode != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if sparse:
        converter.optimizations = [*converter.optimizations, tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    if not per_channel and not quantized:
        converter._experimental_disable_per_channel = True
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        converter.representative_dataset = _representative(representative, num_calibration, seed)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.as_dtype(io_dtype)
        converter.inference_output_type = tf.as_dtype(io_dtype)
    with warnings.catch_warnings(), _without_quantizer_chatter():
        warnings.filterwarnings("ignore", "Statistics for quantized inputs")  # on purpose
        return converter.convert()


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
    output = card["output"].get("values", "logits")  # cards before 0.3.0 say logits
    b = flatbuffers.Builder(1024)
    strings = {
        k: b.CreateString(v)
        for k, v in {
            "model": card["model"],
            "about": f"Image classifier trained with tfclf: raw pixels in, {output} out.",
            "input": "pixels",
            "input_about": card["input"]["meaning"],
            "output": output,
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
    scores = _table(b, {0: strings["output"], 1: strings["output_about"], 6: _tables(b, [labels])})
    graph = _table(b, {2: _tables(b, [image]), 3: _tables(b, [scores])})
    root = _table(
        b, {0: strings["model"], 1: strings["about"], 3: _tables(b, [graph]), 7: strings["parser"]}
    )
    b.Finish(root, b"M001")
    return bytes(b.Output())


def strip_names(blob: bytes) -> bytes:
    """The ``.tflite`` bytes without the names of the graph's inner tensors (``_rewrite``)."""
    return _rewrite(blob, strip=True, card=None)


def sparse_weights(blob: bytes) -> int:
    """How many tensors of the ``.tflite`` bytes are stored in the sparse format."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(blob))
    return sum(t.sparsity is not None for g in model.subgraphs for t in g.tensors)
