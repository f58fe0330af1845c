"""Seconds a TFLite conversion takes: ``tfclf.export.tflite.convert`` (an inference-only
SavedModel) against ``TFLiteConverter.from_keras_model`` (Keras' full SavedModel), side by
side in one process (docs/decisions/tflite-conversion.md).

    python tools/bench_convert.py                        # LeNet-5, ResNet-20, MobileNet student
    python tools/bench_convert.py --models=resnet20 --repeats=5

Each model is built untrained at ``--size`` x ``--size`` x 3 behind its normalisation layer
(raw pixels in, as tfclf deploys it); int8 files are calibrated on 200 random images and
the QAT model is ``compress.methods.quantize``'s. The two ways alternate; the median of
each is printed as a Markdown table row.
"""

import functools
import statistics
import time

import numpy as np
from absl import flags

import tfclf  # noqa: F401  (first: Keras 2 and oneDNN chosen before TensorFlow loads)
from tfclf import cli

flags.DEFINE_list("models", ["lenet5", "resnet20", "mobilenet_student"], "Registered models.")
flags.DEFINE_integer("size", 32, "Input height and width.")
flags.DEFINE_integer("repeats", 3, "Conversions of each file each way.")
FLAGS = flags.FLAGS


def keras_conversion(model, mode: str, images: np.ndarray) -> bytes:
    """The file as ``from_keras_model`` makes it, with ``tflite.convert``'s options."""
    import tensorflow as tf

    from tfclf.export import tflite

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    return tflite.run_converter(converter, mode, images)


def seconds(convert) -> float:
    start = time.perf_counter()
    convert()
    return time.perf_counter() - start


def main(_):
    cli.check_tool_flags(positive=("size", "repeats"))
    cli.quiet_library_info()  # the SavedModels' INFO lines
    from tfclf.compress.methods import quantize
    from tfclf.data import Normalizer
    from tfclf.export import tflite
    from tfclf.export.deploy import deployable
    from tfclf.models import create_model, get_spec

    for name in FLAGS.models:
        try:
            get_spec(name)
        except ValueError as e:
            raise cli.UsageError(f"--models: {e}") from None
    size = FLAGS.size
    images = np.random.default_rng(0).integers(0, 256, (200, size, size, 3), np.uint8)
    norm = Normalizer((0.5,) * 3, (0.25,) * 3)
    print("| model | file | `from_keras_model` s | inference SavedModel s | faster |")
    print("|---|---|---:|---:|---:|")
    for name in FLAGS.models:
        net = create_model(name, (size, size, 3), 10)
        plain, qat = deployable(net, norm), deployable(quantize(net), norm)
        for label, model in (("float32", plain), ("int8", plain), ("QAT int8", qat)):
            mode = label.split()[-1]  # float32 or int8
            ways = {
                "keras": functools.partial(keras_conversion, model, mode, images),
                "ours": functools.partial(tflite.convert, model, mode, representative=images),
            }
            times = {way: [] for way in ways}
            for _ in range(FLAGS.repeats):  # the two ways alternate
                for way, convert in ways.items():
                    times[way].append(seconds(convert))
            old, new = (statistics.median(t) for t in times.values())
            print(f"| {name} | {label} | {old:.2f} | {new:.2f} | {old / new:.1f}x |", flush=True)


if __name__ == "__main__":
    cli.run(main, tensorflow=True)
