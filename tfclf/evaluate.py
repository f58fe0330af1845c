"""Rebuild the evaluation report of a saved run: ``python -m tfclf.evaluate --run_dir=...``.

Reads the run's resolved flags (``RUN_DIR/flags.txt``), normaliser and best model;
``--split=val|test|train``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from absl import app, flags

from tfclf import train as train_cli  # the training flags (--run_dir, ...), set from flags.txt

flags.DEFINE_enum("split", "val", ["val", "test", "train"], "Split to evaluate.")
flags.DEFINE_string("out", None, "Report directory (default: RUN_DIR/report or report_SPLIT).")
FLAGS = flags.FLAGS


def main(argv):
    train_cli.quiet_library_info()
    run = Path(FLAGS.run_dir)
    model_path = run / "best_model" / "model.keras"
    for p in (run / "flags.txt", run / "normalizer.json", model_path):
        if not p.exists():
            print(f"error: {p} not found: is {run} a finished tfclf run?", file=sys.stderr)
            return 2
    from tfclf.data import DataError, Normalizer
    from tfclf.keras import keras
    from tfclf.report import write_report
    from tfclf.training.trainer import prepare_data

    FLAGS([sys.argv[0], f"--flagfile={run / 'flags.txt'}"], known_only=True)
    cfg, errors = train_cli.config_from_flags(FLAGS)
    if errors:
        print("\n".join(f"error: {e}" for e in errors), file=sys.stderr)
        return 2
    try:
        data, _ = prepare_data(cfg)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    split = getattr(data, FLAGS.split)
    if split is None:
        print(f"error: {cfg.source} has no {FLAGS.split} split", file=sys.stderr)
        return 2
    norm = Normalizer.from_json((run / "normalizer.json").read_text())
    model = keras.models.load_model(model_path, compile=False)
    history = (
        json.loads((run / "history.json").read_text())["epochs"]
        if (run / "history.json").exists()
        else None
    )
    out = FLAGS.out or run / ("report" if FLAGS.split == "val" else f"report_{FLAGS.split}")
    report = write_report(
        out,
        model,
        split,
        data.class_names,
        norm,
        image_size=model.input_shape[1],
        history=history,
        split_name=FLAGS.split,
        files={"keras": model_path},
    )
    print(f"{FLAGS.split}: top-1 {report['top1']:.4f}, loss {report['loss']:.4f} -> {out}")
    return 0


if __name__ == "__main__":
    app.run(main)
