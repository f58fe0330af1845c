"""Classify images with any exported tfclf model: ``python -m tfclf.predict --model=FILE
IMAGE_FOLDER_OR_CSV...``.

``FILE``: a ``.tflite``, a ``.keras`` or a SavedModel (``RUN/best_model`` works). Prints the
top-k classes per image with their probabilities; a folder of class subfolders, or a CSV
list of images with a label column (``--data_dir`` the images' folder, default the CSV's),
is scored and its accuracy printed. Unreadable images are skipped and named, as in training.
``--csv=FILE`` writes every image's row (path, label, prediction, its probability, then one
column per class) for a spreadsheet or pandas.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from tfclf import cli

flags.DEFINE_string("model", None, "Model file: .tflite, .keras or a SavedModel directory.")
flags.DEFINE_integer("top_k", 3, "Classes printed per image.")
flags.DEFINE_bool(
    "convert_channels",
    False,
    "Convert colour images for a grayscale model (grayscale ones are widened for RGB models).",
)
flags.DEFINE_integer("max_print", 50, "Print at most this many per-image lines.")
flags.DEFINE_string(
    "csv", None, "Also write every image's prediction and class probabilities to this CSV file."
)
flags.DEFINE_string(
    "data_dir", None, "Folder of the images a CSV input lists (default: the CSV's folder)."
)
FLAGS = flags.FLAGS


def main(argv):
    cli.quiet_library_info()
    inputs = [Path(a) for a in argv[1:]]
    if FLAGS.model is None:
        raise cli.UsageError("--model is required (a .tflite, .keras or SavedModel)")
    if not inputs:
        raise cli.UsageError("give one or more images, folders or CSV lists after the flags")
    if FLAGS.top_k < 1:
        raise cli.UsageError(f"--top_k must be >= 1, got {FLAGS.top_k}")
    if FLAGS.csv and not Path(FLAGS.csv).parent.is_dir():
        raise cli.UsageError(f"--csv: no folder {Path(FLAGS.csv).parent} to write {FLAGS.csv} in")
    from tfclf.export.load import ModelFileError, load_classifier
    from tfclf.inference import ImageError, classify, collect_images, predictions_csv

    if Path(FLAGS.model).suffix != ".tflite":  # a .keras file or SavedModel runs in TensorFlow
        from tfclf.native_stderr import import_tensorflow_quietly

        import_tensorflow_quietly()

    try:
        clf = load_classifier(FLAGS.model)
    except ModelFileError as e:
        raise cli.UsageError(f"--model: {e}") from None
    try:
        data_dir = Path(FLAGS.data_dir) if FLAGS.data_dir else None
        items = collect_images(inputs, clf.class_names, data_dir)
        probs, kept, skipped = classify(clf, items, FLAGS.convert_channels, log=print)
    except ImageError as e:
        raise cli.UsageError(str(e)) from None
    for path, reason in skipped:
        print(f"skipped {path}: {reason}")
    if not kept:
        raise cli.UsageError("no readable image among the inputs")
    k = min(FLAGS.top_k, probs.shape[1])
    for (path, _), p in list(zip(kept, probs))[: FLAGS.max_print]:
        top = p.argsort()[::-1][:k]
        print(f"{path}: " + ", ".join(f"{clf.class_names[i]} {p[i]:.3f}" for i in top))
    if len(kept) > FLAGS.max_print:
        print(f"... {len(kept) - FLAGS.max_print} more (--max_print)")
    labelled = [(i, label) for i, (_, label) in enumerate(kept) if label is not None]
    if labelled:
        idx, labels = zip(*labelled)
        acc = float((probs[list(idx)].argmax(-1) == list(labels)).mean())
        print(f"accuracy {acc:.4f} on {len(idx)} labelled images ({clf.kind} {clf.path})")
    if FLAGS.csv:
        from tfclf.io import atomic_write_text

        atomic_write_text(predictions_csv(kept, probs, clf.class_names), Path(FLAGS.csv))
        print(f"{len(kept)} predictions -> {FLAGS.csv}")
    return 0


if __name__ == "__main__":
    cli.run(main)
