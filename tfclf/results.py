"""A results table from finished runs: ``python -m tfclf.results RUN_DIR... [--out=FILE.md]
[--plot=FILE.png]``.

Runs whose recorded flags differ only in ``--seed`` (and ``--run_dir``) are one recipe:
one row with the mean ± sd of its seeds. Each row gives the recipe (the model, the data and
the flags it sets away from the defaults), validation and test top-1 (test when
``tfclf.evaluate --split=test`` scored the run), parameters, MACs, the smallest ``.tflite``
file ``tfclf.compress`` verified (the largest of the seeds' sizes; their accuracies as mean
± sd), the training time, and the machine, tfclf version and date the run recorded. The
plot puts each recipe's accuracy against its parameters (or its smallest file:
``--plot_x=tflite_kb``).
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

from absl import flags

from tfclf import cli
from tfclf.rundir import RunDir

flags.DEFINE_string("out", None, "Write the Markdown table here (default: print it).")
flags.DEFINE_string("plot", None, "Write the accuracy plot here (a .png).")
flags.DEFINE_enum("plot_x", "params", ["params", "tflite_kb"], "The plot's x axis.")
flags.DEFINE_string("title", "Results", "The page's heading.")
flags.DEFINE_string("command", None, "The command that made the runs, named on the page.")
FLAGS = flags.FLAGS

# flags that do not make another recipe, and flags shown by their own columns
_SAME_RECIPE = {"seed", "run_dir", "verbose", "data_dir"}
_OWN_COLUMNS = {"model", "source"}


def collect(path: str | Path) -> dict:
    """One finished run's numbers (a ``UsageError`` naming the run when it is not one)."""
    run = RunDir(path)
    if not run.metrics_file.exists():
        raise cli.UsageError(f"{run}: no {run.metrics_file.name}: not a finished tfclf run")
    metrics = json.loads(run.metrics_file.read_text())
    test = run.split_report("test")
    smallest = _smallest_file(run)
    recorded = run.recorded_flags()
    return {
        "run": str(run),
        "flags": recorded,
        "val": metrics.get("top1"),
        "test": json.loads(test.read_text())["top1"] if test.exists() else None,
        "params": metrics.get("trainable_params"),
        "macs": metrics.get("macs"),
        "seconds": metrics.get("train_seconds"),
        "machine": metrics.get("machine", "?"),
        "version": metrics.get("tfclf_version", "?"),
        "date": metrics.get("date", "?"),
        "tflite_kb": smallest and smallest["size_bytes"] / 1024,
        "tflite_acc": smallest and smallest["accuracy"],
        "tflite_file": smallest and smallest["file"],
    }


def _smallest_file(run: RunDir) -> dict | None:
    summary = run.compress / "summary.json"
    if not summary.exists():
        return None
    candidates = json.loads(summary.read_text()).get("candidates", [])
    return min(candidates, key=lambda c: c["size_bytes"]) if candidates else None


