"""Train a classifier: ``python -m tfclf.train --flagfile=configs/<experiment>.flags``.

With no flags it runs the quick start (configs/quickstart.flags): a small SE-ResNet on the
built-in MNIST-5k. Flagfiles nest (``--flagfile`` inside a flagfile) and later flags win.
The resolved flags are written to ``<run_dir>/flags.txt``; rerunning with
``--flagfile=<run_dir>/flags.txt`` resumes or repeats the run.

FixRes stages, one ``--stage`` per stage, in order (on the command line they replace a
flagfile's stages); keys not given take the run's flags:
    --stage="size=70 epochs=140 schedule=cosine_restarts lr=1e-3"
    --stage="size=120 epochs=80 schedule=constant lr=1e-4 train=classifier_bn"

A run directory holding a finished run, or a run with other flags, is refused unless
``--resume`` (continue it) is given: another ``--run_dir`` starts a new run.

The CLI composes two library calls: ``training.trainer.train`` (the loop), then for the
chief ``finish.finish_run`` (``best_model/``, ``report/``, ``metrics.json``).
"""

from __future__ import annotations

from pathlib import Path

from absl import flags, logging

from tfclf import cli, config_flags

cli.define_train_flags()
flags.adopt_module_key_flags(config_flags)  # --help lists the training flags, not only --helpfull
flags.DEFINE_bool(
    "resume",
    False,
    "Continue the run in --run_dir although it finished or was started with other flags "
    "(these flags from where it stopped on). Without it such a run directory is refused; a "
    "rerun of the same command after a kill resumes without it.",
)
FLAGS = flags.FLAGS


def prepare_run_dir(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise cli.UsageError(f"--run_dir: cannot write to {run_dir}: {e.strerror}") from None


def main(argv):
    if len(argv) > 1:
        return cli.error(f"unexpected arguments {argv[1:]}")
    cli.absolute_paths(FLAGS)  # recorded resolved: the run works from any directory
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

    from tfclf.finish import finish_run
    from tfclf.io import atomic_write_text
    from tfclf.rundir import RunDir, check_reuse
    from tfclf.training.trainer import train

    run = RunDir(cfg.run_dir)
    flagfile = cli.resolved_flagfile()
    check_reuse(run, flagfile, resume=FLAGS.resume)
    if changes := FLAGS.resume and run.flag_changes(flagfile):
        logging.warning(
            "--resume: %s continues with these flags from where it stopped (%s)",
            run,
            "; ".join(changes),
        )
    prepare_run_dir(run.path)
    result = train(cfg, on_ready=lambda: atomic_write_text(flagfile, run.flags_file))
    metrics = finish_run(result, cfg) if result.model is not None else result.metrics
    summary = ", ".join(
        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
    )
    print(f"done: {summary}\nrun directory: {run} (report/report.md, tensorboard/, best_model/)")
    return 0


def run():
    cli.run(main, log_dir=lambda: FLAGS.run_dir if FLAGS.is_parsed() else None, tensorflow=True)


if __name__ == "__main__":
    run()
