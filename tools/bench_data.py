"""Images/s of the training input pipeline alone (no model).

    python tools/bench_data.py                 # 32x32 RGB, crop+flip+CutMix, batch 128
    python tools/bench_data.py --source=mnist5k --image_size=32 --augment="random_crop(4)"

The default uses ``--num_images`` (50,000) random 32x32x3 uint8 images (CIFAR-10's
training set's shape; pixel values do not change the cost of these ops); ``--source``
measures a real source instead.
"""

import time

import numpy as np
from absl import flags

import tfclf  # noqa: F401  (first: Keras 2 and oneDNN chosen before TensorFlow loads)
from tfclf import cli

flags.DEFINE_string("source", None, "Data source; default: random CIFAR-shaped arrays.")
flags.DEFINE_integer("image_size", None, "Resize to this size.")
flags.DEFINE_string("augment", "random_crop(pad=4)|flip_lr|cutmix(0.5, 1.0)", "Augmentations.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_integer("steps", 300, "Batches to time (after 20 warm-up batches).")
flags.DEFINE_integer("num_images", 50_000, "Random images made without --source.")
FLAGS = flags.FLAGS


def main(_):
    cli.check_tool_flags(positive=("batch_size", "steps", "num_images"), augment=FLAGS.augment)
    from tfclf.data import Normalizer, Split, load_source, train_dataset

    if FLAGS.source:
        data = load_source(FLAGS.source)
        split, k = data.train, data.num_classes
    else:
        rng = np.random.default_rng(0)
        n = FLAGS.num_images
        split = Split(rng.integers(0, 256, (n, 32, 32, 3), np.uint8), rng.integers(0, 10, n))
        k = 10
    norm = Normalizer.from_images(split.images)
    stream = train_dataset(
        split,
        k,
        norm,
        batch_size=FLAGS.batch_size,
        image_size=FLAGS.image_size,
        augment=FLAGS.augment,
    )
    it = iter(stream.dataset)
    for _ in range(20):
        next(it)
    start = time.perf_counter()
    for _ in range(FLAGS.steps):
        next(it)
    rate = FLAGS.steps * FLAGS.batch_size / (time.perf_counter() - start)
    shape = "x".join(map(str, split.images.shape[1:]))
    print(
        f"{FLAGS.source or 'random'} {shape} -> {FLAGS.image_size or 'same'}, "
        f"batch {FLAGS.batch_size}, '{FLAGS.augment}': {rate:,.0f} images/s"
    )


if __name__ == "__main__":
    cli.run(main, tensorflow=True)
