"""Every registered augmentation, eagerly and inside tf.data, with real assertions."""

import numpy as np
import pytest
import tensorflow as tf

from tfclf.data import apply_augment, list_augmentations, parse_augment

B, H, W, K = 8, 24, 20, 5
SEED = tf.constant([3, 4], tf.int64)


def _batch(channels=3):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(B, H, W, channels)).astype("float32")
    y = tf.one_hot(np.arange(B) % K, K)
    return tf.constant(x), y


def _run(spec, x, y, in_tf_data):
    ops = parse_augment(spec)
    if not in_tf_data:
        return apply_augment(ops, x, y, SEED)
    ds = tf.data.Dataset.from_tensors((x, y)).map(lambda a, b: apply_augment(ops, a, b, SEED))
    return next(iter(ds))


@pytest.mark.parametrize("in_tf_data", [False, True], ids=["eager", "tf.data"])
@pytest.mark.parametrize("name", list_augmentations())
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_dtype_range_and_label_mass(name, channels, in_tf_data):
    x, y = _batch(channels)
    x2, y2 = _run(name, x, y, in_tf_data)
    assert x2.shape == x.shape and x2.dtype == tf.float32
    assert float(tf.reduce_min(x2)) >= -1e-6 and float(tf.reduce_max(x2)) <= 1 + 1e-6
    np.testing.assert_allclose(tf.reduce_sum(y2, -1).numpy(), np.ones(B), atol=1e-5)
    assert float(tf.reduce_min(y2)) >= 0


