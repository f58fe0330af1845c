"""What every command-line entry point shares: the training flags (generated from
``tfclf.config``), turning them into a ``TrainConfig``, the resolved flagfile, a quiet log,
and the safety net that turns an unexpected exception into one line.

Library modules never read ``FLAGS``; the CLI modules (``tfclf.train``, ``tfclf.evaluate``,
``tfclf.compress``, ``tfclf.predict``, ``tools/``) call this module and pass plain values on.
"""

from __future__ import annotations

import ast
import dataclasses
import errno
import json
import logging as std_logging
import os
import re
import sys
import tempfile
import traceback
from pathlib import Path

from absl import app, flags, logging

from tfclf.config import (
    ScheduleConfig,
    Stage,
    TrainConfig,
    field_type,
    flag_name,
    parse_duration,
    parse_stage,
)

FLAGS = flags.FLAGS
TRAIN_FLAGS: list[str] = []  # in definition order: what the resolved flagfile lists
# Fields whose flag is a string the CLI parses (a dict literal, a duration) or that have
# no flag of their own (the stages come from the schedule flags and --stage).
_PARSED = {"model_args": "{}", "time_budget": ""}
_NO_FLAG = {"stages", "schedule"}


class UsageError(ValueError):
    """A bad flag, file or value: printed as one ``error:`` line, exit code 2."""


def _define(f: dataclasses.Field, default=dataclasses.MISSING) -> None:
    name = flag_name(f)
    if name in FLAGS:
        return
    default = f.default if default is dataclasses.MISSING else default
    help_ = f.metadata.get("help") or name
    kind = field_type(f)
    if name in _PARSED:
        flags.DEFINE_string(name, _PARSED[name], help_)
    elif f.metadata.get("choices"):
        flags.DEFINE_enum(name, default, list(f.metadata["choices"]), help_)
    elif kind is bool:
        flags.DEFINE_bool(name, default, help_)
    elif kind is int:
        flags.DEFINE_integer(name, default, help_)
    elif kind is float:
        flags.DEFINE_float(name, default, help_)
    elif kind is tuple:
        flags.DEFINE_list(name, None if default is None else [str(v) for v in default], help_)
    else:
        flags.DEFINE_string(name, default, help_)
    TRAIN_FLAGS.append(name)


def define_train_flags() -> None:
    """Defines the training flags (once): one per config field, same name and default."""
    if "run_dir" in FLAGS:
        return
    for f in dataclasses.fields(TrainConfig):
        if f.name not in _NO_FLAG:
            _define(f)
    for f in dataclasses.fields(ScheduleConfig):
        _define(f)
    _define(next(f for f in dataclasses.fields(Stage) if f.name == "size"))
    for name, default, help_ in (
        (
            "stage",
            [],
            "FixRes stage 'size=.. epochs=.. [schedule=.. lr=.. train=all|"
            "classifier_bn augment=..]'; repeat in order. Keys not given take the flags'.",
        ),
        ("dropout", None, "Dropout rate for models that have it (None: the model's own)."),
        (
            "cpu_devices",
            0,
            "Split the CPU into this many logical devices (MirroredStrategy without GPUs).",
        ),
    ):
        {
            list: flags.DEFINE_multi_string,
            type(None): flags.DEFINE_float,
            int: flags.DEFINE_integer,
        }[type(default)](name, default, help_)
        TRAIN_FLAGS.append(name)


_DEFAULT_WARMUP = ScheduleConfig().warmup_epochs