def recipes(rows: list[dict]) -> list[list[dict]]:
    """The runs grouped by their flags, ``--seed`` and ``--run_dir`` aside, in order."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        key = tuple(sorted((k, v) for k, v in row["flags"].items() if k not in _SAME_RECIPE))
        groups.setdefault(key, []).append(row)
    return list(groups.values())


def describe_recipe(row: dict, defaults: dict[str, str]) -> str:
    """The model on the data, and every other flag the run set away from its default."""
    recorded = row["flags"]
    source = recorded.get("source", "?")
    source = (
        source.split(":", 1)[0] + ":" + Path(source.split(":", 1)[1]).name
        if ":" in source
        else source
    )
    changed = [
        f"--{k}={_short(v)}"
        for k, v in sorted(recorded.items())
        if k not in _SAME_RECIPE | _OWN_COLUMNS and v != defaults.get(k)
    ]
    return f"`{recorded.get('model', '?')}` on `{source}`" + (
        f" ({' '.join(changed)})" if changed else ""
    )


def _short(value: str) -> str:
    if "/" in value and not value.startswith(("(", "{", "'", '"')):
        return ",".join(Path(v).name for v in value.split(","))
    return value if len(value) <= 72 else value[:69] + "..."


def _spread(values: list) -> tuple[float, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _percent(values: list) -> str:
    spread = _spread(values)
    if spread is None:
        return "-"
    mean, sd = spread
    n = sum(v is not None for v in values)
    return f"{100 * mean:.2f} %" if n == 1 else f"{100 * mean:.2f} ± {100 * sd:.2f} % ({n})"


def markdown(groups: list[list[dict]], title: str, command: str | None = None) -> str:
    from tfclf.config_flags import default_flagfile, flag_values
    from tfclf.models.summary import human

    defaults = flag_values(default_flagfile())
    made = f"`{command}`, then " if command else ""
    lines = [
        f"# {title}",
        "",
        f"Made by {made}`python -m tfclf.results` from the run directories in the last "
        "column: do not edit by hand. Top-1 is the mean ± sd over the seeds (their count in "
        "brackets); test top-1 where `tfclf.evaluate --split=test` scored the runs. Training "
        "time is the mean of the runs' own epochs (start-up and export aside), on the "
        "machine named: CPU vendor, widest vector ISA, and bf16 where the CPU has it natively.",
        "",
        "| # | recipe | val top-1 | test top-1 | params | MACs | smallest .tflite | training "
        "| machine | version, date | runs |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, group in enumerate(groups, start=1):
        first = group[0]
        seconds = _spread([r["seconds"] for r in group])
        small = [r for r in group if r["tflite_kb"] is not None]
        tflite = (
            f"{max(r['tflite_kb'] for r in small):.1f} KB at "
            f"{_percent([r['tflite_acc'] for r in small])}"
            if small
            else "-"
        )
        lines.append(
            f"| {i} | {describe_recipe(first, defaults)} | {_percent([r['val'] for r in group])} | "
            f"{_percent([r['test'] for r in group])} | "
            f"{first['params']:,} | {human(first['macs'] or 0)} | {tflite} | "
            f"{f'{seconds[0]:.0f} s' if seconds else '-'} | {first['machine']} | "
            f"{first['version']}, {first['date']} | "
            f"{', '.join(Path(r['run']).name for r in group)} |"
        )
    return "\n".join(lines) + "\n"


def plot(groups: list[list[dict]], path: str | Path, x: str = "params") -> Path:
    from tfclf.plots import figure, save_figure

    fig, ax = figure(figsize=(7, 4.5))
    for i, group in enumerate(groups, start=1):
        xs = [r[x] for r in group if r[x] is not None]
        accuracy = _spread([r["test"] if r["test"] is not None else r["val"] for r in group])
        if not xs or accuracy is None:
            continue
        ax.errorbar(xs[0], 100 * accuracy[0], yerr=100 * accuracy[1], fmt="o", capsize=3)
        ax.annotate(str(i), (xs[0], 100 * accuracy[0]), fontsize=8, xytext=(4, 4),
                    textcoords="offset points")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel({"params": "trainable parameters", "tflite_kb": "smallest .tflite (KB)"}[x])
    ax.set_ylabel("top-1 (%): test where scored, else val")
    ax.set_title("each recipe's mean ± sd over its seeds; the numbers are the table's rows")
    ax.grid(alpha=0.3)
    return save_figure(fig, path, dpi=120)


def main(argv):
    if len(argv) < 2:
        raise cli.UsageError("give one or more finished run directories (e.g. runs/*)")
    groups = recipes([collect(path) for path in argv[1:]])
    text = markdown(groups, FLAGS.title, FLAGS.command)
    if FLAGS.plot:
        png = plot(groups, FLAGS.plot, FLAGS.plot_x)
        print(f"wrote {png}")
        if FLAGS.out:  # the page shows the plot, linked from where the page is
            rel = os.path.relpath(Path(png).resolve(), Path(FLAGS.out).resolve().parent)
            text += f"\n![top-1 against {FLAGS.plot_x}]({rel})\n"
    if FLAGS.out:
        from tfclf.io import atomic_write_text

        atomic_write_text(text, Path(FLAGS.out))
        print(f"wrote {FLAGS.out}: {len(groups)} recipes from {len(argv) - 1} runs")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    cli.run(main)
