"""The Keras Applications backbones: each builds at a small size and any channel count
(MobileNetV3-Small also trains a step through its quantisation-aware model, the others
with TFCLF_ALL_MODEL_CHECKS=1), and loads a weights file (ImageNet's
are downloaded, which no machine here can: the test writes its own file). MobileNetV3's
hard-swish and SE gate, in a small net of the same layers, go on to a QAT int8 file that
LiteRT runs in XNNPACK with TFLite's HARD_SWISH op; every backbone's own int8 file is made
and run with TFCLF_ALL_MODEL_CHECKS=1 (a conversion takes 10-45 s each on an AVX-512
machine, 30 s to 2 minutes of the suite)."""

import os

import numpy as np
import pytest
import tensorflow as tf
from test_models import unquantised_kernels

from tfclf.keras import keras
from tfclf.models import create_model
from tfclf.models.applications import (
    BACKBONES,
    NO_QAT,
    HardSwish,
    _backbone,
    _name_unnamed_layers,
)
from tfclf.models.layers import inputs

SIZE = 32
ALL_CHECKS = bool(os.environ.get("TFCLF_ALL_MODEL_CHECKS"))


def _qat_step(model, x, y):
    """The QAT model of ``model`` after one SGD step on (x, y); every kernel fake-quantised
    and every trainable variable given a gradient."""
    from tfclf.compress.methods import quantize

    qat = quantize(model)
    assert not unquantised_kernels(qat), unquantised_kernels(qat)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(y, qat(x, training=True))
    grads = tape.gradient(loss, qat.trainable_variables)
    assert np.isfinite(float(loss)) and all(g is not None for g in grads)
    keras.optimizers.SGD(1e-3).apply_gradients(zip(grads, qat.trainable_variables))
    return qat


def _gray_backbone(name):
    keras.utils.set_random_seed(0)
    model = create_model(name, (SIZE, SIZE, 1), 4)
    x = np.random.default_rng(0).normal(size=(8, SIZE, SIZE, 1)).astype("float32")
    return model, x, np.arange(8) % 4


@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_builds_gray_with_named_stock_layers(name):
    model, x, _ = _gray_backbone(name)
    names = [layer.name for layer in model.layers]
    assert len(set(names)) == len(names) and names[-1] == "logits"
    assert not any("Lambda" in type(layer).__name__ for layer in model.layers)
    assert model(x[:2]).shape == (2, 4)


# MobileNetV3-Small: hard-swish, its SE gate and the backbone wrapper (gray input, head,
# names). MobileNetV3-Large is Small's builder with more blocks; MobileNetV2 has only
# layers TF-MOT quantises by default (its own tests quantise MobileNetV2) in the same
# wrapper; compress refuses EfficientNet-B0's QAT (NO_QAT). With TFCLF_ALL_MODEL_CHECKS=1
# every backbone's step runs in test_backbone_qat_int8_file_runs_in_xnnpack, on to its
# int8 file.
@pytest.mark.skipif(ALL_CHECKS, reason="each backbone's step runs in the int8 file test")
def test_mobilenet_v3_small_trains_a_step_quantisation_aware():
    _qat_step(*_gray_backbone("mobilenet_v3_small"))


@pytest.mark.skipif(not ALL_CHECKS, reason="TFCLF_ALL_MODEL_CHECKS=1 converts each backbone")
@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_qat_int8_file_runs_in_xnnpack(name):
    from tfclf.data import Normalizer
    from tfclf.export import deployable, litert, tflite

    keras.utils.set_random_seed(0)
    model = create_model(name, (SIZE, SIZE, 1), 4)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (8, SIZE, SIZE, 1)).astype("uint8")
    norm = Normalizer((0.5,), (0.25,))
    if name in NO_QAT:  # it trains quantisation-aware; its post-training int8 file deploys
        _qat_step(model, norm(pixels / 255.0).numpy(), np.arange(8) % 4)
        ptq = tflite.convert(deployable(model, norm), "int8", representative=pixels)
        assert litert.interpreter(ptq, warn=False).xnnpack
        return
    qat = _qat_step(model, norm(pixels.astype("float32") / 255.0).numpy(), np.arange(8) % 4)
    blob = tflite.convert(deployable(qat, norm), "int8", quantized=True, representative=pixels)
    interp = litert.interpreter(blob, warn=False)
    assert interp.xnnpack, f"{name}: XNNPACK refused the int8 file"
    interp.set_tensor(interp.get_input_details()[0]["index"], pixels[:1])
    interp.invoke()
    assert np.isfinite(interp.get_tensor(interp.get_output_details()[0]["index"])).all()
    ops = {op["op_name"] for op in interp._get_ops_details()}
    if "v3" in name:
        assert "HARD_SWISH" in ops, ops