def parse_model_args(text: str) -> dict:
    """``--model_args``: a Python dict literal of the model's arguments, e.g. "{'base': 16}"."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = None
    if not isinstance(value, dict):
        raise ValueError(f"--model_args: not a Python dict literal: {text!r}")
    return value


def config_from_flags(f=FLAGS) -> tuple[TrainConfig | None, list[str]]:
    """The TrainConfig of the parsed flags, or None with every problem as one line each."""
    from tfclf.models import list_models

    errors = []
    if f.model not in list_models():
        errors.append(f"--model: unknown model {f.model!r} (python -m tfclf.models --list)")
    try:
        model_args = parse_model_args(f.model_args)
    except ValueError as e:
        errors.append(str(e))
        model_args = {}
    if f.dropout is not None:
        model_args["dropout"] = f.dropout
    if f.model in list_models():
        from tfclf.models.registry import check_model_args

        problem = check_model_args(f.model, model_args)
        if problem:
            errors.append(f"--model_args: {problem}")
    try:
        time_budget = parse_duration(f.time_budget)
    except ValueError as e:
        errors.append(str(e))
        time_budget = 0.0

    def floats(name):
        try:
            return tuple(float(v) for v in getattr(f, name)) if getattr(f, name) else None
        except ValueError:
            errors.append(f"--{name}: not a list of numbers: {getattr(f, name)}")
            return None

    sched = {}
    for fl in dataclasses.fields(ScheduleConfig):
        value = getattr(f, flag_name(fl))
        if field_type(fl) is tuple:
            try:
                value = tuple(int(float(v)) for v in value if v.strip())
            except ValueError:
                errors.append(f"--{flag_name(fl)}: not a list of numbers: {value}")
                value = fl.default
        sched[fl.name] = value
    base = Stage(size=f.image_size, schedule=ScheduleConfig(**sched))
    stages = []
    for i, spec in enumerate(f.stage or [""], start=1):
        stage, problems = parse_stage(spec, base)
        errors.extend(f"--stage {i}: {p}" for p in problems)
        # The default warm-up (1 epoch) must not refuse a 1-epoch run: it is dropped there.
        # Decided on the value, not on whether the flag was given, so that the run's
        # flags.txt (which writes every value) reads back the same way in resume and compress.
        if (
            stage.schedule.warmup_epochs == _DEFAULT_WARMUP
            and "warmup_epochs=" not in spec
            and stage.schedule.warmup_epochs >= stage.epochs > 0
        ):
            stage = dataclasses.replace(
                stage, schedule=dataclasses.replace(stage.schedule, warmup_epochs=0.0)
            )
            logging.info("no warm-up: the stage has %d epoch(s)", stage.epochs)
        stages.append(stage)
    kwargs = {}
    for fl in dataclasses.fields(TrainConfig):
        if fl.name not in _NO_FLAG and fl.name not in _PARSED and fl.name not in ("mean", "std"):
            kwargs[fl.name] = getattr(f, fl.name)
    cfg = TrainConfig(
        **kwargs,
        model_args=model_args,
        time_budget=time_budget,
        mean=floats("mean"),
        std=floats("std"),
        stages=tuple(stages),
    )
    errors.extend(e for e in cfg.validate() if e not in errors)
    return (None, errors) if errors else (cfg, [])


def resolved_flagfile(command: str = "tfclf.train") -> str:
    """The training flags as set, as a flagfile that reruns the experiment."""
    lines = [f"# Resolved flags of this run; rerun with: python -m {command} --flagfile=THIS"]
    for name in TRAIN_FLAGS:
        flag = FLAGS[name]
        if flag.value is None:
            continue
        text = flag.serialize()
        if text:
            lines.extend(text.splitlines())
    return "\n".join(lines) + "\n"


def _flag_values(flagfile: str) -> dict[str, str]:
    """A resolved flagfile's values, as text by flag name."""
    return dict(
        line[2:].partition("=")[::2] for line in flagfile.splitlines() if line.startswith("--")
    )


def recorded_flags(run_dir: str | Path) -> dict[str, str]:
    """The flag values a run's ``flags.txt`` records, as text by flag name (empty when there
    is none), read without touching ``FLAGS``: for a look at another run beside this one."""
    path = Path(run_dir) / "flags.txt"
    return _flag_values(path.read_text()) if path.exists() else {}


def flag_changes(run_dir: str | Path, flagfile: str) -> list[str]:
    """How the flags in ``flagfile`` (a resolved flagfile's text) differ from those the run
    in ``run_dir`` recorded, one ``--name: old -> new`` per flag (none without a record)."""
    before = recorded_flags(run_dir)
    if not before:
        return []
    after = _flag_values(flagfile)
    return [
        f"--{name}: {before.get(name, '(unset)')} -> {after.get(name, '(unset)')}"
        for name in sorted(set(before) | set(after))
        if name not in ("verbose", "run_dir") and before.get(name) != after.get(name)
    ]


