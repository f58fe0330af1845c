"""Every bad input to a CLI is one ``error:`` line naming the flag, file or value, a
non-zero exit, and an earlier run directory left exactly as it was (issue 13).

Each CLI runs its whole table in one process (``cli_runner.py``; ``tfclf.predict`` and
``tfclf.models`` share one), so TensorFlow is imported once per process rather than once
per case.
"""

import fcntl
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import dir_hashes, run_clis
from PIL import Image

from tfclf.io import atomic_write_text

HERE = Path(__file__).parent

# (CLI module, arguments, text the one error line must contain). In the arguments,
# {run} is a copy of an earlier run directory, {d} a folder of prepared bad files.
CASES = {
    "tfclf.train": [
        # the earlier run has other flags: refused without --resume, which the other train
        # cases pass so that their bad input is what they meet
        (  # the only flag that differs is named (what the old record lacks is its default)
            ["--noresume", "--model=lenet5", "--source=npz:{d}/corrupt.npz"],
            "holds a run with other flags (--source: npz:{d}/good.npz -> npz:{d}/corrupt.npz): "
            "pass another --run_dir",
        ),
        (["--source=npz:{d}/corrupt.npz"], "corrupt.npz: cannot read it as .npz"),
        (["--source=npz:{d}/one_class.npz"], "a classifier needs at least 2"),
        (["--source=npz:{d}/negative.npz"], "labels must be class indices 0, 1, ...; found -1"),
        (["--source=npz:{d}/float_x.npz"], "'x' must be uint8 images, got float32"),
        (["--source=npz:{d}/short_y.npz"], "'y' must be 30 labels, got shape (29,)"),
        (["--source=npz:{d}/no_y.npz"], "needs arrays 'x' and 'y', has ['x']"),
        (["--source=folder:{d}/one_class_folder"], "a classifier needs at least 2"),
        (["--source=folder:{d}/nowhere"], "image folder not found"),
        (["--source=folder:"], "--source=folder:: a folder must follow the colon"),
        (["--source=csv:{d}/nowhere.csv"], "CSV file not found: {d}/nowhere.csv"),
        (
            ["--source=folder:{d}/mixed_sizes"],
            "3 different sizes (8x8, 9x9, 10x10); resize them on loading with --load_size=N",
        ),
        (["--source=npz:{d}/good.npz", "--mean=0.5,0.5"], "--mean/--std: the images have 1"),
        (["--source=folder:{d}/mixed_sizes", "--channels=2"], "--channels must be 1 or 3, got 2"),
        (["--source=folder:{d}/mixed_sizes", "--load_size=0"], "--load_size must be positive"),
        (
            ["--source=folder:{d}/mixed_sizes", "--load_resize=crop"],
            "--load_resize=crop needs --load_size=N",
        ),
        (
            ["--source=folder:{d}/mixed_sizes", "--load_size=8", "--val_fraction=0.1"],
            "class 'a' has 3 image(s): too few to hold out 10% for validation",
        ),
        (["--source=npz:{d}/wide.npz"], "the images are 28x30 (height x width) and the models"),
        (["--model_args={{'widthz': (8, 16)}}"], "has no argument 'widthz'; its arguments:"),
        (["--model_args=[1]"], "--model_args: not a Python dict literal"),
        (["--model=lenet5", "--dropout=0.3"], "model 'lenet5' has no argument 'dropout'"),
        (["--model=nope"], "unknown model 'nope'"),
        (["--flagfile={d}/nowhere.flags"], "--flagfile={d}/nowhere.flags: no such file"),
        (["--lr=-1"], "--lr must be positive"),
        (["--bn_l1=-1e-4"], "--bn_l1 must be >= 0"),
        (["--precise_bn=-1"], "--precise_bn must be >= 0, got -1"),
        (["--steps_per_execution=0"], "--steps_per_execution must be positive, got 0"),
        (["--stage=size=x"], "size='x' is not a int"),
        (["--augment=blur(3)"], "unknown augmentation 'blur'"),
        (["--time_budget=soon"], "--time_budget: cannot read 'soon'"),
        (["--val_every=2", "--early_stopping=3"], "--val_every=2: early stopping"),
        (["--source=npz:{d}/good.npz", "--model=simplenet"], "needs inputs of at least 32x32"),
        (["--source=npz:{d}/good.npz", "--teacher={d}/nowhere"], "--teacher"),
        (["--source=npz:{d}/good.npz", "--teacher={run},"], "an empty name between commas"),
        (["--snapshots"], "--snapshots needs a schedule with cycles (--schedule=cosine_restarts"),
        (
            ["--source=npz:{d}/good.npz", "--teacher={run},{d}/nowhere"],
            "--teacher: {d}/nowhere not found",
        ),
        (["--run_dir={d}/a_file/run"], "--run_dir: cannot write to"),
        (["stray_argument"], "unexpected arguments"),
    ],
    "tfclf.evaluate": [
        (["--run_dir={d}/nowhere"], "is {d}/nowhere a finished tfclf run?"),
        (["--run_dir={d}/a_file"], "a finished tfclf run?"),
        (["--run_dir={run}", "--file={d}/corrupt.tflite"], "--file: {d}/corrupt.tflite"),
        (["--run_dir={run}", "--file={d}/nowhere.tflite"], "--file: model file not found"),
        (["--run_dir={run}"], "{run}/best_model/model.keras: cannot load this .keras file"),
        (
            ["--run_dir={run}", "--file={d}/five.tflite"],
            "five.tflite has 5 classes; the run's data has 3",
        ),
        (
            ["--run_dir={run}", "--source=folder:{d}/animals"],
            "--source: class(es) cat, dog of folder:{d}/animals are not the model's (0, 1, 2)",
        ),
        (
            ["--run_dir={run}", "--file={d}/animals.tflite"],
            "names its classes cat, dog, cow (from the file's model card); the run's are 0, 1, 2",
        ),
    ],
    "tfclf.compress.__main__": [
        (["--run_dir={d}/nowhere"], "a finished tfclf run?"),
        ([], "--run_dir is required"),
        (["--run_dir={run}", "--prune=1.5"], "--prune: a sparsity must be in (0, 1)"),
        (["--run_dir={run}", "--prune=half"], "--prune: expected comma-separated floats"),
        (["--run_dir={run}", "--cluster=1"], "--cluster"),
        (["--run_dir={run}", "--slim=1"], "--slim: a channel ratio must be in (0, 1), got 1.0"),
        (["--run_dir={run}", "--modes=float64"], "--modes"),
        (["--run_dir={run}", "--max_tflite_kb=-3"], "--max_tflite_kb"),
        (["--run_dir={run}"], "{run}/best_model/model.keras: cannot load this .keras file"),
        (["--run_dir={run}", "--latency_runs=0"], "--latency_runs must be >= 1, got 0"),
        (["--run_dir={run}", "--finetune_lr=0", "--qat"], "--finetune_lr must be positive"),
        (["--run_dir={run}", "--chain", "--prune=0.5"], "--chain prunes or clusters each slim"),
        (["--run_dir={run}", "--prune_exclude=stage3_*"], "--prune_exclude names layers to keep"),
    ],
    "tfclf.models.__main__": [
        (["nope"], "unknown model 'nope'"),
        (["se_resnet8", "--input_size=0"], "--input_size must be positive, got 0"),
        (["se_resnet8", "--channels=0"], "--channels must be positive, got 0"),
        (["se_resnet8", "--model_args={{'nope': 1}}"], "model 'se_resnet8' has no argument 'nope'"),
    ],
    "tfclf.predict": [
        (["{d}/digit.png"], "--model is required"),
        (["--model={d}/corrupt.tflite", "{d}/digit.png"], "{d}/corrupt.tflite"),
        (["--model={d}/nowhere.keras", "{d}/digit.png"], "{d}/nowhere.keras"),
        (["--model={d}/corrupt.tflite"], "give one or more images, folders or CSV lists"),
        (["--model={d}/corrupt.tflite", "--top_k=0", "{d}/digit.png"], "--top_k must be >= 1"),
        (
            ["--model={d}/five.tflite", "{d}/ids.csv"],  # lists images that are elsewhere
            "{d}/ids.csv: no column of its first row (img7, 3) names a file in {d}; pass the "
            "images' folder with --data_dir",
        ),
        (
            ["--model={d}/five.tflite", "{d}/rgb.png"],  # a colour image, a grayscale model
            "{d}/rgb.png has 3 channel(s) but the model takes 1: pass --convert_channels",
        ),
        (
            ["--model={d}/corrupt.tflite", "--csv={d}/nowhere/p.csv", "{d}/digit.png"],
            "--csv: no folder {d}/nowhere to write {d}/nowhere/p.csv in",
        ),
    ],
}


