"""What a finished training run leaves for its user (the chief's part of ``tfclf.train``
after the loop): the deployable model in ``best_model/``, the evaluation report, the
snapshot ensemble (``--snapshots``) and ``metrics.json``."""

from __future__ import annotations

import time

from absl import logging

from tfclf.rundir import RunDir


def finish_run(result, cfg) -> dict:
    """Exports the final model and writes the report and ``metrics.json`` (chief only)."""
    from tfclf.export import write_best_model
    from tfclf.io import atomic_write_json

    run = RunDir(cfg.run_dir)
    start = time.perf_counter()
    deploy = write_best_model(
        run.best_model,
        result.model,
        result.normalizer,
        result.data.class_names,
        resize=cfg.load_resize,
    )
    logging.info(
        "best model exported to %s in %.1f s; writing the report",
        run.best_model,
        time.perf_counter() - start,
    )
    report = _report(run, deploy, result, cfg.eval_batch_size)
    metrics = dict(result.metrics) | _provenance()
    metrics.update({k: report[k] for k in ("top1", "loss", "macro_f1", "top5") if k in report})
    metrics.update(
        {"trainable_params": report["model"]["trainable_params"], "macs": report["model"]["macs"]}
    )
    if cfg.teacher:
        metrics.update(_teacher_metrics(cfg.teacher, result.data.val, metrics["top1"]))
    snapshots = cfg.snapshots and sorted(run.snapshot_weights.glob("*.weights.h5"))
    if snapshots:
        try:
            metrics.update(write_snapshot_ensemble(run, snapshots, result, metrics["top1"]))
        except ValueError as e:  # weights of an earlier stage's shape (a size-bound head)
            logging.warning("the snapshots do not fit the final model, not exported: %s", e)
    atomic_write_json(metrics, run.metrics_file)
    return metrics


def _provenance() -> dict:
    """Where and with what a result was made: tfclf's version, the date, the machine kind."""
    import datetime

    import tfclf
    from tfclf.system import machine_kind

    return {
        "tfclf_version": tfclf.__version__,
        "date": datetime.date.today().isoformat(),
        "machine": machine_kind(),
    }


def _report(run: RunDir, deploy, result, batch_size: int) -> dict:
    """The evaluation report on the validation split, its confusion matrix in TensorBoard."""
    import tensorflow as tf

    from tfclf.report import write_report

    report = write_report(
        run.report,
        deploy,
        result.data.val,
        result.data.class_names,
        None,
        image_size=result.image_size,
        batch_size=batch_size,
        history=result.history,
        files={"keras": run.model_file},
    )
    with tf.summary.create_file_writer(str(run.tensorboard / "report")).as_default():
        png = tf.io.read_file(str(run.report / "confusion_matrix.png"))
        tf.summary.image(
            "confusion_matrix", tf.image.decode_png(png, 4)[None], step=len(result.history)
        )
    return report


def _teacher_metrics(teacher: str, split, student_top1: float) -> dict:
    top1, members = ensemble_top1(teacher, split)
    metrics = {"teacher": teacher, "teacher_top1": top1}
    if len(members) > 1:
        metrics["teacher_members_top1"] = members
    logging.info(
        "student top-1 %.4f, teacher %s top-1 %.4f%s",
        student_top1,
        teacher,
        top1,
        f" (its members: {', '.join(f'{t:.4f}' for t in members)})" if members[1:] else "",
    )
    return metrics


def write_snapshot_ensemble(run: RunDir, weight_files, result, best_top1: float) -> dict:
    """Exports the snapshots (``--snapshots``) to ``RUN/snapshots/`` and scores their
    ensemble on the validation split."""
    from tfclf.export.deploy import write_snapshots

    files = write_snapshots(run.snapshots, weight_files, result.model, result.normalizer)
    top1, members = ensemble_top1(str(run.snapshots), result.data.val)
    logging.info(
        "snapshot ensemble of %d (%s): val top-1 %.4f, its members %s; the best model %.4f. "
        "Distil from it with --teacher=%s",
        len(files),
        ", ".join(f.parent.name for f in files),
        top1,
        ", ".join(f"{t:.4f}" for t in members),
        best_top1,
        run.snapshots,
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
