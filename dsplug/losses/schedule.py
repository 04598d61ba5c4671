"""Deep-supervision schedules: a factor on every term but L_image, by training progress."""

from __future__ import annotations

import math

from ..options import Schedule, choose

__all__ = ["epoch_progress", "schedule_factor"]


def schedule_factor(schedule: str, progress: float) -> float:
    """The factor at ``progress`` in [0, 1]: constant 1, linear 1 - p, cosine (1 + cos πp) / 2."""
    schedule = choose(schedule, Schedule, "deep-supervision schedule")
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress must be in [0, 1], got {progress!r}.")
    if schedule == Schedule.LINEAR:
        return 1.0 - progress
    if schedule == Schedule.COSINE:
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def epoch_progress(epoch: int, epochs: int) -> float:
    """Training progress during 0-based ``epoch`` of ``epochs``: 0 in the first epoch, 1 in the
    last, linear in between (the one convention of the Trainer, Lightning and your own loop,
    through ``DeepSupervised.set_epoch``). With the cosine or linear schedule the last epoch
    trains L_image alone, at the cost of mode ``none``.

    Example:
        >>> [epoch_progress(e, 5) for e in range(5)]
        [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    for name, value in (("epoch", epoch), ("epochs", epochs)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {value!r}.")
    if epochs < 1 or not 0 <= epoch < epochs:
        raise ValueError(
            f"epoch is 0-based and below epochs (>= 1): got epoch={epoch}, epochs={epochs}."
        )
    return 0.0 if epochs == 1 else epoch / (epochs - 1)
