"""The paper's optimisation schedule (§4.3) and early stopping, as the paper states it (§4.3)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch

from ..losses.schedule import epoch_progress

__all__ = ["EarlyStopping", "ds_progress", "paper_optimizer", "paper_scheduler"]


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

    Epochs are 1-based; an epoch improves when its score (validation avg.m) is strictly greater
    than the best so far. ``state()`` / ``from_state()`` round-trip through plain types.

    Example:
        >>> stop = EarlyStopping(max_epochs=10, min_epochs=2)
        >>> stop.update(1, 0.5), stop.update(2, 0.4), stop.best_epoch
        (False, True, 1)
    """

    max_epochs: int
    min_epochs: int = 1
    best_epoch: int = 0
    best_score: float = -math.inf

    def __post_init__(self) -> None:
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
        return epoch >= self.max_epochs or epoch >= max(self.min_epochs, 2 * self.best_epoch)

    def update(self, epoch: int, score: float) -> bool:
        """Record ``score`` and return whether to stop after ``epoch``."""
        self.improved(epoch, score)
        return self.should_stop(epoch)

    def state(self) -> dict[str, float | int]:
        """Plain-type state for a checkpoint."""
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, float | int]) -> EarlyStopping:
        """Rebuild from :meth:`state`."""
        return cls(
            max_epochs=int(state["max_epochs"]),
            min_epochs=int(state["min_epochs"]),
            best_epoch=int(state["best_epoch"]),
            best_score=float(state["best_score"]),
        )
