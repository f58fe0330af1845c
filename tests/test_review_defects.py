"""Defects a code review found, each held by a test that failed before its fix (run-dir
reuse, flags read over the command line's and relative paths are in test_configs.py)."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config

from tfclf.errors import UsageError
from tfclf.keras import keras, layers

HERE = Path(__file__).parent


def _small(name, seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(4, 3, name=f"{name}_conv")(inputs)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(3, name=f"{name}_logits")(x), name=name)


def test_distillation_weights_each_images_loss_by_its_class_weight():
    """--teacher with --balance=class_weight: the pipeline yields (x, y, weights) and the
    Distiller's step must use them (it dropped them, training unweighted)."""
    from tfclf.distill import Distiller

    student, teacher = _small("student", 0), _small("teacher", 1)
    d = Distiller(student=student, teacher=teacher)
    d.compile(keras.optimizers.SGD(0.5), alpha=0.5, temperature=2.0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 8, 8, 1)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 8)]
    before = [w.copy() for w in student.get_weights()]
    d.fit(x, y, sample_weight=np.zeros(8, "float32"), batch_size=8, epochs=1, verbose=0)
    for a, b in zip(before, student.get_weights()):  # weight 0: nothing to learn from
        np.testing.assert_array_equal(a, b)
    d.fit(x, y, sample_weight=np.ones(8, "float32"), batch_size=8, epochs=1, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(before, student.get_weights()))
    # and the weighted losses are the weighted means of the per-image ones
    s, t = student(x).numpy(), teacher(x).numpy()
    w = np.linspace(0, 2, 8).astype("float32")
    _, ce_w, kd_w = d.distillation_losses(y, s, t, w)
    per_image = [d.distillation_losses(y[i : i + 1], s[i : i + 1], t[i : i + 1]) for i in range(8)]
    np.testing.assert_allclose(
        float(ce_w), np.mean([w[i] * float(p[1]) for i, p in enumerate(per_image)]), rtol=1e-5
    )
    np.testing.assert_allclose(
        float(kd_w), np.mean([w[i] * float(p[2]) for i, p in enumerate(per_image)]), rtol=1e-5
    )


@pytest.mark.parametrize("given", ["mean", "std"])
def test_mean_or_std_alone_takes_the_other_from_the_training_split(tmp_path, digits, given):
    from tfclf.data import Normalizer, prepare_data

    cfg = tiny_config(tmp_path, digits)
    data, own = prepare_data(cfg)
    assert own == Normalizer.from_images(data.train.images)
    _, norm = prepare_data(dataclasses.replace(cfg, **{given: (0.5,)}))
    other = "std" if given == "mean" else "mean"
    assert getattr(norm, given) == (0.5,)
    assert getattr(norm, other) == pytest.approx(getattr(own, other))  # not 1.0 / 0.0


def test_a_failed_run_puts_back_the_precision_policy_and_op_determinism(
    tmp_path, digits, monkeypatch
):
    from tensorflow.python.framework import config as tf_config

    from tfclf.training import trainer

    monkeypatch.setattr(trainer, "resolve_precision", lambda *a, **k: "mixed_bfloat16")
    monkeypatch.setattr(trainer, "precision_problem", lambda policy: None)

    def broken(*args, **kwargs):
        raise RuntimeError("the model failed to build")

    monkeypatch.setattr(trainer, "create_model", broken)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert not tf_config.is_op_determinism_enabled()
    cfg = tiny_config(tmp_path, digits, deterministic=True)
    with pytest.raises(RuntimeError, match="failed to build"):
        trainer.train(dataclasses.replace(cfg, precision="mixed_bfloat16"))
    assert keras.mixed_precision.global_policy().name == "float32"
    assert not tf_config.is_op_determinism_enabled()


def test_importing_tfclf_keeps_the_users_matplotlib_backend():
    """A notebook's inline backend must survive ``import tfclf.report`` (it was switched to
    Agg at import)."""
    code = (
        "import matplotlib, tfclf.report, tfclf.plots, tfclf.compress.pipeline; "
        "print(matplotlib.get_backend())"
    )
    env = {**os.environ, "MPLBACKEND": "svg"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().lower() == "svg"


def test_a_corrupt_model_card_is_an_error_naming_it(tmp_path):
    """It was read as missing: class indices for names, 'squash' for the resize mode."""
    from tfclf.data import Normalizer
    from tfclf.export import deployable
    from tfclf.export.load import load_classifier
    from tfclf.rundir import RunDir

    folder = tmp_path / "best_model"
    folder.mkdir()
    deployable(_small("model", 0), Normalizer((0.5,), (0.25,))).save(folder / "model.keras")
    card = folder / "model_card.json"
    card.write_text('{"classes": ["a", "b", "c"], "input": {')  # cut short
    with pytest.raises(UsageError, match=f"{card}: not a readable model card"):
        load_classifier(folder / "model.keras")
    with pytest.raises(UsageError, match="not a readable model card"):
        RunDir(tmp_path).card()
    card.write_text(json.dumps({"classes": ["a", "b", "c"]}))
    assert load_classifier(folder / "model.keras").class_names == ["a", "b", "c"]


def test_a_model_whose_checks_pass_reads_as_passed(tmp_path):
    """tests/test_models.py marked passing models as skipped when some checks ran on their
    twin (pytest.skip after the checks); resnet44's are on resnet20. Run in this process:
    a skip would raise here."""
    import test_models

    properties = {}
    try:
        test_models.test_model("resnet44", tmp_path, lambda k, v: properties.update({k: v}))
    except pytest.skip.Exception as e:  # would mark this test skipped, not failed
        pytest.fail(f"test_model skipped a model whose checks passed: {e}")
    assert "resnet20" in properties["checked_elsewhere"]


def test_evaluate_and_compress_take_the_runs_classes_and_normalisation(tmp_path, digits):
    """They re-derived both from the data as it is on disk: a renamed, added or removed
    class folder silently misnamed the outputs, and the normalisation followed the data."""
    from tfclf.data import Normalizer
    from tfclf.rundir import RunDir

    run = RunDir(tmp_path)
    cfg = tiny_config(tmp_path, digits)
    run.classes_file.write_text(json.dumps([str(c) for c in range(10)]))
    run.normalizer_file.write_text(Normalizer((0.25,), (0.5,)).to_json())
    data, norm = run.data(cfg)
    assert norm == Normalizer((0.25,), (0.5,))  # the run's, not the data's own statistics
    assert len(data.class_names) == 10
    run.classes_file.write_text(json.dumps([str(c) for c in range(1, 11)]))
    with pytest.raises(
        UsageError, match=r"its classes \(0, 1, 2, 3, 4, \.\.\. \(10\)\) are not the run's"
    ):
        run.data(cfg)
