"""Fine-tuning (``--init_from``): weights matched by layer name, a new head for another
class count, a refused source that shares nothing; head-only stages and frozen batch norms."""

import dataclasses

import numpy as np
import pytest
from conftest import TINY_ARGS, tiny_config, train_like_cli

from tfclf.config import Stage
from tfclf.errors import UsageError
from tfclf.keras import keras, layers
from tfclf.models import create_model
from tfclf.training.init_from import init_from
from tfclf.training.trainer import set_trainable, train


def _weights(model):
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, digits):
    """A finished 10-class run (its best model exported) and its best-weights file."""
    run = tmp_path_factory.mktemp("pretrain") / "run"
    result = train_like_cli(run, digits, "--epochs=1")
    return run, result.model


@pytest.mark.parametrize("form", ["run", "keras", "h5"])
def test_init_from_loads_by_name_and_gives_another_class_count_a_new_head(pretrained, form):
    run, source_model = pretrained
    source = {
        "run": run,
        "keras": run / "best_model" / "model.keras",
        "h5": run / "best_stage0.weights.h5",
    }[form]
    keras.utils.set_random_seed(7)
    model = create_model("resnet_custom", (28, 28, 1), 4, **TINY_ARGS)  # 4 classes, not 10
    fresh_head = [w.copy() for w in model.get_layer("logits").get_weights()]
    report = init_from(model, source)
    assert report.skipped == ["logits"] and report.new == []
    assert "not in the source: none; freshly initialised" in report.describe()
    assert report.describe().endswith("channel count): logits")
    theirs = _weights(source_model)
    for name, mine in _weights(model).items():
        if name != "logits":
            for a, b in zip(mine, theirs[name]):
                np.testing.assert_array_equal(a, b)
    for a, b in zip(model.get_layer("logits").get_weights(), fresh_head):
        np.testing.assert_array_equal(a, b)  # the new head keeps its initialisation
    assert len(report.loaded) == len(theirs) - 1


def test_init_from_names_new_layers_and_refuses_a_source_with_nothing_in_common(pretrained):
    run, _ = pretrained
    wider = create_model("resnet_custom", (28, 28, 1), 10, **{**TINY_ARGS, "se_ratio": 4})
    report = init_from(wider, run)
    assert any(name.endswith("_se_reduce") for name in report.new)
    inputs = keras.Input((28, 28, 1))
    other = keras.Model(inputs, layers.Dense(10, name="unrelated")(layers.Flatten()(inputs)))
    with pytest.raises(UsageError, match="shares no layer"):
        init_from(other, run)
    with pytest.raises(UsageError, match="not found"):
        init_from(other, run / "nowhere")


def test_a_fine_tune_starts_from_the_source_trains_the_head_first_then_all(
    pretrained, tmp_path, digits
):
    """Two stages: the head alone (every other weight stays the source's), then the whole
    net with frozen batch norms (their statistics stay the source's)."""
    run, source_model = pretrained
    base = tiny_config(tmp_path / "ft", digits, epochs=1, precise_bn=0, init_from=str(run))
    head = Stage(schedule=base.stages[0].schedule, train="head")
    all_frozen_bn = Stage(schedule=base.stages[0].schedule, bn="frozen")
    first = train(dataclasses.replace(base, stages=(head,)))
    theirs = _weights(source_model)
    for name, mine in _weights(first.model).items():
        same = all(np.array_equal(a, b) for a, b in zip(mine, theirs[name]))
        assert same == (name != "logits"), name
    second = train(
        dataclasses.replace(base, run_dir=str(tmp_path / "ft2"), stages=(all_frozen_bn,))
    )
    for layer in second.model.layers:
        if isinstance(layer, layers.BatchNormalization):
            for a, b in zip(layer.get_weights(), theirs[layer.name]):
                np.testing.assert_array_equal(a, b)
    conv = next(n for n in theirs if n.endswith("conv") and n != "logits")
    assert not np.array_equal(second.model.get_layer(conv).get_weights()[0], theirs[conv][0])


def test_set_trainable_modes():
    model = create_model("resnet_custom", (28, 28, 1), 10, **TINY_ARGS)
    set_trainable(model, "head")
    assert [layer.name for layer in model.layers if layer.trainable_weights] == ["logits"]
    set_trainable(model, "all", bn="frozen")
    bns = [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]
    assert bns and not any(layer.trainable for layer in bns)
    assert model.get_layer("logits").trainable and model.get_layer("stem_conv").trainable
    set_trainable(model, "all")
    assert all(layer.trainable for layer in bns)
