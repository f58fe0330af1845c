"""Where a training step's time goes: oneDNN's own timing of every primitive it runs.

    python tools/profile_step.py                       # SE-ResNet-20, batch 32 (the quick start's model in early versions)
    python tools/profile_step.py --model=resnet20 --size=32 --channels=3 --batch_size=128

Trains ``--model`` (a registered name, optionally followed by its arguments as a dict, as
in ``tools/bench_train.py``) on random data with Keras ``fit``, then times ``--steps`` more
steps with ``ONEDNN_VERBOSE=1`` (oneDNN prints one line per executed primitive with its
duration) and prints that time by primitive kind and direction (convolution forward /
backward data / backward weights, batch normalisation, reorders between memory layouts,
...) and by shape. oneDNN reads the variable once, at start, so the steps run in a child
process, and again in a second child without it for the step's true wall time (printing
the verbose lines costs about as much as the step; ``--nowall`` skips this child). With
``--inter_op=1`` one op runs at a time, so the primitives' times add up and the rest of the
wall time ran outside oneDNN:
Eigen ops (squeeze-excite's multiply, the optimiser's updates, the loss) and TensorFlow's
executor. With TensorFlow's default, two ops run at once and share the cores, so each
primitive's time includes waiting for the other.
"""

import ast
import collections
import os
import subprocess
import sys
import time

from absl import flags

from tfclf import cli

flags.DEFINE_string("model", "se_resnet20", "Registered model, optionally with its arguments.")
flags.DEFINE_integer("size", 28, "Input size.")
flags.DEFINE_integer("channels", 1, "Input channels.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_integer("steps", 20, "Profiled steps (after 10 warm-up steps).")
flags.DEFINE_string("precision", "float32", "Keras mixed-precision policy.")
flags.DEFINE_integer("top", 10, "How many of the costliest primitive shapes to list.")
flags.DEFINE_integer(
    "inter_op",
    0,
    "Inter-op threads (0: TensorFlow's default); 1 makes the primitives' times add up to the step.",
)
flags.DEFINE_bool(
    "wall",
    True,
    "Also time the steps in a second child without verbose output: the step's wall time.",
)
flags.DEFINE_bool("child", False, "Internal: the profiled process.")
FLAGS = flags.FLAGS

MARK = "tfclf-profile-start"


def child() -> None:
    import numpy as np

    import tfclf  # noqa: F401  (first: Keras 2 and oneDNN chosen before TensorFlow loads)
    from tfclf.data.pipeline import without_autotune
    from tfclf.keras import keras
    from tfclf.models import create_model

    if FLAGS.inter_op:
        import tensorflow as tf

        tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_op)
    name, _, args = FLAGS.model.partition(" ")
    keras.mixed_precision.set_global_policy(FLAGS.precision)
    shape = (FLAGS.size, FLAGS.size, FLAGS.channels)
    model = create_model(name, shape, 10, **(ast.literal_eval(args) if args else {}))
    model.compile(
        keras.optimizers.SGD(0.01, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (FLAGS.batch_size, *shape)).astype("float32")
    y = rng.integers(0, 10, FLAGS.batch_size)

    def batches(steps: int):
        import tensorflow as tf

        # tf.data with autotuning off, as tfclf trains: Keras' own dataset for NumPy
        # arrays autotunes and then often takes ~2x as long a step here (docs/decisions/no-autotune.md).
        ds = tf.data.Dataset.from_tensors((x, y)).repeat(steps)
        return without_autotune(ds.prefetch(2))

    model.fit(batches(10), epochs=1, verbose=0)  # traces, warms up
    data = batches(FLAGS.steps)
    sys.stdout.flush()
    os.write(1, f"\n{MARK}\n".encode())
    start = time.perf_counter()
    model.fit(data, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    sys.stdout.flush()
    os.write(1, f"\ntfclf-profile-wall,{seconds}\n".encode())


def kind(fields: list[str]) -> str:
    """'convolution backward_weights' and the like, from one verbose line's fields."""
    primitive, prop = fields[5], fields[7]
    if primitive == "reorder":
        return "reorder (layout conversion)"
    return f"{primitive} {prop.replace('_training', '').replace('_inference', '')}".strip()


def main(argv) -> None:
    cli.check_tool_flags(positive=("size", "channels", "batch_size", "steps", "top"))
    if FLAGS.child:
        return child()
    cmd = [sys.executable, __file__, "--child", *sys.argv[1:]]  # absl strips flags from argv

    def run_child(verbose: bool) -> tuple[list[str], float]:
        env = {k: v for k, v in os.environ.items() if k != "ONEDNN_VERBOSE"}
        out = subprocess.run(
            cmd,
            env={**env, "ONEDNN_VERBOSE": "1"} if verbose else env,
            capture_output=True,
            text=True,
        )
        if out.returncode:
            sys.exit(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "child failed")
        lines = out.stdout.split(MARK, 1)[-1].splitlines()
        wall = next(float(ln.split(",")[1]) for ln in lines if ln.startswith("tfclf-profile-wall"))
        return lines, wall

    lines, _ = run_child(verbose=True)
    wall = run_child(verbose=False)[1] if FLAGS.wall else None
    totals, counts, shapes = collections.Counter(), collections.Counter(), collections.Counter()
    for line in lines:
        fields = line.split(",")
        if not line.startswith("onednn_verbose") or fields[2:4] != ["primitive", "exec"]:
            continue
        name, ms = kind(fields), float(fields[-1])
        totals[name] += ms
        counts[name] += 1
        shapes[name, fields[-2]] += ms
    if not totals:
        sys.exit("no oneDNN primitive ran: TF_ENABLE_ONEDNN_OPTS=0, or not an x86 CPU?")
    step_ms = wall * 1e3 / FLAGS.steps if wall is not None else None
    inside = sum(totals.values()) / FLAGS.steps
    print(
        f"{FLAGS.model}, {FLAGS.size}x{FLAGS.size}x{FLAGS.channels}, batch {FLAGS.batch_size}, "
        f"{FLAGS.precision}, inter-op threads {FLAGS.inter_op or 'default'}: "
        + (f"{step_ms:.1f} ms a step (wall, without verbose), " if wall is not None else "")
        + f"{inside:.1f} ms in oneDNN primitives (with verbose)"
    )
    print(f"{'oneDNN primitive':34s} {'ms/step':>8s} {'of oneDNN':>9s} {'calls/step':>10s}")
    for name, ms in totals.most_common():
        share = ms / FLAGS.steps / inside
        print(f"{name:34s} {ms / FLAGS.steps:8.2f} {share:9.1%} {counts[name] / FLAGS.steps:10.0f}")
    if FLAGS.inter_op == 1 and step_ms is not None:
        print(f"{'outside oneDNN (Eigen ops, executor)':34s} {step_ms - inside:8.2f}")
    print(f"\nthe {FLAGS.top} costliest primitive shapes (ms/step, all calls of that shape):")
    for (name, shape), ms in shapes.most_common(FLAGS.top):
        print(f"{ms / FLAGS.steps:8.2f}  {name:30s} {shape}")


if __name__ == "__main__":
    cli.run(main)