def _make_bad_files(d: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (30, 28, 28), np.uint8)
    y = np.arange(30) % 3
    np.savez(d / "good.npz", x=np.tile(x, (10, 1, 1)), y=np.tile(y, 10))
    np.savez(d / "wide.npz", x=np.zeros((30, 28, 30), np.uint8), y=y)
    (d / "corrupt.npz").write_bytes(b"this is not a zip archive")
    np.savez(d / "one_class.npz", x=x, y=np.zeros(30, int))
    np.savez(d / "negative.npz", x=x, y=y - 1)
    np.savez(d / "float_x.npz", x=x.astype(np.float32), y=y)
    np.savez(d / "short_y.npz", x=x, y=y[:29])
    np.savez(d / "no_y.npz", x=x)
    folder = d / "one_class_folder" / "only"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(x[i]).save(folder / f"{i}.png")
    for cls in ("a", "b"):
        (d / "mixed_sizes" / cls).mkdir(parents=True)
        for n in (8, 9, 10):
            Image.fromarray(x[n, :n, :n]).save(d / "mixed_sizes" / cls / f"{n}.png")
    Image.fromarray(x[0]).save(d / "digit.png")
    Image.fromarray(np.stack([x[0]] * 3, -1)).save(d / "rgb.png")
    (d / "ids.csv").write_text("id,label\nimg7,3\n")
    (d / "corrupt.tflite").write_bytes(b"TFL3 but not really a flatbuffer")
    _write_tflite(d / "five.tflite", ["0", "1", "2", "3", "4"])
    _write_tflite(d / "animals.tflite", ["cat", "dog", "cow"])
    (d / "a_file").write_text("a file where a directory is expected\n")
    for cls in ("cat", "dog"):
        (d / "animals" / cls).mkdir(parents=True)
        Image.fromarray(x[0]).save(d / "animals" / cls / "0.png")


