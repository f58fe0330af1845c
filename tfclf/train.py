"""Train a classifier: ``python -m tfclf.train --flagfile=configs/<experiment>.flags``.

With no flags it runs the quick start (configs/quickstart.flags): a small SE-ResNet on the
built-in MNIST-5k. Flagfiles nest (``--flagfile`` inside a flagfile) and later flags win.
The resolved flags are written to ``<run_dir>/flags.txt``; rerunning with
``--flagfile=<run_dir>/flags.txt`` resumes or repeats the run.

FixRes stages, one ``--stage`` per stage, in order; keys not given take the run's flags:
    --stage="size=70 epochs=140 schedule=cosine_restarts lr=1e-3"
    --stage="size=120 epochs=80 schedule=constant lr=1e-4 train=classifier_bn"
"""

from __future__ import annotations

import ast
import logging as std_logging
import re
import sys
from pathlib import Path

from absl import app, flags, logging

from tfclf.data import BALANCE
from tfclf.training.schedules import SCHEDULES
from tfclf.training.trainer import OPTIMIZERS, PRECISIONS, STRATEGIES

FLAGS = flags.FLAGS
_OURS: list[str] = []
# Defaults are the quick start's (configs/quickstart.flags; tests/test_configs.py keeps them
# equal), so `python -m tfclf.train` with no flags runs it.


def _define(kind, name, default, help_, enum_values=None):
    if kind == "enum":
        flags.DEFINE_enum(name, default, enum_values, help_)
    else:
        getattr(flags, f"DEFINE_{kind}")(name, default, help_)
    _OURS.append(name)


# Run, model, data
_define("string", "run_dir", "runs/quickstart", "Run directory (checkpoints, logs, report).")
_define("string", "model", "se_resnet20", "Model name (python -m tfclf.models --list).")
_define(
    "string",
    "model_args",
    "{}",
    "Model builder overrides as a Python dict literal, e.g. \"{'se_ratio': 8, 'dropout': 0.3}\".",
)
_define("string", "source", "mnist5k", "mnist5k | tfds:NAME | folder:PATH | npz:PATH.")
_define("string", "data_dir", None, "TFDS data_dir (datasets prepared offline).")
_define("bool", "download", False, "Allow TFDS to download (needs network).")
_define("integer", "channels", None, "Convert images to 1 or 3 channels (default: source's).")
_define("integer", "load_size", None, "Resize folder images to this size on loading.")
_define("float", "val_fraction", 0.2, "Stratified validation fraction when the source has none.")
_define("list", "mean", None, "Per-channel mean in [0, 1] (default: from the training split).")
_define("list", "std", None, "Per-channel std in [0, 1] (default: from the training split).")
_define(
    "string",
    "augment",
    "affine(10, 0.1, (0.9, 1.1), 5)",
    "Augmentations, e.g. 'random_crop(4)|flip_lr|cutmix(0.5)'; '' for none.",
)
_define("enum", "balance", "none", "Class balancing.", enum_values=list(BALANCE))
_define("integer", "batch_size", 32, "Global batch size.")
# Optimisation
_define("enum", "optimizer", "sgd", "Optimizer.", enum_values=list(OPTIMIZERS))
_define("float", "lr", 0.05, "Peak learning rate.")
_define("float", "momentum", 0.9, "SGD momentum.")
_define("bool", "nesterov", True, "Nesterov momentum for SGD.")
_define("float", "weight_decay", 0.0, "Decoupled weight decay (AdamW).")
_define("float", "l2", 2.5e-4, "L2 penalty coefficient on conv/dense kernels.")
_define("float", "label_smoothing", 0.1, "Label smoothing (also on MixUp/CutMix labels).")
_define("float", "dropout", None, "Dropout rate for models that have it (None: model's own).")
_define("enum", "schedule", "cosine", "LR schedule.", enum_values=list(SCHEDULES))
_define("integer", "epochs", 24, "Epochs (single stage).")
_define("integer", "image_size", None, "Training resolution (single stage; default: native).")
_define("float", "warmup_epochs", 1.0, "Linear warm-up epochs.")
_define("float", "gamma", 0.1, "Decay factor (step, multistep, exponential).")
_define("integer", "step_epochs", 30, "Epochs between decays (step).")
_define("list", "milestones", ["60", "90"], "Decay epochs (multistep).")
_define("float", "min_lr", 0.0, "Lowest LR (cosine, cosine_restarts, linear, cyclic, plateau).")
_define("float", "restart_epochs", 20, "First cycle length (cosine_restarts).")
_define("float", "t_mul", 2.0, "Cycle length factor (cosine_restarts).")
_define("float", "m_mul", 1.0, "Peak LR factor per cycle (cosine_restarts).")
_define("float", "cycle_epochs", 8, "Full cycle length (cyclic).")
_define("integer", "plateau_patience", 5, "Epochs without val_loss gain before decay (plateau).")
_define("float", "plateau_factor", 0.1, "Decay factor (plateau).")
_define(
    "multi_string",
    "stage",
    [],
    "FixRes stage 'size=.. epochs=.. [schedule=.. lr=.. "
    "train=all|classifier_bn augment=..]'; repeat in order.",
)
_define("integer", "early_stopping", 0, "Stop after this many epochs without val gain (0: off).")
_define(
    "integer",
    "val_every",
    0,
    "Validate every N epochs and at each stage's last epoch. "
    "0 (auto): every 3rd, or every epoch when early stopping or the plateau schedule "
    "is on (they need one each epoch).",
)
_define("string", "time_budget", "", "Stop cleanly after this long: '90s', '30m', '6h'.")
# System
_define(
    "enum",
    "precision",
    "auto",
    "Mixed precision (auto: bf16 on CPU, fp16 on GPU).",
    enum_values=list(PRECISIONS),
)
_define("bool", "xla", False, "XLA jit_compile (3x slower on this CPU; try it on GPUs).")
_define(
    "enum",
    "strategy",
    "default",
    "tf.distribute strategy (multi_worker reads TF_CONFIG).",
    enum_values=list(STRATEGIES),
)
_define(
    "integer",
    "cpu_devices",
    0,
    "Split the CPU into this many logical devices (testing MirroredStrategy without GPUs).",
)
_define("integer", "seed", 0, "Seed for splits, shuffling, augmentation and initialisation.")
_define("bool", "deterministic", False, "TensorFlow op determinism (slower).")
_define(
    "enum",
    "verbose",
    "auto",
    "Keras progress: bar on a terminal, one line per epoch otherwise.",
    enum_values=["auto", "bar", "line"],
)

