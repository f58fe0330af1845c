"""Training configuration: one set of defaults (the quick start), validated in one place.

The command-line flags are generated from these dataclasses (``tfclf.cli``): a flag's name is
the field it sets, its default is the field's default and its help is the field's ``help``
metadata, so ``python -m tfclf.train`` with no flags and ``TrainConfig(run_dir=...)`` are
the same run. Importing this module does not import TensorFlow, so flags are checked at once.
"""

from __future__ import annotations

import dataclasses
import re
import typing

SCHEDULES = (
    "constant",
    "step",
    "multistep",
    "exponential",
    "plateau",
    "cosine",
    "cosine_restarts",
    "linear",
    "cyclic",
)
CYCLIC_SCHEDULES = ("cosine_restarts", "cyclic")  # several low points: --snapshots
OPTIMIZERS = ("sgd", "adam", "adamw", "adadelta")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("default", "mirrored", "multi_worker")
TRAINABLE = ("all", "classifier_bn", "head")
BN_MODES = ("train", "frozen")
BALANCE = ("none", "oversample", "class_weight")
VERBOSITY = ("auto", "bar", "line")
RESIZE_MODES = ("squash", "crop", "pad")  # tfclf.data.sources.RESIZE_NOTES: what each does
# Each validation of MNIST-5k's 1,000 images costs about 5 % of an epoch (docs/benchmarks/training.md).
AUTO_VAL_EVERY = 3


def field(default=dataclasses.MISSING, help: str = "", *, factory=None, choices=None, flag=None):  # noqa: A002
    """A dataclass field whose metadata defines its command-line flag."""
    meta = {"help": help, "choices": choices, "flag": flag}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """A learning-rate schedule over one stage (``tfclf.training.schedules``)."""

    kind: str = field(
        "cosine",
        "LR schedule. With cycles (cosine_restarts, cyclic) the best model is the best by "
        "val accuracy among the cycles' ends, each validated.",
        choices=SCHEDULES,
        flag="schedule",
    )
    lr: float = field(0.2, "Peak learning rate.")
    epochs: int = field(22, "Epochs (of the single stage; --stage sets them per stage).")
    warmup_epochs: float = field(1.0, "Linear warm-up epochs (clipped below --epochs).")
    gamma: float = field(0.1, "Decay factor (step, multistep, exponential).")
    step_epochs: int = field(30, "Epochs between decays (step).")
    milestones: tuple[int, ...] = field((60, 90), "Decay epochs (multistep).")
    min_lr: float = field(0.0, "Lowest LR (cosine, cosine_restarts, linear, cyclic, plateau).")
    restart_epochs: float = field(20.0, "First cycle length (cosine_restarts).")
    t_mul: float = field(2.0, "Cycle length factor (cosine_restarts).")
    m_mul: float = field(1.0, "Peak LR factor per cycle (cosine_restarts).")
    cycle_epochs: float = field(8.0, "Full cycle length (cyclic).")

    def validate(self) -> ScheduleConfig:
        if self.kind not in SCHEDULES:
            raise ValueError(
                f"unknown schedule {self.kind!r}; choose one of {', '.join(SCHEDULES)}"
            )
        if self.lr <= 0:
            raise ValueError(f"--lr must be positive, got {self.lr}")
        if self.epochs <= 0:
            raise ValueError(f"--epochs must be positive, got {self.epochs}")
        if self.warmup_epochs < 0 or self.warmup_epochs >= max(self.epochs, 1):
            raise ValueError(
                f"--warmup_epochs (warm-up) must be in [0, epochs={self.epochs}), got "
                f"{self.warmup_epochs}"
            )
        if self.min_lr < 0:
            raise ValueError(f"--min_lr must be >= 0, got {self.min_lr}")
        return self


@dataclasses.dataclass(frozen=True)
class Stage:
    """One FixRes stage (Touvron et al. 2019; report 000): resolution, schedule (and so its
    epochs), which layers train and its augmentation."""

    size: int | None = field(None, "Training resolution (default: native).", flag="image_size")
    schedule: ScheduleConfig = field(factory=ScheduleConfig)
    train: str = field(
        "all",
        "Layers that train: all | classifier_bn (FixRes fine-tuning) | head (the classifier "
        "alone, e.g. the first stage of a fine-tune).",
        choices=TRAINABLE,
    )
    augment: str | None = field(None, "Augmentation of this stage (default: the run's).")
    bn: str = field(
        "train",
        "Batch norms: train | frozen (scale, offset and statistics kept: fine-tuning on a "
        "small set).",
        choices=BN_MODES,
    )

    @property
    def epochs(self) -> int:
        return self.schedule.epochs


