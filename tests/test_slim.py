"""Network slimming (issue 10): the slimmed network computes exactly what the original
computes when the removed channels carry nothing, on residual, squeeze-and-excitation,
pre-activation, depthwise, flatten and grouped-convolution networks; the batch-norm L1
penalty; a trained tiny network slimmed by half and fine-tuned keeps its accuracy."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import SMALL_CNN, TINY_ARGS, tiny_config

from tfclf.compress.methods import QATPhase
from tfclf.compress.slim import SlimPhase, plan_slimming, slim_model
from tfclf.keras import layers
from tfclf.models.registry import create_model
from tfclf.training.trainer import train, with_regularizers


def _zero_removed_channels(model, plan):
    """Sets every weight that feeds a channel the plan removes to zero (and its batch-norm
    scale and shift): those channels then carry exactly 0 everywhere."""
    for layer in model.layers:
        root = plan.spaces[layer.name].root()
        if root not in plan.keep or not layer.weights:
            continue
        drop = np.setdiff1d(np.arange(root.size), plan.keep[root])
        ws = layer.get_weights()
        if isinstance(layer, layers.BatchNormalization):
            for i in range(int(layer.scale) + int(layer.center)):  # gamma, beta
                ws[i][drop] = 0
        elif isinstance(layer, layers.DepthwiseConv2D):
            ws[0][:, :, drop] = 0
            for b in ws[1:]:
                b[drop] = 0
        else:  # Conv2D, Dense: output channels
            ws[0][..., drop] = 0
            for b in ws[1:]:
                b[drop] = 0
        layer.set_weights(ws)


@pytest.mark.parametrize(
    "name",
    [
        "resnet20",
        "se_resnet20",
        "preact_resnet20",
        "mobilenet_student",
        "report003_small_cnn_dw",
        "report003_small_cnn_group4",
    ],
)
def test_slimmed_network_computes_the_same_without_the_removed_channels(name):
    rng = np.random.default_rng(0)
    model = create_model(name, (32, 32, 3), 10)
    for layer in model.layers:  # distinct scales and statistics, so the ranking matters
        if isinstance(layer, layers.BatchNormalization):
            ws = layer.get_weights()
            ws[0] = rng.uniform(0.1, 1, ws[0].shape).astype(np.float32)
            ws[-1] = rng.uniform(0.5, 2, ws[-1].shape).astype(np.float32)
            layer.set_weights(ws)
    plan = plan_slimming(model, 0.5)
    assert plan.keep
    _zero_removed_channels(model, plan)
    slim, report = slim_model(model, 0.5)
    assert report["params_after"] < report["params_before"] == model.count_params()
    assert report["params_after"] == slim.count_params()
    assert report["macs_after"] < report["macs_before"]
    assert [layer.name for layer in slim.layers] == [layer.name for layer in model.layers]
    x = rng.normal(size=(4, 32, 32, 3)).astype(np.float32)
    want, got = model(x, training=False).numpy(), slim(x, training=False).numpy()
    assert np.abs(want).max() > 0  # the check below is not comparing zeros
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())


def test_residual_and_se_channels_share_one_mask():
    model = create_model("se_resnet20", (32, 32, 3), 10)
    plan = plan_slimming(model, 0.5)
    stem = plan.spaces["stem_conv"].root()
    tied = [layer.name for layer in model.layers if plan.spaces[layer.name].root() is stem]
    # the stem, every block's last convolution, the adds and the SE gates of a stage share it
    assert any(isinstance(model.get_layer(n), layers.Add) for n in tied), tied
    assert any(isinstance(model.get_layer(n), layers.Multiply) for n in tied), tied


def test_a_network_without_batch_norm_cannot_be_slimmed():
    with pytest.raises(ValueError, match="--slim: lenet5 has no channels"):
        plan_slimming(create_model("lenet5", (28, 28, 1), 10), 0.5)
    with pytest.raises(ValueError, match=r"--slim: a ratio must be in \(0, 1\)"):
        plan_slimming(create_model("resnet20", (32, 32, 3), 10), 1.0)


def test_bn_l1_penalises_every_batch_norm_scale():
    model = with_regularizers(create_model("resnet_custom", (28, 28, 1), 10, **TINY_ARGS), 0, 1e-3)
    bns = [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]
    assert bns and len(model.losses) == len(bns)
    expected = 1e-3 * sum(float(tf.reduce_sum(tf.abs(layer.gamma))) for layer in bns)
    assert float(tf.add_n(model.losses)) == pytest.approx(expected, rel=1e-5)


def test_trained_tiny_network_slimmed_keeps_its_accuracy(tmp_path, digits, small_cnn_run):
    """Report 003's small CNN (BN after every conv, Flatten into the classifier) trained 8
    epochs with the BN-scale L1 penalty (the compression tests' run), 30 % of its channels
    removed (less than half of its parameters left), fine-tuned 2 epochs."""
    model = {"model": SMALL_CNN, "model_args": {}}
    base = small_cnn_run[2]
    phase = SlimPhase(base.model, 0.3)
    slimmed = train(tiny_config(tmp_path / "slim", digits, epochs=2, lr=0.01, **model), phase)
    report = phase.report
    assert slimmed.model.count_params() == report["params_after"] < 0.5 * report["params_before"]
    assert report["macs_after"] < 0.6 * report["macs_before"]
    base_acc, slim_acc = (max(r.get("val_accuracy", 0) for r in x.history) for x in (base, slimmed))
    assert base_acc > 0.8  # a network worth slimming (about 0.9 on 120 held-out digits)
    # stated margin: at most 3 points below the unslimmed network
    assert slim_acc >= base_acc - 0.03, (base_acc, slim_acc)
    # QAT starts from the slimmed architecture (not the full one the config builds)
    qat = train(
        tiny_config(tmp_path / "qat", digits, epochs=1, lr=0.01, **model), QATPhase(slimmed.model)
    )
    inner = [getattr(layer, "layer", layer) for layer in qat.model.layers]
    convs = [layer for layer in inner if isinstance(layer, layers.Conv2D)]
    assert [c.filters for c in convs] == [
        c.filters for c in slimmed.model.layers if isinstance(c, layers.Conv2D)
    ]
    assert max(r["val_accuracy"] for r in qat.history if "val_accuracy" in r) >= slim_acc - 0.03