# Each validation of MNIST-5k's 1,000 images costs about 5 % of an epoch on the CPU here.
AUTO_VAL_EVERY = 3
_STAGE_KEYS = {
    "size": int,
    "epochs": int,
    "schedule": str,
    "lr": float,
    "train": str,
    "augment": str,
    "warmup_epochs": float,
    "min_lr": float,
    "restart_epochs": float,
    "t_mul": float,
    "m_mul": float,
    "gamma": float,
    "step_epochs": int,
}


def parse_duration(text: str) -> float:
    if not text:
        return 0.0
    m = re.fullmatch(r"\s*([0-9.]+)\s*([smhd]?)\s*", text)
    if not m:
        raise ValueError(f"--time_budget: cannot read {text!r}; write e.g. 90s, 30m, 6h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def config_from_flags(f) -> tuple[object, list[str]]:
    """Builds the TrainConfig; returns it with a list of one-line problems."""
    from tfclf.models import list_models
    from tfclf.training.schedules import ScheduleConfig
    from tfclf.training.trainer import Stage, TrainConfig

    errors = []
    if f.model not in list_models():
        errors.append(f"--model: unknown model {f.model!r} (python -m tfclf.models --list)")
    try:
        model_args = ast.literal_eval(f.model_args)
        if not isinstance(model_args, dict):
            raise ValueError
    except (ValueError, SyntaxError):
        errors.append(f"--model_args: not a Python dict literal: {f.model_args!r}")
        model_args = {}
    if f.dropout is not None:
        model_args["dropout"] = f.dropout
    for name in ("lr", "batch_size", "epochs"):
        if getattr(f, name) <= 0:
            errors.append(f"--{name} must be positive, got {getattr(f, name)}")
    for name in ("l2", "weight_decay", "min_lr", "warmup_epochs"):
        if getattr(f, name) < 0:
            errors.append(f"--{name} must be >= 0, got {getattr(f, name)}")
    if not 0 <= f.label_smoothing < 1:
        errors.append(f"--label_smoothing must be in [0, 1), got {f.label_smoothing}")
    if not 0 < f.val_fraction < 1:
        errors.append(f"--val_fraction must be in (0, 1), got {f.val_fraction}")
    try:
        from tfclf.data import parse_augment

        parse_augment(f.augment)
    except ValueError as e:
        errors.append(f"--augment: {e}")
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

    base = dict(
        kind=f.schedule,
        lr=f.lr,
        epochs=f.epochs,
        warmup_epochs=f.warmup_epochs,
        gamma=f.gamma,
        step_epochs=f.step_epochs,
        min_lr=f.min_lr,
        restart_epochs=f.restart_epochs,
        t_mul=f.t_mul,
        m_mul=f.m_mul,
        cycle_epochs=f.cycle_epochs,
        milestones=tuple(int(float(m)) for m in f.milestones if m.strip()),
    )
    stage_specs = f.stage or [""]
    stages = []
    for i, spec in enumerate(stage_specs, start=1):
        values = {"size": f.image_size, "epochs": f.epochs, "train": "all", "augment": None}
        for item in spec.split():
            key, eq, val = item.partition("=")
            if not eq or key not in _STAGE_KEYS:
                errors.append(f"--stage {i}: cannot read {item!r}; keys: {', '.join(_STAGE_KEYS)}")
                continue
            try:
                values[key] = _STAGE_KEYS[key](val)
            except ValueError:
                errors.append(f"--stage {i}: {key}={val!r} is not a {_STAGE_KEYS[key].__name__}")
        sched = dict(base, epochs=values["epochs"])
        for key in (
            "lr",
            "warmup_epochs",
            "min_lr",
            "restart_epochs",
            "t_mul",
            "m_mul",
            "gamma",
            "step_epochs",
        ):
            if key in values:
                sched[key] = values[key]
        if "schedule" in values:
            sched["kind"] = values["schedule"]
        try:
            schedule = ScheduleConfig(**sched).validate()
        except ValueError as e:
            errors.append(f"--stage {i}: {e}" if f.stage else str(e))
            schedule = None
        if values["train"] not in ("all", "classifier_bn"):
            errors.append(f"--stage {i}: train must be all or classifier_bn")
        if values["size"] is not None and values["size"] <= 0:
            errors.append(f"--stage {i}: size must be positive")
        stages.append(
            Stage(values["size"], values["epochs"], schedule, values["train"], values["augment"])
        )
    plateau = any(st.schedule and st.schedule.kind == "plateau" for st in stages)
    val_every = f.val_every or (1 if f.early_stopping or plateau else AUTO_VAL_EVERY)
    if f.val_every < 0:
        errors.append(f"--val_every must be >= 0, got {f.val_every}")
    elif val_every > 1 and (f.early_stopping or plateau):
        errors.append(
            f"--val_every={f.val_every}: early stopping and the plateau schedule "
            "need a validation every epoch (use --val_every=1)"
        )
    if errors:
        return None, errors
    verbose = {"bar": 1, "line": 2}.get(f.verbose, 1 if sys.stdout.isatty() else 2)
    cfg = TrainConfig(
        run_dir=f.run_dir,
        model=f.model,
        model_args=model_args,
        source=f.source,
        data_dir=f.data_dir,
        download=f.download,
        channels=f.channels,
        load_size=f.load_size,
        val_fraction=f.val_fraction,
        mean=floats("mean"),
        std=floats("std"),
        augment=f.augment,
        balance=f.balance,
        batch_size=f.batch_size,
        optimizer=f.optimizer,
        momentum=f.momentum,
        nesterov=f.nesterov,
        weight_decay=f.weight_decay,
        l2=f.l2,
        label_smoothing=f.label_smoothing,
        stages=tuple(stages),
        early_stopping=f.early_stopping,
        val_every=val_every,
        plateau_patience=f.plateau_patience,
        plateau_factor=f.plateau_factor,
        time_budget=time_budget,
        precision=f.precision,
        xla=f.xla,
        strategy=f.strategy,
        seed=f.seed,
        deterministic=f.deterministic,
        verbose=verbose,
    )
    return cfg, errors


def resolved_flagfile() -> str:
    lines = ["# Resolved flags of this run; rerun with: python -m tfclf.train --flagfile=THIS"]
    for name in _OURS:
        flag = FLAGS[name]
        if flag.value is None or (flag.multi if hasattr(flag, "multi") else False):
            continue
        text = flag.serialize()
        if text:
            lines.extend(text.splitlines())
    return "\n".join(lines) + "\n"


class _OwnInfoOnly(std_logging.Filter):
    package_dir = Path(__file__).resolve().parent

    def filter(self, record):
        return record.levelno >= std_logging.WARNING or Path(
            record.pathname
        ).resolve().is_relative_to(self.package_dir)


def quiet_library_info() -> None:
    """Below WARNING, only tfclf's own records reach the log: TensorFlow's and matplotlib's
    INFO records (checkpoint sharding times, SavedModel assets, font cache) would interleave
    with the one line per epoch. Their warnings and errors still show."""
    std_logging.getLogger("tensorflow").setLevel(std_logging.WARNING)  # has its own handler
    handler = logging.get_absl_handler()
    if not any(isinstance(f, _OwnInfoOnly) for f in handler.filters):
        handler.addFilter(_OwnInfoOnly())


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    cfg, errors = config_from_flags(FLAGS)
    if errors:
        for e in errors:
            print(f"error: {e}", file=sys.stderr)
        return 2
    import tensorflow as tf

    quiet_library_info()
    if FLAGS.cpu_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * FLAGS.cpu_devices
        )

    from tfclf.data import DataError
    from tfclf.training.trainer import train

    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "flags.txt").write_text(resolved_flagfile())
    try:
        result = train(cfg)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = ", ".join(
        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()
    )
    print(f"done: {summary}\nrun directory: {run_dir} (report/, tensorboard/, best_model/)")
    return 0


def run():
    app.run(main)


if __name__ == "__main__":
    run()
