"""Every shipped experiment flagfile parses into a valid training configuration."""

from pathlib import Path

import pytest
from absl import flags

from tfclf import cli
from tfclf.config_flags import flag_values
from tfclf.rundir import RunDir

cli.define_train_flags()

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.flags"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_is_valid_and_documented(path):
    text = path.read_text()
    assert text.startswith("#") and "python -m tfclf.train" in text  # says how to run it
    fl = flags.FLAGS
    try:
        fl(cli.expand_flagfiles(["prog", f"--flagfile={path}"]))
        cfg, errors = cli.config_from_flags(fl)
    finally:
        fl.unparse_flags()
    assert errors == []
    assert cfg.stages and all(s.epochs > 0 for s in cfg.stages)


def test_no_flags_is_the_quickstart():
    fl = flags.FLAGS
    try:
        fl(["prog"])
        default, errors = cli.config_from_flags(fl)
        assert errors == []
        fl.unparse_flags()
        fl(
            [
                "prog",
                "--flagfile=" + str(CONFIGS[[p.name for p in CONFIGS].index("quickstart.flags")]),
            ]
        )
        quick, errors = cli.config_from_flags(fl)
        assert errors == []
    finally:
        fl.unparse_flags()
    assert default == quick


@pytest.mark.parametrize(
    "args,expected",
    [
        ([], 3),
        (["--early_stopping=4"], 1),
        (["--schedule=plateau"], 1),
        (["--stage=epochs=5", "--stage=epochs=5 schedule=plateau"], 1),
        (["--val_every=5"], 5),
    ],
)
def test_val_every_auto_validates_each_epoch_only_when_needed(args, expected):
    fl = flags.FLAGS
    try:
        fl(["prog", *args])
        cfg, errors = cli.config_from_flags(fl)
    finally:
        fl.unparse_flags()
    assert errors == [] and cfg.resolved_val_every == expected


@pytest.mark.parametrize(
    "args",
    [["--epochs=1"], ["--stage=epochs=1", "--stage=epochs=1 size=32"], ["--epochs=3"]],
)
def test_resolved_flagfile_reads_back_to_the_same_config(tmp_path, args):
    # flags.txt writes every value; a 1-epoch run (warm-up dropped) must read back too,
    # or resume and tfclf.compress refuse the run they just trained.
    fl = flags.FLAGS
    try:
        fl(["prog", *args])
        cfg, errors = cli.config_from_flags(fl)
        assert errors == []
        (tmp_path / "flags.txt").write_text(cli.resolved_flagfile())
        fl.unparse_flags()
        fl(["prog", f"--flagfile={tmp_path / 'flags.txt'}"])
        again, errors = cli.config_from_flags(fl)
    finally:
        fl.unparse_flags()
    assert errors == []
    assert again == cfg
    assert [s.schedule.warmup_epochs for s in cfg.stages] == [
        0.0 if s.epochs == 1 else 1.0 for s in cfg.stages
    ]


def test_flag_changes_name_what_differs_from_the_runs_record(tmp_path):
    """A rerun into a run directory is told which flags differ from the run's flags.txt:
    none for the same command or a moved directory, each changed flag otherwise."""
    fl = flags.FLAGS
    try:
        fl(["prog", f"--run_dir={tmp_path / 'a'}"])
        (tmp_path / "flags.txt").write_text(cli.resolved_flagfile())
        same = cli.resolved_flagfile()
        fl.unparse_flags()
        fl(["prog", f"--run_dir={tmp_path / 'moved'}", "--lr=0.3", "--stage=epochs=3"])
        other = cli.resolved_flagfile()
    finally:
        fl.unparse_flags()
    run = RunDir(tmp_path)
    assert run.flag_changes(same) == []
    assert run.flag_changes(other) == ["--lr: 0.2 -> 0.3", "--stage: (unset) -> epochs=3"]
    assert RunDir(tmp_path / "nowhere").flag_changes(other) == []  # no record: a new run


def test_a_runs_channels_follow_its_model_when_its_flags_leave_them_open(tmp_path):
    """Folder sources load 1 channel for grayscale images (3 in early versions): a run
    trained earlier must reload its data with its model's channels, from its model card."""
    fl = flags.FLAGS

    def channels(run):
        try:
            return RunDir(run).config().channels
        finally:
            fl.unparse_flags()

    for run, extra in ((tmp_path, []), (tmp_path / "given", ["--channels=1"])):
        fl(["prog", "--source=folder:/some/where", *extra])
        (run / "best_model").mkdir(parents=True)
        (run / "flags.txt").write_text(cli.resolved_flagfile())
        fl.unparse_flags()
    card = tmp_path / "best_model" / "model_card.json"
    assert channels(tmp_path) is None  # no model yet: the source decides
    card.write_text('{"input": {"shape": [1, 8, 8, 3]}}')
    assert channels(tmp_path) == 3
    (tmp_path / "given" / "best_model" / "model_card.json").write_text("{}")
    assert channels(tmp_path / "given") == 1  # the flag wins
    card.write_text("{}")
    with pytest.raises(cli.UsageError, match="model_card.json: no input shape"):
        channels(tmp_path)


