"""Any file tfclf exports, loaded behind one interface: ``load_classifier(path)``.

``.tflite`` (LiteRT interpreter), an inference SavedModel directory (``serving_default``)
or a ``.keras`` model; all take raw pixels. Class names come from the model card inside a
``.tflite`` file, else from ``labels.txt`` beside the file, else from ``model_card.json``,
else are the class indices. How images are resized for the model (``--load_resize``) comes
from the model card inside the file or beside it; "squash" when none says.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from tfclf.errors import UsageError
from tfclf.rundir import CARD_FILE, LABELS_FILE, SAVED_MODEL, read_card


class ModelFileError(UsageError):
    """A model file that cannot be used (the message names it)."""


def _card_beside(path: Path) -> tuple[dict, Path] | None:
    """The model card beside ``path`` (or one folder up, as for ``best_model/saved_model``)
    and where it is; None when there is none. A card that cannot be read is an error naming
    it: without it the class names and the resize mode would silently be wrong."""
    folder = path if path.is_dir() else path.parent
    for card_file in (folder / CARD_FILE, folder.parent / CARD_FILE):
        card = read_card(card_file)
        if card is not None:
            return card, card_file
    return None


def _class_names(path: Path, num_classes: int, card: dict | None, beside):
    """``(names, where they came from)``; ``(indices, None)`` when nothing names them."""
    if card and len(card.get("classes", [])) == num_classes:
        return card["classes"], "the file's model card"
    folder = path if path.is_dir() else path.parent
    for candidate in (folder / LABELS_FILE, folder.parent / LABELS_FILE):
        if candidate.exists():
            names = candidate.read_text().splitlines()
            if len(names) == num_classes:
                return names, str(candidate)
    if beside and len(names := beside[0].get("classes", [])) == num_classes:
        return names, str(beside[1])
    return [str(i) for i in range(num_classes)], None


def _resize_mode(card: dict | None) -> str:
    from tfclf.data.sources import RESIZE_NOTES

    resize = (card or {}).get("input", {}).get("resize", {})
    mode = resize.get("mode") if isinstance(resize, dict) else None
    return mode if mode in RESIZE_NOTES else "squash"


def load_keras_model(path: Path):
    """The model in a ``.keras`` file, uncompiled; an unreadable file (truncated, not a
    Keras archive) is a ``ModelFileError`` naming it."""
    from tfclf.keras import keras

    try:
        return keras.models.load_model(path, compile=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"{path}: cannot load this .keras file ({first})") from None


class Classifier:
    """``logits(pixels)`` for uint8/float NHWC raw pixels at ``input_shape``."""

    path: Path
    kind: str
    input_shape: tuple[int, int, int]
    class_names: list[str]
    names_from: str | None  # the card, labels.txt or model_card.json; None: class indices
    resize: str  # how images meet input_shape (tfclf.data.sources.RESIZE_NOTES)

    def _describe(self, path: Path, num_classes: int, card: dict | None = None) -> None:
        """Sets the class names and the resize mode from ``card`` (the file's own) or the
        files beside it."""
        beside = _card_beside(path)
        self.path = path
        self.class_names, self.names_from = _class_names(path, num_classes, card, beside)
        if card is None and beside:
            card = beside[0]
        self.resize = _resize_mode(card)

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class TFLiteClassifier(Classifier):
    kind = "tflite"

    def __init__(self, path: Path):
        from tfclf.export import litert  # LiteRT alone: no TensorFlow

        try:
            self.interp = litert.interpreter(path)
        except litert.TFLiteFileError as e:
            raise ModelFileError(str(e)) from None
        detail = self.interp.get_input_details()[0]
        self.input_shape = tuple(int(d) for d in detail["shape"][1:])
        out = self.interp.get_output_details()[0]["shape"]
        card = litert.read_card(path)
        self._describe(path, int(out[-1]), card)
        # a file made with --probabilities ends in a softmax: its card's output.values
        # (deploy.OUTPUT_NOTES; not imported here: deploy.py imports TensorFlow)
        self.outputs = ((card or {}).get("output") or {}).get("values", "logits")

    def logits(self, pixels):
        """The file's logits; for a file that outputs probabilities, their logarithms
        (logits of the same softmax, the same top-1), a zero as log(1e-12)."""
        from tfclf.export import litert

        out = litert.predict(self.interp, pixels)
        return np.log(np.maximum(out, 1e-12)) if self.outputs == "probabilities" else out


class SavedModelClassifier(Classifier):
    kind = "saved_model"

    def __init__(self, path: Path):
        import tensorflow as tf

        try:
            self.fn = tf.saved_model.load(str(path)).signatures["serving_default"]
        except (OSError, KeyError, ValueError) as e:
            raise ModelFileError(f"{path}: not an inference SavedModel ({e})") from None
        spec = list(self.fn.structured_input_signature[1].values())[0]
        self.input_name = list(self.fn.structured_input_signature[1])[0]
        self.input_shape = tuple(int(d) for d in spec.shape[1:])
        out = list(self.fn.structured_outputs.values())[0]
        self._describe(path, int(out.shape[-1]))

    def logits(self, pixels):
        import tensorflow as tf

        out = []
        for i in range(0, len(pixels), 256):
            x = tf.constant(pixels[i : i + 256], tf.float32)
            out.append(list(self.fn(**{self.input_name: x}).values())[0].numpy())
        return np.concatenate(out)


class KerasClassifier(Classifier):
    kind = "keras"

    def __init__(self, path: Path):
        from tfclf.export.deploy import trained_part

        self.model = load_keras_model(path)
        if trained_part(self.model) is self.model:
            raise ModelFileError(
                f"{path} takes normalised images (exported before raw-pixel models): "
                "re-export it by rerunning its training command"
            )
        self.input_shape = tuple(int(d) for d in self.model.input_shape[1:])
        self._describe(path, int(self.model.output_shape[-1]))

    def logits(self, pixels):
        from tfclf.data.pipeline import array_batches

        return self.model.predict(array_batches(pixels), verbose=0)


def load_classifier(path: str | Path) -> Classifier:
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    if path.is_dir() and (path / SAVED_MODEL / "saved_model.pb").exists():
        path = path / SAVED_MODEL  # a best_model/ directory
    if path.is_dir() and (path / "saved_model.pb").exists():
        return SavedModelClassifier(path)
    if path.suffix == ".tflite":
        return TFLiteClassifier(path)
    if path.suffix == ".keras":
        return KerasClassifier(path)
    raise ModelFileError(f"{path}: not a .tflite file, a .keras file or a SavedModel directory")
