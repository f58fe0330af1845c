"""The training loop in-process: a second phase plugs in without touching the loop, L2 kept
through TF-MOT wrapping, weights moved by layer name, strict restores, deployable models
that take raw pixels, configuration defaults."""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_ARGS, dir_hashes, tiny_config

from tfclf.config import ScheduleConfig, Stage, TrainConfig, parse_stage
from tfclf.keras import keras, layers
from tfclf.models import create_model
from tfclf.training.phases import Phase
from tfclf.training.trainer import restore_model, train, transfer_weights, with_regularizers


class CountingHead(Phase):
    """A toy phase: trains the model behind an extra frozen scaling, counts its epochs with
    its own callback, keeps the inner model and marks it at the end."""

    name = "toy"

    def __init__(self):
        self.epochs_seen = 0
        self.compiled = 0

    def wrap(self, model, ctx):
        scale = layers.Rescaling(1.0, name="toy_scale")
        return keras.Model(model.inputs, scale(model.outputs[0]), name="toy_wrapper")

    def compile(self, model, ctx, **compile_args):
        self.compiled += 1
        super().compile(model, ctx, **compile_args)

    def callbacks(self, model, ctx):
        phase = self

        class Count(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                phase.epochs_seen += 1

        return [Count()]

    def saved(self, model):
        return keras.Model(model.inputs, model.get_layer("toy_scale").input, name="inner")

    def finish(self, model):
        inner = self.saved(model)
        inner.finished_by_toy = True
        return inner


def test_a_second_phase_plugs_into_the_loop(tmp_path, digits):
    phase = CountingHead()
    result = train(tiny_config(tmp_path / "run", digits, val_every=1), phase)
    assert phase.compiled == 1 and phase.epochs_seen == 2
    assert getattr(result.model, "finished_by_toy", False)
    assert "toy_scale" not in [layer.name for layer in result.model.layers]
    # the best weights are the inner model's (what ``saved`` returned), loadable into it
    inner = create_model("resnet_custom", (28, 28, 1), 10, **TINY_ARGS)
    inner.load_weights(tmp_path / "run" / "best_stage0.weights.h5")
    x = np.random.default_rng(0).random((4, 28, 28, 1), np.float32)
    np.testing.assert_allclose(inner(x), result.model(x), atol=1e-5)
    assert [r["epoch"] for r in result.history] == [1, 2]


def test_deployed_model_takes_raw_pixels_and_names_its_classes(tmp_path, digits):
    from tfclf.export import trained_part, write_best_model

    result = train(tiny_config(tmp_path / "run", digits), None)
    out = tmp_path / "best_model"
    deploy = write_best_model(out, result.model, result.normalizer, result.data.class_names)
    pixels = result.data.val.images[:16].astype(np.float32)
    normalised = result.normalizer(pixels / 255.0)
    np.testing.assert_allclose(deploy(pixels), result.model(normalised), atol=1e-4)
    reloaded = keras.models.load_model(out / "model.keras", compile=False)
    np.testing.assert_allclose(reloaded(pixels), deploy(pixels), atol=1e-4)
    assert trained_part(reloaded).name == result.model.name
    served = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    np.testing.assert_allclose(served(tf.constant(pixels))["output_0"], deploy(pixels), atol=1e-4)
    card = json.loads((out / "model_card.json").read_text())
    assert card["input"]["range"] == [0, 255] and card["input"]["shape"] == [1, 28, 28, 1]
    assert card["input"]["resize"]["mode"] == "squash"  # how an app brings images to size
    assert card["classes"] == [str(c) for c in result.data.class_names]
    assert (out / "labels.txt").read_text().split() == card["classes"]


def test_a_failed_export_leaves_the_previous_best_model(tmp_path, digits):
    from tfclf.export import write_best_model

    result = train(tiny_config(tmp_path / "run", digits, epochs=1), None)
    out = tmp_path / "best_model"
    write_best_model(out, result.model, result.normalizer, result.data.class_names)
    before = (out / "model.keras").read_bytes()
    with pytest.raises(KeyError):  # a model card that cannot be written: fails mid-export
        write_best_model(
            out, result.model, result.normalizer, result.data.class_names, resize="bogus"
        )
    assert (out / "model.keras").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_regularizers_keep_the_initial_weights():
    # a penalty must not re-draw the initialisation: one seed, one starting point
    model = create_model("resnet_custom", (28, 28, 1), 10, **TINY_ARGS)
    rebuilt = with_regularizers(model, 1e-3, 1e-4)
    assert rebuilt is not model and len(rebuilt.losses) > 0
    for a, b in zip(model.get_weights(), rebuilt.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("wrapper", ["prune", "quantize"])
def test_l2_survives_tf_mot_wrapping(wrapper):
    import tensorflow_model_optimization as tfmot

    model = with_regularizers(create_model("resnet_custom", (28, 28, 1), 10, **TINY_ARGS), 1e-3)
    n_kernels = sum(1 for layer in model.layers if getattr(layer, "kernel_regularizer", None))
    assert n_kernels > 0 and len(model.losses) == n_kernels
    if wrapper == "prune":
        wrapped = tfmot.sparsity.keras.prune_low_magnitude(model)
    else:
        wrapped = tfmot.quantization.keras.quantize_model(model)
    assert len(wrapped.losses) == n_kernels
    expected = 1e-3 * sum(
        float(tf.reduce_sum(tf.square(layer.kernel)))
        for layer in model.layers
        if getattr(layer, "kernel_regularizer", None)
    )
    assert float(tf.add_n(wrapped.losses)) == pytest.approx(expected, rel=1e-4)


def test_weights_move_by_layer_name_and_mismatches_are_named():
    a = create_model("resnet_custom", (16, 16, 1), 10, **TINY_ARGS)
    b = create_model("resnet_custom", (24, 24, 1), 10, **TINY_ARGS)
    transfer_weights(a, b)
    for la in a.layers:
        for wa, wb in zip(la.get_weights(), b.get_layer(la.name).get_weights()):
            np.testing.assert_array_equal(wa, wb)
    wider = create_model("resnet_custom", (16, 16, 1), 10, **{**TINY_ARGS, "widths": (8, 24)})
    with pytest.raises(ValueError, match="layer 'stage2_block1_conv1'|layer 'stage2"):
        transfer_weights(a, wider)
    lenet = create_model("lenet5", (28, 28, 1), 10)
    with pytest.raises(ValueError, match="has layer"):
        transfer_weights(a, lenet)


def test_restores_are_strict(tmp_path):
    a = create_model("resnet_custom", (16, 16, 1), 10, **TINY_ARGS)
    path = tf.train.Checkpoint(model=a).save(str(tmp_path / "ckpt"))
    same = create_model("resnet_custom", (16, 16, 1), 10, **TINY_ARGS)
    restore_model(same, path)
    np.testing.assert_array_equal(same.get_weights()[0], a.get_weights()[0])
    other = create_model("resnet_custom", (16, 16, 1), 10, **{**TINY_ARGS, "depths": (1, 2)})
    with pytest.raises(ValueError, match="does not match"):
        restore_model(other, path)
    deeper = create_model("resnet_custom", (16, 16, 1), 10, **{**TINY_ARGS, "depths": (2, 2)})
    with pytest.raises(ValueError, match="does not match"):
        restore_model(deeper, path)


@pytest.mark.parametrize("epochs", [3, 1], ids=["mid-stage", "finished"])
def test_a_run_directory_of_another_model_is_a_clear_error_and_stays(tmp_path, digits, epochs):
    """Rerunning into a run directory resumes it; one holding another model's run (the
    quick start's after an upgrade) is one UsageError naming that model, and nothing of the
    earlier run is overwritten (``on_ready``, where the CLI writes this run's flags.txt, ran
    before the restore once)."""
    from tfclf.cli import UsageError

    run = tmp_path / "run"
    train(tiny_config(run, digits), None)
    (run / "flags.txt").write_text("--run_dir=run\n--model=resnet_custom\n")
    before = dir_hashes(run)
    other = {**TINY_ARGS, "widths": (8, 24)}
    with pytest.raises(UsageError, match="holds an earlier run of resnet_custom.*cannot resume"):
        cfg = tiny_config(run, digits, epochs=epochs, model_args=other)
        train(cfg, None, on_ready=lambda: (run / "flags.txt").write_text("the new run's\n"))
    assert dir_hashes(run) == before


def test_config_defaults_are_valid_and_stage_specs_take_spaces():
    cfg = TrainConfig()
    assert cfg.validate() == [] and cfg.stages[0].epochs == 22 and cfg.batch_size == 64
    stage, errors = parse_stage(
        "size=20 augment=affine(10, 0.1) cycle_epochs=4 milestones=3,5", cfg.stages[0]
    )
    assert errors == [] and stage.augment == "affine(10, 0.1)" and stage.size == 20
    assert stage.schedule.cycle_epochs == 4 and stage.schedule.milestones == (3, 5)
    bad = dataclasses.replace(cfg, stages=(dataclasses.replace(stage, augment="blur(3)"),))
    assert any("augment" in e and "blur" in e for e in bad.validate())


def test_a_nan_loss_stops_the_run_naming_the_last_good_checkpoint(tmp_path, digits):
    from tfclf.training.trainer import LossNotFinite

    run = tmp_path / "run"

    def config(lr2):
        cfg = tiny_config(run, digits, epochs=1, model="lenet5", model_args={})
        good = cfg.stages[0]
        bad = dataclasses.replace(
            good, schedule=dataclasses.replace(good.schedule, lr=lr2, epochs=2)
        )
        return dataclasses.replace(cfg, stages=(good, bad))

    with pytest.raises(LossNotFinite) as e:
        train(config(1e30))  # stage 2 diverges at once
    message = str(e.value)
    assert "stage 2, epoch 1" in message and "ckpt-1 (stage 1, epoch 1)" in message, message
    assert "\n" not in message
    rows = json.loads((run / "history.json").read_text())["epochs"]
    assert [(r["stage"], r["epoch"]) for r in rows] == [(0, 1)]  # nothing diverged was kept
    result = train(config(0.05))  # rerun with a lower LR: resumes after stage 1
    rows = json.loads((run / "history.json").read_text())["epochs"]
    assert [(r["stage"], r["epoch"]) for r in rows] == [(0, 1), (1, 1), (1, 2)]
    assert all(np.isfinite(r["loss"]) for r in rows)
    assert np.isfinite(result.model(np.zeros((1, 28, 28, 1), np.float32))).all()


@pytest.fixture
def op_determinism():
    """Lets a test run with ``deterministic=True``; op determinism is process-wide, so the
    next tests in this worker get it switched off again."""
    yield
    from tensorflow.python.framework import config

    config.disable_op_determinism()


def test_same_seed_reproduces_a_run_exactly(tmp_path, digits, op_determinism):
    def run(name, seed):
        cfg = tiny_config(tmp_path / name, digits, seed=seed, deterministic=True, val_every=1)
        cfg = dataclasses.replace(cfg, augment="random_crop(2)")
        return [(r["loss"], r["val_loss"]) for r in train(cfg).history]

    first = run("a", seed=1)
    assert run("b", seed=1) == first
    assert run("c", seed=2) != first


def test_auto_precision_probe_measures_the_model_and_leaves_the_run_unchanged(
    tmp_path, digits, monkeypatch, op_determinism
):
    """On a CPU with native bfloat16 ``--precision=auto`` builds the model once in float32 to
    count its MACs; the tiny test model then trains in float32, exactly as an explicit
    ``--precision=float32`` run does (the probe's random draws are undone)."""
    import tfclf.system

    monkeypatch.setattr(tfclf.system, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    monkeypatch.setattr(tfclf.system.tf.config, "list_physical_devices", lambda kind=None: [])

    def run(name, precision):
        cfg = tiny_config(tmp_path / name, digits, epochs=1, deterministic=True, val_every=1)
        result = train(dataclasses.replace(cfg, precision=precision))
        return result.metrics["precision"], [(r["loss"], r["val_loss"]) for r in result.history]

    explicit, auto = run("explicit", "float32"), run("auto", "auto")
    assert auto[0] == "float32"
    assert auto == explicit


def test_steps_per_execution_reaches_compile_and_changes_no_number(
    tmp_path, digits, op_determinism
):
    """Several steps per call into TensorFlow (the default, 8) run the same steps: a run's
    losses equal those of one step per call."""
    seen = []

    class Spy(Phase):
        def compile(self, model, ctx, **compile_args):
            seen.append(compile_args["steps_per_execution"])
            super().compile(model, ctx, **compile_args)

    def run(name, spe):
        cfg = tiny_config(tmp_path / name, digits, epochs=2, deterministic=True, val_every=1)
        cfg = dataclasses.replace(cfg, steps_per_execution=spe)
        return [(r["loss"], r["val_loss"]) for r in train(cfg, Spy()).history]

    assert run("one", 1) == run("five", 5)
    assert seen == [1, 5]
    assert TrainConfig().steps_per_execution == 8


def _stages(*specs):
    """Stages of (size, epochs, lr) with a constant LR."""
    return tuple(
        Stage(size=size, schedule=ScheduleConfig(kind="constant", lr=lr, epochs=epochs))
        for size, epochs, lr in specs
    )


def test_time_budget_stops_cleanly_and_still_reports(tmp_path, digits):
    from tfclf.finish import finish_run

    cfg = tiny_config(tmp_path / "run", digits, epochs=500, time_budget=3.0)
    result = train(cfg)
    assert result.metrics["stopped_by_time_budget"] is True
    assert 0 < result.metrics["epochs_run"] < 500
    finish_run(result, cfg)
    assert (tmp_path / "run" / "report" / "report.json").exists()


def test_val_every_validates_every_nth_and_each_stage_last_epoch(tmp_path, digits):
    cfg = tiny_config(tmp_path / "run", digits, val_every=2)
    cfg = dataclasses.replace(cfg, stages=_stages((16, 3, 0.05), (16, 2, 0.05)))
    rows = train(cfg).history
    assert [(r["stage"], r["epoch"]) for r in rows if "val_accuracy" in r] == [
        (0, 2),
        (0, 3),
        (1, 2),
    ]


def test_early_stopping_ends_the_stage_and_a_rerun_moves_on(tmp_path, digits):
    # LeNet-5 has no batch norm or dropout; at lr 1e-9 its validation accuracy cannot move,
    # so patience 1 stops each stage after its second epoch.
    cfg = tiny_config(tmp_path / "run", digits, model="lenet5", model_args={}, early_stopping=1)
    cfg = dataclasses.replace(cfg, stages=_stages((None, 6, 1e-9), (None, 6, 1e-9)))
    first = train(cfg)
    assert [(r["stage"], r["epoch"]) for r in first.history] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert first.metrics["stopped_early"] == [1, 2] and first.metrics["epochs_run"] == 4
    again = train(cfg)  # the same run again: both stages are over, nothing more is trained
    assert again.history == first.history


@pytest.mark.parametrize(
    "losses, earlier, classes, warned_at",
    [
        ([3.04, 13.02, 64.63, 26.62], (), 10, 3),  # lr 0.2 on a MobileNet student: diverging
        ([7.88, 83.64, 8.64, 5.83], (), 10, None),  # the same student distilled: one spike
        ([7.88, 83.64, 38.1, 5.83], (), 10, 3),  # ... which had it lasted
        ([2.13, 1.13, 0.89, 0.83, 0.79], (), 10, None),  # the quick start
        ([0.10, 0.31, 0.25, 0.12], (), 10, None),  # a warm restart from a small loss: < ln(10)
        ([0.62, 1.32, 1.10, 0.95], (), 2, None),  # FixRes' second stage on two classes
        ([1.5, 1.4, float("nan"), 1.3], (), 10, None),  # NaN is StopOnNonFiniteLoss's business
        ([9.0], (1.2, 1.0, 8.0), 10, 1),  # a resumed stage remembers its earlier epochs
    ],
)
def test_a_diverging_loss_is_warned_once_naming_the_lr(
    monkeypatch, losses, earlier, classes, warned_at
):
    from tfclf.training import callbacks

    seen = []
    monkeypatch.setattr(callbacks.logging, "warning", lambda msg, *a: seen.append(msg % a))
    guard = callbacks.DivergenceWarning(num_classes=classes, lr=0.2, losses=earlier)
    for epoch, loss in enumerate(losses):
        guard.on_epoch_end(epoch, {"loss": loss})
    if warned_at is None:
        assert seen == []
    else:
        assert len(seen) == 1 and seen[0].startswith(f"epoch {warned_at}: training loss"), seen
        assert "lower --lr (this stage's peak is 0.2)" in seen[0]


def test_precise_bn_sets_each_trainable_batch_norm_to_its_inputs_statistics():
    from tfclf.training.callbacks import PreciseBatchNorm

    inp = keras.Input((4, 4, 2))
    x = layers.Conv2D(3, 1, name="conv1")(inp)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(2, 1, name="conv2")(x)
    x = layers.BatchNormalization(name="bn2")(x)
    out = layers.BatchNormalization(name="frozen")(x)
    model = keras.Model(inp, out)
    model.get_layer("frozen").trainable = False
    images = np.random.default_rng(0).normal(3, 2, (40, 4, 4, 2)).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((images, np.zeros(40))).batch(16)  # 16, 16, 8

    PreciseBatchNorm(model, ds).on_test_begin()
    for name in ("bn1", "bn2"):
        # bn2's input depends on bn1 normalising each batch by its own statistics
        upto = keras.Model(inp, model.get_layer(name).input)
        x = np.concatenate([upto(b, training=True).numpy() for b in np.split(images, [16, 32])])
        bn = model.get_layer(name)
        np.testing.assert_allclose(bn.moving_mean.numpy(), x.mean((0, 1, 2)), rtol=1e-4)
        np.testing.assert_allclose(bn.moving_variance.numpy(), x.var((0, 1, 2)), rtol=1e-3)
    frozen = model.get_layer("frozen")
    assert (frozen.moving_mean.numpy() == 0).all() and (frozen.moving_variance.numpy() == 1).all()
    # a large mean does not swamp a small variance (pooled from the batches' centred ones)
    inp = keras.Input((2, 2, 1))
    far = keras.Model(inp, layers.BatchNormalization(name="bn")(inp))
    images = (1000 + 0.01 * np.random.default_rng(1).normal(size=(40, 2, 2, 1))).astype(np.float32)
    cb = PreciseBatchNorm(far, tf.data.Dataset.from_tensor_slices((images, np.zeros(40))).batch(16))
    cb.on_test_begin()
    np.testing.assert_allclose(far.get_layer("bn").moving_variance.numpy(), images.var(), rtol=0.05)


@pytest.mark.parametrize("precise_bn", [1024, 0])
def test_a_run_validates_with_precise_bn_statistics(tmp_path, digits, precise_bn):
    """With ``--precise_bn`` the stem's batch norm ends the run holding its input's
    statistics over the training images; the moving average of one epoch does not."""
    cfg = tiny_config(tmp_path / "run", digits, precise_bn=precise_bn, epochs=1)
    result = train(cfg)
    model, data = result.model, result.data
    bn = next(layer for layer in model.layers if isinstance(layer, layers.BatchNormalization))
    images = result.normalizer(tf.constant(data.train.images, tf.float32) / 255.0)
    x = keras.Model(model.inputs, bn.input)(images).numpy()
    error = np.abs(bn.moving_mean.numpy() - x.mean((0, 1, 2))).max() / x.std()
    assert (error < 1e-3) == bool(precise_bn), error  # float32 conv noise: ~1e-4


def test_report_md_lists_classes_worst_first_and_the_most_confused_pairs():
    from tfclf.report import classification_metrics, markdown_report

    labels = np.repeat([0, 1, 2], 10)
    pred = labels.copy()
    pred[:3] = 2  # three cats taken for cows
    pred[10] = 0  # one dog for a cat
    m = classification_metrics(labels, 5.0 * np.eye(3)[pred], ["cat", "d|og", "cow"])
    assert m["most_confused"] == [
        {"true": "cat", "predicted": "cow", "count": 3, "share_of_true": 0.3},
        {"true": "d|og", "predicted": "cat", "count": 1, "share_of_true": 0.1},
    ]
    model = {"name": "net", "trainable_params": 1000, "macs": 2e6, "files": {"keras": 4096}}
    text = markdown_report({"split": "val", "image_size": 8, **m, "model": model})
    assert "top-1 **86.67 %**" in text and "keras file 4.0 KB" in text
    rows = [r for r in text.splitlines() if r.startswith("| ") and r[2:5] in ("cat", "d\\|", "cow")]
    assert [r.split(" | ")[0] for r in rows[:3]] == ["| cat", "| cow", "| d\\|og"]  # F1 .78 .87 .95
    assert "| cat | cow | 3 | 30.0 % |" in text and "| d\\|og | cat | 1 | 10.0 % |" in text