def test_stages_on_the_command_line_replace_a_flagfiles(tmp_path):
    """absl adds a flagfile's --stage values to the command line's; tfclf makes them an
    override like any other flag, through nested flagfiles too, and leaves them alone when
    the command line gives none."""
    inner = tmp_path / "inner.flags"
    inner.write_text("--stage=size=70 epochs=300\n--stage=size=120 epochs=150\n--lr=0.05\n")
    outer = tmp_path / "outer.flags"
    outer.write_text(f"# a comment\n\n--flagfile={inner}\n// another\n  --epochs=7\n")
    argv = ["prog", f"--flagfile={outer}", "--stage=size=32 epochs=2", "--batch_size=8"]
    assert cli.expand_flagfiles(argv) == [
        "prog", "--lr=0.05", "--epochs=7", "--stage=size=32 epochs=2", "--batch_size=8"
    ]  # fmt: skip
    two_tokens = ["prog", "--flagfile", str(inner), "--stage", "size=16 epochs=1"]
    assert cli.expand_flagfiles(two_tokens) == ["prog", "--lr=0.05", *two_tokens[3:]]
    untouched = ["prog", f"--flagfile={outer}", "--batch_size=8"]
    assert cli.expand_flagfiles(untouched) == [
        "prog", "--stage=size=70 epochs=300", "--stage=size=120 epochs=150", "--lr=0.05",
        "--epochs=7", "--batch_size=8",
    ]  # fmt: skip
    fl = flags.FLAGS
    try:
        fl(cli.expand_flagfiles(argv))
        cfg, errors = cli.config_from_flags(fl)
    finally:
        fl.unparse_flags()
    assert not errors and [(s.size, s.epochs) for s in cfg.stages] == [(32, 2)]


def test_a_nested_flagfile_is_found_beside_the_file_naming_it(tmp_path, monkeypatch):
    """From any working directory: absl alone looks for it from the working directory
    only, so the shipped configs that build on another worked from the repository root
    only."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    distill = next(p for p in CONFIGS if p.name == "distill_mobilenet.flags")
    expanded = cli.expand_flagfiles(["prog", f"--flagfile={distill}"])
    # se_resnet20_mnist.flags, which it names, then its own flags: the later one wins
    assert expanded.index("--model=se_resnet20") < expanded.index("--model=mobilenet_student")
    (tmp_path / "base.flags").write_text("--lr=0.3\n")
    (elsewhere / "base.flags").write_text("--lr=0.7\n")
    (tmp_path / "exp.flags").write_text("--flagfile=base.flags\n")
    # configs/ as the README names them, read from the package where there is no such folder
    shipped = cli.expand_flagfiles(["prog", "--flagfile=configs/distill_mobilenet.flags"])
    assert shipped == expanded
    assert (Path(cli.__file__).parent / "configs" / "quickstart.flags").is_file()
    # where absl looks first (the working directory) wins, as it did before
    assert cli.expand_flagfiles(["prog", f"--flagfile={tmp_path / 'exp.flags'}"]) == [
        "prog", "--lr=0.7"
    ]  # fmt: skip


@pytest.mark.parametrize(
    "files, error",
    [
        ({}, "--flagfile={t}/exp.flags: no such file"),
        ({"exp.flags": "--flagfile=gone.flags"}, "--flagfile={t}/gone.flags (named in {t}/exp"),
        ({"exp.flags": "--flagfile=exp.flags"}, "--flagfile={t}/exp.flags (named in {t}/exp.f"),
        ({"exp.flags": b"\xff\xfe--lr"}, "--flagfile={t}/exp.flags: 'utf-8' codec can't"),
    ],
    ids=["missing", "missing-nested", "includes-itself", "not-text"],
)
def test_a_bad_flagfile_is_an_error_naming_it_and_the_file_naming_it(tmp_path, files, error):
    for name, content in files.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(cli.UsageError) as e:
        cli.expand_flagfiles(["prog", f"--flagfile={tmp_path / 'exp.flags'}", "--lr=1"])
    assert error.format(t=tmp_path) in str(e.value)


def test_a_moved_run_is_read_where_it_is_now(tmp_path):
    """A run's flags.txt names the directory it was trained in; evaluate and compress use
    the one they are given (their error log and outputs belong there, not in the old one)."""
    fl = flags.FLAGS
    try:
        fl(["prog", f"--run_dir={tmp_path / 'old'}"])
        (tmp_path / "new").mkdir()
        (tmp_path / "new" / "flags.txt").write_text(cli.resolved_flagfile())
        fl.unparse_flags()
        cfg = RunDir(tmp_path / "new").config()
        assert cfg.run_dir == str(tmp_path / "new")
    finally:
        fl.unparse_flags()


def _record(run: Path, *args: str) -> str:
    """Writes a run's flags.txt as the training CLI would for ``args``; returns its text."""
    fl = flags.FLAGS
    try:
        fl(["prog", f"--run_dir={run}", *args])
        cli.absolute_paths(fl)
        text = cli.resolved_flagfile()
    finally:
        fl.unparse_flags()
    run.mkdir(parents=True, exist_ok=True)
    (run / "flags.txt").write_text(text)
    return text