def load_run_flags(run_dir: Path) -> TrainConfig:
    """The TrainConfig of a finished or running run, from its ``flags.txt``."""
    define_train_flags()
    path = Path(run_dir) / "flags.txt"
    if not path.exists():
        raise UsageError(f"{path} not found: is {run_dir} a tfclf run directory?")
    FLAGS([sys.argv[0], f"--flagfile={path}"], known_only=True)
    FLAGS.run_dir = str(run_dir)  # where the run is now: it may have been moved or copied
    cfg, errors = config_from_flags(FLAGS)
    if errors:
        raise UsageError(f"{path}: {errors[0]}")
    card = Path(run_dir) / "best_model" / "model_card.json"
    if cfg.channels is None and card.exists():
        # The model's own channel count: a folder source's default (1 for all-gray images)
        # was 3 before session 16, and runs trained then must load their data as trained.
        try:
            channels = int(json.loads(card.read_text())["input"]["shape"][-1])
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise UsageError(f"{card}: no input shape ({e})") from None
        cfg = dataclasses.replace(cfg, channels=channels)
    return cfg


class _OwnInfoOnly(std_logging.Filter):
    package_dir = Path(__file__).resolve().parent

    def filter(self, record):
        return record.levelno >= std_logging.WARNING or Path(
            record.pathname
        ).resolve().is_relative_to(self.package_dir)


class _NoUnrestoredValues(std_logging.Filter):
    """TensorFlow lists every value of a checkpoint whose restore failed, one warning each,
    when the half-restored objects are deleted (hundreds of lines at exit). tfclf restores
    strictly and reports a failed restore itself, in one line."""

    def filter(self, record):
        return not (
            record.levelno == std_logging.WARNING
            and Path(record.pathname).name == "checkpoint.py"
            and record.getMessage().startswith(
                ("Detecting that an object", "Value in checkpoint", "An attribute in the")
            )
        )


def check_tool_flags(positive=(), augment: str | None = None) -> None:
    """For the tools: each flag named in ``positive`` is at least 1 and ``augment`` parses,
    or a ``UsageError`` naming the flag (the training CLI checks its own in the config)."""
    from tfclf.data.augment import parse_augment

    for name in positive:
        if FLAGS[name].value < 1:
            raise UsageError(f"--{name} must be positive, got {FLAGS[name].value}")
    try:
        parse_augment(augment or "")
    except ValueError as e:
        raise UsageError(f"--augment: {e}") from None


def quiet_library_info() -> None:
    """Below WARNING, only tfclf's own records reach the log: TensorFlow's and matplotlib's
    INFO records (checkpoint sharding times, SavedModel assets, font cache) would interleave
    with the one line per epoch. Their warnings and errors still show, but for the list of
    a failed checkpoint restore's values (``_NoUnrestoredValues``)."""
    tf_logger = std_logging.getLogger("tensorflow")  # has its own handler
    tf_logger.setLevel(std_logging.WARNING)
    if not any(isinstance(f, _NoUnrestoredValues) for f in tf_logger.filters):
        tf_logger.addFilter(_NoUnrestoredValues())
    handler = logging.get_absl_handler()
    if not any(isinstance(f, _OwnInfoOnly) for f in handler.filters):
        handler.addFilter(_OwnInfoOnly())


def error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def disk_full_message(e: BaseException) -> str | None:
    """One line for a write that ran out of space (Python's ``OSError(ENOSPC)`` or
    TensorFlow's op error with the same text), naming the file when the error does."""
    text = str(e)
    if not (
        (isinstance(e, OSError) and e.errno == errno.ENOSPC) or "No space left on device" in text
    ):
        return None
    path = getattr(e, "filename", None)
    if not path:
        found = re.search(r"(/[^\s;:'\"]+)", text)
        path = found.group(1) if found else None
        if path and "_temp/" in path:  # TensorFlow's checkpoint scratch: name the checkpoint
            path = path.split("_temp/")[0]
    where = f" while writing {path}" if path else ""
    return (
        f"no space left on device{where}. Files written before it are intact (every "
        "checkpoint, best-weights file and export is written aside and renamed into place): "
        "free some space and rerun the same command; a training run resumes from its last "
        "complete checkpoint"
    )


# Lines for the log from flag parsing (expand_flagfiles), which runs before absl
# logging is set up; guarded() logs them once main starts.
_PARSE_NOTES: list[str] = []


