"""``python -m tfclf.results``: a table of finished runs, one row per recipe (seeds
together), with the runs' own numbers, and a plot."""

import json
import statistics

import pytest
from conftest import train_like_cli

import tfclf
from tfclf import results
from tfclf.errors import UsageError


@pytest.fixture(scope="module")
def runs(tmp_path_factory, digits):
    root = tmp_path_factory.mktemp("results")
    made = []
    for name, args in (
        ("a_s0", ("--epochs=1", "--seed=0")),
        ("a_s1", ("--epochs=1", "--seed=1")),
        ("b", ("--epochs=2", "--seed=0")),
    ):
        train_like_cli(root / name, digits, *args)
        made.append(root / name)
    return made


def test_results_groups_seeds_and_writes_the_runs_numbers(runs, tmp_path):
    rows = [results.collect(run) for run in runs]
    groups = results.recipes(rows)
    assert [[r["run"] for r in g] for g in groups] == [[str(runs[0]), str(runs[1])], [str(runs[2])]]
    top1 = [json.loads((run / "metrics.json").read_text())["top1"] for run in runs]
    table = results.markdown(groups, "Results", "make it")
    mean, sd = statistics.mean(top1[:2]), statistics.stdev(top1[:2])
    assert f"{100 * mean:.2f} ± {100 * sd:.2f} % (2)" in table
    assert f"{100 * top1[2]:.2f} %" in table
    assert "--epochs=2 " in table and "`resnet_custom`" in table  # what differs is named
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert f"{metrics['machine']} | {tfclf.__version__}, {metrics['date']}" in table
    png = results.plot(groups, tmp_path / "r.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_refuses_a_folder_that_is_not_a_finished_run(tmp_path):
    with pytest.raises(UsageError, match="not a finished tfclf run"):
        results.collect(tmp_path)
