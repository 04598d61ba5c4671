"""Hard predictions from logits (the one prediction rule) and the checks of logits."""

from __future__ import annotations

from torch import Tensor as _Tensor

from .._checks import ShapeError as _ShapeError
from .._checks import check_finite as _check_finite
from ..options import LabelMode as _LabelMode
from ..options import choose as _choose

__all__ = ["predict"]


def _check_label_mode(label_mode: str) -> _LabelMode:
    return _choose(label_mode, _LabelMode, "label_mode")


def _check_logits(logits: _Tensor, label_mode: _LabelMode) -> None:
    if not isinstance(logits, _Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}.")
    if not logits.is_floating_point():
        raise TypeError(
            f"logits must be a floating-point tensor (raw network outputs), got dtype "
            f"{logits.dtype}."
        )
    if logits.ndim < 3:
        raise _ShapeError(
            f"logits must be shaped (B, C, *spatial) with at least one spatial dim, got shape "
            f"{tuple(logits.shape)}.",
            tuple(logits.shape),
            "(B, C, *spatial)",
        )
    channels = logits.shape[1]
    if label_mode is _LabelMode.BINARY and channels != 1:
        raise _ShapeError(
            f"label_mode='binary' expects logits with exactly 1 channel, got shape "
            f"{tuple(logits.shape)} ({channels} channels); use 'multilabel' (sigmoid per "
            f"channel) or 'multiclass' (softmax) for more.",
            tuple(logits.shape),
            "(B, 1, *spatial)",
        )
    if label_mode is _LabelMode.MULTICLASS and channels < 2:
        raise _ShapeError(
            f"label_mode='multiclass' expects logits with at least 2 channels (background + "
            f"classes), got shape {tuple(logits.shape)}; use 'binary' for a single channel.",
            tuple(logits.shape),
            "(B, C>=2, *spatial)",
        )
    _check_finite(logits, "logits")


def predict(logits: _Tensor, label_mode: str) -> _Tensor:
    """Turn logits into hard predictions following the library's label conventions.

    Args:
        logits: raw outputs shaped ``(B, C, *spatial)``.
        label_mode: ``"binary"``, ``"multilabel"`` or ``"multiclass"``.

    Returns:
        binary / multilabel: a bool tensor ``(B, C, *spatial)``, ``logits > 0`` per channel;
        multiclass: an int64 tensor ``(B, *spatial)`` of class indices (argmax over C).

    Raises:
        ValueError: unknown ``label_mode``, wrong logits shape or non-finite logits.
        TypeError: ``logits`` is not a floating-point tensor.

    Example:
        >>> import torch
        >>> predict(torch.tensor([[[[-1.0, 2.0]]]]), "binary")
        tensor([[[[False,  True]]]])
    """
    label_mode = _check_label_mode(label_mode)
    _check_logits(logits, label_mode)
    return _predict(logits.detach(), label_mode)


def _predict(logits: _Tensor, label_mode: _LabelMode) -> _Tensor:
    """The prediction rule alone, on checked logits (the one place it is written)."""
    if label_mode is _LabelMode.MULTICLASS:
        return logits.argmax(dim=1)
    return logits > 0
