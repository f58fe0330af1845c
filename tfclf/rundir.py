"""The run directory: the one module that knows its layout and reads it back.

``tfclf.train`` writes a run into ``--run_dir``; ``tfclf.evaluate``, ``tfclf.compress``,
distillation (``--teacher=RUN``) and resume read it. Every other module asks a ``RunDir``
for a path instead of spelling a file name::

    RUN/
      flags.txt          the resolved flags (a flagfile that reruns the run)
      classes.json       the class names, in the model's output order
      normalizer.json    the per-channel mean and std the model was trained with
      history.json       one row per epoch;  metrics.json: the final numbers (a finished run)
      checkpoints/       resumable checkpoints (checkpoints/snapshots/: --snapshots' weights)
      best_model/        model.keras, saved_model/, model_card.json, labels.txt (deployable)
      snapshots/NAME/    the snapshot ensemble's deployable members
      report/ tensorboard/ compress/
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from tfclf.errors import UsageError

# The names inside a deployable folder (best_model/, a snapshot, compress/)
MODEL_FILE = "model.keras"
CARD_FILE = "model_card.json"
LABELS_FILE = "labels.txt"
SAVED_MODEL = "saved_model"


@dataclasses.dataclass(frozen=True)
class RunDir:
    path: Path

    def __init__(self, path: str | os.PathLike):
        object.__setattr__(self, "path", Path(path))

    def __str__(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------- layout
    flags_file = property(lambda self: self.path / "flags.txt")
    classes_file = property(lambda self: self.path / "classes.json")
    normalizer_file = property(lambda self: self.path / "normalizer.json")
    history_file = property(lambda self: self.path / "history.json")
    metrics_file = property(lambda self: self.path / "metrics.json")
    checkpoints = property(lambda self: self.path / "checkpoints")
    snapshot_weights = property(lambda self: self.path / "checkpoints" / "snapshots")
    snapshots = property(lambda self: self.path / "snapshots")
    best_model = property(lambda self: self.path / "best_model")
    model_file = property(lambda self: self.path / "best_model" / MODEL_FILE)
    card_file = property(lambda self: self.path / "best_model" / CARD_FILE)
    report = property(lambda self: self.path / "report")
    tensorboard = property(lambda self: self.path / "tensorboard")
    compress = property(lambda self: self.path / "compress")

    def split_report(self, split: str) -> Path:
        """The report ``tfclf.evaluate --split=SPLIT`` writes (val: the run's own report)."""
        return (
            self.report / "report.json"
            if split == "val"
            else self.path / f"report_{split}" / "report.json"
        )

    def best_weights(self, stage: int) -> Path:
        return self.path / f"best_stage{stage}.weights.h5"

    # ------------------------------------------------------------- state
    def is_run(self) -> bool:
        """Whether a tfclf run was ever started here (it recorded its flags)."""
        return self.flags_file.exists()

    def has_checkpoint(self) -> bool:
        """Whether training got as far as a checkpoint (something a rerun would resume)."""
        return (self.checkpoints / "checkpoint").exists()

    def is_finished(self) -> bool:
        """Whether the run finished: its model exported and its metrics written."""
        return self.metrics_file.exists() and self.model_file.exists()

    def require_model(self, flag: str = "--run_dir") -> Path:
        if not self.model_file.exists():
            raise UsageError(
                f"{flag}: {self.model_file} not found: is {self.path} a finished tfclf run?"
            )
        return self.model_file

    # ------------------------------------------------------------- readers
    def _json(self, path: Path, required: bool = True):
        if not path.exists():
            if required:
                raise UsageError(f"{path} not found: is {self.path} a finished tfclf run?")
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise UsageError(f"{path}: not readable JSON ({e}); rerun the training") from None

    def classes(self) -> list[str]:
        names = self._json(self.classes_file)
        if not isinstance(names, list):
            raise UsageError(f"{self.classes_file}: not a list of class names")
        return [str(n) for n in names]

    def normalizer(self):
        from tfclf.data import Normalizer

        path = self.normalizer_file
        if not path.exists():
            raise UsageError(f"{path} not found: is {self.path} a finished tfclf run?")
        try:
            return Normalizer.from_json(path.read_text())
        except (OSError, KeyError, TypeError, ValueError) as e:
            raise UsageError(f"{self.normalizer_file}: no mean and std ({e})") from None

    def card(self) -> dict | None:
        """The best model's card; None when the run has none (a corrupt one is an error)."""
        return read_card(self.card_file)

    def history(self) -> list[dict] | None:
        history = self._json(self.history_file, required=False)
        return None if history is None else history["epochs"]

    def recorded_flags(self) -> dict[str, str]:
        """The flag values ``flags.txt`` records, as text by flag name (empty when there is
        none), read without touching the command line's flags."""
        from tfclf.config_flags import flag_values

        return flag_values(self.flags_file.read_text()) if self.flags_file.exists() else {}

    def flag_changes(self, flagfile: str) -> list[str]:
        """How the flags of ``flagfile`` (a resolved flagfile's text) differ from the ones
        this run recorded, one ``--name: old -> new`` per flag (none without a record)."""
        from tfclf.config_flags import default_flagfile, flag_values

        recorded = self.recorded_flags()
        if not recorded:
            return []
        defaults = flag_values(default_flagfile())
        before, after = defaults | recorded, defaults | flag_values(flagfile)
        return [
            f"--{name}: {before.get(name, '(unset)')} -> {after.get(name, '(unset)')}"
            for name in sorted(set(before) | set(after))
            if name not in ("verbose", "run_dir") and before.get(name) != after.get(name)
        ]

    def config(self, overrides: dict | None = None):
        """The run's ``TrainConfig`` from its ``flags.txt``, with ``overrides`` (flag name ->
        value, e.g. the command line's ``--data_dir`` for data that moved) over the record.
        The command line's own flags are left as they are."""
        from absl import flags

        from tfclf.config_flags import config_from_flags, define_train_flags

        path = self.flags_file
        if not path.exists():
            raise UsageError(f"{path} not found: is {self.path} a tfclf run directory?")
        fv = flags.FlagValues()
        define_train_flags(fv)
        try:
            fv(["tfclf", f"--flagfile={path}"], known_only=True)
            for name, value in (overrides or {}).items():
                fv[name].value = value
        except flags.Error as e:
            raise UsageError(f"{path}: {e}") from None
        fv["run_dir"].value = str(self.path)  # where the run is now: it may have moved
        cfg, errors = config_from_flags(fv)
        if errors:
            raise UsageError(f"{path}: {errors[0]}")
        card = self.card()
        if cfg.channels is None and card is not None:
            # The model's own channel count: a folder source's default (1 for all-gray
            # images) was 3 in early versions, and runs trained then load their data as
            # they were trained.
            try:
                channels = int(card["input"]["shape"][-1])
            except (KeyError, IndexError, TypeError, ValueError) as e:
                raise UsageError(f"{self.card_file}: no input shape ({e})") from None
            cfg = dataclasses.replace(cfg, channels=channels)
        return cfg

    def data(self, cfg):
        """(data, normalizer): the run's data source as it is on disk now, with the run's
        own normalisation. Data whose classes are not the run's (renamed, added, removed
        or reordered class folders) is refused: the model's outputs would be misnamed."""
        from tfclf.data import prepare_data

        own = self.normalizer()  # given, so the data's statistics are not computed again
        data, norm = prepare_data(dataclasses.replace(cfg, mean=own.mean, std=own.std))
        names, found = self.classes(), [str(n) for n in data.class_names]
        if found != names:
            raise UsageError(
                f"{cfg.source}: its classes ({listed(found)}) are not the run's "
                f"({listed(names)}, {self.classes_file}): pass the data the run was trained "
                "on (--source, --data_dir), or train a new run on this data"
            )
        return data, norm

    def describe(self) -> str:
        """How to name the run this directory holds: its model, from its ``flags.txt``."""
        model = self.recorded_flags().get("model")
        return f"an earlier run of {model} (its flags.txt)" if model else "an earlier run"


def read_card(path: Path) -> dict | None:
    """A ``model_card.json``; None when there is none, a ``UsageError`` naming the file when
    it cannot be read (never silently treated as missing)."""
    if not path.exists():
        return None
    try:
        card = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UsageError(f"{path}: not a readable model card ({e})") from None
    if not isinstance(card, dict):
        raise UsageError(f"{path}: not a readable model card (not a JSON object)")
    return card


def run_holding(path: str | os.PathLike) -> RunDir | None:
    """The run a path is or lies in (a run directory, its ``best_model/model.keras``, a
    snapshot's ``snapshots/NAME/model.keras``), or None."""
    path = Path(path)
    for candidate in (path, *list(path.parents)[:3]):
        if RunDir(candidate).is_run():
            return RunDir(candidate)
    return None


def check_reuse(run: RunDir, flagfile: str, resume: bool) -> None:
    """Refuses to silently reuse a run directory: one holding a run with other flags, or a
    finished one, needs ``--resume`` (continue it, with these flags from there on), or another
    ``--run_dir``. The same flags over an unfinished run resume it (a rerun after a kill)."""
    if resume or not run.is_run() or not (run.has_checkpoint() or run.is_finished()):
        return  # nothing here a new run would lose
    changes = run.flag_changes(flagfile)
    ways = "pass another --run_dir for a new run, or --resume to continue this one"
    if changes:
        shown = "; ".join(changes[:6]) + (f"; ... ({len(changes)})" if len(changes) > 6 else "")
        raise UsageError(
            f"--run_dir={run} holds a run with other flags ({shown}): {ways} with these flags"
        )
    if run.is_finished():
        raise UsageError(
            f"--run_dir={run} holds a finished run of these flags ({run.report / 'report.md'}): "
            f"{ways} (export and report it again, or train on with more --epochs)"
        )


def listed(names: list[str], most: int = 5) -> str:
    more = f", ... ({len(names)})" if len(names) > most else ""
    return ", ".join(names[:most]) + more
