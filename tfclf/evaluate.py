"""Rebuild the evaluation report of a saved run: ``python -m tfclf.evaluate --run_dir=...``.

Reads the run's resolved flags (``RUN_DIR/flags.txt``) for its data (training flags given
on the command line, e.g. ``--data_dir`` for data that moved, win over the record) and
scores its deployable model (``best_model/``, which takes raw pixels) with the run's
classes and normalisation on ``--split=val|test|train``; data whose classes are not the
run's is refused. ``--file=F`` scores an exported file instead (a ``.tflite``,
``.keras`` or SavedModel), computed by that file on the run's split. ``--source=S`` (with
``--data_dir`` for TFDS and CSV) scores every image of another labelled set instead,
loaded as the run loaded its own (channels, ``--load_size``, ``--load_resize``; a run
without a load size gets the set's images at the model's size, so photos of any size
work); its classes are matched to the model's by name.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from tfclf import cli
from tfclf.rundir import RunDir, listed

cli.define_train_flags()  # --run_dir and the data flags, set from the run's flags.txt
flags.declare_key_flag("run_dir")  # listed by --help
flags.DEFINE_enum("split", "val", ["val", "test", "train"], "Split to evaluate.")
flags.DEFINE_string(
    "out",
    None,
    "Report directory (default: RUN_DIR/report, report_SPLIT, or report_on_NAME for --source).",
)
flags.DEFINE_string(
    "file", None, "Score this exported file (.tflite, .keras, SavedModel) on the run's split."
)
FLAGS = flags.FLAGS


def main(argv):
    cli.quiet_library_info()
    run = RunDir(FLAGS.run_dir)
    # the data flags given on the command line win over the run's record (data that moved);
    # --source (with its --data_dir) names another labelled set instead of the run's
    given = cli.given_flags(FLAGS)
    other = {}
    if "source" in given:
        other = {k: given.pop(k) for k in ("source", "data_dir") if k in given}
    split_name = other["source"] if other else FLAGS.split
    if FLAGS.file:
        return score_file(run, FLAGS.file, split_name, other, given)
    model_path = run.require_model()
    from tfclf.export import trained_part
    from tfclf.export.load import load_keras_model
    from tfclf.report import write_report

    split, class_names = evaluation_split(run, split_name, other, given)  # before the model
    model = load_keras_model(model_path)
    # Runs older than the raw-pixel export hold a model that takes normalised images.
    norm = None if trained_part(model) is not model else run.normalizer()
    if FLAGS.out:
        out = Path(FLAGS.out)
    elif other:
        out = run.path / f"report_on_{Path(other['source'].split(':')[-1]).stem}"
    else:
        out = run.split_report(split_name).parent
    report = write_report(
        out,
        model,
        split,
        class_names,
        norm,
        image_size=model.input_shape[1],
        history=run.history(),
        split_name=split_name,
        files={"keras": model_path},
    )
    print(
        f"{split_name}: top-1 {report['top1']:.4f}, loss {report['loss']:.4f} -> {out / 'report.md'}"
    )
    return 0


def evaluation_split(run: RunDir, split_name: str, other: dict, given: dict):
    """(split, class names): the run's ``split_name`` split (its data with the ``given``
    flags over the run's record; classes that are not the run's are refused), or with
    ``other`` (``source`` and ``data_dir``) every image of that source, loaded as the run
    loads its data (at the model's size, from its card, when the run had no load size),
    with its labels mapped onto the run's classes by name."""
    import numpy as np

    from tfclf.data import Split
    from tfclf.data.sources import load_source

    cfg = run.config(given)
    if not other:
        data, _ = run.data(cfg)
        split = getattr(data, split_name)
        if split is None:
            raise cli.UsageError(f"{cfg.source} has no {split_name} split")
        return split, run.classes()
    names = run.classes()
    card = run.card()
    model_size = card["input"]["shape"][1] if card else None
    data = load_source(  # at the run's load size, else at the model's (photos of any size)
        other["source"],
        data_dir=other.get("data_dir"),
        channels=cfg.channels,
        image_size=cfg.load_size or model_size,
        resize=cfg.load_resize,
    )
    if unknown := [c for c in data.class_names if c not in names]:
        raise cli.UsageError(
            f"--source: class(es) {listed(unknown)} of {other['source']} are not the "
            f"model's ({listed(names)})"
        )
    index = np.array([names.index(c) for c in data.class_names])
    splits = [s for s in (data.train, data.val, data.test) if s is not None]
    images = np.concatenate([s.images for s in splits])
    return Split(images, index[np.concatenate([s.labels for s in splits])]), names


def score_file(run: RunDir, model: str, split_name: str, other: dict, given: dict) -> int:
    """Top-1 of an exported file on the run's split (or ``other`` source), computed by the
    file itself."""
    from tfclf.data.pipeline import resize_images
    from tfclf.data.sources import to_channels
    from tfclf.export.load import ModelFileError, load_classifier

    try:
        clf = load_classifier(model)
    except ModelFileError as e:
        raise cli.UsageError(f"--file: {e}") from None
    split, names = evaluation_split(run, split_name, other, given)
    if len(clf.class_names) != len(names):
        raise cli.UsageError(
            f"--file: {model} has {len(clf.class_names)} classes; the run's data has {len(names)}"
        )
    if clf.names_from and clf.class_names != names:
        raise cli.UsageError(
            f"--file: {model} names its classes {listed(clf.class_names)} "
            f"(from {clf.names_from}); the run's are {listed(names)}"
        )
    h, w, c = clf.input_shape
    have = split.images.shape[-1]
    if h != w or c not in (have, 3):  # gray images widen for an RGB file (--rgb_input)
        raise cli.UsageError(
            f"--file: {model} takes {h}x{w}x{c} images; the run's are "
            f"{'x'.join(map(str, split.images.shape[1:]))}"
        )
    pixels = to_channels(resize_images(split.images, h).numpy(), c)
    top1 = float((clf.logits(pixels).argmax(-1) == split.labels).mean())
    print(f"{split_name}: top-1 {top1:.4f} on {len(split)} images ({clf.kind} {model})")
    return 0


if __name__ == "__main__":
    cli.run(main, tensorflow=True)
