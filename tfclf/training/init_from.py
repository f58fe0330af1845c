"""Fine-tuning's starting point (``--init_from``): another run's or file's weights, matched
to a new model by layer name.

A layer of the same name and shapes is loaded; one whose shapes differ (the classifier of
a task with another class count, a stem for another channel count) is skipped and keeps
its fresh initialisation; a layer the source lacks is new. The log names all three, and a
source that shares no layer with the model is refused.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from absl import logging

from tfclf.errors import UsageError
from tfclf.rundir import RunDir


@dataclasses.dataclass
class InitReport:
    loaded: list[str]
    skipped: list[str]  # same name, other shapes: kept as initialised
    new: list[str]  # not in the source

    def describe(self) -> str:
        def names(items):
            return ", ".join(items[:8]) + (f", ... ({len(items)})" if len(items) > 8 else "")

        return (
            f"{len(self.loaded)} layers loaded; not in the source: {names(self.new) or 'none'}; "
            f"freshly initialised, the source's being of another shape (a head for another "
            f"class count, a stem for another channel count): {names(self.skipped) or 'none'}"
        )


def source_weights(source: str | Path) -> dict[str, list[np.ndarray]]:
    """Each weighted layer's weights in ``source`` by layer name: a run directory (its best
    model), a ``.keras`` file (a deployable one's trained network) or a ``.h5`` weights file
    (``model.save_weights``, e.g. a run's ``best_stage0.weights.h5``)."""
    path = Path(source)
    if path.is_dir() and RunDir(path).model_file.exists():
        path = RunDir(path).model_file
    if not path.exists():
        raise UsageError(f"--init_from: {source} not found (a run directory, .keras or .h5 file)")
    if path.suffix == ".keras":
        from tfclf.export import trained_part
        from tfclf.export.load import ModelFileError, load_keras_model

        try:
            return _layer_weights(trained_part(load_keras_model(path)))
        except ModelFileError as e:
            raise UsageError(f"--init_from: {e}") from None
    if path.suffix == ".h5":
        return _h5_weights(path)
    raise UsageError(
        f"--init_from: {source} is not a tfclf run directory, a .keras or a .weights.h5 file"
    )


def _h5_weights(path: Path) -> dict[str, list[np.ndarray]]:
    """The layers of a weights file. A legacy HDF5 file names its layers (``layer_names``);
    a ``.weights.h5`` file of today's format (what tfclf writes: a run's
    ``best_stage0.weights.h5``, its snapshots) keys them by position, so it is loaded into
    the network its run (the run directory holding it) records."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            if "layer_names" not in root.attrs:
                legacy = None
            else:
                legacy = {}
                for name in root.attrs["layer_names"]:
                    name = name.decode() if isinstance(name, bytes) else name
                    group = root[name]
                    weights = [
                        group[w.decode() if isinstance(w, bytes) else w]
                        for w in group.attrs["weight_names"]
                    ]
                    if weights:
                        legacy[name] = [np.asarray(w) for w in weights]
    except (OSError, KeyError) as e:
        raise UsageError(f"--init_from: {path}: not a Keras weights file ({e})") from None
    return _run_weights(path) if legacy is None else legacy


def _run_weights(path: Path) -> dict[str, list[np.ndarray]]:
    from tfclf.models import create_model
    from tfclf.rundir import run_holding

    run = run_holding(path)
    if run is None:
        raise UsageError(
            f"--init_from: {path} keys its weights by position, and no run directory holds "
            "it to say which network wrote them: pass the run directory or a .keras file"
        )
    cfg, card = run.config(), run.card() or {}
    shape = tuple(card.get("input", {}).get("shape", [None, 28, 28, 1])[1:])
    model = create_model(cfg.model, shape, len(run.classes()), **cfg.model_args)
    try:
        model.load_weights(path)
    except (ValueError, KeyError) as e:
        raise UsageError(f"--init_from: {path} does not fit {run}'s {cfg.model}: {e}") from None
    return _layer_weights(model)


def _layer_weights(model) -> dict[str, list[np.ndarray]]:
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


def source_normalizer(source: str | Path, own):
    """The normalisation a fine-tune trains with: its source run's (the weights were
    learnt on inputs normalised that way, as an ImageNet backbone's on ImageNet's mean and
    std), when the source is a run with the same channel count; else ``own``."""
    from tfclf.rundir import run_holding

    run = run_holding(source)
    if run is None or not run.normalizer_file.exists():
        return own
    theirs = run.normalizer()
    if len(theirs.mean) != len(own.mean):
        return own
    logging.info(
        "--init_from: normalising as %s was trained (mean %s, std %s; --mean/--std override)",
        run,
        ", ".join(f"{m:.3f}" for m in theirs.mean),
        ", ".join(f"{v:.3f}" for v in theirs.std),
    )
    return theirs


def init_from(model, source: str | Path) -> InitReport:
    """Loads into ``model`` every layer of ``source`` with its name and shapes (see the
    module docstring); a ``UsageError`` when none matches."""
    weights = source_weights(source)
    report = InitReport([], [], [])
    for layer in model.layers:
        if not layer.weights:
            continue
        theirs = weights.get(layer.name)
        if theirs is None:
            report.new.append(layer.name)
        elif [w.shape for w in theirs] != [tuple(w.shape) for w in layer.weights]:
            report.skipped.append(layer.name)
        else:
            layer.set_weights(theirs)
            report.loaded.append(layer.name)
    if not report.loaded:
        mine = [layer.name for layer in model.layers if layer.weights][:5]
        raise UsageError(
            f"--init_from: {source} shares no layer (name and shapes) with {model.name} "
            f"(its layers: {', '.join(mine)}, ...; the source's: "
            f"{', '.join(list(weights)[:5])}, ...): nothing to start from"
        )
    logging.info("--init_from=%s: %s", source, report.describe())
    return report
