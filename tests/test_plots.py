"""The figures' building blocks: an image grid shows every image, each at one size."""

import numpy as np
from PIL import Image

from tfclf.plots import image_grid


def test_image_grid_draws_every_image_as_an_equal_square_tile(tmp_path):
    levels = [0.2, 0.35, 0.5, 0.65, 0.8]  # five flat gray images, one level each
    images = np.stack([np.full((12, 12, 1), v, np.float32) for v in levels])
    path = image_grid(images, [f"image {i}" for i in range(5)], tmp_path / "g.png", cols=3)
    with Image.open(path) as png:
        gray = np.asarray(png.convert("L"), np.int32)
    boxes = []  # (top, left, height, width) of each image's tile
    for v in levels:
        mask = np.abs(gray - round(v * 255)) <= 2  # its flat gray; text edges are sparse
        ys = np.flatnonzero(mask.sum(1) >= mask.sum(1).max() // 2)
        xs = np.flatnonzero(mask.sum(0) >= mask.sum(0).max() // 2)
        assert len(ys) and len(xs), v
        boxes.append((ys[0], xs[0], ys[-1] - ys[0] + 1, xs[-1] - xs[0] + 1))
    top, left, height, width = np.array(boxes).T
    assert height.min() > 20 and abs(height - width).max() <= 2, boxes  # square, not squeezed
    assert np.ptp(height) <= 2, boxes  # every tile the same size
    # two rows of three: images 0, 1, 2 share a row, 0 and 3 a column
    assert np.ptp(top[:3]) <= 1 and top[3] > top[0] + height[0] and abs(left[3] - left[0]) <= 1
