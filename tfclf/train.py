"""Train a classifier: ``python -m tfclf.train --flagfile=configs/<experiment>.flags``.

With no flags it runs the quick start (configs/quickstart.flags): a small SE-ResNet on the
built-in MNIST-5k. Flagfiles nest (``--flagfile`` inside a flagfile) and later flags win.
The resolved flags are written to ``<run_dir>/flags.txt``; rerunning with
``--flagfile=<run_dir>/flags.txt`` resumes or repeats the run.

FixRes stages, one ``--stage`` per stage, in order (on the command line they replace a
flagfile's stages); keys not given take the run's flags:
    --stage="size=70 epochs=140 schedule=cosine_restarts lr=1e-3"
    --stage="size=120 epochs=80 schedule=constant lr=1e-4 train=classifier_bn"

The CLI composes three library calls: ``training.trainer.train`` (the loop), then for the
chief ``export.write_best_model`` (``best_model/``: raw-pixel model, labels, model card)
and ``report.write_report`` (``report/``, ``metrics.json``).
"""

from __future__ import annotations

import time
from pathlib import Path

from absl import flags, logging

from tfclf import cli

cli.define_train_flags()
flags.adopt_module_key_flags(cli)  # --help lists the training flags, not only --helpfull
FLAGS = flags.FLAGS


def prepare_run_dir(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise cli.UsageError(f"--run_dir: cannot write to {run_dir}: {e.strerror}") from None


def finish_run(result, cfg) -> dict:
    """Exports the final model and writes the report and ``metrics.json`` (chief only)."""
    import tensorflow as tf

    from tfclf.export import write_best_model
    from tfclf.io import atomic_write_json
    from tfclf.report import write_report

    run_dir = Path(cfg.run_dir)
    start = time.perf_counter()
    deploy = write_best_model(
        run_dir / "best_model",
        result.model,
        result.normalizer,
        result.data.class_names,
        resize=cfg.load_resize,
    )
    logging.info(
        "best model exported to %s in %.1f s; writing the report",
        run_dir / "best_model",
        time.perf_counter() - start,
    )
    report = write_report(
        run_dir / "report",
        deploy,
        result.data.val,
        result.data.class_names,
        None,
        image_size=result.image_size,
        batch_size=cfg.eval_batch_size,
        history=result.history,
        files={"keras": run_dir / "best_model" / "model.keras"},
    )
    with tf.summary.create_file_writer(str(run_dir / "tensorboard" / "report")).as_default():
        png = tf.io.read_file(str(run_dir / "report" / "confusion_matrix.png"))
        tf.summary.image(
            "confusion_matrix", tf.image.decode_png(png, 4)[None], step=len(result.history)
        )
    metrics = dict(result.metrics)
    metrics.update({k: report[k] for k in ("top1", "loss", "macro_f1", "top5") if k in report})
    metrics.update(
        {"trainable_params": report["model"]["trainable_params"], "macs": report["model"]["macs"]}
    )
    if cfg.teacher:
        top1, members = ensemble_top1(cfg.teacher, result.data.val)
        metrics.update({"teacher": cfg.teacher, "teacher_top1": top1})
        if len(members) > 1:
            metrics["teacher_members_top1"] = members
        logging.info(
            "student top-1 %.4f, teacher %s top-1 %.4f%s",
            metrics["top1"],
            cfg.teacher,
            top1,
            f" (its members: {', '.join(f'{t:.4f}' for t in members)})" if members[1:] else "",
        )
    snapshots = cfg.snapshots and sorted(
        (run_dir / "checkpoints" / "snapshots").glob("*.weights.h5")
    )
    if snapshots:
        try:
            metrics.update(write_snapshot_ensemble(run_dir, snapshots, result, metrics["top1"]))
        except ValueError as e:  # weights of an earlier stage's shape (a size-bound head)
            logging.warning("the snapshots do not fit the final model, not exported: %s", e)
    atomic_write_json(metrics, run_dir / "metrics.json")
    return metrics


def write_snapshot_ensemble(run_dir: Path, weight_files, result, best_top1: float) -> dict:
    """Exports the snapshots (``--snapshots``) to ``RUN/snapshots/`` and scores their
    ensemble on the validation split."""
    from tfclf.export.deploy import write_snapshots

    files = write_snapshots(run_dir / "snapshots", weight_files, result.model, result.normalizer)
    top1, members = ensemble_top1(str(run_dir / "snapshots"), result.data.val)
    logging.info(
        "snapshot ensemble of %d (%s): val top-1 %.4f, its members %s; the best model %.4f. "
        "Distil from it with --teacher=%s",
        len(files),
        ", ".join(f.parent.name for f in files),
        top1,
        ", ".join(f"{t:.4f}" for t in members),
        best_top1,
        run_dir / "snapshots",
    )
    return {"snapshot_top1": top1, "snapshot_members_top1": members}


def ensemble_top1(teacher: str, split) -> tuple[float, list[float]]:
    """Top-1 on ``split`` of a teacher (``--teacher``'s forms: one model, several or a
    snapshots folder; an ensemble's logits are averaged) and of each of its members."""
    from tfclf.distill import Teacher

    members = Teacher(teacher).logits_of(split.images)

    def top1(logits):
        return float((logits.argmax(-1) == split.labels).mean())

    return top1(sum(members)), [top1(m) for m in members]


def main(argv):
    if len(argv) > 1:
        return cli.error(f"unexpected arguments {argv[1:]}")
    cfg, errors = cli.config_from_flags(FLAGS)
    if errors:
        for e in errors:
            cli.error(e)
        return 2
    import tensorflow as tf

    cli.quiet_library_info()
    if FLAGS.cpu_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * FLAGS.cpu_devices
        )

    from tfclf.io import atomic_write_text
    from tfclf.training.trainer import read_resume_state, train

    run_dir = Path(cfg.run_dir)
    prepare_run_dir(run_dir)
    flagfile = cli.resolved_flagfile()
    changes = cli.flag_changes(run_dir, flagfile)
    if changes and read_resume_state(run_dir / "checkpoints"):
        logging.warning(
            "--run_dir=%s holds a run started with other flags (%s): it resumes where it "
            "stopped, with these flags from there on (a finished run is only reported "
            "again); pass another --run_dir, or delete it, to train from the start with them",
            run_dir,
            "; ".join(changes),
        )
    result = train(cfg, on_ready=lambda: atomic_write_text(flagfile, run_dir / "flags.txt"))
    metrics = finish_run(result, cfg) if result.model is not None else result.metrics
    summary = ", ".join(
        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
    )
    print(
        f"done: {summary}\nrun directory: {run_dir} (report/report.md, tensorboard/, best_model/)"
    )
    return 0


def run():
    cli.run(main, log_dir=lambda: FLAGS.run_dir if FLAGS.is_parsed() else None)


if __name__ == "__main__":
    run()
