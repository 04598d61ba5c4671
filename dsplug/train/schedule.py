"""The paper's optimisation schedule (§4.3), the field's (poly decay after a linear warm-up,
as nnU-Net), and early stopping as the paper states it (§4.3), or with a patience."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..losses.schedule import epoch_progress

if TYPE_CHECKING:
    from .config import TrainConfig

__all__ = [
    "EarlyStopping",
    "ds_progress",
    "field_scheduler",
    "make_optimizer",
    "paper_optimizer",
    "paper_scheduler",
    "poly_factor",
]


def paper_optimizer(params: Iterable[torch.nn.Parameter], lr: float = 3e-4) -> torch.optim.Adam:
    """Adam with the paper's initial learning rate (3e-4).

    Raises:
        ValueError: ``lr`` is not a positive finite number.
    """
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}.")
    return torch.optim.Adam(params, lr=lr)


def paper_scheduler(
    optimizer: torch.optim.Optimizer, step_epochs: int = 3, gamma: float = 0.9
) -> torch.optim.lr_scheduler.StepLR:
    """Multiply the learning rate by ``gamma`` every ``step_epochs`` epochs (step it per epoch).

    Raises:
        ValueError: ``step_epochs`` < 1 or ``gamma`` not in (0, 1].
    """
    if not isinstance(step_epochs, int) or step_epochs < 1:
        raise ValueError(f"step_epochs must be an int >= 1, got {step_epochs!r}.")
    if not (isinstance(gamma, int | float) and 0 < gamma <= 1):
        raise ValueError(f"gamma must be in (0, 1], got {gamma!r}.")
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_epochs, gamma=gamma)


def poly_factor(step: int, total: int, warmup: int, exponent: float = 0.9) -> float:
    """The learning-rate factor of 0-based optimiser ``step``: a linear warm-up to 1 over the
    first ``warmup`` steps, times nnU-Net's poly decay ``(1 - step / total) ** exponent``.

    Example:
        >>> [round(poly_factor(s, 10, 2), 3) for s in (0, 1, 2, 9)]
        [0.5, 0.91, 0.818, 0.126]
    """
    if total < 1 or warmup < 0:
        raise ValueError(f"need total >= 1 and warmup >= 0 steps, got {total} and {warmup}.")
    ramp = min(1.0, (step + 1) / warmup) if warmup else 1.0
    return ramp * max(0.0, 1.0 - step / total) ** exponent


def field_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """:func:`poly_factor` of the optimiser step (step it after every optimiser step)."""
    if total_steps < 1 or warmup_steps < 0:
        raise ValueError(
            f"need total_steps >= 1 and warmup_steps >= 0, got {total_steps} and {warmup_steps}."
        )
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: poly_factor(step, total_steps, warmup_steps)
    )


def make_optimizer(
    params: Iterable[torch.nn.Parameter], config: TrainConfig
) -> tuple[torch.optim.Adam, Any, bool]:
    """Adam and the recipe's scheduler, and whether it steps per optimiser step (``field``)
    rather than per epoch (``paper``)."""
    opt = paper_optimizer(params, config.lr)
    if config.recipe == "paper":
        return opt, paper_scheduler(opt, config.lr_step, config.lr_gamma), False
    steps = int(config.iterations or 1)
    warmup = int(config.warmup_epochs or 0) * steps
    return opt, field_scheduler(opt, config.max_epochs * steps, warmup), True


def ds_progress(epoch: int, max_epochs: int) -> float:
    """Training progress passed to ``DeepSupervised.set_progress`` during 1-based ``epoch``:
    :func:`dsplug.losses.epoch_progress` of the 0-based epoch (0 during the first epoch, 1
    during epoch ``max_epochs``), the convention of ``ds.set_epoch`` and Lightning too.

    Raises:
        ValueError: ``epoch`` outside 1..``max_epochs`` (as ``epoch_progress`` does).
    """
    for name, value in (("epoch", epoch), ("max_epochs", max_epochs)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {value!r}.")
    if max_epochs < 1 or not 1 <= epoch <= max_epochs:
        raise ValueError(
            f"epoch is 1-based and at most max_epochs (>= 1): got epoch={epoch}, "
            f"max_epochs={max_epochs}."
        )
    return epoch_progress(epoch - 1, max_epochs)


@dataclass
class EarlyStopping:
    """Stop after epoch e when e >= max(min_epochs, 2 * best_epoch), or at max_epochs.

    With ``patience``: stop after e when e >= min_epochs and e - best_epoch >= patience (or at
    max_epochs) instead. Epochs are 1-based; an epoch improves when its score (validation
    avg.m) is strictly greater than the best so far. ``state()`` / ``from_state()``
    round-trip through plain types.

    Example:
        >>> stop = EarlyStopping(max_epochs=10, min_epochs=2)
        >>> stop.update(1, 0.5), stop.update(2, 0.4), stop.best_epoch
        (False, True, 1)
    """

    max_epochs: int
    min_epochs: int = 1
    best_epoch: int = 0
    best_score: float = -math.inf
    patience: int | None = None

    def __post_init__(self) -> None:
        if self.patience is not None and (
            isinstance(self.patience, bool)
            or not isinstance(self.patience, int)
            or self.patience < 1
        ):
            raise ValueError(f"patience must be an int >= 1 or None, got {self.patience!r}.")
        if not isinstance(self.max_epochs, int) or self.max_epochs < 1:
            raise ValueError(f"max_epochs must be an int >= 1, got {self.max_epochs!r}.")
        if not isinstance(self.min_epochs, int) or not 1 <= self.min_epochs <= self.max_epochs:
            raise ValueError(
                f"min_epochs must be an int in [1, max_epochs={self.max_epochs}], "
                f"got {self.min_epochs!r}."
            )

    def improved(self, epoch: int, score: float) -> bool:
        """Record ``score`` of ``epoch``; True when it is strictly better than the best so far."""
        if score > self.best_score:
            self.best_epoch, self.best_score = epoch, float(score)
            return True
        return False

    def should_stop(self, epoch: int) -> bool:
        """True when training ends after ``epoch``."""
        if epoch >= self.max_epochs:
            return True
        if self.patience is not None:
            return epoch >= self.min_epochs and epoch - self.best_epoch >= self.patience
        return epoch >= max(self.min_epochs, 2 * self.best_epoch)

    def update(self, epoch: int, score: float) -> bool:
        """Record ``score`` and return whether to stop after ``epoch``."""
        self.improved(epoch, score)
        return self.should_stop(epoch)

    def state(self) -> dict[str, float | int]:
        """Plain-type state for a checkpoint (``patience`` only when set)."""
        state = asdict(self)
        if state["patience"] is None:
            del state["patience"]
        return state

    @classmethod
    def from_state(cls, state: dict[str, float | int]) -> EarlyStopping:
        """Rebuild from :meth:`state`."""
        return cls(
            max_epochs=int(state["max_epochs"]),
            min_epochs=int(state["min_epochs"]),
            best_epoch=int(state["best_epoch"]),
            best_score=float(state["best_score"]),
            patience=None if state.get("patience") is None else int(state["patience"]),
        )