def guarded(main, log_dir=None):
    """``main`` with the safety net: a ``UsageError`` or tfclf's ``DataError`` is one
    ``error:`` line (exit 2); any other exception is one line naming it and the file its
    full traceback went to (``log_dir()`` if it names a writable directory, else a temporary
    file), exit 1. ``TFCLF_TRACEBACK=1`` re-raises instead, showing the traceback."""

    def run(argv):
        from tfclf.data.sources import DataError

        while _PARSE_NOTES:
            logging.info(_PARSE_NOTES.pop(0))
        try:
            return main(argv)
        except (UsageError, DataError) as e:
            return error(str(e))
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:
            if os.environ.get("TFCLF_TRACEBACK"):
                raise
            full = disk_full_message(e)
            if full:
                return error(full)
            text = traceback.format_exc()
            path = None
            try:
                where = log_dir() if log_dir else None
                if where and Path(where).is_dir() and os.access(where, os.W_OK):
                    path = Path(where) / "error.log"
                    path.write_text(text)
            except Exception:
                path = None
            if path is None:
                fd, name = tempfile.mkstemp(prefix="tfclf-error-", suffix=".log")
                with os.fdopen(fd, "w") as fh:
                    fh.write(text)
                path = name
            message = str(e).strip().splitlines()[0] if str(e).strip() else ""
            print(
                f"error: {type(e).__name__}: {message[:300]} (full traceback in {path}; "
                "TFCLF_TRACEBACK=1 shows it)",
                file=sys.stderr,
            )
            return 1

    return run


_FLAGFILE = ("--flagfile=", "-flagfile=")
# The shipped experiment flagfiles, inside the package (the repository's configs/ links here)
PACKAGED_CONFIGS = Path(__file__).parent / "configs"
_STAGE = ("--stage=", "-stage=")
_STAGE_ALONE = ("--stage", "-stage")  # its value the next argument


def _flagfile_lines(path: Path, named_in: Path | None, stack: tuple[Path, ...]) -> list[str]:
    """The flags of the flagfile ``path`` in order, nested flagfiles expanded in place, read
    by absl's rules (blank lines and lines starting with # or // skipped). A flagfile named in
    another (``named_in``) is looked for where absl looks, from the working directory, and
    else beside the file that names it: a config that nests another works from anywhere.
    ``configs/NAME.flags`` not found from the working directory is the shipped one, so the
    README's commands work with an installed wheel too."""
    where = f" (named in {named_in})" if named_in else ""
    if named_in and not path.is_absolute() and not path.exists():
        path = named_in.parent / path
    elif not named_in and not path.exists() and path.parts[:1] == ("configs",):
        shipped = PACKAGED_CONFIGS.joinpath(*path.parts[1:])
        path = shipped if shipped.is_file() else path  # an installed wheel's copy
    if path.resolve() in stack:
        raise UsageError(f"--flagfile={path}{where} includes itself")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        reason = "no such file" if isinstance(e, FileNotFoundError) else e
        raise UsageError(f"--flagfile={path}{where}: {reason}") from None
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "//")):
            continue
        if line.startswith(_FLAGFILE):
            nested = Path(os.path.expanduser(line.partition("=")[2].strip()))
            lines += _flagfile_lines(nested, path, (*stack, path.resolve()))
        else:
            lines.append(line)
    return lines


def expand_flagfiles(argv: list[str]) -> list[str]:
    """``argv`` with each ``--flagfile`` replaced by its flags (``_flagfile_lines``); a bad
    flagfile is a ``UsageError`` naming it and the file that names it.

    ``--stage`` is the one repeatable flag, and absl adds a flagfile's stages to the command
    line's. As with every other flag, stages given on the command line replace a flagfile's:
    ``--flagfile=configs/report000_fixres.flags --stage="size=32 epochs=2"`` trains one stage,
    not three."""
    tagged, args = [(argv[0], False)], iter(argv[1:])  # (argument, from a flagfile)
    for a in args:
        if a == "--":  # what follows is positional
            tagged += [(b, False) for b in (a, *args)]
            break
        if a in ("--flagfile", "-flagfile"):
            a = f"--flagfile={next(args, '')}"
        if a.startswith(_FLAGFILE):
            lines = _flagfile_lines(Path(os.path.expanduser(a.partition("=")[2])), None, ())
            tagged += [(line, True) for line in lines]
        else:
            tagged.append((a, False))
    out = [a for a, _ in tagged]
    if not any(a.startswith(_STAGE) or a in _STAGE_ALONE for a, filed in tagged if not filed):
        return out
    kept = [a for a, filed in tagged if not (filed and a.startswith(_STAGE))]
    # logged once main runs: absl logging is not set up while flags parse
    _PARSE_NOTES.append(
        f"--stage on the command line replaces the flagfile's {len(out) - len(kept)} stage(s)"
    )
    return kept


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        argv = expand_flagfiles(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    return app.parse_flags_with_usage(argv)


def run(main, log_dir=None) -> None:
    app.run(guarded(main, log_dir), flags_parser=_parse_flags)
