"""Phases: what distillation, pruning, clustering and QAT change in the training loop.

Each of them changes the same five things (and distillation may attach one array per
training image to the batches, ``per_example``), nothing else: how the model is built or
wrapped (``wrap``), how it compiles (``compile``), which extra callbacks run (``callbacks``,
e.g. TF-MOT's ``UpdatePruningStep``), which model is saved as the run's best weights and
exported (``saved``: the student, not a distiller holding its teacher) and what happens
after training (``finish``: ``strip_pruning``, ``strip_clustering``). The loop
(``tfclf.training.trainer``) calls these hooks and knows no phase by name; plain training
is the base class with every hook the identity.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tfclf.config import Stage, TrainConfig
from tfclf.keras import keras


@dataclasses.dataclass(frozen=True)
class PhaseContext:
    """What a phase may need to know about the stage being trained."""

    cfg: TrainConfig
    stage: Stage
    stage_index: int
    steps_per_epoch: int
    num_classes: int
    run_dir: Path
    normalizer: object = None  # the run's tfclf.data.Normalizer (images arrive normalised)


class Phase:
    """Plain training: every hook is the identity. Subclass and override what changes."""

    name = "train"

    def wrap(self, model: keras.Model, ctx: PhaseContext) -> keras.Model:
        """The model that trains, built from a fresh ``model`` (called inside the
        distribution strategy's scope, and again outside it for the float32 export)."""
        return model

    def compile(self, model: keras.Model, ctx: PhaseContext, **compile_args) -> None:
        """Compiles ``model`` with the loop's optimizer, loss, metrics, jit_compile and
        steps_per_execution."""
        model.compile(**compile_args)

    def callbacks(self, model: keras.Model, ctx: PhaseContext) -> list:
        return []

    def per_example(self, split, ctx: PhaseContext):
        """An array with one row per training image that the loop gathers beside each
        batch's images, ``((images, rows), labels)`` (distillation's cached teacher
        logits), or None."""
        return None

    def saved(self, model: keras.Model) -> keras.Model:
        """The part of the trained model whose weights are kept as the best weights."""
        return model

    def finish(self, model: keras.Model) -> keras.Model:
        """The deployable Keras model, from ``wrap``'s model with the best weights loaded."""
        return self.saved(model)