def _write_tflite(path: Path, classes: list[str]) -> None:
    """A valid float32 file taking the bad files' 28x28x1 images, naming ``classes``."""
    from tfclf.data import Normalizer
    from tfclf.export import tflite
    from tfclf.export.deploy import model_card
    from tfclf.keras import keras

    inputs = keras.Input((28, 28, 1))
    model = keras.Model(inputs, keras.layers.Dense(len(classes))(keras.layers.Flatten()(inputs)))
    card = model_card(model, classes, Normalizer(mean=(0.5,), std=(0.25,)))
    path.write_bytes(tflite.convert(model, "float32", card=card))


def _make_earlier_run(run: Path, d: Path) -> None:
    """A run directory as an earlier training left it (its files' contents are what the
    test checks; they need not be a loadable model)."""
    (run / "best_model").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "flags.txt").write_text(
        f"--run_dir={run}\n--model=lenet5\n--model_args={{}}\n--source=npz:{d}/good.npz\n"
    )
    (run / "history.json").write_text('{"epochs": [{"stage": 0, "epoch": 1, "loss": 1.0}]}')
    (run / "classes.json").write_text('["0", "1", "2"]')
    (run / "normalizer.json").write_text('{"mean": [0.5], "std": [0.25]}')
    (run / "best_model" / "model.keras").write_bytes(b"earlier model bytes")
    (run / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')


# The processes that run the tables, one per xdist worker, each CLI in turn (cli_runner.py:
# those without the training flags first). Each process imports TensorFlow once.
PROCESSES = {
    "predict_models_train": ["tfclf.predict", "tfclf.models.__main__", "tfclf.train"],
    "evaluate_compress": ["tfclf.evaluate", "tfclf.compress.__main__"],
}
# Runs that must succeed, in the process of their CLI: --model_args reaches the model,
# report 003's student with other widths.
GOOD_RUNS = {
    "models_json": (
        "tfclf.models.__main__",
        ["mobilenet_student", "--input_size=28", "--channels=1", "--json",
         "--model_args={'base': 16, 'multipliers': (2, 4, 8, 8)}"],
    ),
}  # fmt: skip


def _run_table(process: str, d: Path) -> dict:
    """One process's cases, each bad case on its own copy of the earlier run; returns
    {(module, i): result} and {("good", name): result}."""
    template = d / "earlier_run"
    keys, cases, runs = [], [], {}
    for module in PROCESSES[process]:
        for i, (args, _) in enumerate(CASES[module]):
            run = d / f"run_{module}_{i}"
            shutil.copytree(template, run)
            runs[module, i] = run
            filled = [a.format(run=run, d=d) for a in args]
            if module == "tfclf.train" and not any(a.startswith("--run_dir") for a in filled):
                filled.append(f"--run_dir={run}")
            if module == "tfclf.train" and not any(a.endswith("resume") for a in filled):
                filled.append("--resume")
            keys.append((module, i))
            cases.append([module, filled])
        for name, (good_module, args) in GOOD_RUNS.items():
            if good_module == module:
                keys.append(("good", name))
                cases.append([module, args])
    lines = run_clis(cases, d)
    results = dict(zip(keys, lines))
    for key, run in runs.items():
        results[key] |= {"run": str(run), "changed": dir_hashes(run) != dir_hashes(template)}
    return results


@pytest.fixture(scope="module")
def table_results(tmp_path_factory, testrun_uid):
    """Every process's table, each run once per test run: pytest-xdist's workers share one
    directory, and a worker runs whichever table no other worker holds (a lock file each),
    then reads the others' results; returns {(module, i) or ("good", name): result}."""
    d = tmp_path_factory.getbasetemp().parent / f"bad_inputs_{testrun_uid}"
    d.mkdir(exist_ok=True)
    with open(d / "files.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (d / "files.done").exists():
            _make_bad_files(d)
            _make_earlier_run(d / "earlier_run", d)
            (d / "files.done").touch()
    results, pending = {}, list(PROCESSES)
    while pending:
        for process in list(pending):
            with open(d / f"{process}.lock", "w") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # another worker is running this table
                done = d / f"{process}.results.json"
                if not done.exists():
                    table = _run_table(process, d)
                    atomic_write_text(json.dumps([[*k, v] for k, v in table.items()]), done)
                for *key, result in json.loads(done.read_text()):
                    results[tuple(key)] = result | {"d": d}
                pending.remove(process)
        if pending:
            time.sleep(0.2)
    return results


def test_every_cli_with_cases_runs_in_one_process():
    assert sorted(m for ms in PROCESSES.values() for m in ms) == sorted(CASES)


@pytest.mark.parametrize(
    "module,i",
    [(m, i) for m, cases in CASES.items() for i in range(len(cases))],
    ids=[f"{m.split('.')[1]}-{' '.join(c[0]) or 'no-args'}" for m, cs in CASES.items() for c in cs],
)
def test_bad_input_is_one_error_line_and_the_run_directory_is_untouched(table_results, module, i):
    result = table_results[module, i]
    expected = CASES[module][i][1].format(d=result["d"], run=result["run"])
    stderr = result["stderr"]
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert result["code"] == 2, (result["args"], stderr[-2000:])
    assert "Traceback" not in stderr, stderr[-2000:]
    assert len(errors) == 1, (result["args"], stderr[-2000:])
    assert expected in errors[0], (expected, errors[0])
    assert not result["changed"], f"{result['args']} changed the earlier run directory"


@pytest.mark.parametrize(
    "module, listed",
    [
        ("tfclf.train", ["--model:", "--lr:", "--source:", "--stage:", "--precise_bn:"]),
        ("tfclf.evaluate", ["--run_dir:", "--split:", "--file:"]),
        ("tfclf.compress", ["--run_dir:", "--prune:", "--modes:", "--max_tflite_kb:"]),
        ("tfclf.predict", ["--model:", "--csv:"]),
    ],
)
def test_help_lists_each_clis_own_flags(module, listed):
    """absl's ``--help`` lists only the main module's key flags; the training flags are
    defined in ``tfclf.cli``, so ``train --help`` used to list none of them."""
    proc = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1, proc.stderr[-2000:]  # absl's --help exits 1
    missing = [f for f in listed if f"  {f}" not in proc.stdout]
    assert not missing, proc.stdout[-3000:]


def test_models_cli_prints_the_counts_of_a_customised_model(table_results):
    """``--model_args`` reaches the model: report 003's student with other widths."""
    result = table_results["good", "models_json"]
    assert result["code"] == 0, result["stderr"][-2000:]
    stats = json.loads(result["stdout"][result["stdout"].index("{") :])
    assert stats["trainable_params"] == 31_850 and stats["input_shape"] == [28, 28, 1]
