"""Rebuild the evaluation report of a saved run: ``python -m tfclf.evaluate --run_dir=...``.

Reads the run's resolved flags (``RUN_DIR/flags.txt``) for its data and scores its
deployable model (``best_model/model.keras``, which takes raw pixels) on
``--split=val|test|train``. ``--file=F`` scores an exported file instead (a ``.tflite``,
``.keras`` or SavedModel), computed by that file on the run's split.
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import flags

from tfclf import cli

cli.define_train_flags()  # --run_dir and the data flags, set from the run's flags.txt
flags.declare_key_flag("run_dir")  # listed by --help
flags.DEFINE_enum("split", "val", ["val", "test", "train"], "Split to evaluate.")
flags.DEFINE_string("out", None, "Report directory (default: RUN_DIR/report or report_SPLIT).")
flags.DEFINE_string(
    "file", None, "Score this exported file (.tflite, .keras, SavedModel) on the run's split."
)
FLAGS = flags.FLAGS


def main(argv):
    cli.quiet_library_info()
    run = Path(FLAGS.run_dir)
    model_path = run / "best_model" / "model.keras"
    split_name, out = FLAGS.split, FLAGS.out
    if FLAGS.file:
        return score_file(run, FLAGS.file, split_name)
    if not model_path.exists():
        raise cli.UsageError(f"{model_path} not found: is {run} a finished tfclf run?")
    cfg = cli.load_run_flags(run)
    from tfclf.data import Normalizer, prepare_data
    from tfclf.export import trained_part
    from tfclf.export.load import load_keras_model
    from tfclf.report import write_report

    data, _ = prepare_data(cfg)
    split = getattr(data, split_name)
    if split is None:
        raise cli.UsageError(f"{cfg.source} has no {split_name} split")
    model = load_keras_model(model_path)
    # Runs older than the raw-pixel export hold a model that takes normalised images.
    norm = (
        None
        if trained_part(model) is not model
        else Normalizer.from_json((run / "normalizer.json").read_text())
    )
    history_path = run / "history.json"
    history = json.loads(history_path.read_text())["epochs"] if history_path.exists() else None
    out = Path(out) if out else run / ("report" if split_name == "val" else f"report_{split_name}")
    report = write_report(
        out,
        model,
        split,
        data.class_names,
        norm,
        image_size=model.input_shape[1],
        history=history,
        split_name=split_name,
        files={"keras": model_path},
    )
    print(
        f"{split_name}: top-1 {report['top1']:.4f}, loss {report['loss']:.4f} -> {out / 'report.md'}"
    )
    return 0


def score_file(run: Path, model: str, split_name: str) -> int:
    """Top-1 of an exported file on the run's split, computed by the file itself."""
    from tfclf.data import prepare_data
    from tfclf.data.pipeline import resize_images
    from tfclf.data.sources import to_channels
    from tfclf.export.load import ModelFileError, load_classifier

    try:
        clf = load_classifier(model)
    except ModelFileError as e:
        raise cli.UsageError(f"--file: {e}") from None
    data, _ = prepare_data(cli.load_run_flags(run))
    split = getattr(data, split_name)
    if split is None:
        raise cli.UsageError(f"the run's source has no {split_name} split")
    names = [str(n) for n in data.class_names]
    if len(clf.class_names) != len(names):
        raise cli.UsageError(
            f"--file: {model} has {len(clf.class_names)} classes; the run's data has {len(names)}"
        )
    if clf.names_from and clf.class_names != names:
        raise cli.UsageError(
            f"--file: {model} names its classes {_listed(clf.class_names)} "
            f"(from {clf.names_from}); the run's are {_listed(names)}"
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


def _listed(names: list[str], most: int = 5) -> str:
    more = f", ... ({len(names)})" if len(names) > most else ""
    return ", ".join(names[:most]) + more


if __name__ == "__main__":
    cli.run(main)
