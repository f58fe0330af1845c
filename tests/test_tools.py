"""The README's ``tools/`` scripts run from a checkout and produce what they promise: a PNG
of the schedule and of an augmented batch, a training benchmark's images/s with its
fraction of the measured matmul peak, the input pipeline's images/s, and a training step's
oneDNN profile. Small arguments: these check the tools, not speed."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_clis
from PIL import Image

from tfclf.system import precision_problem

ROOT = Path(__file__).parent.parent


def run_tool(name: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / name), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def check_png(path: Path) -> None:
    with Image.open(path) as image:
        assert image.width > 300 and image.height > 150, path
        assert len(set(image.convert("L").getdata())) > 10, path  # drawn, not blank


def check_bench_train(out: str, policies: list[str]) -> None:
    assert re.search(r"CPU kernels: (oneDNN|Eigen)", out), out
    for policy in policies:  # each held against the peak of its own compute dtype
        dtype = policy.removeprefix("mixed_")
        assert re.search(rf"^{dtype} matmul peak \(256\^3\): [\d,]+ GFLOP/s$", out, re.M), out
        line = next(ln for ln in out.splitlines() if ln.startswith(f"lenet5 28x28x1 {policy} "))
        rate, gflops, share = re.search(
            r": ([\d,]+) images/s .*?; ([\d.,]+) GFLOP/s = (\d+)% of the matmul peak", line
        ).groups()
        assert float(rate.replace(",", "")) > 0 and float(gflops.replace(",", "")) > 0, line
        assert 0 < int(share) <= 100, line


def check_bench_data(out: str) -> None:
    rate = re.search(r"batch 32, 'random_crop\(pad=4\)\|flip_lr\|cutmix.*': ([\d,]+) images/s", out)
    assert rate and int(rate.group(1).replace(",", "")) > 0, out


def test_tensorflow_tools_plot_and_report_images_per_second(tmp_path):
    """plot_lr and show_augment write a PNG; bench_train reports images/s and its share of
    the matmul peak; bench_data the pipeline's images/s. The four run in one process
    (``cli_runner.py``: TensorFlow imported once, not four times), each as ``python
    tools/NAME.py ARGS`` from the checkout; plot_lr last, since it defines the training
    flags, whose names the others use too."""
    # bfloat16 runs everywhere (emulated without native support) except under a oneDNN ISA
    # cap below bf16 on a bf16 CPU, where the tool refuses it (tested in test_system)
    bf16_runs = (precision_problem("mixed_bfloat16") or ("",))[0] != "error"
    policies = ["float32", "mixed_bfloat16"] if bf16_runs else ["float32"]
    cases = {
        "bench_data.py": ["--batch_size=32", "--steps=20", "--num_images=2000"],
        "show_augment.py": ["--augment=affine(10, 0.1, (0.9, 1.1), 5)|cutout(8)", "--num=6",
                            f"--out={tmp_path / 'augment.png'}"],
        "bench_train.py": ["--model=lenet5", "--size=28", "--channels=1", "--batch_size=16",
                           "--batches=3", "--rounds=2", "--peak_n=256",
                           f"--precision={','.join(policies)}"],
        "plot_lr.py": ["--flagfile=configs/report000_fixres.flags", "--steps_per_epoch=8",
                       f"--out={tmp_path / 'lr.png'}"],
    }  # fmt: skip
    results = run_clis([[f"tools/{t}", args] for t, args in cases.items()], tmp_path, cwd=ROOT)
    out = {}
    for tool, result in zip(cases, results):
        assert result["code"] == 0, (tool, result["stderr"][-3000:])
        out[tool] = result["stdout"]
    check_png(tmp_path / "augment.png")
    check_png(tmp_path / "lr.png")
    check_bench_train(out["bench_train.py"], policies)
    check_bench_data(out["bench_data.py"])


def test_profile_step_accounts_for_every_convolution_of_a_step():
    """LeNet-5 has two convolutions: two forward and two weight-gradient calls a step, and
    one data gradient (the first convolution's input needs none); the kinds' shares add up.
    ``--nowall``: the second child, which only times the step without verbose output, is
    not run (its timing is the same ``fit`` as the first child's)."""
    out = run_tool("profile_step.py", "--model=lenet5", "--batch_size=16", "--steps=2",
                   "--inter_op=1", "--nowall")  # fmt: skip
    head = re.search(r"batch 16, float32, inter-op threads 1: ([\d.]+) ms in oneDNN", out)
    assert head and float(head.group(1)) > 0 and "ms a step" not in out, out
    rows = {
        m.group(1): (float(m.group(2)), int(m.group(3)))
        for m in re.finditer(r"^(\w[\w ()]+?)\s+[\d.]+\s+([\d.]+)%\s+(\d+)$", out, re.M)
    }
    assert rows["convolution forward"][1] == 2, rows
    assert rows["convolution backward_weights"][1] == 2, rows
    assert rows["convolution backward_data"][1] == 1, rows
    assert sum(share for share, _ in rows.values()) == pytest.approx(100, abs=0.5), rows


def test_render_digits_writes_mnist_style_class_folders(tmp_path):
    """20 faces x 10 digits, white on black, the glyph's longer side 20 px and its centre of
    mass at the centre of 28 x 28 (within a pixel), as MNIST; a '1' carries less ink than an
    '8' in every face."""
    out = run_tool("render_digits.py", f"--out={tmp_path}")
    assert "200 images (20 faces x 10 digits)" in out, out
    assert sorted(p.name for p in tmp_path.iterdir()) == list("0123456789")
    ink = {}
    for path in sorted(tmp_path.glob("*/*.png")):
        with Image.open(path) as image:
            assert image.mode == "L" and image.size == (28, 28), path
            pixels = np.asarray(image, np.float64)
        lit_rows, lit_cols = np.nonzero(pixels > 0)
        box = max(np.ptp(lit_rows), np.ptp(lit_cols)) + 1
        assert 19 <= box <= 21, (path, box)
        rows, cols = np.indices(pixels.shape)
        centre = ((rows * pixels).sum() / pixels.sum(), (cols * pixels).sum() / pixels.sum())
        assert np.allclose(centre, 14, atol=1.0), (path, centre)
        ink[path.parent.name, path.stem] = pixels.sum()
    assert len(ink) == 200
    faces = {face for _, face in ink}
    assert all(ink["1", face] < ink["8", face] for face in faces), ink


def test_slow_cpu_runs_the_command_in_a_cpu_limited_cgroup():
    """The command runs in a cgroup of its own whose quota is the cores over --factor (read
    back from inside), gets --isa as ONEDNN_MAX_CPU_ISA, and its exit code is the tool's;
    the cgroup is gone afterwards. Where cgroups are read-only it is one error line."""
    child = (
        "import os, pathlib; "
        "line = [l for l in open('/proc/self/cgroup') if 'tfclf_slow_cpu_' in l][0]; "
        "name = line.strip().split(':')[-1]; "
        "v2 = pathlib.Path('/sys/fs/cgroup' + name, 'cpu.max'); "
        "v1 = pathlib.Path('/sys/fs/cgroup/cpu' + name, 'cpu.cfs_quota_us'); "
        "print('group', name, (v2 if v2.exists() else v1).read_text().split()[0], "
        "os.environ['ONEDNN_MAX_CPU_ISA']); raise SystemExit(3)"
    )
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "slow_cpu.py"), "--factor=4", "--isa=AVX2",
         "--", sys.executable, "-c", child],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if proc.returncode == 2:  # no writable cgroup CPU controller here
        assert proc.stderr.startswith("error: cannot make a CPU-limited cgroup"), proc.stderr
        pytest.skip(proc.stderr.strip())
    assert proc.returncode == 3, proc.stderr[-2000:]
    group, quota, isa = re.search(r"^group (\S+) (\d+) (\S+)$", proc.stdout, re.M).groups()
    assert int(quota) == 10_000 * (os.cpu_count() or 1) // 4 and isa == "AVX2", proc.stdout
    assert "slow_cpu: exit 3 after " in proc.stdout
    assert not any(
        Path(root, group.lstrip("/")).exists() for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/cpu")
    )
