"""Every named option, once: each enum is the one list that the wrapper, losses, trainer, CLI,
docs and tests read. Members are strings, so ``"hyb"`` and ``Mode.HYB`` are interchangeable."""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

from ._checks import look_up_option

__all__ = ["Amp", "Balance", "LabelMode", "Mode", "PseudoLabels", "Schedule", "choose"]

_E = TypeVar("_E", bound=StrEnum)


class _Option(StrEnum):
    """A StrEnum whose repr is its value's, so messages quote ``'hyb'`` as the user typed it."""

    def __repr__(self) -> str:
        return repr(self.value)


class Mode(_Option):
    """Deep-supervision strategy (the paper's Table 1; what each computes: ``dsplug.modes``)."""

    NONE = "none"
    DEEP = "deep"
    AUTO = "auto"
    SEG = "seg"
    REC = "rec"
    HYB = "hyb"
    UP = "up"
    DOWN = "down"
    VAE = "vae"


class LabelMode(_Option):
    """How targets are read: one foreground channel, overlapping channels, or class indices."""

    BINARY = "binary"
    MULTILABEL = "multilabel"
    MULTICLASS = "multiclass"


class Schedule(_Option):
    """How the auxiliary weights decay over training (constant is the paper's eq. 10 as written)."""

    CONSTANT = "constant"
    LINEAR = "linear"
    COSINE = "cosine"


class Balance(_Option):
    """``auto`` scales the auxiliary terms to the segmentation gradient; ``paper`` keeps eq. 10."""

    AUTO = "auto"
    PAPER = "paper"


class PseudoLabels(_Option):
    """Teacher labels for y^g: ``confident`` (hard, p >= 0.8) or ``soft`` (the paper's)."""

    CONFIDENT = "confident"
    SOFT = "soft"


class Amp(_Option):
    """Mixed precision on CUDA: ``auto`` is bf16 where supported, else fp16 with a grad scaler."""

    AUTO = "auto"
    BF16 = "bf16"
    FP16 = "fp16"
    OFF = "off"


def choose(value: str, options: type[_E], what: str) -> _E:
    """Return the member of ``options`` named ``value``, or raise a ValueError listing them.

    Example:
        >>> choose("hyb", Mode, "mode")
        'hyb'
    """
    return options(look_up_option(value, options, what))
