"""Training throughput (images/s) of a model on random data, per precision.

    python tools/bench_train.py --model=resnet20 --size=32 --channels=3 \
        --precision=float32,mixed_bfloat16

Fits a few batches to warm up, then times ``--batches`` more.
"""

import time

import numpy as np
from absl import app, flags

flags.DEFINE_string("model", "resnet20", "Registered model.")
flags.DEFINE_integer("size", 32, "Input size.")
flags.DEFINE_integer("channels", 3, "Input channels.")
flags.DEFINE_list("precision", ["float32", "mixed_bfloat16"], "Policies to compare.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_integer("batches", 16, "Timed batches.")
flags.DEFINE_bool("xla", False, "jit_compile.")
FLAGS = flags.FLAGS


def main(_):
    from tfclf.keras import keras
    from tfclf.models import create_model

    rng = np.random.default_rng(0)
    n = FLAGS.batch_size * FLAGS.batches
    x = rng.random((n, FLAGS.size, FLAGS.size, FLAGS.channels), np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
    for policy in FLAGS.precision:
        keras.mixed_precision.set_global_policy(policy)
        model = create_model(FLAGS.model, x.shape[1:], 10)
        model.compile(
            keras.optimizers.SGD(0.01, momentum=0.9),
            keras.losses.CategoricalCrossentropy(from_logits=True),
            jit_compile=FLAGS.xla,
        )
        model.fit(
            x[: 4 * FLAGS.batch_size],
            y[: 4 * FLAGS.batch_size],
            batch_size=FLAGS.batch_size,
            verbose=0,
        )
        start = time.perf_counter()
        model.fit(x, y, batch_size=FLAGS.batch_size, verbose=0)
        rate = n / (time.perf_counter() - start)
        print(
            f"{FLAGS.model} {FLAGS.size}x{FLAGS.size}x{FLAGS.channels} {policy}"
            f"{' +XLA' if FLAGS.xla else ''}: {rate:,.0f} images/s"
        )


if __name__ == "__main__":
    app.run(main)
