"""Atomic writes: a kill or a full disk never leaves a half-written file or directory in
place of a good one (write beside the target, then rename over it)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def naming(path: Path):
    """An ``OSError`` raised inside (a full disk, say) names ``path`` if it named no file."""
    try:
        yield
    except OSError as e:
        if e.filename:
            raise
        raise OSError(e.errno, e.strerror or str(e), str(path)) from e


def atomic_write_bytes(data: bytes, path: Path) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with naming(path):
            tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(text: str, path: Path) -> None:
    atomic_write_bytes(text.encode(), path)


def atomic_write_json(obj, path: Path) -> None:
    atomic_write_text(json.dumps(obj, indent=2, default=float), path)


def atomic_save_weights(model, path: Path) -> None:
    """``model.save_weights`` beside ``path``, then renamed over it. The free space is
    checked first: h5py crashes the process (segfault on closing the file) when the disk
    fills during the write, rather than raising."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.weights.h5")
    needed = sum(int(np.prod(w.shape)) * w.dtype.size for w in model.weights) + (256 << 10)
    free = shutil.disk_usage(path.parent).free
    if free < needed:
        raise OSError(
            errno.ENOSPC,
            f"No space left on device ({free >> 10} KB free, about {needed >> 10} KB needed)",
            str(path),
        )
    try:
        with naming(path):
            model.save_weights(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(out: Path):
    """Yields an empty scratch directory that replaces ``out`` only if the block succeeds;
    on any error ``out`` is left as it was and the scratch directory is removed."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with naming(out):
            yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
