"""Images from paths for prediction: single files, plain folders, folders of class
subfolders or CSV lists with a label column (labelled, so accuracy can be computed).
Decoding is the training loader's (``tfclf.data.sources.decode_image``): unreadable files
are skipped with the reason.
``classify`` runs a model over them in chunks of bounded memory; ``predictions_csv``
tabulates the result."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tfclf.data.sources import (
    GRAY_MODES,
    IMAGE_EXTENSIONS,
    LABEL_COLUMNS,
    DataError,
    decode_image,
    image_column,
    is_hidden,
    read_image_table,
    resolve_listed,
)
from tfclf.errors import UsageError


class ImageError(UsageError):
    """An input that cannot be classified (the message names the file or folder)."""


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not is_hidden(p.name))


def csv_items(
    path: Path, class_names: list[str], image_dir: Path | None = None
) -> list[tuple[Path, int | None]]:
    """(path, label or None) for every image a CSV file lists, read as training's ``csv:``
    source reads it: the image column is the first naming a file in ``image_dir`` (default
    the CSV's folder). The rows are labelled by a column named label, class, category or
    target, or else by the one other column when each of its values is a class of the
    model; a file listed but missing is kept, to be skipped and named when decoded."""
    try:
        folder, header, rows = read_image_table(path, image_dir)
        image_col = image_column(path, folder, rows)
    except DataError as e:
        raise ImageError(str(e)) from None
    others = [c for c in range(len(header)) if c != image_col]
    named = [c for c in others if header[c].lower() in LABEL_COLUMNS]
    label_col = named[0] if named else others[0] if len(others) == 1 else None
    labels = [r[label_col].strip() if label_col is not None else "" for r in rows]
    unknown = sorted({v for v in labels if v and v not in class_names})
    if unknown and named:
        raise ImageError(
            f"{path}: column {header[label_col]!r} holds {', '.join(unknown[:5])}, not classes "
            f"of the model ({', '.join(class_names)})"
        )
    if unknown:  # the one other column holds something else: not labels
        labels = [""] * len(rows)
    return [
        (
            resolve_listed(folder, r[image_col]) or folder / r[image_col].strip(),
            class_names.index(label) if label else None,
        )
        for r, label in zip(rows, labels)
    ]


def collect_images(
    inputs: list[Path], class_names: list[str], image_dir: Path | None = None
) -> list[tuple[Path, int | None]]:
    """(path, label or None) for every file: a folder whose subfolders are named after the
    model's classes is labelled by them; any other folder is a list of images; a ``.csv``
    file lists images (``csv_items``; ``image_dir`` their folder)."""
    items = []
    for path in inputs:
        if not path.exists():
            raise ImageError(f"{path}: no such file or folder")
        if path.is_file() and path.suffix.lower() == ".csv":
            items += csv_items(path, class_names, image_dir)
            continue
        if path.is_file():
            items.append((path, None))
            continue
        subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not is_hidden(p.name))
        if subdirs:
            unknown = [d.name for d in subdirs if d.name not in class_names]
            if unknown:
                raise ImageError(
                    f"{path}: subfolder(s) {', '.join(unknown)} are not classes of the model "
                    f"({', '.join(class_names)})"
                )
            for d in subdirs:
                items += [(p, class_names.index(d.name)) for p in _images_in(d)]
        else:
            items += [(p, None) for p in _images_in(path)]
    return items


def image_channels(path: Path) -> int | None:
    """1 for grayscale files, 3 for colour ones (RGBA and palette count as colour), None
    when the file cannot be opened."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return 1 if im.mode in GRAY_MODES else 3
    except Exception:
        return None


def load_images(
    items: list[tuple[Path, int | None]],
    input_shape: tuple[int, int, int],
    *,
    convert_channels: bool = False,
    resize: str = "squash",
) -> tuple[np.ndarray, list, list]:
    """uint8 NHWC pixels brought to ``input_shape`` by ``resize``, the (path, label) kept,
    and the (path, reason) skipped. A grayscale file for a colour model is widened, as
    training widens a folder's grayscale files among colour ones; a colour file for a
    grayscale model (often the wrong model) needs ``convert_channels``."""
    h, w, c = input_shape
    pixels, kept, skipped = [], [], []
    for path, label in items:
        if not path.is_file():  # listed in a CSV
            skipped.append((path, "no such file"))
            continue
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            skipped.append((path, f"not an image extension ({', '.join(IMAGE_EXTENSIONS)})"))
            continue
        have = image_channels(path)
        if have is not None and have > c and not convert_channels:
            raise ImageError(
                f"{path} has {have} channel(s) but the model takes {c}: pass "
                "--convert_channels to convert it"
            )
        image, problem = decode_image(path, c, (h, w), resize)
        if problem:
            skipped.append((path, problem))
            continue
        pixels.append(image)
        kept.append((path, label))
    return (np.stack(pixels) if pixels else np.zeros((0, h, w, c), np.uint8)), kept, skipped


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def classify(
    clf,
    items: list[tuple[Path, int | None]],
    convert_channels: bool = False,
    chunk: int = 512,
    log: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, list, list]:
    """Class probabilities for ``items`` ((path, label) pairs), decoded (resized as the model
    was trained, ``clf.resize``) and run ``chunk`` at a time so memory stays bounded
    (``log`` gets a progress line every 10 s); returns (probabilities, kept items, skipped
    (path, reason))."""
    probs, kept, skipped, last = [], [], [], time.monotonic()
    for start in range(0, len(items), chunk):
        pixels, k, s = load_images(
            items[start : start + chunk],
            clf.input_shape,
            convert_channels=convert_channels,
            resize=clf.resize,
        )
        if k:
            probs.append(softmax(clf.logits(pixels)))
        kept.extend(k)
        skipped.extend(s)
        if log and time.monotonic() - last > 10:
            log(f"classified {min(start + chunk, len(items))} of {len(items)} images")
            last = time.monotonic()
    return (np.concatenate(probs) if probs else np.zeros((0, 0))), kept, skipped


def predictions_csv(kept: list, probs: np.ndarray, class_names: list[str]) -> str:
    """One row per image: path, true label (empty when unknown), predicted class, its
    probability, then every class's probability."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["path", "label", "prediction", "probability", *class_names])
    for (path, label), p in zip(kept, probs):
        top = int(p.argmax())
        writer.writerow(
            [
                str(path),
                "" if label is None else class_names[label],
                class_names[top],
                f"{p[top]:.6f}",
                *(f"{v:.6f}" for v in p),
            ]
        )
    return out.getvalue()