def test_reading_a_run_leaves_the_command_lines_flags_alone_and_given_ones_win(tmp_path):
    """compress and evaluate read the run's flags.txt into a private set of flags: the
    command line's --data_dir (data that moved) is not replaced by the recorded one."""
    _record(tmp_path / "run", "--source=tfds:mnist", "--data_dir=/old/place", "--lr=0.3")
    fl = flags.FLAGS
    try:
        fl(["prog", f"--run_dir={tmp_path / 'run'}", "--data_dir=/moved"])
        given = cli.given_flags(fl)
        cfg = RunDir(tmp_path / "run").config(given)
        assert given == {"data_dir": "/moved"}
        assert (cfg.data_dir, cfg.source, cfg.stages[0].schedule.lr) == (
            "/moved",
            "tfds:mnist",
            0.3,
        )
        assert fl.data_dir == "/moved" and fl.source == "mnist5k"  # the command line's own
    finally:
        fl.unparse_flags()


def test_relative_paths_are_recorded_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = _record(
        tmp_path / "run", "--source=folder:digits", "--data_dir=d", "--teacher=t1,sub/t2"
    )
    assert f"--source=folder:{tmp_path / 'digits'}" in text
    assert f"--data_dir={tmp_path / 'd'}" in text
    assert f"--teacher={tmp_path / 't1'},{tmp_path / 'sub' / 't2'}" in text
    for source in ("mnist5k", "tfds:mnist"):  # not paths: as given
        assert f"--source={source}" in _record(tmp_path / source, f"--source={source}")
    monkeypatch.chdir("/")  # read from elsewhere, the run still names the same folder
    assert RunDir(tmp_path / "run").config().source == f"folder:{tmp_path / 'digits'}"


def test_a_run_directory_is_not_silently_reused(tmp_path):
    """A finished run, or one with other flags, is refused with the differing flags and the
    ways out named; an unfinished one of the same flags resumes; --resume overrides."""
    from tfclf.rundir import check_reuse

    run = RunDir(tmp_path / "run")
    mnist = _record(run.path, "--source=mnist5k")
    other = _record(tmp_path / "other", "--source=folder:/my/digits")
    check_reuse(run, other, resume=False)  # flags.txt alone, no checkpoint: nothing to lose
    run.checkpoints.mkdir()
    (run.checkpoints / "checkpoint").write_text("")
    check_reuse(run, mnist, resume=False)  # the same command after a kill: resumes
    with pytest.raises(cli.UsageError) as e:
        check_reuse(run, other, resume=False)
    assert "--source: mnist5k -> folder:/my/digits" in str(e.value)
    assert "another --run_dir" in str(e.value) and "--resume" in str(e.value)
    run.model_file.parent.mkdir(parents=True)
    run.model_file.write_text("")
    run.metrics_file.write_text("{}")
    with pytest.raises(cli.UsageError, match="holds a finished run of these flags"):
        check_reuse(run, mnist, resume=False)
    check_reuse(run, other, resume=True)
    check_reuse(run, mnist, resume=True)


def test_tool_flags_below_one_or_a_bad_augment_are_one_usage_error():
    fl = flags.FLAGS
    cli.define_train_flags()
    try:
        fl(["prog", "--batch_size=0"])
        with pytest.raises(cli.UsageError, match="--batch_size must be positive, got 0"):
            cli.check_tool_flags(positive=("batch_size",))
        fl.unparse_flags()
        fl(["prog"])
        cli.check_tool_flags(positive=("batch_size",), augment="flip_lr|cutmix(0.5)")
        with pytest.raises(cli.UsageError, match="--augment: unknown augmentation 'blur'"):
            cli.check_tool_flags(augment="blur(3)")
    finally:
        fl.unparse_flags()


def test_a_repeated_flag_is_read_whole(tmp_path):
    """Every --stage counts when runs are compared (only the last one did)."""
    two = _record(tmp_path / "a", "--stage=epochs=3 train=head", "--stage=epochs=9 lr=0.01")
    other = _record(tmp_path / "b", "--stage=epochs=3 train=all", "--stage=epochs=9 lr=0.01")
    assert flag_values(two)["stage"] == "epochs=3 train=head; epochs=9 lr=0.01"
    assert RunDir(tmp_path / "a").flag_changes(other) == [
        "--stage: epochs=3 train=head; epochs=9 lr=0.01 -> epochs=3 train=all; epochs=9 lr=0.01"
    ]
