"""Saves a PNG grid of one augmented training batch: what the model really sees.

    python tools/show_augment.py --source=mnist5k --image_size=32 \
        --augment="random_crop(4)|rotate(15)|cutmix(0.5)" --out=augmented.png
"""

from absl import flags

import tfclf  # noqa: F401  (first: Keras 2 and oneDNN chosen before TensorFlow loads)
from tfclf import cli

flags.DEFINE_string(
    "source", "mnist5k", "Data source (mnist5k, tfds:NAME, folder:PATH, csv:FILE, npz:PATH)."
)
flags.DEFINE_string("data_dir", None, "TFDS data_dir; for csv:FILE, the images' folder.")
flags.DEFINE_integer("image_size", None, "Resize to this size (default: the source's).")
flags.DEFINE_string("augment", "random_crop(4)|flip_lr|cutmix(0.5)", "Augmentation string.")
flags.DEFINE_integer("num", 32, "Images to show.")
flags.DEFINE_integer("seed", 0, "Seed.")
flags.DEFINE_string("out", "augmented_batch.png", "Output PNG.")
FLAGS = flags.FLAGS


def main(_):
    cli.check_tool_flags(positive=("num",), augment=FLAGS.augment)
    from tfclf.data import Normalizer, load_source, train_dataset
    from tfclf.plots import image_grid, label_titles

    data = load_source(FLAGS.source, data_dir=FLAGS.data_dir, image_size=FLAGS.image_size)
    identity = Normalizer((0.0,) * data.image_shape[-1], (1.0,) * data.image_shape[-1])
    n = min(FLAGS.num, len(data.train))
    stream = train_dataset(
        data.train,
        data.num_classes,
        identity,
        batch_size=n,
        image_size=FLAGS.image_size,
        augment=FLAGS.augment,
        seed=FLAGS.seed,
    )
    x, y = next(iter(stream.dataset))
    path = image_grid(
        x.numpy(),
        label_titles(y.numpy(), data.class_names),
        FLAGS.out,
        title=f"{data.name} | {FLAGS.augment}",
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    cli.run(main, tensorflow=True)
