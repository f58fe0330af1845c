"""Knowledge distillation (issue 11): the teacher stays frozen and in inference mode, the
loss is the stated formula, and what a distilled run saves is the student alone."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_ARGS, tiny_config

from tfclf.distill import Distiller, DistillPhase, Teacher, TeacherError
from tfclf.keras import keras, layers
from tfclf.training.trainer import train


def small(name, classes=5, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(4, 3, name=f"{name}_conv")(inputs)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(classes, name=f"{name}_logits")(x), name=name)


def batch(n=16, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(2.0, 1.0, (n, 8, 8, 1)).astype("float32")  # far from BN's initial stats
    return x, np.eye(classes, dtype="float32")[rng.integers(0, classes, n)]


def test_fit_changes_the_student_only_and_keeps_the_teacher_in_inference_mode():
    student, teacher = small("student"), small("teacher", seed=1)
    before_t = [w.copy() for w in teacher.get_weights()]  # kernels and BN moving stats
    before_s = [w.copy() for w in student.get_weights()]
    d = Distiller(student=student, teacher=teacher)
    d.compile(keras.optimizers.SGD(0.1), metrics=["accuracy"], alpha=0.5, temperature=2.0)
    x, y = batch()
    history = d.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert {"student_loss", "distillation_loss", "accuracy"} <= set(history.history)
    for a, b in zip(before_t, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not teacher.trainable
    changed = [not np.array_equal(a, b) for a, b in zip(before_s, student.get_weights())]
    assert all(changed)  # kernels, biases and the student's own BN statistics


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_loss_matches_a_hand_computation(alpha):
    student, teacher = small("student"), small("teacher", seed=1)
    t_temp, x, y = 3.0, *batch(8)
    d = Distiller(student=student, teacher=teacher)
    d.compile(keras.optimizers.SGD(0.0), alpha=alpha, temperature=t_temp)
    s = student(x, training=True).numpy()
    t = teacher(x, training=False).numpy()

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    ce = -(y * np.log(softmax(s))).sum(-1).mean()
    p, q = softmax(t / t_temp), softmax(s / t_temp)
    kl = (p * np.log(p / q)).sum(-1).mean()
    expected = alpha * t_temp**2 * kl + (1 - alpha) * ce
    total, student_loss, kd = d.distillation_losses(tf.constant(y), tf.constant(s), tf.constant(t))
    assert float(student_loss) == pytest.approx(ce, rel=1e-5)
    assert float(kd) == pytest.approx(kl, rel=1e-4, abs=1e-7)
    assert float(total) == pytest.approx(expected, rel=1e-4, abs=1e-7)


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory, digits):
    from tfclf.finish import finish_run

    run_dir = tmp_path_factory.mktemp("teacher") / "run"
    cfg = tiny_config(run_dir, digits, epochs=3, model="lenet5", model_args={})
    finish_run(train(cfg), cfg)
    return run_dir


@pytest.fixture(scope="module")
def snapshot_run(tmp_path_factory, digits):
    """A run at 20 px with a snapshot at the end of each of its two 2-epoch cycles: a
    second teacher, of another architecture and resolution, and a snapshot ensemble.
    Validated after epochs 2 (a cycle end, forced), 3 (--val_every, mid-cycle) and 4."""
    from tfclf.config import ScheduleConfig, Stage
    from tfclf.finish import finish_run

    run_dir = tmp_path_factory.mktemp("snapshots") / "run"
    schedule = ScheduleConfig(
        kind="cosine_restarts", lr=0.05, epochs=4, restart_epochs=2, t_mul=1.0, warmup_epochs=0
    )
    cfg = tiny_config(run_dir, digits, snapshots=True, val_every=3)
    cfg = dataclasses.replace(cfg, stages=(Stage(size=20, schedule=schedule),))
    result = train(cfg)
    return run_dir, cfg, finish_run(result, cfg), result


def test_an_ensemble_teacher_averages_its_members_logits_each_at_its_own_size(
    teacher_run, snapshot_run, digits
):
    from tfclf.data import load_source

    snapshot = snapshot_run[0] / "snapshots" / "stage0_epoch004" / "model.keras"

    pixels = load_source(digits).train.images[:16]  # 28 x 28
    ensemble = Teacher(f"{teacher_run}, {snapshot}")
    assert ensemble.shapes == [(28, 28, 1), (20, 20, 1)]
    a = Teacher(str(teacher_run))(pixels).numpy()
    resized = tf.image.resize(tf.cast(pixels, tf.float32), (20, 20), antialias=True)
    b = Teacher(str(snapshot)).members[0](resized, training=False).numpy()
    assert np.abs(a - b).max() > 0.1  # two different teachers
    np.testing.assert_allclose(ensemble(pixels).numpy(), (a + b) / 2, rtol=1e-5, atol=1e-5)


def test_ensemble_members_that_disagree_are_one_line_naming_both(monkeypatch, tmp_path):
    import tfclf.distill as distill

    shapes = {"a": ((28, 28, 1), 10), "b": ((28, 28, 1), 5), "c": ((28, 28, 3), 10)}
    for name in shapes:
        (tmp_path / name).mkdir()
    loaded = []

    def load(source):
        loaded.append(source)
        return None, *shapes[Path(source).name]

    monkeypatch.setattr(distill, "load_teacher", load)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TeacherError, match="b takes 1-channel images into 5 classes but a "):
        Teacher("a,b")
    with pytest.raises(TeacherError, match="c takes 3-channel images into 10 classes"):
        Teacher("a,c")
    with pytest.raises(TeacherError, match="an empty name between commas"):
        Teacher("a,,c")
    loaded.clear()
    with pytest.raises(TeacherError, match="--teacher: d not found"):
        Teacher("a,b,d")
    assert loaded == []  # named before any member was loaded


def test_a_class_count_mismatch_is_one_line_naming_both(teacher_run):
    phase = DistillPhase(str(teacher_run))
    with pytest.raises(TeacherError, match="has 10 classes but the student's data has 4"):
        phase.check(4, 1)


def test_a_distilled_run_saves_and_exports_the_student_alone(teacher_run, tmp_path, digits):
    from tfclf.finish import finish_run

    cfg = tiny_config(tmp_path / "student", digits, epochs=2, teacher=str(teacher_run))
    result = train(cfg)
    assert result.model.name == "resnet_custom"
    metrics = finish_run(result, cfg)
    assert 0 < metrics["teacher_top1"] <= 1 and metrics["teacher"] == str(teacher_run)
    loaded = keras.models.load_model(tmp_path / "student" / "best_model" / "model.keras")
    names = [w.name for w in loaded.weights]
    assert not any("lenet" in n or "teacher" in n for n in names), names
    assert loaded.count_params() == result.model.count_params()  # nothing of the teacher
    saved = json.loads((tmp_path / "student" / "metrics.json").read_text())
    assert saved["teacher_top1"] == metrics["teacher_top1"]
    assert "teacher_members_top1" not in saved


def test_a_run_distilled_from_an_ensemble_reports_it_and_each_member(
    teacher_run, snapshot_run, tmp_path, digits
):
    from tfclf.data import prepare_data
    from tfclf.finish import ensemble_top1, finish_run

    both = f"{teacher_run},{snapshot_run[0] / 'snapshots'}"  # 1 + 2 members, 28 and 20 px
    cfg = tiny_config(tmp_path / "student", digits, epochs=1, teacher=both)
    metrics = finish_run(train(cfg), cfg)
    val = prepare_data(cfg)[0].val  # the student's validation split
    alone = [ensemble_top1(m, val)[0] for m in Teacher(both).sources]
    assert len(alone) == 3
    assert metrics["teacher_members_top1"] == alone
    ensemble = Teacher(both)(val.images).numpy().argmax(-1)
    assert metrics["teacher_top1"] == pytest.approx((ensemble == val.labels).mean())


def test_a_teacher_trained_on_another_split_is_named_in_a_warning(tmp_path, digits):
    from tfclf.distill import split_leak_warning

    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "flags.txt").write_text(f"--source={digits}\n--seed=0\n--val_fraction=0.2\n")
    same = tiny_config(tmp_path / "s", digits, seed=3, split_seed=0)
    assert split_leak_warning(str(teacher), same) is None
    other = tiny_config(tmp_path / "s", digits, seed=3)
    assert "--split_seed=0 --val_fraction=0.2" in split_leak_warning(str(teacher), other)
    elsewhere = tiny_config(tmp_path / "s", "mnist5k", seed=3)
    assert split_leak_warning(str(teacher), elsewhere) is None
    snapshot = teacher / "snapshots" / "stage0_epoch004" / "model.keras"  # its run's split
    snapshot.parent.mkdir(parents=True)
    assert "--split_seed=0" in split_leak_warning(str(snapshot), other)


def test_cached_teacher_logits_equal_the_ones_computed_in_the_step(teacher_run, tmp_path, digits):
    from tfclf.cli import UsageError
    from tfclf.data import prepare_data
    from tfclf.models.registry import create_model
    from tfclf.training.phases import PhaseContext

    cfg = tiny_config(tmp_path / "s", digits, kd_cache_teacher=True, teacher=str(teacher_run))
    data, norm = prepare_data(cfg)
    ctx = PhaseContext(cfg, cfg.stages[0], 0, 1, data.num_classes, tmp_path, norm)
    phase = DistillPhase(str(teacher_run), cache=True)
    cached = phase.per_example(data.train, ctx)
    assert cached.shape == (len(data.train), 10) and cached.dtype == np.float32
    student = create_model("resnet_custom", data.image_shape, 10, **TINY_ARGS)
    distiller = phase.wrap(student, ctx)
    x = norm(tf.constant(data.train.images[:32]) / 255)  # what the student's batch holds
    np.testing.assert_allclose(distiller.teacher_logits(x).numpy(), cached[:32], atol=1e-3)
    augmented = dataclasses.replace(cfg, augment="flip_lr")
    ctx = dataclasses.replace(ctx, cfg=augmented)
    with pytest.raises(UsageError, match="--kd_cache_teacher needs --augment=''"):
        phase.per_example(data.train, ctx)


def test_a_cached_distillation_run_trains(teacher_run, tmp_path, digits):
    cfg = tiny_config(
        tmp_path / "student", digits, epochs=1, teacher=str(teacher_run), kd_cache_teacher=True
    )
    row = train(cfg).history[-1]
    assert np.isfinite(row["distillation_loss"]) and row["distillation_loss"] > 0


def test_snapshots_are_kept_at_each_cycle_end_scored_as_an_ensemble_and_teach(snapshot_run):
    from tfclf.data import prepare_data
    from tfclf.finish import ensemble_top1

    run_dir, cfg, metrics, _ = snapshot_run
    names = sorted(p.name for p in (run_dir / "snapshots").iterdir())
    assert names == ["stage0_epoch002", "stage0_epoch004"]
    rows = json.loads((run_dir / "history.json").read_text())["epochs"]
    # validated at each snapshot (precise BN) and, by --val_every=3, mid-cycle
    assert ["val_accuracy" in r for r in rows] == [False, True, True, True]
    val = prepare_data(cfg)[0].val
    teacher = Teacher(str(run_dir / "snapshots"))  # what --teacher=RUN/snapshots loads
    assert [Path(s).parent.name for s in teacher.sources] == names
    assert teacher.shapes == [(20, 20, 1)] * 2
    members = [ensemble_top1(s, val)[0] for s in teacher.sources]
    assert metrics["snapshot_members_top1"] == members
    assert metrics["snapshot_members_top1"][-1] == pytest.approx(rows[-1]["val_accuracy"])
    ensemble = teacher(val.images).numpy().argmax(-1)
    assert metrics["snapshot_top1"] == pytest.approx((ensemble == val.labels).mean())


def _h5_arrays(path) -> list[np.ndarray]:
    import h5py

    arrays = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda _, v: arrays.append(v[()]) if isinstance(v, h5py.Dataset) else None)
    return arrays


def test_with_warm_restarts_the_best_model_is_the_best_cycle_end(snapshot_run):
    """Epoch 3, validated mid-cycle at a high learning rate, is never kept as the best."""
    run_dir, *_ = snapshot_run
    rows = json.loads((run_dir / "history.json").read_text())["epochs"]
    ends = {2: rows[1]["val_accuracy"], 4: rows[3]["val_accuracy"]}
    best = max(ends, key=lambda e: (ends[e], e))  # the later of equals is kept
    snapshot = run_dir / "checkpoints" / "snapshots" / f"stage0_epoch{best:03d}.weights.h5"
    kept = _h5_arrays(run_dir / "best_stage0.weights.h5")
    assert len(kept) > 4
    for a, b in zip(kept, _h5_arrays(snapshot), strict=True):
        np.testing.assert_array_equal(a, b)


def test_best_weights_are_only_taken_at_the_given_epochs(tmp_path):
    from tfclf.training.callbacks import BestWeights

    model = keras.Sequential([keras.Input((2,)), layers.Dense(1)])
    path = tmp_path / "best.weights.h5"
    keep = BestWeights(path, model, epochs=[3, 6])
    keep.set_model(model)
    for epoch, acc in enumerate([0.9, 0.5, 0.7, 0.99, 0.1, 0.7]):  # 1-based epochs 1..6
        model.layers[0].bias.assign([float(epoch + 1)])
        keep.on_epoch_end(epoch, {"loss": 1.0, "val_accuracy": acc})
    model.layers[0].bias.assign([0.0])
    model.load_weights(path)
    assert float(model.layers[0].bias[0]) == 6.0 and keep.best == 0.7  # the later of equals


def test_snapshots_that_do_not_fit_the_final_model_are_a_warning_not_a_lost_run(
    snapshot_run, monkeypatch
):
    import tfclf.export.deploy as deploy
    from tfclf.finish import finish_run

    run_dir, cfg, _, result = snapshot_run

    def unfit(*args):
        raise ValueError("Shape mismatch in layer dense: (400, 10) vs (784, 10)")

    monkeypatch.setattr(deploy, "write_snapshots", unfit)
    (run_dir / "metrics.json").unlink()
    metrics = finish_run(result, cfg)
    assert "snapshot_top1" not in metrics and metrics["top1"] > 0
    assert json.loads((run_dir / "metrics.json").read_text())["top1"] == metrics["top1"]
