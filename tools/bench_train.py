"""Training throughput of a model on random data, and how close it gets to the hardware.

    python tools/bench_train.py --model=resnet20 --size=32 --channels=3 --precision=float32
    python tools/bench_train.py --batch_size=32,128 --loop=fit,function --rounds=3
    python tools/bench_train.py --size=28 --channels=1 --batch_size=32 \
        --model=se_resnet20 --model="resnet_custom {'depths': (1, 3, 3), 'se_ratio': 8}"

Every combination of ``--model`` (repeatable: a registered name, optionally followed by a
space and its arguments as a Python dict literal, as ``--model_args`` in training),
``--precision``, ``--batch_size``, ``--loop`` and
``--steps_per_execution`` is built once, warmed up, then timed for ``--batches`` steps in
each of ``--rounds`` interleaved rounds (machine speed drifts: compare inside one run); the
median is printed with the achieved GFLOP/s (6 x forward MACs per image: forward, and a
backward pass of twice its cost) and its fraction of a matmul peak in the policy's compute
dtype (float32, or bfloat16 for ``mixed_bfloat16``: with AMX about 4x float32's), measured
first in the same process (``--peak_n`` square matmuls, as many threads as TensorFlow
uses). Threads: ``--intra_op``/``--inter_op`` (0: TensorFlow's default). The kernels in
use (oneDNN or Eigen) are printed; ``TF_ENABLE_ONEDNN_OPTS=0`` before the command compares.
"""

import ast
import itertools
import statistics
import sys
import time

import numpy as np
from absl import flags

import tfclf  # noqa: F401  (first: Keras 2 and oneDNN chosen before TensorFlow loads)
from tfclf import cli

flags.DEFINE_multi_string(
    "model", ["resnet20"], "Registered model, optionally followed by its arguments as a dict."
)
flags.DEFINE_integer("size", 32, "Input size.")
flags.DEFINE_integer("channels", 3, "Input channels.")
flags.DEFINE_list("precision", ["float32"], "Policies: float32, mixed_bfloat16, ...")
flags.DEFINE_list("batch_size", ["128"], "Batch sizes.")
flags.DEFINE_list("loop", ["fit"], "fit (Keras fit) | function (a plain tf.function step).")
flags.DEFINE_list("steps_per_execution", ["1"], "Keras steps_per_execution (fit only).")
flags.DEFINE_integer("batches", 20, "Timed steps per round.")
flags.DEFINE_integer("rounds", 3, "Interleaved rounds; the median is reported.")
flags.DEFINE_integer("intra_op", 0, "tf.config.threading intra-op threads (0: default).")
flags.DEFINE_integer("inter_op", 0, "tf.config.threading inter-op threads (0: default).")
flags.DEFINE_integer("peak_n", 2048, "Matrix size of the matmul peak (0: skip).")
flags.DEFINE_bool("xla", False, "jit_compile.")
flags.DEFINE_bool("autotune", False, "tf.data autotuning (tfclf's pipelines switch it off).")
FLAGS = flags.FLAGS


def compute_dtype(policy: str) -> str:
    return policy.removeprefix("mixed_")


def matmul_peak_gflops(n: int, dtype: str = "float32", repeats: int = 10) -> float:
    import tensorflow as tf

    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)
    f = tf.function(lambda a, b: tf.linalg.matmul(a, b))
    f(a, b).numpy()
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        f(a, b).numpy()
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


