"""Deep-supervision schedules: a factor on every term but L_image, by training progress."""

from __future__ import annotations

import math

from ..options import Schedule, choose

__all__ = ["schedule_factor"]


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