@pytest.mark.parametrize("name", list_augmentations())
def test_eager_and_tf_data_agree_and_are_deterministic(name):
    x, y = _batch()
    a = _run(name, x, y, False)
    b = _run(name, x, y, True)
    c = _run(name, x, y, False)
    np.testing.assert_allclose(a[0].numpy(), b[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(a[0].numpy(), c[0].numpy())
    np.testing.assert_allclose(a[1].numpy(), c[1].numpy())


@pytest.mark.parametrize(
    "name",
    [
        "random_crop",
        "random_resized_crop",
        "flip_lr",
        "rotate",
        "affine",
        "elastic",
        "color_jitter",
        "grayscale",
        "cutout",
        "mixup",
        "cutmix",
    ],
)
def test_each_op_changes_something(name):
    x, y = _batch()
    spec = {
        "flip_lr": "flip_lr(1.0)",
        "grayscale": "grayscale(1.0)",
        "mixup": "mixup(1.0)",
        "cutmix": "cutmix(1.0)",
    }.get(name, name)
    x2, y2 = _run(spec, x, y, False)
    assert not np.allclose(x2.numpy(), x.numpy())


@pytest.mark.parametrize("name", list_augmentations())
def test_uint8_input_gives_the_float_result(name):
    rng = np.random.default_rng(1)
    x8 = tf.constant(rng.integers(0, 256, (B, H, W, 3), np.uint8))
    y = tf.one_hot(np.arange(B) % K, K)
    a = _run(name, x8, y, False)
    b = _run(name, tf.cast(x8, tf.float32) / 255, y, False)
    assert a[0].dtype == tf.float32
    np.testing.assert_allclose(a[0].numpy(), b[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(a[1].numpy(), b[1].numpy(), atol=1e-6)


def test_flip_really_flips():
    x, y = _batch()
    x2, _ = _run("flip_lr(p=1.0)", x, y, False)
    np.testing.assert_array_equal(x2.numpy(), x.numpy()[:, :, ::-1])
    x3, _ = _run("flip_lr(p=0.0)", x, y, False)
    np.testing.assert_array_equal(x3.numpy(), x.numpy())


def test_random_crop_is_an_integer_shift_with_zero_fill():
    x = tf.ones((B, H, W, 1))
    x2, _ = _run("random_crop(pad=4)", x, tf.one_hot(np.zeros(B), K), False)
    v = np.unique(x2.numpy())
    assert set(v.tolist()) <= {0.0, 1.0}  # nearest sampling: no interpolated values
    kept = x2.numpy().mean(axis=(1, 2, 3))
    assert (kept >= (H - 4) * (W - 4) / (H * W) - 1e-6).all()


def test_affine_identity_shift_and_zoom():
    x = np.zeros((1, 21, 21, 1), "float32")
    x[0, 8:13, 8:13] = 1  # a 5x5 square at the centre
    x = tf.constant(x)
    y = tf.one_hot([0], 2)
    ident, _ = _run("affine(0, 0, (1, 1), 0)", x, y, False)
    np.testing.assert_allclose(ident.numpy(), x.numpy(), atol=1e-6)

    shifted, _ = _run("affine(0, 0.2, (1, 1), 0)", x, y, False)
    ys, xs = np.nonzero(shifted.numpy()[0, ..., 0] > 0.5)
    assert abs(ys.mean() - 10) <= 0.2 * 21 + 0.5 and abs(xs.mean() - 10) <= 0.2 * 21 + 0.5
    assert shifted.numpy().sum() == pytest.approx(25, abs=1.0)  # moved, not resized

    zoomed, _ = _run("affine(0, 0, (2, 2), 0)", x, y, False)
    assert zoomed.numpy().sum() == pytest.approx(100, rel=0.1)  # twice the size: 4x the area
    assert zoomed.numpy()[0, 10, 10, 0] == pytest.approx(1.0)  # about the centre


def test_elastic_is_a_smooth_small_warp():
    x, y = _batch(1)
    same, _ = _run("elastic(0, 4)", x, y, False)  # no displacement: the identity
    np.testing.assert_allclose(same.numpy(), x.numpy(), atol=1e-6)
    ramp = tf.tile(tf.range(W, dtype=tf.float32)[None, None, :, None] / W, [B, H, 1, 1])
    warped, _ = _run("elastic(34, 4)", ramp, y, False)
    inner = (slice(None), slice(6, -6), slice(6, -6))  # away from the zero fill
    shift = (warped.numpy() - ramp.numpy())[inner] * W  # horizontal displacement, pixels
    assert 0.2 < np.abs(shift).mean() < 5  # Simard's setting moves pixels by about 1-2 px
    assert np.abs(np.diff(shift, axis=2)).mean() < 0.5 * np.abs(shift).mean()  # smooth


def test_grayscale_channels_are_equal():
    x, y = _batch()
    x2, _ = _run("grayscale(1.0)", x, y, False)
    np.testing.assert_allclose(x2[..., 0].numpy(), x2[..., 1].numpy())
    np.testing.assert_allclose(x2[..., 1].numpy(), x2[..., 2].numpy())


def test_cutout_zeroes_a_square_of_at_most_size_squared():
    x = tf.ones((B, 32, 32, 3))
    x2, _ = _run("cutout(8)", x, tf.one_hot(np.zeros(B), K), False)
    zeros = (x2.numpy()[..., 0] == 0).sum(axis=(1, 2))
    assert (zeros <= 64).all() and (zeros > 0).all()


def test_cutmix_labels_match_pasted_area():
    # Images are constant per sample: the pasted area can be read off the pixels.
    vals = np.arange(1, B + 1, dtype="float32") / (B + 1)
    x = tf.constant(np.broadcast_to(vals[:, None, None, None], (B, 16, 16, 1)).copy())
    y = tf.one_hot(np.arange(B), B)
    x2, y2 = _run("cutmix(p=1.0, alpha=1.0)", x, y, False)
    own = (np.isclose(x2.numpy()[..., 0], vals[:, None, None])).mean(axis=(1, 2))
    np.testing.assert_allclose(y2.numpy()[np.arange(B), np.arange(B)], own, atol=1e-5)


def test_mixup_blends_images_as_labels():
    vals = np.arange(1, B + 1, dtype="float32") / (B + 1)
    x = tf.constant(np.broadcast_to(vals[:, None, None, None], (B, 4, 4, 1)).copy())
    y = tf.one_hot(np.arange(B), B)
    x2, y2 = _run("mixup(p=1.0, alpha=1.0)", x, y, False)
    # pixel = sum_j y2[i, j] * vals[j]
    np.testing.assert_allclose(x2.numpy()[:, 0, 0, 0], y2.numpy() @ vals, atol=1e-5)


@pytest.mark.parametrize(
    "spec,match",
    [
        ("nosuch", "unknown augmentation 'nosuch'"),
        ("flip_lr(2.0)", "probability"),
        ("rotate(", "cannot parse"),
        ("cutout(size=4, bogus=1)", "bad arguments"),
    ],
)
def test_bad_specs_name_the_problem(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_augment(spec)
