import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Each pytest-xdist worker (and the CLIs it starts) gets its share of the cores as
# TensorFlow threads: `-n 2` on 2 cores ran test_compress + test_train in 2:58 instead of
# 3:54 with TensorFlow's default pools in both workers (docs/benchmarks/tests.md).
_threads = (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
for _name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
    os.environ.setdefault(_name, str(max(1, _threads)))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tfclf  # noqa: E402,F401  (Keras 2 and oneDNN chosen before TensorFlow loads)
from tfclf.config import ScheduleConfig, Stage, TrainConfig  # noqa: E402
from tfclf.data import load_source  # noqa: E402

TINY_ARGS = {"depths": (1, 1), "widths": (8, 16), "strides": (1, 2)}


def dir_hashes(root) -> dict:
    """Every file under ``root`` by relative path, as a hash of its bytes: equal before and
    after means nothing was written, added or removed."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def digits_npz(tmp_path_factory, per_class: int) -> str:
    """``per_class`` real MNIST digits of each class as an ``.npz``; returns its path."""
    data = load_source("mnist5k")
    idx = np.concatenate([np.flatnonzero(data.train.labels == c)[:per_class] for c in range(10)])
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, x=data.train.images[idx], y=data.train.labels[idx])
    return str(path)


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    return f"npz:{digits_npz(tmp_path_factory, 60)}"


SMALL_CNN = "report003_small_cnn"
SMALL_CNN_EPOCHS = 8  # reaches about 90 % on the 120 held-out digits


@pytest.fixture(scope="session")
def small_cnn_run(tmp_path_factory, digits):
    """Report 003's small CNN trained 8 epochs with the BN-scale L1 penalty on 600 real
    digits, finished with its ``best_model/`` and ``flags.txt`` as the training CLI leaves
    them: ``(run_dir, config, result)``. The compression and slimming tests share it (one
    training a worker); they read it and write nothing into it but new reports."""
    from tfclf.finish import finish_run
    from tfclf.training.trainer import train

    run_dir = tmp_path_factory.mktemp("runs") / "small_cnn"
    cfg = tiny_config(
        run_dir, digits, epochs=SMALL_CNN_EPOCHS, model=SMALL_CNN, model_args={}, bn_l1=1e-4
    )
    result = train(cfg)
    finish_run(result, cfg)
    flags = [
        f"--run_dir={run_dir}",
        f"--model={SMALL_CNN}",
        "--model_args={}",
        "--bn_l1=1e-4",
        f"--source={digits}",
        "--batch_size=50",
        "--precision=float32",
        "--augment=",
        "--l2=0",
        "--schedule=constant",
        "--lr=0.05",
        f"--epochs={SMALL_CNN_EPOCHS}",
        "--warmup_epochs=0",
    ]
    (run_dir / "flags.txt").write_text("\n".join(flags) + "\n")
    return run_dir, cfg, result


def tiny_config(
    run_dir, source, epochs=2, lr=0.05, model="resnet_custom", model_args=TINY_ARGS, **kw
) -> TrainConfig:
    schedule = ScheduleConfig(kind="constant", lr=lr, epochs=epochs, warmup_epochs=0)
    return TrainConfig(
        run_dir=str(run_dir),
        model=model,
        model_args=model_args,
        source=source,
        batch_size=50,
        precision="float32",
        augment="",
        verbose="line",
        l2=0.0,
        stages=(Stage(schedule=schedule),),
        **kw,
    )


TINY_FLAGS = (
    "--model=resnet_custom",
    f"--model_args={TINY_ARGS}",
    "--batch_size=50",
    "--augment=",
    "--precision=float32",
    "--l2=0",
    "--precise_bn=0",
    "--schedule=constant",
    "--lr=0.05",
    "--warmup_epochs=0",
)


def train_like_cli(run, source: str, *args: str):
    """A finished run made in this process as ``python -m tfclf.train`` makes one: flags ->
    config, ``flags.txt`` once the run is ready, then the export, report and metrics.
    Returns the loop's result."""
    from absl import flags

    from tfclf import cli
    from tfclf.finish import finish_run
    from tfclf.training.trainer import train

    cli.define_train_flags()
    fl = flags.FLAGS
    try:
        fl(["prog", f"--run_dir={run}", f"--source={source}", *TINY_FLAGS, *args])
        cli.absolute_paths(fl)
        cfg, errors = cli.config_from_flags(fl)
        flagfile = cli.resolved_flagfile()
    finally:
        fl.unparse_flags()
    assert not errors, errors
    result = train(cfg, on_ready=lambda: (run / "flags.txt").write_text(flagfile))
    finish_run(result, cfg)
    return result


def run_clis(cases: list, work_dir: Path, timeout: int = 600, cwd=None) -> list[dict]:
    """``[module, [args...]]`` cases run in one process by ``cli_runner.py`` (TensorFlow
    imported once) in ``cwd``, each as ``python -m module args`` (or ``python script.py
    args``) would run; returns each case's ``{"args", "code", "stdout", "stderr"}``."""
    cases_file = work_dir / f"cli_cases_{os.getpid()}.json"
    cases_file.write_text(json.dumps(cases))
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "cli_runner.py"), str(cases_file)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(cases), proc.stdout[-2000:]
    return results
