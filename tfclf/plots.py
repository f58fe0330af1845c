"""Figures a person would rather see than read: image grids, curves, confusion matrices.

Drawn with matplotlib's object-oriented API (``Figure``, no ``pyplot``): no backend is
chosen and no global figure state is kept, so importing tfclf leaves a notebook's inline
plots as they were, and nothing needs closing.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def figure(rows: int = 1, cols: int = 1, *, figsize=None, squeeze: bool = True):
    """(figure, axes) as ``pyplot.subplots`` gives them, without pyplot."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, cols, squeeze=squeeze)


def save_figure(fig, path, dpi: int = 100):
    """Writes ``fig`` as a PNG beside ``path`` and renames it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    tmp.replace(path)
    return path


def image_grid(images: np.ndarray, titles: list[str], path, *, cols: int = 8, title: str = ""):
    """Saves images (N, H, W, C) in [0, 1] as a grid with a title over each."""
    n = len(images)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = figure(rows, cols, figsize=(1.6 * cols, 1.8 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, t in zip(axes.ravel(), images, titles):
        img = np.clip(img, 0, 1)
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
        ax.set_title(t, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def label_titles(labels: np.ndarray, class_names: list[str]) -> list[str]:
    """'cat' for a hard label, 'cat .62/dog .38' for a mixed one (MixUp/CutMix)."""
    titles = []
    for y in labels:
        top = np.argsort(y)[::-1][:2]
        if y[top[1]] > 1e-3:
            titles.append(
                f"{class_names[top[0]]} {y[top[0]]:.2f}/{class_names[top[1]]} {y[top[1]]:.2f}"
            )
        else:
            titles.append(class_names[top[0]])
    return titles