# Keys of a --stage spec: the Stage's own fields (but the schedule) and every schedule field,
# each under its flag name.
STAGE_KEYS: dict[str, type] = {}


def flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or f.name


def field_type(f: dataclasses.Field) -> type:
    """The scalar type of a field (``int | None`` -> int, ``tuple[int, ...]`` -> tuple)."""
    t = typing.get_type_hints(_OWNER[f.name])[f.name]
    if typing.get_origin(t) is not tuple:
        args = [a for a in typing.get_args(t) if a is not type(None)]
        t = args[0] if args else t
    return tuple if typing.get_origin(t) is tuple else t


def _checker(errors: list[str]):
    """``check(ok, message)``: appends ``message`` to ``errors`` when not ``ok``."""

    def check(ok: bool, message: str) -> None:
        if not ok:
            errors.append(message)

    return check


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs. The defaults are the quick start."""

    run_dir: str = field("runs/quickstart", "Run directory (checkpoints, logs, report).")
    model: str = field("se_resnet8", "Model name (python -m tfclf.models --list).")
    model_args: dict = field(
        factory=dict,
        help="Model builder overrides as a Python dict literal, e.g. "
        "\"{'se_ratio': 8, 'dropout': 0.3}\".",
    )
    source: str = field("mnist5k", "mnist5k | tfds:NAME | folder:PATH | csv:FILE | npz:PATH.")
    data_dir: str | None = field(
        None, "TFDS data_dir (datasets prepared offline); for csv:FILE, the images' folder."
    )
    download: bool = field(False, "Allow TFDS to download (needs network).")
    channels: int | None = field(None, "Convert images to 1 or 3 channels (default: source's).")
    load_size: int | None = field(
        None, "Resize images to this size on loading (needed for images of several sizes)."
    )
    load_resize: str = field(
        "squash",
        "How --load_size meets another aspect ratio: squash (stretch) | crop (the largest "
        "centred square) | pad (the whole image on black bars).",
        choices=RESIZE_MODES,
    )
    val_fraction: float = field(0.2, "Stratified validation fraction when the source has none.")
    mean: tuple[float, ...] | None = field(
        None, "Per-channel mean in [0, 1] (default: from the training split)."
    )
    std: tuple[float, ...] | None = field(
        None, "Per-channel std in [0, 1] (default: from the training split)."
    )
    augment: str = field(
        "affine(8, 0.08, (0.92, 1.08), 4)",
        "Augmentations, e.g. 'random_crop(4)|flip_lr|cutmix(0.5)'; '' for none.",
    )
    balance: str = field("none", "Class balancing.", choices=BALANCE)
    batch_size: int = field(64, "Global batch size.")
    optimizer: str = field("sgd", "Optimizer.", choices=OPTIMIZERS)
    momentum: float = field(0.9, "SGD momentum.")
    nesterov: bool = field(True, "Nesterov momentum for SGD.")
    weight_decay: float = field(0.0, "Decoupled weight decay (AdamW).")
    l2: float = field(
        2.5e-4,
        "L2 penalty coefficient on conv/dense kernels (kernel "
        "regularisers: serialised with the model, kept by TF-MOT wrappers).",
    )
    bn_l1: float = field(
        0.0,
        "L1 penalty on batch-norm scales (network slimming, Liu et al. 2017; e.g. 1e-4): "
        "trains the scales that python -m tfclf.compress --slim ranks channels by.",
    )
    label_smoothing: float = field(0.1, "Label smoothing (also on MixUp/CutMix labels).")
    stages: tuple[Stage, ...] = field(factory=lambda: (Stage(),))
    early_stopping: int = field(0, "Stop after this many epochs without val gain (0: off).")
    val_every: int = field(
        0,
        "Validate every N epochs and at each stage's last epoch. 0 "
        "(auto): every 3rd, or every epoch when early stopping or the "
        "plateau schedule is on (they need one each epoch).",
    )
    plateau_patience: int = field(5, "Epochs without val_loss gain before decay (plateau).")
    plateau_factor: float = field(0.1, "Decay factor (plateau).")
    time_budget: float = field(0.0, "Stop cleanly after this long: '90s', '30m', '6h'.")
    precision: str = field(
        "auto",
        "Mixed precision (auto: fp16 on GPUs; bf16 on CPUs with native bf16 for models of 5 M "
        "MACs an image or more; else float32).",
        choices=PRECISIONS,
    )
    xla: bool = field(False, "XLA jit_compile (about 3x slower for convnets on CPU).")
    steps_per_execution: int = field(
        8,
        "Training steps per call into TensorFlow (Keras steps_per_execution): fewer Python "
        "round trips; per-batch callbacks see every Nth step.",
    )
    strategy: str = field(
        "default", "tf.distribute strategy (multi_worker reads TF_CONFIG).", choices=STRATEGIES
    )
    seed: int = field(0, "Seed for splits, shuffling, augmentation and initialisation.")
    split_seed: int | None = field(
        None,
        "Seed of the train/val split alone (default: --seed). Keep it fixed to compare "
        "seeds on one split, e.g. students of a teacher trained on that split.",
    )
    deterministic: bool = field(False, "TensorFlow op determinism (slower).")
    verbose: str = field(
        "auto",
        "Keras progress: bar on a terminal, one line per epoch otherwise.",
        choices=VERBOSITY,
    )
    eval_batch_size: int = field(256, "Batch size for validation and the report.")
    precise_bn: int = field(
        1024,
        "Before each validation, set the batch norms' moving statistics from this many "
        "training images without augmentation (precise BN); 0 keeps the moving averages.",
    )
    weights: str | None = field(
        None,
        "A Keras Applications backbone's starting weights: 'imagenet' (downloaded by Keras, "
        "which needs network) or a weights file; its inputs are then normalised as those "
        "weights expect unless --mean/--std say otherwise.",
    )
    init_from: str | None = field(
        None,
        "Start from the weights of this run (its best model), .keras or .weights.h5 file, "
        "matched by layer name; a layer of another shape (a classifier for another class "
        "count) starts new. Not on resume.",
    )
    teacher: str | None = field(
        None,
        "Distil from this teacher: a tfclf run directory, .keras file or SavedModel; "
        "several, comma-separated, distil from their ensemble (the mean of their logits).",
    )
    kd_alpha: float = field(0.9, "Weight of the distillation term (1 - it weights the labels).")
    kd_temperature: float = field(4.0, "Distillation temperature T (the KL term is x T^2).")
    kd_scale: float = field(1.0, "Extra factor on the KL term (report 000: 2).")
    kd_cache_teacher: bool = field(
        False,
        "Compute the teacher's logits for the training images once instead of every step "
        "(needs --augment='': the teacher must see exactly what the student sees).",
    )

    snapshots: bool = field(
        False,
        "Keep the model at the end of every learning-rate cycle (cosine_restarts, cyclic) "
        "in RUN/snapshots/: a snapshot ensemble (Huang et al. 2017; report 000), scored "
        "in the log and metrics.json, to distil from with --teacher=RUN/snapshots.",
    )

    @property
    def resolved_val_every(self) -> int:
        plateau = any(s.schedule.kind == "plateau" for s in self.stages)
        return self.val_every or (1 if self.early_stopping or plateau else AUTO_VAL_EVERY)

    def validate(self) -> list[str]:
        """Every problem, one line each, naming the flag; [] when the config is good."""
        return self._value_errors() + self._stage_errors()

    def _value_errors(self) -> list[str]:
        """The problems of the run-wide flags."""
        from tfclf.data.augment import parse_augment  # no TensorFlow at import time

        errors = []
        check = _checker(errors)

        check(0 <= self.kd_alpha <= 1, f"--kd_alpha must be in [0, 1], got {self.kd_alpha}")
        check(self.kd_temperature > 0, f"--kd_temperature must be > 0, got {self.kd_temperature}")
        for name in ("batch_size", "eval_batch_size", "steps_per_execution"):
            check(getattr(self, name) > 0, f"--{name} must be positive, got {getattr(self, name)}")
        for name in (
            "l2", "bn_l1", "weight_decay", "time_budget", "early_stopping", "val_every",
            "precise_bn",
        ):  # fmt: skip
            check(getattr(self, name) >= 0, f"--{name} must be >= 0, got {getattr(self, name)}")
        check(
            0 <= self.label_smoothing < 1,
            f"--label_smoothing must be in [0, 1), got {self.label_smoothing}",
        )
        check(
            0 < self.val_fraction < 1, f"--val_fraction must be in (0, 1), got {self.val_fraction}"
        )
        for name, choices in (
            ("balance", BALANCE),
            ("optimizer", OPTIMIZERS),
            ("precision", PRECISIONS),
            ("strategy", STRATEGIES),
            ("verbose", VERBOSITY),
            ("load_resize", RESIZE_MODES),
        ):
            check(
                getattr(self, name) in choices,
                f"--{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}",
            )
        check(self.channels in (None, 1, 3), f"--channels must be 1 or 3, got {self.channels}")
        check(
            self.load_size is None or self.load_size > 0,
            f"--load_size must be positive, got {self.load_size}",
        )
        check(
            self.load_resize == "squash" or self.load_size is not None,
            f"--load_resize={self.load_resize} needs --load_size=N (the size to resize to)",
        )
        for name in ("mean", "std"):
            values = getattr(self, name)
            check(values is None or len(values) > 0, f"--{name} is empty")
        check(self.std is None or min(self.std, default=1) > 0, f"--std must be > 0: {self.std}")
        check(
            not isinstance(self.model_args, dict) or "input_shape" not in self.model_args,
            "--model_args: input_shape comes from the data",
        )
        try:
            parse_augment(self.augment)
        except ValueError as e:
            errors.append(f"--augment: {e}")
        return errors

    def _stage_errors(self) -> list[str]:
        """The problems of the stages and of the flags that depend on their schedules."""
        from tfclf.data.augment import parse_augment

        errors = []
        check = _checker(errors)
        check(len(self.stages) > 0, "no training stage")
        multi = len(self.stages) > 1
        for i, stage in enumerate(self.stages, start=1):
            where = f"--stage {i}: " if multi else "--"
            try:
                stage.schedule.validate()
            except ValueError as e:
                errors.append(f"--stage {i}: {e}" if multi else str(e))
            check(
                stage.train in TRAINABLE,
                f"{where}train must be one of {', '.join(TRAINABLE)}, got {stage.train!r}",
            )
            check(
                stage.bn in BN_MODES,
                f"--stage {i}: bn must be one of {', '.join(BN_MODES)}, got {stage.bn!r}",
            )
            check(
                stage.size is None or stage.size > 0,
                f"{where}{'size' if multi else 'image_size'} must be positive, got {stage.size}",
            )
            if stage.augment is not None:
                try:
                    parse_augment(stage.augment)
                except ValueError as e:
                    errors.append(f"--stage {i}: augment: {e}")
        check(
            not self.snapshots or any(s.schedule.kind in CYCLIC_SCHEDULES for s in self.stages),
            "--snapshots needs a schedule with cycles (--schedule=cosine_restarts or cyclic): "
            "the others have one low point, the end",
        )
        plateau = any(s.schedule.kind == "plateau" for s in self.stages)
        if self.val_every > 1 and (self.early_stopping or plateau):
            errors.append(
                f"--val_every={self.val_every}: early stopping and the plateau "
                "schedule need a validation every epoch (use --val_every=1)"
            )
        return errors


_OWNER = {
    f.name: cls for cls in (ScheduleConfig, Stage, TrainConfig) for f in dataclasses.fields(cls)
}
_STAGE_FIELDS = [f for f in dataclasses.fields(Stage) if f.name != "schedule"] + list(
    dataclasses.fields(ScheduleConfig)
)
STAGE_KEYS.update(
    {("size" if f.name == "size" else flag_name(f)): field_type(f) for f in _STAGE_FIELDS}
)


def split_spec(spec: str) -> list[str]:
    """Splits a stage spec on blanks outside brackets and quotes, so a value may contain
    spaces: ``size=70 augment=affine(10, 0.1)`` -> ``['size=70', 'augment=affine(10, 0.1)']``."""
    items, depth, quote, cur = [], 0, None, ""
    for ch in spec:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch.isspace() and depth == 0:
            if cur:
                items.append(cur)
            cur = ""
            continue
        cur += ch
    if cur:
        items.append(cur)
    return items


def parse_stage(spec: str, base: Stage) -> tuple[Stage, list[str]]:
    """A ``--stage`` spec over ``base`` (the run's flags): ``size=70 epochs=140 lr=1e-3``."""
    errors, stage_kw, sched_kw = [], {}, {}
    sched_names = {flag_name(f): f.name for f in dataclasses.fields(ScheduleConfig)}
    for item in split_spec(spec):
        key, eq, text = item.partition("=")
        if not eq or key not in STAGE_KEYS:
            errors.append(f"cannot read {item!r}; keys: {', '.join(STAGE_KEYS)}")
            continue
        kind = STAGE_KEYS[key]
        try:
            if kind is tuple:
                value = tuple(int(float(v)) for v in re.split(r"[,\s]+", text.strip("()")) if v)
            else:
                value = kind(text)
        except ValueError:
            errors.append(f"{key}={text!r} is not a {kind.__name__}")
            continue
        if key in sched_names:
            sched_kw[sched_names[key]] = value
        else:
            stage_kw[key] = value
    schedule = dataclasses.replace(base.schedule, **sched_kw)
    return dataclasses.replace(base, schedule=schedule, **stage_kw), errors


def parse_duration(text: str) -> float:
    """Seconds in ``'90s'``, ``'30m'``, ``'6h'``, ``'1d'`` or a plain number; '' is 0."""
    if not text:
        return 0.0
    m = re.fullmatch(r"\s*([0-9.]+)\s*([smhd]?)\s*", text)
    if not m:
        raise ValueError(f"--time_budget: cannot read {text!r}; write e.g. 90s, 30m, 6h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
