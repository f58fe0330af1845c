"""The training flags: one absl flag per ``tfclf.config`` field (same name, same default),
turned into a ``TrainConfig``, and written back as the run's resolved flagfile.

Defined on any ``FlagValues`` (the global ``FLAGS`` for the command line, a private one to
read a run's recorded flags without touching the command line's: ``tfclf.rundir``).
"""

from __future__ import annotations

import ast
import dataclasses
import os
from pathlib import Path

from absl import flags, logging

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


def _define(f: dataclasses.Field, fv: flags.FlagValues) -> None:
    name = flag_name(f)
    if name in fv:
        return
    default = f.default
    help_ = f.metadata.get("help") or name
    kind = field_type(f)
    if name in _PARSED:
        flags.DEFINE_string(name, _PARSED[name], help_, flag_values=fv)
    elif f.metadata.get("choices"):
        flags.DEFINE_enum(name, default, list(f.metadata["choices"]), help_, flag_values=fv)
    elif kind is bool:
        flags.DEFINE_bool(name, default, help_, flag_values=fv)
    elif kind is int:
        flags.DEFINE_integer(name, default, help_, flag_values=fv)
    elif kind is float:
        flags.DEFINE_float(name, default, help_, flag_values=fv)
    elif kind is tuple:
        values = None if default is None else [str(v) for v in default]
        flags.DEFINE_list(name, values, help_, flag_values=fv)
    else:
        flags.DEFINE_string(name, default, help_, flag_values=fv)
    if name not in TRAIN_FLAGS:
        TRAIN_FLAGS.append(name)


def define_train_flags(fv: flags.FlagValues = FLAGS) -> None:
    """Defines the training flags on ``fv`` (once): one per config field, same name and
    default."""
    if "run_dir" in fv:
        return
    for f in dataclasses.fields(TrainConfig):
        if f.name not in _NO_FLAG:
            _define(f, fv)
    for f in dataclasses.fields(ScheduleConfig):
        _define(f, fv)
    _define(next(f for f in dataclasses.fields(Stage) if f.name == "size"), fv)
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
        }[type(default)](name, default, help_, flag_values=fv)
        if name not in TRAIN_FLAGS:
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


def _model_args(f, errors: list[str]) -> dict:
    """The model's arguments: ``--model_args`` with ``--dropout`` and ``--weights`` over
    it, each checked against the model's builder (problems appended to ``errors``)."""
    from tfclf.models import get_spec, list_models
    from tfclf.models.registry import check_model_args

    known = f.model in list_models()
    if not known:
        errors.append(f"--model: unknown model {f.model!r} (python -m tfclf.models --list)")
    try:
        model_args = parse_model_args(f.model_args)
    except ValueError as e:
        errors.append(str(e))
        model_args = {}
    if f.dropout is not None:
        model_args["dropout"] = f.dropout
    if f.weights and known and "weights" not in get_spec(f.model).args:
        errors.append(
            f"--weights: {f.model} has no pretrained weights to load (the Keras "
            "Applications backbones have: python -m tfclf.models --list)"
        )
    elif f.weights:
        model_args["weights"] = f.weights
    if known and (problem := check_model_args(f.model, model_args)):
        errors.append(f"--model_args: {problem}")
    return model_args


def config_from_flags(f=FLAGS) -> tuple[TrainConfig | None, list[str]]:
    """The TrainConfig of the parsed flags, or None with every problem as one line each."""
    errors = []
    model_args = _model_args(f, errors)
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


def resolved_flagfile(command: str = "tfclf.train", fv: flags.FlagValues = FLAGS) -> str:
    """The training flags as set, as a flagfile that reruns the experiment."""
    lines = [f"# Resolved flags of this run; rerun with: python -m {command} --flagfile=THIS"]
    for name in TRAIN_FLAGS:
        flag = fv[name]
        if flag.value is None:
            continue
        text = flag.serialize()
        if text:
            lines.extend(text.splitlines())
    return "\n".join(lines) + "\n"


def flag_values(flagfile: str) -> dict[str, str]:
    """A resolved flagfile's values, as text by flag name; a repeated flag's (``--stage``)
    joined in order with "; "."""
    values: dict[str, str] = {}
    for line in flagfile.splitlines():
        if line.startswith("--"):
            name, _, value = line[2:].partition("=")
            values[name] = f"{values[name]}; {value}" if name in values else value
    return values


def default_flagfile() -> str:
    """The resolved flagfile of the default flags: what a run recorded before a flag existed
    (an older version's ``flags.txt`` lacks it) is read as its default."""
    fv = flags.FlagValues()
    define_train_flags(fv)
    fv(["tfclf"])
    return resolved_flagfile(fv=fv)


def given_flags(fv: flags.FlagValues = FLAGS, skip=("run_dir",)) -> dict:
    """The training flags given on the command line (not left at their defaults), by name:
    what a user passes to ``tfclf.compress`` or ``tfclf.evaluate`` over a run's record."""
    return {n: fv[n].value for n in TRAIN_FLAGS if n in fv and fv[n].present and n not in skip}


# Source prefixes whose rest is a path, and the flags that name paths: recorded resolved in
# flags.txt, so that resume, compress and evaluate work from any working directory.
_PATH_SOURCES = ("folder:", "csv:", "npz:")
_PATH_FLAGS = ("data_dir", "teacher", "init_from")


def _absolute(path: str) -> str:
    return str(Path(os.path.expanduser(path)).absolute()) if path else path


def absolute_paths(fv: flags.FlagValues = FLAGS) -> None:
    """Makes the path-valued training flags of ``fv`` absolute (``--source=folder:DIR`` and
    the other path sources, ``--data_dir``, each ``--teacher``, ``--init_from``)."""
    source = fv["source"].value or ""
    prefix = next((p for p in _PATH_SOURCES if source.startswith(p)), None)
    if prefix:
        fv["source"].value = prefix + _absolute(source[len(prefix) :])
    if fv["weights"].value not in (None, "", "imagenet"):
        fv["weights"].value = _absolute(fv["weights"].value)
    for name in _PATH_FLAGS:
        if name in fv and fv[name].value:
            fv[name].value = ",".join(_absolute(p.strip()) for p in fv[name].value.split(","))
