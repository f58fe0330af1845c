"""Runs a command on a CPU made ``--factor`` times slower, as a stand-in for a slower
machine kind (the AVX2-only one runs this project's tests about 2.2-2.3x slower than the
AVX-512 kinds per core, docs/benchmarks/tests.md):

    python tools/slow_cpu.py --factor=2.3 --isa=AVX2 -- python -m pytest -n 2 tests

The command and its children run in a new cgroup whose CPU quota is the machine's cores
divided by ``--factor``, over 10 ms periods, so Python, graph building and kernels all slow
by that factor on average; ``--isa`` caps oneDNN's kernels too (``ONEDNN_MAX_CPU_ISA``).
It is not the slower machine: caches, memory bandwidth and the kernels' timing differ,
and a throttled core runs in bursts. Needs a writable cgroup CPU controller (cgroup v1's
``cpu`` or v2's ``cpu.max``: root in a VM, or a container allowed to).
Prints the command's wall time and exits with its code.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

from absl import flags

from tfclf.errors import UsageError

flags.DEFINE_float("factor", 2.3, "How many times slower the CPU is made (> 1).")
flags.DEFINE_string("isa", None, "Cap oneDNN's kernels at this ISA, e.g. AVX2.")
FLAGS = flags.FLAGS

PERIOD_US = 10_000
V1 = Path("/sys/fs/cgroup/cpu")
V2 = Path("/sys/fs/cgroup")


def make_cgroup(factor: float) -> tuple[Path, Path]:
    """A new cgroup with the CPU quota; returns it and its file of member processes."""
    quota = round(PERIOD_US * (os.cpu_count() or 1) / factor)
    name = f"tfclf_slow_cpu_{os.getpid()}"
    try:
        if (V2 / "cgroup.controllers").exists():
            group = V2 / name
            group.mkdir()
            (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
            return group, group / "cgroup.procs"
        group = V1 / name
        group.mkdir()
        (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(quota))
        return group, group / "tasks"
    except OSError as e:
        raise UsageError(
            f"cannot make a CPU-limited cgroup ({e.strerror}: {e.filename}): "
            "this needs a writable cgroup CPU controller"
        ) from None


def main(argv):
    command = argv[1:]
    if not command:
        raise UsageError("name the command to run after --, e.g. -- python -m pytest tests")
    if FLAGS.factor <= 1:
        raise UsageError(f"--factor must be above 1, got {FLAGS.factor}")
    group, procs = make_cgroup(FLAGS.factor)
    env = dict(os.environ, **({"ONEDNN_MAX_CPU_ISA": FLAGS.isa} if FLAGS.isa else {}))
    print(
        f"slow_cpu: {os.cpu_count()} CPUs / {FLAGS.factor:g} = "
        f"{(os.cpu_count() or 1) / FLAGS.factor:.2f} of CPU time"
        + (f", oneDNN capped at {FLAGS.isa}" if FLAGS.isa else ""),
        flush=True,
    )
    start = time.monotonic()
    try:
        code = subprocess.call(
            command, env=env, preexec_fn=lambda: procs.write_text(str(os.getpid()))
        )
    except FileNotFoundError:
        raise UsageError(f"command not found: {command[0]}") from None
    finally:
        for _ in range(50):  # the group empties once the last child has exited
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)
    wall = time.monotonic() - start
    print(f"slow_cpu: exit {code} after {int(wall // 60)}:{wall % 60:04.1f}", flush=True)
    sys.exit(code)


if __name__ == "__main__":
    from tfclf import cli

    cli.run(main)
