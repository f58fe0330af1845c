"""Batched, on-device augmentations composed from one string (after big_vision's ``pp``).

``random_crop(pad=4)|flip_lr|rotate(15)|affine(10, 0.1, (0.9, 1.1), 5)|elastic(34, 4)``
``|color_jitter(0.4,0.4,0.4,0.1)|grayscale(0.2)|cutout(16)|mixup(p=0.5, alpha=0.2)``
``|cutmix(p=0.5, alpha=1.0)``

Each op works on a whole batch at once with vectorised TensorFlow ops: images float32 in
[0, 1], NHWC; labels one-hot or soft, (B, classes). Ops that only move or select pixels
(crop, flip, cutout, CutMix) are registered ``uint8=True`` and run on the uint8 batch before
the one conversion to float: the pipeline is memory-bound and uint8 is 4x less memory.
Randomness is stateless and derived from a per-batch seed, so a pipeline is deterministic
given its seed and safe in a parallel map. Geometric ops use one projective-transform kernel
with a per-image matrix (as Keras' preprocessing layers do). Adding an augmentation means
adding one decorated function here.

CutMix: Yun et al. 2019 (report 002: p=0.5, Beta(1, 1)); MixUp: Zhang et al. 2018;
Cutout: DeVries & Taylor 2017; elastic distortion: Simard et al. 2003.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable

import tensorflow as tf

from tfclf.data.sources import GRAY_WEIGHTS

AugmentOp = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]
_AUGMENTATIONS: dict[str, Callable[..., AugmentOp]] = {}
_UINT8_OK: set[str] = set()


def register_augmentation(fn=None, *, uint8: bool = False):
    """Registers a factory ``fn(*args) -> op(images, labels, seed)`` under its name;
    ``uint8=True`` if the op is exact on uint8 images as well as on float ones."""

    def register(fn):
        _AUGMENTATIONS[fn.__name__] = fn
        if uint8:
            _UINT8_OK.add(fn.__name__)
        return fn

    return register(fn) if fn is not None else register


def list_augmentations() -> list[str]:
    return sorted(_AUGMENTATIONS)


def parse_augment(spec: str | None) -> list[tuple[str, AugmentOp, bool]]:
    """Parses ``"op1(args)|op2|..."`` into ops; a bad op or argument names itself."""
    ops = []
    for part in (spec or "").split("|"):
        part = part.strip()
        if not part:
            continue
        try:
            node = ast.parse(part, mode="eval").body
            if isinstance(node, ast.Name):
                name, args, kwargs = node.id, [], {}
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                name = node.func.id
                args = [ast.literal_eval(a) for a in node.args]
                kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
            else:
                raise ValueError
        except (SyntaxError, ValueError):
            raise ValueError(
                f"cannot parse augmentation {part!r}; write name or name(arg, key=value)"
            ) from None
        if name not in _AUGMENTATIONS:
            raise ValueError(
                f"unknown augmentation {name!r}; known: {', '.join(list_augmentations())}"
            )
        try:
            ops.append((part, _AUGMENTATIONS[name](*args, **kwargs), name in _UINT8_OK))
        except (TypeError, ValueError) as e:
            raise ValueError(f"bad arguments in augmentation {part!r}: {e}") from None
    return ops


def to_float(images):
    return tf.cast(images, tf.float32) / 255.0 if images.dtype == tf.uint8 else images


def apply_augment(ops, images, labels, seed):
    """Applies parsed ``ops`` in order, each with its own seed split from ``seed``.

    ``images`` may be uint8 (0..255) or float (0..1); the result is float32 in [0, 1].
    """
    if ops:
        seeds = tf.random.experimental.stateless_split(seed, num=len(ops))
        for i, (_, op, uint8_ok) in enumerate(ops):
            if not uint8_ok:
                images = to_float(images)
            images, labels = op(images, labels, seeds[i])
    return to_float(images), labels


# ----------------------------------------------------------------------------- helpers


def _seeds(seed, n):
    return tf.unstack(tf.random.experimental.stateless_split(seed, num=n))


def _uniform(seed, shape, lo=0.0, hi=1.0):
    return tf.random.stateless_uniform(shape, seed, minval=lo, maxval=hi)


def _bernoulli(seed, batch, p):
    return _uniform(seed, [batch]) < p


def _where_images(mask, a, b):
    return tf.where(mask[:, None, None, None], a, b)


def _transform(images, transforms, interpolation="BILINEAR"):
    """Per-image projective transform; ``transforms`` (B, 8) maps output to input coords."""
    shape = tf.shape(images)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=tf.cast(transforms, tf.float32),
        output_shape=shape[1:3],
        fill_value=0.0,
        interpolation=interpolation,
        fill_mode="CONSTANT",
    )


def _gray(images):
    if images.shape[-1] == 1:
        return images
    return tf.reduce_sum(images * tf.constant(GRAY_WEIGHTS), -1, keepdims=True)


def _check_prob(name, p):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}: probability must be in [0, 1], got {p}")


def _beta(seed, shape, alpha):
    s1, s2 = _seeds(seed, 2)
    g1 = tf.random.stateless_gamma(shape, s1, alpha=alpha)
    g2 = tf.random.stateless_gamma(shape, s2, alpha=alpha)
    return g1 / (g1 + g2)


# ----------------------------------------------------------------------------- ops


@register_augmentation(uint8=True)
def random_crop(pad: int = 4):
    """Zero-pad by ``pad`` pixels and crop back at a random offset (integer translation)."""
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")

    def op(images, labels, seed):
        b = tf.shape(images)[0]
        d = tf.random.stateless_uniform([b, 2], seed, -pad, pad + 1, dtype=tf.int32)
        d = tf.cast(d, tf.float32)
        one, zero = tf.ones([b]), tf.zeros([b])
        t = tf.stack([one, zero, d[:, 0], zero, one, d[:, 1], zero, zero], axis=1)
        return _transform(images, t, "NEAREST"), labels

    return op


@register_augmentation
def random_resized_crop(scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """Crop a random area fraction and aspect ratio, resize back to the input size."""
    lo, hi = scale
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
    log_r = (math.log(ratio[0]), math.log(ratio[1]))

    def op(images, labels, seed):
        b = tf.shape(images)[0]
        s = _seeds(seed, 4)
        area = _uniform(s[0], [b], lo, hi)
        r = tf.exp(_uniform(s[1], [b], *log_r))
        fw = tf.minimum(tf.sqrt(area * r), 1.0)  # crop size as a fraction of the image
        fh = tf.minimum(tf.sqrt(area / r), 1.0)
        h = tf.cast(tf.shape(images)[1], tf.float32)
        w = tf.cast(tf.shape(images)[2], tf.float32)
        x0 = _uniform(s[2], [b]) * (1 - fw) * w
        y0 = _uniform(s[3], [b]) * (1 - fh) * h
        zero = tf.zeros([b])
        t = tf.stack([fw, zero, x0, zero, fh, y0, zero, zero], axis=1)
        return _transform(images, t), labels

    return op


@register_augmentation(uint8=True)
def flip_lr(p: float = 0.5):
    """Horizontal flip with probability ``p``."""
    _check_prob("flip_lr", p)

    def op(images, labels, seed):
        mask = _bernoulli(seed, tf.shape(images)[0], p)
        return _where_images(mask, tf.reverse(images, axis=[2]), images), labels

    return op


def _affine_transforms(images, theta, shear_t=0.0, zoom=1.0, tx=0.0, ty=0.0):
    """(B, 8) output-to-input maps: the inverse of zoom * rotation(theta) * x-shear(shear_t)
    about the image centre, so that the output point centre + (tx, ty) samples the input
    centre. Arguments are per-image (B,) tensors or scalars."""
    h = tf.cast(tf.shape(images)[1], tf.float32)
    w = tf.cast(tf.shape(images)[2], tf.float32)
    c, sn = tf.cos(theta), tf.sin(theta)
    a0, a1 = (c + shear_t * sn) / zoom, (sn - shear_t * c) / zoom
    b0, b1 = -sn / zoom, c / zoom
    cx, cy = (w - 1) / 2, (h - 1) / 2
    px, py = cx + tx, cy + ty
    a2, b2 = cx - (a0 * px + a1 * py), cy - (b0 * px + b1 * py)
    zero = tf.zeros_like(theta)
    return tf.stack([a0, a1, a2, b0, b1, b2, zero, zero], 1)


@register_augmentation
def rotate(degrees: float = 15.0):
    """Rotation by an angle uniform in [-degrees, degrees] about the centre, zero fill."""

    def op(images, labels, seed):
        theta = _uniform(seed, [tf.shape(images)[0]], -degrees, degrees) * (math.pi / 180)
        return _transform(images, _affine_transforms(images, -theta)), labels

    return op


@register_augmentation
def affine(degrees: float = 10.0, translate: float = 0.1, scale=(0.9, 1.1), shear: float = 0.0):
    """One random affine map per image about its centre, as torchvision's ``RandomAffine``:
    rotation and x-shear uniform in [-degrees, degrees] and [-shear, shear], zoom factor
    uniform in ``scale``, shift uniform in [-translate, translate] of the size; one bilinear
    resampling, zero fill. The classic augmentation for digits and other centred objects."""
    lo, hi = scale
    if not 0 < lo <= hi:
        raise ValueError(f"scale must satisfy 0 < min <= max, got {scale}")
    if not 0 <= translate < 1:
        raise ValueError(f"translate is a fraction of the size in [0, 1), got {translate}")

    def op(images, labels, seed):
        b = tf.shape(images)[0]
        s = _seeds(seed, 5)
        theta = _uniform(s[0], [b], -degrees, degrees) * (math.pi / 180)
        shear_t = tf.tan(_uniform(s[1], [b], -shear, shear) * (math.pi / 180))
        zoom = _uniform(s[2], [b], lo, hi)
        h = tf.cast(tf.shape(images)[1], tf.float32)
        w = tf.cast(tf.shape(images)[2], tf.float32)
        tx = _uniform(s[3], [b], -translate, translate) * w
        ty = _uniform(s[4], [b], -translate, translate) * h
        t = _affine_transforms(images, theta, shear_t, zoom, tx, ty)
        return _transform(images, t), labels

    return op


def _gaussian_blur(x, sigma: float):
    """Separable Gaussian blur of every channel of ``x`` (B, H, W, C), zero padding."""
    radius = max(1, int(round(3 * sigma)))
    t = tf.range(-radius, radius + 1, dtype=tf.float32)
    k = tf.exp(-0.5 * (t / sigma) ** 2)
    k = k / tf.reduce_sum(k)
    c = x.shape[-1]
    x = tf.nn.depthwise_conv2d(
        x, tf.tile(k[:, None, None, None], [1, 1, c, 1]), [1, 1, 1, 1], "SAME"
    )
    return tf.nn.depthwise_conv2d(
        x, tf.tile(k[None, :, None, None], [1, 1, c, 1]), [1, 1, 1, 1], "SAME"
    )


def _sample_bilinear(images, ys, xs):
    """``images`` (B, H, W, C) read at float coordinates ``ys``, ``xs`` (B, H, W); zero
    outside the image."""
    shape = tf.shape(images)
    h, w = shape[1], shape[2]
    y_max, x_max = tf.cast(h - 1, tf.float32), tf.cast(w - 1, tf.float32)
    flat = tf.reshape(images, [-1, shape[3]])
    base = (tf.range(shape[0]) * h * w)[:, None, None]
    out = 0.0
    for yi in (tf.floor(ys), tf.floor(ys) + 1):
        for xi in (tf.floor(xs), tf.floor(xs) + 1):
            weight = (1 - tf.abs(ys - yi)) * (1 - tf.abs(xs - xi))
            inside = (yi >= 0) & (yi <= y_max) & (xi >= 0) & (xi <= x_max)
            idx = (
                base
                + tf.cast(tf.clip_by_value(yi, 0.0, y_max), tf.int32) * w
                + tf.cast(tf.clip_by_value(xi, 0.0, x_max), tf.int32)
            )
            out += tf.gather(flat, idx) * tf.where(inside, weight, 0.0)[..., None]
    return out


@register_augmentation
def elastic(alpha: float = 34.0, sigma: float = 4.0, p: float = 1.0):
    """Elastic distortion (Simard et al. 2003, their MNIST setting: alpha 34, sigma 4): a
    per-pixel random displacement field, uniform in [-1, 1], blurred by a Gaussian of
    ``sigma`` pixels and scaled by ``alpha`` pixels; bilinear resampling, zero fill."""
    _check_prob("elastic", p)
    if sigma <= 0 or alpha < 0:
        raise ValueError(f"elastic needs sigma > 0 and alpha >= 0, got {sigma} and {alpha}")

    def op(images, labels, seed):
        shape = tf.shape(images)
        s = _seeds(seed, 2)
        field = (
            _gaussian_blur(_uniform(s[0], [shape[0], shape[1], shape[2], 2], -1.0, 1.0), sigma)
            * alpha
        )
        field *= tf.cast(_bernoulli(s[1], shape[0], p), tf.float32)[:, None, None, None]
        grid_y, grid_x = tf.meshgrid(
            tf.range(shape[1], dtype=tf.float32),
            tf.range(shape[2], dtype=tf.float32),
            indexing="ij",
        )
        return _sample_bilinear(images, grid_y + field[..., 0], grid_x + field[..., 1]), labels

    return op


@register_augmentation
def color_jitter(
    brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.1
):
    """Brightness, contrast, saturation factors uniform in [1 - v, 1 + v]; hue shift in
    [-hue, hue] turns (torchvision's ColorJitter); saturation and hue need RGB."""
    if not 0 <= hue <= 0.5:
        raise ValueError(f"hue must be in [0, 0.5], got {hue}")

    def factor(seed, b, v):
        return _uniform(seed, [b], 1 - v, 1 + v)[:, None, None, None]

    def op(images, labels, seed):
        b = tf.shape(images)[0]
        s = _seeds(seed, 4)
        x = images * factor(s[0], b, brightness)
        mean = tf.reduce_mean(_gray(x), axis=[1, 2, 3], keepdims=True)
        x = (x - mean) * factor(s[1], b, contrast) + mean
        if images.shape[-1] == 3:
            g = _gray(x)
            x = tf.clip_by_value((x - g) * factor(s[2], b, saturation) + g, 0.0, 1.0)
            if hue:
                hsv = tf.image.rgb_to_hsv(x)
                shift = _uniform(s[3], [b], -hue, hue)[:, None, None]
                hsv = tf.stack(
                    [tf.math.floormod(hsv[..., 0] + shift, 1.0), hsv[..., 1], hsv[..., 2]], axis=-1
                )
                x = tf.image.hsv_to_rgb(hsv)
        return tf.clip_by_value(x, 0.0, 1.0), labels

    return op


@register_augmentation
def grayscale(p: float = 0.2):
    """Replace an RGB image by its luminance (kept as 3 channels) with probability ``p``."""
    _check_prob("grayscale", p)

    def op(images, labels, seed):
        if images.shape[-1] != 3:
            return images, labels
        mask = _bernoulli(seed, tf.shape(images)[0], p)
        g = tf.broadcast_to(_gray(images), tf.shape(images))
        return _where_images(mask, g, images), labels

    return op


def _box_mask(seed, shape, size_h, size_w):
    """(B, H, W, 1) float mask, 1 inside a box of per-image size centred uniformly."""
    b, h, w = shape[0], shape[1], shape[2]
    s = _seeds(seed, 2)
    cy = _uniform(s[0], [b]) * tf.cast(h, tf.float32)
    cx = _uniform(s[1], [b]) * tf.cast(w, tf.float32)
    y1 = tf.clip_by_value(tf.round(cy - size_h / 2), 0, tf.cast(h, tf.float32))
    y2 = tf.clip_by_value(tf.round(cy + size_h / 2), 0, tf.cast(h, tf.float32))
    x1 = tf.clip_by_value(tf.round(cx - size_w / 2), 0, tf.cast(w, tf.float32))
    x2 = tf.clip_by_value(tf.round(cx + size_w / 2), 0, tf.cast(w, tf.float32))
    ys = tf.range(tf.cast(h, tf.float32))[None, :, None]
    xs = tf.range(tf.cast(w, tf.float32))[None, None, :]
    inside = (
        (ys >= y1[:, None, None])
        & (ys < y2[:, None, None])
        & (xs >= x1[:, None, None])
        & (xs < x2[:, None, None])
    )
    return tf.cast(inside, tf.float32)[..., None]


@register_augmentation(uint8=True)
def cutout(size: int = 16, p: float = 1.0):
    """Zero a ``size`` x ``size`` square at a uniform centre (clipped at the border)."""
    _check_prob("cutout", p)

    def op(images, labels, seed):
        s = _seeds(seed, 2)
        b = tf.shape(images)[0]
        sz = tf.where(_bernoulli(s[0], b, p), float(size), 0.0)
        mask = _box_mask(s[1], tf.shape(images), sz, sz)
        return tf.where(mask > 0, tf.zeros_like(images), images), labels

    return op


def _mix_partner(seed, images, labels):
    perm = tf.random.experimental.stateless_shuffle(tf.range(tf.shape(images)[0]), seed)
    return tf.gather(images, perm), tf.gather(labels, perm)


@register_augmentation
def mixup(p: float = 1.0, alpha: float = 0.2):
    """MixUp per sample with probability ``p``: lam ~ Beta(alpha, alpha) blends each image and
    its label with a random partner from the batch."""
    _check_prob("mixup", p)

    def op(images, labels, seed):
        s = _seeds(seed, 3)
        b = tf.shape(images)[0]
        lam = tf.where(_bernoulli(s[0], b, p), _beta(s[1], [b], alpha), 1.0)
        x2, y2 = _mix_partner(s[2], images, labels)
        lx = lam[:, None, None, None]
        return lx * images + (1 - lx) * x2, lam[:, None] * labels + (1 - lam[:, None]) * y2

    return op


@register_augmentation(uint8=True)
def cutmix(p: float = 0.5, alpha: float = 1.0):
    """CutMix per sample with probability ``p``: a box of area ~ (1 - lam), lam ~ Beta(alpha,
    alpha), is pasted from a random partner; labels are mixed by the box's actual area."""
    _check_prob("cutmix", p)

    def op(images, labels, seed):
        s = _seeds(seed, 4)
        shape = tf.shape(images)
        b = shape[0]
        lam = tf.where(_bernoulli(s[0], b, p), _beta(s[1], [b], alpha), 1.0)
        cut = tf.sqrt(1.0 - lam)
        mask = _box_mask(
            s[2], shape, cut * tf.cast(shape[1], tf.float32), cut * tf.cast(shape[2], tf.float32)
        )
        x2, y2 = _mix_partner(s[3], images, labels)
        area = tf.reduce_mean(mask, axis=[1, 2, 3])[:, None]
        return tf.where(mask > 0, x2, images), (1 - area) * labels + area * y2

    return op
