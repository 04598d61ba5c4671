"""Validation helpers: each check raises an error naming what it received and what it expected."""

from __future__ import annotations

import argparse
import difflib
import math
import warnings
from collections.abc import Iterable

import torch

__all__ = [
    "ShapeError",
    "UpdateWatch",
    "check_divisible",
    "check_finite",
    "integer",
    "look_up_option",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "unit_fraction",
    "unit_interval",
]


class ShapeError(ValueError):
    """A tensor had the wrong shape. Carries ``actual_shape`` and ``expected`` for programs."""

    def __init__(self, message: str, actual_shape: tuple[int, ...], expected: str) -> None:
        super().__init__(message)
        self.actual_shape = actual_shape
        self.expected = expected


def look_up_option(value: str, options: Iterable[str], what: str) -> str:
    """Return ``value`` if it is one of ``options`` (strings or a StrEnum), else raise a ValueError
    listing them.

    Example:
        >>> look_up_option("hyb", ["none", "hyb"], "mode")
        'hyb'
    """
    choices = [str(option) for option in options]  # an enum's members read as their values
    if isinstance(value, str) and value in choices:
        return value
    hint = ""
    if isinstance(value, str):
        close = difflib.get_close_matches(value, choices, n=1)
        if close:
            hint = f" By {value!r}, did you mean {close[0]!r}?"
    raise ValueError(f"Unknown {what} {value!r}.{hint} Available options are {sorted(choices)}.")


def _parsed(text: str, kind: type, expected: str) -> int | float:
    """``kind(text)``, or the one-line usage error ``expected ..., got 'text'`` (argparse's
    own would read ``invalid positive_int value``)."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    return value


def integer(text: str) -> int:
    """An argparse ``type``: any integer, else a one-line usage error."""
    return int(_parsed(text, int, "an integer"))


def positive_int(text: str) -> int:
    """An argparse ``type``: an integer >= 1, else a one-line usage error."""
    value = int(_parsed(text, int, "an integer >= 1"))
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse ``type``: an integer >= 0, else a one-line usage error."""
    value = int(_parsed(text, int, "an integer >= 0"))
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """An argparse ``type``: a finite number > 0, else a one-line usage error."""
    value = float(_parsed(text, float, "a finite number > 0"))
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def unit_fraction(text: str) -> float:
    """An argparse ``type``: a number in (0, 1] (a decay factor), else a one-line usage error."""
    value = float(_parsed(text, float, "a number in (0, 1]"))
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def unit_interval(text: str) -> float:
    """An argparse ``type``: a number in [0, 1] (a Dice), else a one-line usage error."""
    value = float(_parsed(text, float, "a number in [0, 1]"))
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def check_finite(tensor: torch.Tensor, name: str) -> None:
    """Raise a ValueError if ``tensor`` holds NaN or Inf (only floating tensors are checked)."""
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        n_nan = int(torch.isnan(tensor).sum())
        n_inf = int(torch.isinf(tensor).sum())
        raise ValueError(
            f"{name} contains non-finite values ({n_nan} NaN, {n_inf} Inf) in a tensor of shape "
            f"{tuple(tensor.shape)}; expected finite values (check the data's normalisation)."
        )


def check_divisible(shape: tuple[int, ...], divisor: int, name: str) -> None:
    """Raise a ShapeError if a spatial size is not a multiple of ``divisor``."""
    bad = [s for s in shape if s % divisor != 0]
    if bad:
        fixed = tuple(-(-s // divisor) * divisor for s in shape)
        raise ShapeError(
            f"{name} has spatial size {tuple(shape)}, but every spatial size must be divisible "
            f"by {divisor} (2^(depth-1) for this network). Pad the input, e.g. to {fixed}.",
            tuple(shape),
            f"multiples of {divisor}",
        )


class UpdateWatch:
    """Warns once when an optimiser step changes the model's parameters but none of the
    wrapper's own: the optimiser was built from ``model.parameters()`` before wrapping.

    Reads only the in-place version counters of the parameters (no copy, no device sync):
    an optimiser step bumps them, a gradient-accumulation step does not.
    """

    def __init__(self) -> None:
        self._last: tuple[int, list[int]] | None = None
        self.warned = False

    def reset(self) -> None:
        """Forget the last observation (steps that train none of the wrapper's parameters by
        design, such as a schedule factor of 0, are not evidence)."""
        self._last = None

    def observe(
        self, model_params: Iterable[torch.Tensor], own: list[tuple[str, torch.Tensor]]
    ) -> None:
        """Compare with the previous call; warn once if the model moved and ``own`` did not."""
        if self.warned or not own:
            return
        current = (sum(p._version for p in model_params), [p._version for _, p in own])
        last, self._last = self._last, current
        if last is None or current[0] == last[0] or current[1] != last[1]:
            return
        self.warned = True
        names = [n for n, _ in own]
        shown = ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")
        warnings.warn(
            f"DeepSupervised: the last optimiser step updated the model's parameters but none of "
            f"the wrapper's own ({shown}), so deep supervision trains nothing of its own. Build "
            "the optimiser from ds.parameters() after wrapping, not from model.parameters().",
            UserWarning,
            stacklevel=4,
        )
