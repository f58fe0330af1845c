"""A disk that fills during a checkpoint or an export (issue 13): the run directory sits on
a small tmpfs that is shrunk to what is already used; the resumed training and the export
then fail with one line, the earlier checkpoint and best model stay usable, and once space
is back the same run resumes from that checkpoint."""

import os
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from conftest import dir_hashes, tiny_config

from tfclf import cli
from tfclf.finish import finish_run
from tfclf.keras import keras
from tfclf.models.registry import create_model
from tfclf.training.trainer import restore_model, train


def _mount(path, size: str, remount: bool = False) -> bool:
    opts = f"remount,size={size}" if remount else f"size={size}"
    args = ["mount", "-o", opts] + ([] if remount else ["-t", "tmpfs", "tmpfs"]) + [str(path)]
    return subprocess.run(args, capture_output=True).returncode == 0


def _shrink_to_used(path, headroom_kb: int = 8) -> None:
    st = os.statvfs(path)
    used_kb = (st.f_blocks - st.f_bfree) * st.f_frsize // 1024
    for kb in range(used_kb + headroom_kb, used_kb + 400, 4):  # tmpfs counts whole pages
        if _mount(path, f"{kb}k", remount=True):
            return
    raise AssertionError("could not shrink the tmpfs")


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if not _mount(mnt, "16m"):
        pytest.skip("needs to mount a tmpfs (root)")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_disk_full_mid_checkpoint_and_mid_export_keeps_the_earlier_run(small_disk, digits, capsys):
    run = small_disk / "run"
    cfg = tiny_config(run, digits, epochs=2)
    finish_run(train(cfg), cfg)
    best_before = dir_hashes(run / "best_model")
    weights_before = (run / "best_stage0.weights.h5").read_bytes()
    last_good = tf.train.latest_checkpoint(str(run / "checkpoints"))

    # 1. training resumes (epochs 3-4) but the disk is full when epoch 3 is checkpointed
    _shrink_to_used(small_disk, headroom_kb=24)  # the small files fit, a checkpoint not
    longer = tiny_config(run, digits, epochs=4)
    code = cli.guarded(lambda argv: finish_run(train(longer), longer))([])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: no space left on device while writing ")
    assert str(run) in err[0] and "rerun the same command" in err[0]
    assert tf.train.latest_checkpoint(str(run / "checkpoints")) == last_good
    model = create_model(cfg.model, (28, 28, 1), 10, **cfg.model_args)
    restore_model(model, last_good)  # strict: every variable is there
    assert dir_hashes(run / "best_model") == best_before
    assert (run / "best_stage0.weights.h5").read_bytes() == weights_before

    # 2. space is back: the same command resumes after epoch 2 and finishes
    assert _mount(small_disk, "16m", remount=True)
    result = train(longer)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]

    # 3. the disk fills during the export: the previous best model is kept whole
    _shrink_to_used(small_disk)
    code = cli.guarded(lambda argv: finish_run(result, longer))([])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no space left on device" in err[0], err
    assert dir_hashes(run / "best_model") == best_before
    deployed = keras.models.load_model(run / "best_model" / "model.keras", compile=False)
    x = result.data.val.images[:8].astype(np.float32)
    assert deployed.predict(x, verbose=0).shape == (8, 10)


def test_disk_full_message_names_the_file_for_python_and_tensorflow_errors():
    tf_error = tf.errors.ResourceExhaustedError(
        None,
        None,
        "{{function_node __wrapped__SaveV2}} /runs/a/checkpoints/ckpt-3_temp/part-00000-of-"
        "00001.data-00000-of-00001.tempstate1158; No space left on device [Op:SaveV2]",
    )
    assert "while writing /runs/a/checkpoints/ckpt-3." in cli.disk_full_message(tf_error)
    os_error = OSError(28, "No space left on device", "/runs/a/flags.txt")
    assert "while writing /runs/a/flags.txt." in cli.disk_full_message(os_error)
    assert cli.disk_full_message(OSError(13, "Permission denied", "/x")) is None
    assert cli.disk_full_message(ValueError("bad value")) is None