def _hard_swish_net():
    """MobileNetV3's activations and SE gate (as the backbones build them) in a small net."""
    from tfclf.models.applications import HardSigmoid

    img = inputs((SIZE, SIZE, 1))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="conv")(img)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = HardSwish(name="conv/hard_swish")(x)
    gate = keras.layers.GlobalAveragePooling2D(keepdims=True, name="se/pool")(x)
    gate = keras.layers.Conv2D(4, 1, name="se/reduce")(gate)
    gate = keras.layers.ReLU(name="se/relu")(gate)
    gate = keras.layers.Conv2D(8, 1, name="se/expand")(gate)
    gate = HardSigmoid(name="se/hard_sigmoid")(gate)
    x = keras.layers.Multiply(name="se/mul")([x, gate])
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(img, keras.layers.Dense(4, name="logits")(x))


def test_hard_swish_and_its_se_gate_quantise_to_an_int8_file_xnnpack_runs():
    from tfclf.data import Normalizer
    from tfclf.export import deployable, litert, tflite

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (8, SIZE, SIZE, 1)).astype("uint8")
    norm = Normalizer((0.5,), (0.25,))
    qat = _qat_step(_hard_swish_net(), norm(pixels / 255.0).numpy(), np.arange(8) % 4)
    blob = tflite.convert(deployable(qat, norm), "int8", quantized=True, representative=pixels)
    interp = litert.interpreter(blob, warn=False)
    assert interp.xnnpack
    ops = {op["op_name"] for op in interp._get_ops_details()}
    assert "HARD_SWISH" in ops, ops


def test_compress_refuses_qat_where_the_qat_file_cannot_deploy(tmp_path):
    from tfclf.compress.pipeline import CompressError, CompressOptions, compress_run
    from tfclf.config import TrainConfig

    for name in NO_QAT:
        with pytest.raises(CompressError, match=f"--qat: {name}: .*without --qat"):
            compress_run(tmp_path, CompressOptions(qat=True), TrainConfig(model=name))


def test_hard_swish_is_mobilenet_v3s():
    x = np.linspace(-5, 5, 11, dtype="float32")
    np.testing.assert_allclose(HardSwish()(x), x * np.clip(x + 3, 0, 6) / 6, atol=1e-6)


def test_a_weights_file_loads_into_a_gray_model_through_its_rgb_twin(tmp_path):
    keras.utils.set_random_seed(3)
    twin = _backbone("mobilenet_v2", inputs((SIZE, SIZE, 3)), None)
    _name_unnamed_layers(twin)
    path = tmp_path / "mobilenet_v2_notop.h5"
    twin.save_weights(path)
    keras.utils.set_random_seed(4)  # another draw: what loads must be the file's
    model = create_model("mobilenet_v2", (SIZE, SIZE, 1), 5, weights=str(path))
    stem = twin.get_layer("Conv1").get_weights()[0]
    np.testing.assert_allclose(
        model.get_layer("Conv1").get_weights()[0], stem.sum(2, keepdims=True), rtol=1e-6
    )
    for layer in ("block_3_expand", "block_16_project_BN", "Conv_1"):
        for a, b in zip(model.get_layer(layer).get_weights(), twin.get_layer(layer).get_weights()):
            np.testing.assert_array_equal(a, b)


def test_imagenet_weights_without_network_is_one_clear_error(monkeypatch):
    from tf_keras.src.utils import data_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(data_utils, "get_file", offline)
    with pytest.raises(ValueError, match="could not fetch the mobilenet_v2 weights.*weights file"):
        create_model("mobilenet_v2", (SIZE, SIZE, 3), 5, weights="imagenet")
    with pytest.raises(ValueError, match="not a file"):
        create_model("mobilenet_v2", (SIZE, SIZE, 3), 5, weights="nowhere.h5")
