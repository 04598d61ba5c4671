"""Deep-supervision schedules: a factor on every term but L_image, by training progress."""

from __future__ import annotations

import math

from .._checks import look_up_option

__all__ = ["SCHEDULES", "schedule_factor"]

SCHEDULES = ("constant", "linear", "cosine")


def schedule_factor(schedule: str, progress: float) -> float:
    """The factor at ``progress`` in [0, 1]: constant 1, linear 1 - p, cosine (1 + cos πp) / 2."""
    look_up_option(schedule, SCHEDULES, "deep-supervision schedule")
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress must be in [0, 1], got {progress!r}.")
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0
