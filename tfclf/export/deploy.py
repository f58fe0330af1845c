"""The deployable Keras model and SavedModel of a run (``RUN/best_model``)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from tfclf.data import Normalizer
from tfclf.data.sources import GRAY_WEIGHTS, RESIZE_NOTES
from tfclf.io import atomic_dir
from tfclf.keras import keras
from tfclf.rundir import CARD_FILE, LABELS_FILE, MODEL_FILE, SAVED_MODEL

INPUT_NAME = "pixels"
NORMALIZE_NAME = "normalize"
PROBABILITIES = "probabilities"
# what a deployed model returns: its card's ``output.values`` and their meaning
OUTPUT_NOTES = {
    "logits": "logits (softmax for probabilities)",
    PROBABILITIES: "class probabilities (a softmax inside the graph)",
}


def deployable(model: keras.Model, normalizer: Normalizer) -> keras.Model:
    """``model`` (which takes normalised images) behind a normalisation layer: the result
    takes raw pixels, float 0-255, and returns ``model``'s logits."""
    inputs = keras.Input(model.input_shape[1:], name=INPUT_NAME)
    outputs = model(normalizer.as_layer(NORMALIZE_NAME)(inputs))
    return keras.Model(inputs, outputs, name=f"{model.name}_pixels")


def rgb_input(deploy: keras.Model) -> keras.Model:
    """A 1-channel raw-pixel model behind a fixed 1x1 convolution from RGB to gray (the
    weights the data loader converts colour images with): it takes RGB pixels, which
    cameras give and MediaPipe Tasks' classifier requires, and on an RGB copy of a gray
    image returns what ``deploy`` returns on the image (the weights sum to 1)."""
    h, w, c = deploy.input_shape[1:]
    if c != 1:
        raise ValueError(f"--rgb_input: the model already takes {c} channels")
    to_gray = keras.layers.Conv2D(1, 1, use_bias=False, trainable=False, name="rgb_to_gray")
    inputs = keras.Input((h, w, 3), name=INPUT_NAME)
    outputs = deploy(to_gray(inputs))
    to_gray.set_weights([np.array(GRAY_WEIGHTS, np.float32).reshape(1, 1, 3, 1)])
    return keras.Model(inputs, outputs, name=f"{deploy.name}_rgb")


def with_probabilities(deploy: keras.Model) -> keras.Model:
    """``deploy`` followed by a softmax: it returns class probabilities instead of logits,
    what MediaPipe Tasks' classifier reports as scores (and its ``score_threshold`` reads)."""
    softmax = keras.layers.Softmax(name=PROBABILITIES, dtype="float32")
    return keras.Model(deploy.input, softmax(deploy.output), name=f"{deploy.name}_probs")


def trained_part(model: keras.Model) -> keras.Model:
    """The model inside a deployable one (``model`` itself when it has no normaliser)."""
    names = [layer.name for layer in model.layers]
    if NORMALIZE_NAME in names and isinstance(model.layers[-1], keras.Model):
        return model.layers[-1]
    return model


def model_card(
    model: keras.Model,
    class_names,
    normalizer: Normalizer,
    *,
    dtype="float32",
    value_range=(0, 255),
    resize: str = "squash",
    output: str = "logits",
    extra: dict | None = None,
) -> dict:
    """What an app needs to feed ``model`` and read its output; ``resize`` is how the
    training images were brought to the model's size (``--load_resize``), which an app
    should do to its images too; ``output``: what it returns (``OUTPUT_NOTES``)."""
    h, w, c = model.input_shape[1:]
    return {
        "model": trained_part(model).name,
        "input": {
            "shape": [1, h, w, c],
            "layout": "NHWC",
            "dtype": dtype,
            "range": list(value_range),
            "meaning": "raw pixels (normalisation is inside the graph)",
            "resize": {"mode": resize, "how": RESIZE_NOTES[resize]},
        },
        "output": {
            "shape": [1, len(class_names)],
            "values": output,
            "meaning": OUTPUT_NOTES[output],
        },
        "classes": [str(c) for c in class_names],
        "normalization_inside": {
            "mean": list(normalizer.mean),
            "std": list(normalizer.std),
            "formula": "(pixels / 255 - mean) / std",
        },
        **(extra or {}),
    }


def write_labels(class_names, path: Path) -> None:
    Path(path).write_text("".join(f"{c}\n" for c in class_names))


def write_snapshots(
    out: Path, weight_files: list[Path], model: keras.Model, normalizer: Normalizer
) -> list[Path]:
    """Each snapshot's weights (``--snapshots``) as a raw-pixel ``out/NAME/model.keras``
    (NAME: the weights file's, e.g. ``stage0_epoch020``), loaded into a copy of
    ``model``; ``out`` is replaced only when all are written. Returns the files."""
    copy = keras.models.clone_model(model)
    names = [f.name.removesuffix(".weights.h5") for f in weight_files]
    with atomic_dir(out) as tmp:
        for name, weights in zip(names, weight_files):
            copy.load_weights(weights)
            (tmp / name).mkdir()
            deployable(copy, normalizer).save(tmp / name / MODEL_FILE)
    return [out / name / MODEL_FILE for name in names]


def write_best_model(
    out: Path,
    model: keras.Model,
    normalizer: Normalizer,
    class_names,
    resize: str = "squash",
) -> keras.Model:
    """Writes ``out/``: ``model.keras`` and ``saved_model/`` (an inference SavedModel whose
    ``serving_default`` is the forward pass, what TF Serving and the TFLite converter read;
    ~10x faster to write than Keras' full SavedModel), both taking raw pixels, with
    ``labels.txt`` and ``model_card.json``. The directory is replaced only when everything
    is written: a failure (a full disk) leaves the previous one intact."""
    deploy = deployable(model, normalizer)
    with atomic_dir(out) as tmp:
        deploy.save(tmp / MODEL_FILE)
        with contextlib.redirect_stdout(io.StringIO()):  # its endpoint listing
            deploy.export(str(tmp / SAVED_MODEL))
        write_labels(class_names, tmp / LABELS_FILE)
        card = model_card(deploy, class_names, normalizer, resize=resize)
        (tmp / CARD_FILE).write_text(json.dumps(card, indent=2))
    return deploy