class Case:
    """One configuration: a compiled model and a function that runs ``steps`` steps."""

    def __init__(self, spec, policy, batch, loop, spe, peak):
        import tensorflow as tf

        from tfclf.keras import keras
        from tfclf.models import create_model, model_stats

        name, _, args = spec.partition(" ")
        shape = (FLAGS.size, FLAGS.size, FLAGS.channels)
        self.name = f"{spec} {'x'.join(map(str, shape))} {policy} batch {batch} {loop}"
        self.name += f" spe {spe}" if loop == "fit" else ""
        keras.mixed_precision.set_global_policy(policy)
        self.model = create_model(name, shape, 10, **(ast.literal_eval(args) if args else {}))
        self.flops_per_image = 6 * model_stats(self.model).macs
        self.batch = batch
        self.peak = peak
        opt = keras.optimizers.SGD(0.01, momentum=0.9)
        loss = keras.losses.CategoricalCrossentropy(from_logits=True)
        rng = np.random.default_rng(0)
        x = rng.random((batch * FLAGS.batches, *shape), np.float32)
        y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, len(x))]
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).repeat()
        if not FLAGS.autotune:  # as tfclf's own pipelines (tfclf.data.pipeline)
            options = tf.data.Options()
            options.autotune.enabled = False
            ds = ds.with_options(options)
        if loop == "fit":
            self.model.compile(opt, loss, jit_compile=FLAGS.xla, steps_per_execution=spe)

            def run(steps):
                self.model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)

        else:
            model = self.model
            if policy != "float32":
                opt = keras.mixed_precision.LossScaleOptimizer(opt)

            @tf.function(jit_compile=FLAGS.xla)
            def step(x, y):
                with tf.GradientTape() as tape:
                    value = loss(y, tf.cast(model(x, training=True), tf.float32))
                opt.minimize(value, model.trainable_variables, tape=tape)
                return value

            it = iter(ds)

            def run(steps):
                for _ in range(steps):
                    value = step(*next(it))
                value.numpy()

        self.run = run
        run(4)  # build, trace, warm up
        self.rates = []

    def time_round(self):
        start = time.perf_counter()
        self.run(FLAGS.batches)
        self.rates.append(FLAGS.batches * self.batch / (time.perf_counter() - start))


def main(_):
    cli.check_tool_flags(positive=("size", "channels", "batches", "rounds"))
    if any(int(b) < 1 for b in FLAGS.batch_size):
        raise cli.UsageError(f"--batch_size: each must be positive, got {FLAGS.batch_size}")
    import tensorflow as tf

    if FLAGS.intra_op:
        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.intra_op)
    if FLAGS.inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_op)
    from tfclf.system import describe_kernels, precision_problem

    print(describe_kernels())
    for policy in FLAGS.precision:
        if problem := precision_problem(policy):
            if problem[0] == "error":
                sys.exit(f"error: {problem[1]}")
            print(f"warning: {problem[1]}")
    peaks = {}
    if FLAGS.peak_n:
        for dtype in dict.fromkeys(compute_dtype(p) for p in FLAGS.precision):
            peaks[dtype] = matmul_peak_gflops(FLAGS.peak_n, dtype)
            print(f"{dtype} matmul peak ({FLAGS.peak_n}^3): {peaks[dtype]:,.0f} GFLOP/s")
    cases = [
        Case(m, p, int(b), loop, int(spe), peaks.get(compute_dtype(p)))
        for m, p, b, loop, spe in itertools.product(
            FLAGS.model, FLAGS.precision, FLAGS.batch_size, FLAGS.loop, FLAGS.steps_per_execution
        )
        if loop == "fit" or spe == FLAGS.steps_per_execution[0]
    ]
    for _ in range(FLAGS.rounds):
        for case in cases:
            case.time_round()
    for case in cases:
        rate = statistics.median(case.rates)
        gflops = rate * case.flops_per_image / 1e9
        frac = f" = {gflops / case.peak:.0%} of the matmul peak" if case.peak else ""
        rounds = ", ".join(f"{r:,.0f}" for r in case.rates)
        print(
            f"{case.name}"
            f"{' +XLA' if FLAGS.xla else ''}: {rate:,.0f} images/s (rounds {rounds}); "
            f"{gflops:,.1f} GFLOP/s{frac}"
        )


if __name__ == "__main__":
    cli.run(main, tensorflow=True)
