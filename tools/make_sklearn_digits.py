"""Scikit-learn's handwritten digits (1,797 8x8 images of 0-16, scanned from 43 writers
for UCI, shipped inside the scikit-learn package) as an ``.npz`` for ``--source=npz:``: a
small new task for transfer-learning experiments, different from MNIST in writers, scanner
and resolution.

    python tools/make_sklearn_digits.py --per_class=48 --out=data/sk_digits48.npz

Each image is scaled to 0-255 and resized to ``--size`` (28) by bilinear interpolation;
``--per_class`` images a class (drawn with ``--seed``) are the training split, every other
image the test split (``x_test``, ``y_test``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from absl import flags

from tfclf import cli

flags.DEFINE_integer("per_class", 48, "Training images a class (the rest are the test split).")
flags.DEFINE_integer("size", 28, "Output height and width.")
flags.DEFINE_integer("seed", 0, "Which images train.")
flags.DEFINE_string("out", "data/sk_digits.npz", "The .npz file to write.")
FLAGS = flags.FLAGS


def sklearn_digits(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, size, size, 1), labels) of scikit-learn's digits."""
    import tensorflow as tf
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images[..., None] * (255.0 / 16.0)).astype("float32")
    resized = tf.image.resize(images, (size, size), method="bilinear").numpy()
    return np.clip(np.round(resized), 0, 255).astype("uint8"), digits.target.astype("int64")


def main(argv):
    cli.check_tool_flags(positive=("per_class", "size"))
    x, y = sklearn_digits(FLAGS.size)
    rng = np.random.default_rng(FLAGS.seed)
    train = np.concatenate(
        [rng.permutation(np.flatnonzero(y == c))[: FLAGS.per_class] for c in range(10)]
    )
    if min(np.bincount(y[train])) < FLAGS.per_class:
        raise cli.UsageError(f"--per_class={FLAGS.per_class}: a class has fewer images")
    test = np.setdiff1d(np.arange(len(y)), train)
    out = Path(FLAGS.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, x=x[train], y=y[train], x_test=x[test], y_test=y[test])
    print(f"wrote {out}: {len(train)} training and {len(test)} test images, {FLAGS.size} px")
    return 0


if __name__ == "__main__":
    cli.run(main)
