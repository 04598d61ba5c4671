"""How to train: :class:`TrainConfig`, its validation, and its plain-dict round trip."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..options import Amp, choose
from ..semi import RECIPES as SEMI_RECIPES
from ..semi import default_weight

__all__ = ["DEFAULT_RECIPE", "RECIPES", "SEMI_RECIPES", "TrainConfig", "task_family"]

#: The training recipes (``TrainConfig.recipe``; ``dsplug train --recipe``): ``paper`` (§4.3:
#: Adam 3e-4 decayed x0.9 every 3 epochs, every training item once per epoch) and ``field``
#: (nnU-Net's: poly decay after a linear warm-up, a fixed number of steps per epoch, the
#: field's augmentation; :mod:`dsplug.train.recipe`).
RECIPES = ("paper", "field")
#: The initial learning rate of each recipe when none is given (``lr=None``).
RECIPE_LR = {"paper": 3e-4, "field": 1e-3}
#: The recipe of each task family (:func:`task_family`) when none is given (``recipe=None``):
#: what ``benchmarks/field/field.py`` measured better at equal optimiser steps, 3 seeds: 2D
#: patches ``field`` (ISBI 2012, `none` ahead in every seed), 3D patches ``paper`` (Task04, the
#: field recipe behind in every seed), whole slices not compared yet, so the paper's.
DEFAULT_RECIPE = {"2d-slices": "paper", "2d-patches": "field", "3d-patches": "paper"}

# SEMI_RECIPES: the semi-supervised recipes (``TrainConfig.semi``; ``dsplug train --semi``),
# dsplug.semi.RECIPES
#: The recipe unlabelled images get when none is named, for modes without side outputs (up
#: and down get ``consistency``: :func:`dsplug.semi.default_recipe`).
DEFAULT_SEMI = "mean-teacher"


def task_family(patch: Sequence[int] | None) -> str:
    """``2d-slices`` (whole items, no patch), ``2d-patches`` or ``3d-patches``."""
    if patch is None:
        return "2d-slices"
    return "3d-patches" if len(patch) == 3 else "2d-patches"


@dataclass(frozen=True)
class TrainConfig:
    """How to train (every field a plain type; stored in each checkpoint).

    Attributes:
        max_epochs: the epoch budget.
        min_epochs: never stop before this epoch (the paper's early stopping, §4.3).
        batch_size: images per optimiser step and process (DDP: per rank).
        lr: Adam's initial learning rate (the peak after the warm-up with ``field``); None:
            the recipe's (paper: 3e-4, field: 1e-3).
        lr_step: ``paper``: multiply the learning rate by ``lr_gamma`` every ``lr_step``
            epochs (3).
        lr_gamma: ``paper``: the decay factor (0.9).
        recipe: ``"paper"`` or ``"field"`` (see :data:`RECIPES`); None: the task family's
            (:data:`DEFAULT_RECIPE`: ``field`` for 2D patches, else ``paper``).
        iterations: ``field``: optimiser steps per epoch, whatever the data set's size;
            None: 250 (nnU-Net's). Refused with ``paper`` (one pass over the data per epoch).
        warmup_epochs: ``field``: epochs of linear learning-rate warm-up before the poly
            decay; None: 1. Refused with ``paper``.
        patience: stop once this many epochs passed without a better validation avg.m
            (after ``min_epochs``), instead of the paper's rule (stop at twice the best
            epoch); None: the paper's rule.
        seed: seeds initialisation, data order and every RNG.
        num_workers: DataLoader worker processes.
        amp: an :class:`~dsplug.options.Amp` name: ``auto`` (bf16 where supported, else fp16
            with a grad scaler, on CUDA; off on CPU), ``bf16``, ``fp16`` (both CUDA only) or
            ``off``. Stored as the plain string.
        channels_last: channels-last memory format; None: on CUDA only.
        compile: ``torch.compile`` the wrapper in place (state-dict keys unchanged).
        deterministic: deterministic algorithms (slower on CUDA; CPU runs are deterministic
            for a fixed thread count anyway).
        target_dice: report the wall time until validation Dice first reaches this.
        val_batch_size: validation batch size; None: ``batch_size``.
        progress: tqdm bars and one line per epoch.
        tensorboard: TensorBoard events when the package is installed.
        plots: learning curves each epoch and prediction overlays at the end (PNG).
        overlays: rows of the overlay figure.
        patch: the training patch (``[h, w]`` or ``[d, h, w]``) of a model trained on
            native-resolution patches: validation and test then score whole cases at native
            resolution by Gaussian sliding windows of it, with HD95 and NSD; None: the data's
            items as they are.
        nsd_tolerance: the NSD tolerance in mm (patch runs).
        semi: the semi-supervised recipe when the Trainer has unlabelled images (None: the
            mode's, :func:`dsplug.semi.default_recipe`): ``"pseudo"`` (the EMA teacher's
            confident pseudo-masks through the mode's whole loss, every mode),
            ``"mean-teacher"`` (consistency with the EMA teacher under noise and flips),
            ``"rei"`` (the tied decoder reconstructs the unlabelled images; μ-Net modes only)
            or ``"consistency"`` (the side outputs agree, URPC; up and down).
        unlabeled_ratio: unlabelled images per labelled image in a step.
        rampup: the unlabelled weight rises (sigmoid ramp-up) over this fraction of the
            optimiser steps of ``max_epochs``.
        unlabeled_weight: the unlabelled loss's weight after the ramp-up; None: the
            recipe's (:func:`dsplug.semi.default_weight`: 0.1 for mean teacher and consistency,
            1.0 otherwise).
        ema_decay: the EMA teacher's decay.
    """

    max_epochs: int = 100
    min_epochs: int = 10
    batch_size: int = 4
    lr: float | None = None
    lr_step: int = 3
    lr_gamma: float = 0.9
    recipe: str | None = None
    seed: int = 0
    num_workers: int = 0
    amp: str = "auto"
    channels_last: bool | None = None
    compile: bool = False
    deterministic: bool = False
    target_dice: float | None = None
    val_batch_size: int | None = None
    progress: bool = True
    tensorboard: bool = True
    plots: bool = True
    overlays: int = 4
    patch: list[int] | None = None
    nsd_tolerance: float = 1.0
    semi: str | None = None
    unlabeled_ratio: int = 1
    rampup: float = 0.25
    unlabeled_weight: float | None = None
    ema_decay: float = 0.99
    iterations: int | None = None
    warmup_epochs: int | None = None
    patience: int | None = None

    def __post_init__(self) -> None:
        self._check_recipe()
        for name in ("max_epochs", "min_epochs", "batch_size", "lr_step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}.")
        if self.min_epochs > self.max_epochs:
            raise ValueError(
                f"min_epochs ({self.min_epochs}) must not exceed max_epochs ({self.max_epochs})."
            )
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got {self.num_workers!r}.")
        # A plain str in the checkpoint (weights-only loads refuse enum members).
        object.__setattr__(self, "amp", choose(self.amp, Amp, "amp").value)
        if self.target_dice is not None and not 0 < self.target_dice <= 1:
            raise ValueError(f"target_dice must be in (0, 1], got {self.target_dice!r}.")
        if self.val_batch_size is not None and self.val_batch_size < 1:
            raise ValueError(f"val_batch_size must be >= 1, got {self.val_batch_size!r}.")
        if not isinstance(self.overlays, int) or self.overlays < 0:
            raise ValueError(f"overlays must be an int >= 0, got {self.overlays!r}.")
        if self.patch is not None:
            patch = [int(p) for p in self.patch]
            if len(patch) not in (2, 3) or min(patch) < 1:
                raise ValueError(f"patch must be 2 or 3 sizes >= 1, got {self.patch!r}.")
            object.__setattr__(self, "patch", patch)  # a plain list in the checkpoint
        if not (isinstance(self.nsd_tolerance, (int, float)) and self.nsd_tolerance >= 0):
            raise ValueError(f"nsd_tolerance must be >= 0 (mm), got {self.nsd_tolerance!r}.")
        if self.semi is not None and self.semi not in SEMI_RECIPES:
            raise ValueError(
                f"semi must be one of {list(SEMI_RECIPES)} or None, got {self.semi!r}."
            )
        ratio = self.unlabeled_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, int) or ratio < 1:
            raise ValueError(f"unlabeled_ratio must be an int >= 1, got {ratio!r}.")
        if not (isinstance(self.rampup, (int, float)) and 0 <= self.rampup <= 1):
            raise ValueError(
                f"rampup must be in [0, 1] (a fraction of the steps), got {self.rampup!r}."
            )
        weight = self.unlabeled_weight
        if weight is not None and not (isinstance(weight, (int, float)) and weight >= 0):
            raise ValueError(f"unlabeled_weight must be >= 0, got {weight!r}.")
        if not (isinstance(self.ema_decay, (int, float)) and 0 <= self.ema_decay < 1):
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}.")

    def _check_recipe(self) -> None:
        """Resolve the recipe (the task family's when None) and its defaults (``lr``,
        ``iterations``, ``warmup_epochs``)."""
        if self.recipe is None:
            object.__setattr__(self, "recipe", DEFAULT_RECIPE[task_family(self.patch)])
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {list(RECIPES)}, got {self.recipe!r}.")
        lr = RECIPE_LR[self.recipe] if self.lr is None else self.lr
        if isinstance(lr, bool) or not (isinstance(lr, (int, float)) and 0 < lr < math.inf):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}.")
        object.__setattr__(self, "lr", float(lr))
        field = self.recipe == "field"
        for name, default, least in (("iterations", 250, 1), ("warmup_epochs", 1, 0)):
            value = getattr(self, name)
            if value is not None and not field:
                raise ValueError(
                    f"{name} applies to recipe 'field', got {name}={value!r} with recipe "
                    f"{self.recipe!r}; drop it or use recipe 'field'."
                )
            if field:
                value = default if value is None else value
                if isinstance(value, bool) or not isinstance(value, int) or value < least:
                    raise ValueError(f"{name} must be an int >= {least}, got {value!r}.")
                object.__setattr__(self, name, value)
        patience = self.patience
        if patience is not None and (
            isinstance(patience, bool) or not isinstance(patience, int) or patience < 1
        ):
            raise ValueError(f"patience must be an int >= 1 (epochs) or None, got {patience!r}.")

    @property
    def semi_weight(self) -> float:
        """The unlabelled loss's weight after the ramp-up (the recipe's default when None)."""
        if self.unlabeled_weight is not None:
            return float(self.unlabeled_weight)
        return default_weight(self.semi) if self.semi is not None else 1.0

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`to_dict` (unknown keys are an error). A record without a recipe
        is a paper run's (they store none, as before the field recipe existed)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown TrainConfig keys {unknown}; valid keys: {sorted(known)}.")
        return cls(**{"recipe": "paper", **values})
