"""Every registered model: builds (non-square), logits, round trip, one training step, QAT.

Each check is a function; ``test_model`` runs them all on one build of each model.

Parameterised over ``list_models()``, so a model is tested the moment it is registered.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from tfclf.keras import keras, layers
from tfclf.models import create_model, get_spec, list_models, model_stats
from tfclf.models.applications import BACKBONES
from tfclf.models.layers import is_auto_named

NUM_CLASSES = 7
SEED = int(os.environ.get("TFCLF_TEST_SEED", 0))


def _shape(name):
    """The smallest input the model takes (at least 16), made non-square: a model that
    assumed square or one fixed size fails here."""
    low = max(get_spec(name).min_size, 16)
    return low, low + 3, 3


def _batch(model, n=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *model.input_shape[1:])).astype("float32")
    y = np.arange(n) % NUM_CLASSES
    return x, y


def check_logits(model):
    x, _ = _batch(model, n=2)
    logits = model(x, training=False)
    assert logits.shape == (2, NUM_CLASSES)
    assert logits.dtype == tf.float32
    assert np.isfinite(logits.numpy()).all()


def check_stock_named_layers_only(model):
    names = [layer.name for layer in model.layers]
    assert len(set(names)) == len(names)
    for layer in model.layers:
        assert not isinstance(layer, layers.Lambda), layer.name
        assert "Lambda" not in type(layer).__name__, f"{layer.name}: {type(layer).__name__}"
        # Keras' automatic names are "<class in snake case>[_<n>]" or "tf.<op>"; ours are
        # explicit (the one exception, "flatten", is given explicitly where used).
        assert not is_auto_named(layer) or layer.name == "flatten", layer.name
        assert not layer.name.startswith("tf."), layer.name
    assert model.layers[-1].name == "logits"
    assert model.layers[-1].get_config().get("activation") == "linear"


# The suite's budget goes to breadth, not size. Models above DEEP_LAYERS (ResNet-110/164
# and their pre-activation twins, SE-ResNet-56) or BIG_PARAMS (ResNeXt-29 16x64d and 8x64d,
# WRN-28-10) are built, name-checked and run forward once, but not round-tripped or
# trained a step: they stack the blocks of shallower registered models that get every
# check (ResNet-20, pre-activation ResNet-20, SE-ResNet-20, WRN-16-4,
# ResNeXt-29 4x16d, and the blocks in test_blocks_train_a_step_and_quantise), and the
# checks of a 400-layer model cost 30 s here (a .keras round trip of ResNet-1001 alone
# about 150 s). TFCLF_ALL_MODEL_CHECKS=1 runs every check on every model.
BIG_PARAMS = 20_000_000
DEEP_LAYERS = 300
ALL_CHECKS = bool(os.environ.get("TFCLF_ALL_MODEL_CHECKS"))
# Building a 3,300-layer net takes 45-50 s here, so only TFCLF_ALL_MODEL_CHECKS=1 builds
# the two ResNet-1001s. They are ResNet-164's builder with 111 blocks a stage and
# zero-initialised residual branches: test_cifar_resnet_1001_config checks that
# configuration, and the preact bottleneck case of test_blocks_train_a_step_and_quantise
# builds, trains and quantises those blocks with zero-initialised residuals.
NOT_BUILT = {"resnet1001", "preact_resnet1001"}
# Twins of a model that gets every check, differing only in a width, a depth or the
# activation: built, name-checked and run forward, but their round trip, step and QAT (5-15 s
# each, among the suite's slowest models; QAT is most of it) are the twin's. For the AVX2
# kind's 15-minute CI margin (docs/benchmarks/tests.md).
CHECKED_AS = {
    "resnext29_2x32d": "resnext29_4x16d",  # cardinality 2 x 32 vs 4 x 16: the same builder
    "report000_resnet": "report000_resnet_leaky",  # ReLU vs LeakyReLU(0.1)
    "resnet_custom": "resnet20",  # the same builder with its defaults, which are ResNet-20's
    "resnet32": "resnet20",  # 5, 7, 9 vs 3 blocks a stage: the same builder
    "resnet44": "resnet20",
    "resnet56": "resnet20",
    "preact_resnet32": "preact_resnet20",
    "preact_resnet44": "preact_resnet20",
    "preact_resnet56": "preact_resnet20",
    "wrn16_8": "wrn16_4",  # width 8 vs 4: the same builder
    "wrn28_2": "wrn16_4",  # 4 blocks a stage vs 2, width 2 vs 4
    "wrn40_4": "wrn16_4",
    "se_resnet8": "se_resnet20",  # 1 vs 3 blocks a stage
    "simplenet": "simplenet_slim",  # width 1 vs 0.25: the same builder
}


# Published trainable-parameter counts at 32x32x3 and 10 classes, within a relative
# tolerance. These nets end in global pooling, so their count does not depend on the input
# size, and 3 more classes add 3 rows of the classifier: checked on test_model's own build
# at NUM_CLASSES (a second build of each cost 9 s).
PUBLISHED = {
    "wrn28_10": (36.5e6, 0.02),
    "wrn16_8": (11.0e6, 0.02),
    "wrn40_4": (8.9e6, 0.02),
    "resnext29_8x64d": (34.4e6, 0.02),
    "simplenet": (5.48e6, 0.02),
    "resnet20": (0.27e6, 0.02),
    "resnet110": (1.7e6, 0.03),  # the paper rounds 1.73 M to 1.7 M
    "preact_resnet164": (1.7e6, 0.02),
}


def check_published_count(name, model):
    count, tol = PUBLISHED[name]
    head = model.get_layer("logits")
    assert isinstance(head, layers.Dense) and model.input_shape[-1] == 3, name
    features = head.kernel.shape[0]
    got = model_stats(model).trainable_params + (10 - NUM_CLASSES) * (features + 1)
    assert abs(got - count) / count <= tol, f"{name}: {got:,} vs {count:,.0f}"


def check_save_load_round_trip(name, model, tmp_path):
    x, _ = _batch(model, n=2)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    assert [w.name for w in loaded.weights] == [w.name for w in model.weights]
    np.testing.assert_allclose(
        loaded(x, training=False).numpy(), model(x, training=False).numpy(), rtol=1e-4, atol=1e-4
    )


def check_one_training_step_lowers_the_loss(model):
    """A gradient step lowers the loss on a fixed batch for some small learning rate: it
    fails when the gradient is not a descent direction (broken graph, frozen layers)."""
    x, y = _batch(model)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def loss():
        tf.random.set_seed(0)  # same dropout masks for every evaluation
        return float(loss_fn(y, model(x, training=True)))

    start = [v.numpy() for v in model.trainable_variables]
    with tf.GradientTape() as tape:
        tf.random.set_seed(0)
        before = loss_fn(y, model(x, training=True))
    grads = tape.gradient(before, model.trainable_variables)
    assert all(g is not None for g in grads)
    after = {}
    for lr in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6):
        for v, g, w in zip(model.trainable_variables, grads, start):
            v.assign(w - lr * g)
        after[lr] = loss()
        if after[lr] < float(before):
            break
    for v, w in zip(model.trainable_variables, start):
        v.assign(w)
    assert min(after.values()) < float(before), (float(before), after)


# Quantisation-aware training (issue 10): ``quantize`` builds and trains a step. Cloning
# into QAT wrappers costs about 0.15 s a layer here and a QAT step on a 68 M-parameter
# ResNeXt about 130 s, so only models within QAT_MAX_LAYERS and QAT_MAX_PARAMS are
# quantised: the others repeat the blocks of smaller registered models that are (ResNet-20,
# preact, SE, WRN-16, ResNeXt-29 2x32d), and the bottleneck and Res2Net blocks are covered
# by test_blocks_train_a_step_and_quantise.
QAT_MAX_LAYERS = 130
QAT_MAX_PARAMS = 4_000_000
# Quantised on their blocks in test_blocks_train_a_step_and_quantise (its case named here)
# instead of whole (12-24 s each here; the AVX2 kind's CI margin): the stem and head are
# every ResNet's.
QAT_ON_BLOCKS = {
    "resnext29_4x16d": "resnext",
    "res2next29_2cx8wx4s": "res2next",
    "report000_resnet_leaky": "leaky",  # 122 layers: 5 s of QAT in the suite
}
# Round-tripped and trained a step on their blocks too (a 261-layer net: 7-10 s here).
STEP_ON_BLOCKS = {"res2next29_2cx8wx4s"}
# Quantised as the registered models whose QAT covers their parts: the SE variants' blocks
# are their plain twins' and the SE gate is SE-ResNet-20's (3-4 s each in the suite).
QAT_ON_PARTS = {
    "se_light_resnet": ("light_resnet", "se_resnet20"),
    "se_wrn16_4": ("wrn16_4", "se_resnet20"),
}


def unquantised_kernels(qat) -> list[str]:
    """The kernels of a QAT model not fake-quantised in training: none should be, those
    feeding a ReLU too (TF-MOT alone skips them: WeightsBeforeReLU)."""
    kernels = {"Conv2D", "DepthwiseConv2D", "Dense"}
    return [
        layer.name
        for layer in qat.layers
        if type(getattr(layer, "layer", None)).__name__ in kernels
        and not any("kernel_min" in w.name for w in layer.weights)
    ]


def check_qat_trains_a_step(model):
    from tfclf.compress.methods import deployed_weights, output_only_layers, quantize

    qat = quantize(model)
    wrapped = {layer.name for layer in qat.layers if "Quantize" in type(layer).__name__}
    assert set(output_only_layers(model)) <= {n.removeprefix("quant_") for n in wrapped}
    # the compress summary's MACs and parameters see through the wrappers
    assert model_stats(qat).macs == model_stats(model).macs > 0
    assert sum(w.size for w in deployed_weights(qat)) == model.count_params()
    assert not unquantised_kernels(qat), unquantised_kernels(qat)
    # Two eager SGD steps through the fake-quantised graph: the same ops as fit's step,
    # without tracing it (tracing took 9 of the 17 s a model).
    optimizer = keras.optimizers.SGD(1e-3)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x, y = _batch(model)
    losses = []
    for _ in range(2):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, qat(x, training=True))
        grads = tape.gradient(loss, qat.trainable_variables)
        assert all(g is not None for g in grads)
        optimizer.apply_gradients(zip(grads, qat.trainable_variables))
        losses.append(float(loss))
    assert np.isfinite(losses).all(), losses


@pytest.mark.parametrize("name", list_models())
def test_model(name, tmp_path, record_property):
    """All checks on one build of the model (building dominates the cost). The checks a
    model's size leaves to its twin or its blocks are named in the test's properties
    (``-rA`` or the JUnit XML show them); the test passes on the checks it ran."""
    if name in NOT_BUILT and not ALL_CHECKS:
        pytest.skip("not built (45 s): see NOT_BUILT; TFCLF_ALL_MODEL_CHECKS=1 builds it")
    keras.utils.set_random_seed(SEED)
    model = create_model(name, _shape(name), NUM_CLASSES)
    n_layers, n_params = len(model.layers), model.count_params()
    big = not ALL_CHECKS and (n_params > BIG_PARAMS or n_layers > DEEP_LAYERS)
    twin = None if ALL_CHECKS else CHECKED_AS.get(name)
    elsewhere = []
    check_stock_named_layers_only(model)
    check_logits(model)
    if name in PUBLISHED:
        check_published_count(name, model)
    if twin:
        elsewhere.append(f".keras round trip, training step, QAT on its twin {twin}")
    elif name in BACKBONES and not ALL_CHECKS:
        elsewhere.append(
            "training step and QAT in test_applications.py (MobileNetV3-Small's; every "
            "backbone's, on to its int8 file, with TFCLF_ALL_MODEL_CHECKS=1)"
        )
    else:
        if big:
            elsewhere.append(".keras round trip, training step (TFCLF_ALL_MODEL_CHECKS=1)")
        elif name in STEP_ON_BLOCKS and not ALL_CHECKS:
            elsewhere.append(
                f".keras round trip, training step on its blocks ({QAT_ON_BLOCKS[name]})"
            )
        else:
            check_save_load_round_trip(name, model, tmp_path)  # reads back the config too
            check_one_training_step_lowers_the_loss(model)
        if name in QAT_ON_BLOCKS and not ALL_CHECKS:
            elsewhere.append(f"QAT on its blocks ({QAT_ON_BLOCKS[name]})")
        elif name in QAT_ON_PARTS and not ALL_CHECKS:
            elsewhere.append(f"QAT on its parts in {' and '.join(QAT_ON_PARTS[name])}")
        elif ALL_CHECKS or (n_layers <= QAT_MAX_LAYERS and n_params <= QAT_MAX_PARAMS):
            check_qat_trains_a_step(model)
        else:
            elsewhere.append("QAT (TFCLF_ALL_MODEL_CHECKS=1)")
    record_property("checked_elsewhere", "; ".join(elsewhere) or "none")


BLOCK_CASES = {
    "bottleneck": dict(block="bottleneck"),
    "preact_bottleneck": dict(block="bottleneck", preact=True, zero_init_residual=True),
    "resnext": dict(block="bottleneck", groups=4),
    "res2next": dict(block="bottleneck", res2_scale=4, groups=2),
    # report 000's nets: LeakyReLU(0.1) after every block, a 4x4 stem at stride 1
    "leaky": dict(block="basic", activation_fn="leaky_relu", stem_kernel=4, stem_stride=1),
}


@pytest.mark.parametrize("block_args", list(BLOCK_CASES.values()), ids=list(BLOCK_CASES))
def test_blocks_train_a_step_and_quantise(block_args, tmp_path):
    """The blocks of the deep models that test_model only builds: a round trip, a descent
    step and QAT."""
    model = create_model(
        "resnet_custom",
        (16, 16, 3),
        NUM_CLASSES,
        depths=(1, 1),
        widths=(32, 64),
        strides=(1, 2),
        **block_args,
    )
    check_save_load_round_trip("blocks", model, tmp_path)
    check_one_training_step_lowers_the_loss(model)
    check_qat_trains_a_step(model)


def test_cifar_resnet_1001_config():
    from tfclf.models.resnet import _cifar_resnet

    for preact in (False, True):
        config = _cifar_resnet(1001, preact=preact)
        assert config["depths"] == (111, 111, 111) and config["block"] == "bottleneck"
        assert config["zero_init_residual"] and config["preact"] == preact
    assert not _cifar_resnet(164, preact=True)["zero_init_residual"]
    with pytest.raises(ValueError, match="9n\\+2"):
        _cifar_resnet(1000, preact=True)


def test_unknown_model_lists_known_ones():
    with pytest.raises(ValueError, match="known models: .*resnet20"):
        create_model("resnet21")


def test_too_small_input_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 32x32"):
        create_model("simplenet", (16, 16, 3))


def test_customisable_resnet_takes_stage_layout_and_leaky_relu():
    model = create_model(
        "resnet_custom",
        (40, 40, 3),
        5,
        depths=(1, 2),
        widths=(8, 12),
        strides=(1, 2),
        stem_kernel=4,
        stem_stride=2,
        activation_fn="leaky_relu",
        leaky_slope=0.2,
        se_ratio=4,
    )
    assert model.get_layer("stem_conv").kernel_size == (4, 4)
    assert model.get_layer("stem_conv").strides == (2, 2)
    assert model.get_layer("stage2_block2_out").alpha == pytest.approx(0.2)
    assert model.get_layer("stage2_block2_add").output_shape == (None, 10, 10, 12)
    assert model.get_layer("stage1_block1_se_scale") is not None
    assert model.output_shape == (None, 5)


def test_models_quantised_on_their_blocks_name_a_block_case():
    from tfclf.models.resnet import _REPORT000, _resnext29

    assert set(QAT_ON_BLOCKS) <= set(list_models()) and STEP_ON_BLOCKS <= set(QAT_ON_BLOCKS)
    # each block case has its models' block: a grouped bottleneck, Res2Net-split or not; the
    # basic block with LeakyReLU and report 000's stem
    configs = {
        "resnext29_4x16d": _resnext29(4, 16),
        "res2next29_2cx8wx4s": _resnext29(2, 8, 4),
        "report000_resnet_leaky": {**_REPORT000, "activation_fn": "leaky_relu"},
    }
    assert set(configs) == set(QAT_ON_BLOCKS)
    for name, config in configs.items():
        case = BLOCK_CASES[QAT_ON_BLOCKS[name]]
        for key in ("groups", "res2_scale"):  # grouped or not, Res2Net-split or not, alike
            assert (case.get(key, 1) > 1) == (config.get(key, 1) > 1), (name, key)
        for key, value in case.items():  # every other setting of the case is the model's
            assert key == "groups" or config.get(key) == value, (name, key)


def test_twins_skip_only_checks_their_twin_runs():
    """CHECKED_AS may only name registered models, each twin a different model that is neither
    a twin itself nor left unbuilt; the models QAT_ON_PARTS names are quantised themselves."""
    for name, twin in CHECKED_AS.items():
        assert name in list_models() and twin in list_models() and twin != name
        assert twin not in CHECKED_AS and twin not in NOT_BUILT
    skipping_qat = {*CHECKED_AS, *NOT_BUILT, *QAT_ON_BLOCKS, *QAT_ON_PARTS}
    for name, parts in QAT_ON_PARTS.items():
        assert name in list_models() and name.startswith("se_"), name
        assert parts[-1] == "se_resnet20" and parts[0] == name.removeprefix("se_"), parts
        assert not set(parts) & skipping_qat, parts
