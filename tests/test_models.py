"""Every registered model: builds at two sizes, logits, round trips, one training step.

Parameterised over ``list_models()``, so a model is tested the moment it is registered.
"""

import re

import numpy as np
import pytest
import tensorflow as tf

from tfclf.keras import keras, layers
from tfclf.models import create_model, get_spec, list_models, model_stats

NUM_CLASSES = 7
# Deep/wide models get reduced test inputs only; their full-size counts are pinned below.
_built = {}


def _sizes(name):
    low = max(get_spec(name).min_size, 16)
    return low, low + 8


def _model(name):
    if name not in _built:
        _built.clear()  # keep one model alive at a time
        size = _sizes(name)[0]
        _built[name] = create_model(name, (size, size, 3), NUM_CLASSES)
    return _built[name]


def _batch(model, n=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *model.input_shape[1:])).astype("float32")
    y = np.arange(n) % NUM_CLASSES
    return x, y


@pytest.mark.parametrize("name", list_models())
def test_builds_at_two_sizes_with_finite_logits(name):
    for size in _sizes(name):
        model = _model(name) if size == _sizes(name)[0] else create_model(
            name, (size, size, 1), NUM_CLASSES)
        x, _ = _batch(model, n=2)
        logits = model(x, training=False)
        assert logits.shape == (2, NUM_CLASSES)
        assert logits.dtype == tf.float32
        assert np.isfinite(logits.numpy()).all()


@pytest.mark.parametrize("name", list_models())
def test_stock_named_layers_only(name):
    model = _model(name)
    names = [layer.name for layer in model.layers]
    assert len(set(names)) == len(names)
    for layer in model.layers:
        assert not isinstance(layer, layers.Lambda), layer.name
        assert "Lambda" not in type(layer).__name__, f"{layer.name}: {type(layer).__name__}"
        # Keras' automatic names look like "conv2d_3" or "tf.math.add"; ours are explicit.
        assert not re.fullmatch(r"[a-z_]+(_\d+)?", layer.name) or "_" in layer.name or \
            layer.name in ("image", "logits", "flatten", "pool"), layer.name
        assert not re.match(r"(conv2d|dense|batch_normalization|re_lu|add|tf\.)", layer.name), \
            layer.name
    assert model.layers[-1].name == "logits"
    assert model.layers[-1].get_config().get("activation") == "linear"


@pytest.mark.parametrize("name", list_models())
def test_from_config_and_save_load_round_trip(name, tmp_path):
    model = _model(name)
    x, _ = _batch(model, n=2)
    expected = model(x, training=False).numpy()

    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(x, training=False).numpy(), expected, rtol=1e-4, atol=1e-4)

    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    assert [w.name for w in loaded.weights] == [w.name for w in model.weights]
    np.testing.assert_allclose(loaded(x, training=False).numpy(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", list_models())
def test_one_training_step_lowers_the_loss(name):
    model = _model(name)
    x, y = _batch(model)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    opt = keras.optimizers.SGD(learning_rate=0.01)

    def loss():
        tf.random.set_seed(0)  # same dropout masks for both evaluations
        return loss_fn(y, model(x, training=True))

    with tf.GradientTape() as tape:
        before = loss()
    grads = tape.gradient(before, model.trainable_variables)
    assert all(g is not None for g in grads)
    opt.apply_gradients(zip(grads, model.trainable_variables))
    after = loss()
    assert float(after) < float(before)


def test_unknown_model_lists_known_ones():
    with pytest.raises(ValueError, match="known models: .*resnet20"):
        create_model("resnet21")


def test_too_small_input_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 32x32"):
        create_model("simplenet", (16, 16, 3))


def test_customisable_resnet_takes_stage_layout_and_leaky_relu():
    model = create_model("resnet_custom", (40, 40, 3), 5, depths=(1, 2), widths=(8, 12),
                         strides=(1, 2), stem_kernel=4, stem_stride=2, activation_fn="leaky_relu",
                         leaky_slope=0.2, se_ratio=4)
    assert model.get_layer("stem_conv").kernel_size == (4, 4)
    assert model.get_layer("stem_conv").strides == (2, 2)
    assert model.get_layer("stage2_block2_out").alpha == pytest.approx(0.2)
    assert model.get_layer("stage2_block2_add").output_shape == (None, 10, 10, 12)
    assert model.get_layer("stage1_block1_se_scale") is not None
    assert model.output_shape == (None, 5)
