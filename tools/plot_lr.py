"""Draws the learning-rate schedule of a flagfile (all FixRes stages) as a PNG.

    python tools/plot_lr.py --flagfile=configs/quickstart.flags --steps_per_epoch=31 \
        --out=lr.png

``--steps_per_epoch`` defaults to the training split size over the batch size when the
data source can be loaded.
"""

import sys

from absl import flags

from tfclf import cli, config_flags

cli.define_train_flags()
flags.adopt_module_key_flags(config_flags)  # --help lists the schedule flags

flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch (default: from the data).")
flags.DEFINE_string("out", "lr_schedule.png", "Output PNG.")
FLAGS = flags.FLAGS


def main(_):
    cfg, errors = cli.config_from_flags(FLAGS)
    if errors:
        print("\n".join(f"error: {e}" for e in errors), file=sys.stderr)
        return 2
    spe = FLAGS.steps_per_epoch
    if spe is not None and spe < 1:
        return cli.error(f"--steps_per_epoch must be positive, got {spe}")
    if spe is None:
        from tfclf.data import prepare_data

        data, _ = prepare_data(cfg)
        spe = len(data.train) // cfg.batch_size
    import numpy as np

    from tfclf.plots import figure, save_figure
    from tfclf.training.schedules import schedule_values

    fig, ax = figure(figsize=(9, 3.5))
    start = 0
    for i, stage in enumerate(cfg.stages, start=1):
        values = schedule_values(stage.schedule, spe)
        epochs = start + np.arange(len(values)) / spe
        ax.plot(
            epochs, values, label=f"stage {i}: {stage.schedule.kind}, {stage.size or 'native'} px"
        )
        start += stage.epochs
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.grid(alpha=0.3)
    ax.legend()
    print(f"wrote {save_figure(fig, FLAGS.out)}")
    return 0


if __name__ == "__main__":
    cli.run(main, tensorflow=True)  # flagfiles read as the training CLI reads them
