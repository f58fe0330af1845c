"""End-to-end training runs in subprocesses: artefacts, FixRes, resume after SIGKILL (under
MirroredStrategy), TensorBoard tags, bad flags and MultiWorkerMirroredStrategy."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import digits_npz

from tfclf.training.schedules import ScheduleConfig, schedule_values

TINY = [
    "--model=resnet_custom",
    "--model_args={'depths': (1, 1), 'widths': (8, 16), 'strides': (1, 2)}",
    "--batch_size=100",
    "--precision=float32",
    "--verbose=line",
    "--lr=0.05",
    "--augment=random_crop(2)",
    "--warmup_epochs=0",
    "--l2=0",
]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """1,000 real MNIST digits as an .npz source (800 train / 200 val)."""
    return f"--source=npz:{digits_npz(tmp_path_factory, 100)}"


def train(*args, timeout=300, env=None, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "tfclf.train", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def tensorboard_tags(log_dir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in log_dir.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"tensors": 0, "images": 0})
        acc.Reload()
        for kind in ("tensors", "images", "scalars"):
            tags.update(acc.Tags().get(kind, []))
    return tags


def test_fixres_run_from_nested_flagfiles_writes_every_artefact(tmp_path, digits):
    run = tmp_path / "run"
    base = tmp_path / "base.flags"
    base.write_text("\n".join(["# base", *TINY, digits, "--schedule=cosine"]) + "\n")
    exp = tmp_path / "exp.flags"
    exp.write_text(
        f"--flagfile={base}\n--run_dir={run}\n"
        "--stage=size=16 epochs=4 lr=0.05\n"
        "--stage=size=24 epochs=2 schedule=constant lr=0.01 train=classifier_bn\n"
    )
    proc = train(f"--flagfile={exp}", "--label_smoothing=0.1")
    assert "done:" in proc.stdout
    # the SavedModel export writes nothing but the file (no endpoint listing, no warnings)
    assert "Saved artifact" not in proc.stdout + proc.stderr
    for noise in (
        "compiled metrics have yet to be built",
        "contains input name(s)",
        "Sharding callback duration",
        "Assets written to",
        # TensorFlow's start-up lines, printed by its libraries straight to fd 2
        # (tfclf.native_stderr drops them)
        "before absl::InitializeLog",
        "oneDNN custom operations are on",
        "Could not find cuda drivers",
        "failed call to cuInit",
    ):  # TF's INFO records
        assert noise not in proc.stderr, noise
    assert "trainer.py" in proc.stderr  # while tfclf's own INFO lines still show

    for rel in (
        "flags.txt",
        "normalizer.json",
        "classes.json",
        "history.json",
        "metrics.json",
        "checkpoints/checkpoint",
        "best_stage0.weights.h5",
        "best_stage1.weights.h5",
        "best_model/model.keras",
        "best_model/saved_model/saved_model.pb",
        "report/report.json",
        "report/report.md",
        "report/confusion_matrix.png",
        "report/per_class.png",
        "report/curves.png",
    ):
        assert (run / rel).exists(), rel
    assert len(list((run / "report" / "examples").glob("class_*.png"))) == 10
    flags_txt = (run / "flags.txt").read_text()
    assert "--label_smoothing=0.1" in flags_txt and "--lr=0.05" in flags_txt
    assert flags_txt.count("--stage=") == 2

    history = json.loads((run / "history.json").read_text())["epochs"]
    assert [(r["stage"], r["epoch"]) for r in history] == [
        (0, 1),
        (0, 2),
        (0, 3),
        (0, 4),
        (1, 1),
        (1, 2),
    ]
    metrics = json.loads((run / "metrics.json").read_text())
    report = json.loads((run / "report" / "report.json").read_text())
    # 32 steps of a 2-block net: learning shows (chance is 0.10, 200 examples: sd 0.02)
    assert metrics["top1"] == report["top1"] > 0.15
    assert len(report["per_class"]) == 10 and sum(r["support"] for r in report["per_class"]) == 200
    assert np.array(report["confusion_matrix"]).sum() == 200
    assert report["image_size"] == 24 and report["model"]["macs"] > 0
    assert f"top-1 **{100 * report['top1']:.2f} %**" in (run / "report" / "report.md").read_text()

    # FixRes: the final model takes the second stage's resolution; in that stage only the
    # classifier and the last batch norm train: compare its two epoch checkpoints.
    import tensorflow as tf

    from tfclf.export import trained_part
    from tfclf.keras import keras

    final = keras.models.load_model(run / "best_model" / "model.keras", compile=False)
    assert final.input_shape == (None, 24, 24, 1)
    # the SavedModel serves the same forward pass
    served = tf.saved_model.load(str(run / "best_model" / "saved_model"))
    x = np.random.default_rng(0).random((3, 24, 24, 1), np.float32)
    np.testing.assert_allclose(
        served.signatures["serving_default"](tf.constant(x))["output_0"], final(x), atol=1e-5
    )
    ckpts = tf.train.get_checkpoint_state(str(run / "checkpoints")).all_model_checkpoint_paths
    a, b = (tf.train.load_checkpoint(c) for c in ckpts[-2:])
    assert [a.get_tensor(f"{v}/.ATTRIBUTES/VARIABLE_VALUE") for v in ("stage", "epoch")] == [1, 1]
    n_weighted = sum(1 for layer in trained_part(final).layers if layer.weights)
    stem = "model/layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE"
    logits = f"model/layer_with_weights-{n_weighted - 1}/kernel/.ATTRIBUTES/VARIABLE_VALUE"
    assert a.get_tensor(stem).shape == trained_part(final).get_layer("stem_conv").kernel.shape
    np.testing.assert_array_equal(a.get_tensor(stem), b.get_tensor(stem))
    assert not np.array_equal(a.get_tensor(logits), b.get_tensor(logits))

    tags = tensorboard_tags(run / "tensorboard")
    for tag in (
        "epoch_loss",
        "epoch_accuracy",
        "epoch_lr",
        "epoch_images_per_second",
        "epoch_epoch_seconds",
        "augmented_inputs",
        "confusion_matrix",
    ):
        assert tag in tags, (tag, sorted(tags))
    assert any(t.startswith("_hparams_") for t in tags), sorted(tags)
    # (tfclf.evaluate rebuilding a run's report: test_compress's predict CLI test)


def test_sigkill_resumes_after_last_finished_epoch_with_continuous_lr_mirrored(tmp_path, digits):
    run = tmp_path / "run"
    args = [
        *TINY,
        digits,
        f"--run_dir={run}",
        "--epochs=6",
        "--schedule=cosine",
        "--warmup_epochs=1",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfclf.train", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    history_path = run / "history.json"
    deadline = time.time() + 240
    while time.time() < deadline:
        if history_path.exists() and len(json.loads(history_path.read_text())["epochs"]) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(json.loads(history_path.read_text())["epochs"])
    assert 2 <= done_before < 6, "the run was not killed mid-way"

    # resumed on "another machine": two replicas of a MirroredStrategy (two logical CPUs),
    # which needs --resume (other flags from here on); the checkpoint is the same
    proc = train(*args, "--resume", "--strategy=mirrored", "--cpu_devices=2")
    # from the last checkpoint: the history's last epoch, or one more if the kill came
    # between a checkpoint and its history row (history is written second)
    resumed = re.search(r"resuming at stage 1 after epoch (\d+)", proc.stderr)
    assert resumed and int(resumed[1]) in (done_before, done_before + 1), proc.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["replicas_identical"] is True
    rows = json.loads(history_path.read_text())["epochs"]
    assert [r["epoch"] for r in rows] == list(range(1, 7))  # nothing repeated or skipped
    steps_per_epoch = 800 // 100
    expected = schedule_values(
        ScheduleConfig(kind="cosine", lr=0.05, epochs=6, warmup_epochs=1), steps_per_epoch
    )
    for r in rows:  # the LR logged at each epoch's end is the schedule's at its last step
        assert r["lr"] == pytest.approx(expected[r["epoch"] * steps_per_epoch - 1], rel=1e-4)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_workers(run, digits, timeout):
    """Two local workers of one MultiWorkerMirroredStrategy job; None if they hang."""
    workers = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    procs, logs = [], []
    for i in range(2):
        env = dict(
            os.environ,
            TF_CONFIG=json.dumps(
                {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
            ),
        )
        logs.append(open(run.parent / f"{run.name}_worker{i}.log", "w+"))  # noqa: SIM115
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tfclf.train",
                    *TINY,
                    digits,
                    f"--run_dir={run}",
                    "--epochs=1",
                    "--strategy=multi_worker",
                ],
                env=env,
                stdout=logs[-1],
                stderr=subprocess.STDOUT,
            )
        )
    try:
        codes = [p.wait(timeout=timeout) for p in procs]
    except subprocess.TimeoutExpired:
        codes = None
    for p in procs:
        p.kill()
        p.wait()
    outs = []
    for log in logs:
        log.seek(0)
        outs.append(log.read())
        log.close()
    return codes, outs


def test_multi_worker_strategy_with_two_local_workers(tmp_path, digits):
    # TF's collective start-up between two processes hangs now and then on a loaded
    # 2-core machine (seen in CI and in 1 of 3 local runs); a hang gets one fresh try.
    for attempt in range(2):
        run = tmp_path / f"run{attempt}"
        codes, outs = _run_two_workers(run, digits, timeout=150)
        if codes is not None:
            break
    assert codes == [0, 0], "\n".join(o[-2000:] for o in outs)
    metrics = json.loads((run / "metrics.json").read_text())  # written by the chief only
    assert metrics["replicas"] == 2 and metrics["replicas_identical"] is True
    assert (run / ".workers" / "1" / "checkpoints").exists()
