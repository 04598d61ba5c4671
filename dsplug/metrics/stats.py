"""Per-batch scores: TP/FP/FN per slice and foreground class, and eq. 14 on any counts."""

from __future__ import annotations

import math as _math

import torch as _torch
from torch import Tensor as _Tensor

from .._checks import ShapeError as _ShapeError
from ..options import LabelMode as _LabelMode
from .prediction import _check_label_mode, _check_logits, _predict

__all__ = ["METRIC_NAMES", "confusion_counts", "scores"]

METRIC_NAMES = ("dice", "ppv", "sen", "iou", "avg_m")


def _check_binary_target(target: _Tensor, logits: _Tensor, label_mode: _LabelMode) -> _Tensor:
    if target.shape != logits.shape:
        raise _ShapeError(
            f"label_mode='{label_mode}' expects a target shaped like the logits, got target "
            f"shape {tuple(target.shape)} and logits shape {tuple(logits.shape)}.",
            tuple(target.shape),
            str(tuple(logits.shape)),
        )
    if target.is_complex():
        raise TypeError(f"target must be real-valued, got dtype {target.dtype}.")
    if target.dtype != _torch.bool:
        is_binary = (target == 0) | (target == 1)
        if not bool(is_binary.all()):
            bad = target[~is_binary]
            raise ValueError(
                f"label_mode='{label_mode}' expects a target in {{0, 1}}, got "
                f"{bad.numel()} other value(s) (e.g. {bad.flatten()[:5].tolist()}); threshold "
                f"soft labels or use label_mode='multiclass' for class indices."
            )
    return target.bool()


def _check_multiclass_target(target: _Tensor, logits: _Tensor) -> _Tensor:
    spatial = tuple(logits.shape[2:])
    batch = logits.shape[0]
    shape = tuple(target.shape)
    if shape == (batch, 1, *spatial):
        target = target[:, 0]
    elif shape != (batch, *spatial):
        raise _ShapeError(
            f"label_mode='multiclass' expects a target of class indices shaped "
            f"{(batch, *spatial)} or {(batch, 1, *spatial)} for logits shape "
            f"{tuple(logits.shape)}, got target shape {shape}.",
            shape,
            str((batch, *spatial)),
        )
    if target.is_floating_point() or target.is_complex():
        raise TypeError(
            f"label_mode='multiclass' expects an integer target of class indices, got dtype "
            f"{target.dtype}; convert it with target.long() if it holds whole numbers."
        )
    target = target.long()
    classes = logits.shape[1]
    if target.numel() > 0:
        low, high = int(target.min()), int(target.max())
        if low < 0 or high >= classes:
            raise ValueError(
                f"label_mode='multiclass' expects class indices in [0, {classes - 1}] for logits "
                f"with {classes} channels, got values in [{low}, {high}]."
            )
    return target


def confusion_counts(logits: _Tensor, target: _Tensor, label_mode: str) -> _Tensor:
    """Count TP, FP and FN per slice (batch item) and foreground class.

    Args:
        logits: raw outputs shaped ``(B, C, *spatial)``.
        target: ground truth following the label conventions of ``label_mode`` (module doc).
        label_mode: ``"binary"``, ``"multilabel"`` or ``"multiclass"``.

    Returns:
        An int64 tensor ``(B, F, 3)`` on the logits' device: ``[..., 0]`` TP, ``[..., 1]`` FP,
        ``[..., 2]`` FN, for the F foreground classes (1 binary, C multilabel, C - 1
        multiclass, class k + 1 at index k).

    Raises:
        ValueError: unknown ``label_mode``; shapes that do not match (both are named); a
            binary / multilabel target with values other than 0 and 1; class indices outside
            ``[0, C)``; non-finite logits; tensors on different devices.
        TypeError: non-tensor inputs, non-floating logits or a floating multiclass target.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[[[3.0, 3.0, -3.0, -3.0]]]])
        >>> target = torch.tensor([[[[1, 0, 1, 0]]]])
        >>> confusion_counts(logits, target, "binary")
        tensor([[[1, 1, 1]]])
    """
    label_mode = _check_label_mode(label_mode)
    _check_logits(logits, label_mode)
    if not isinstance(target, _Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}.")
    if target.device != logits.device:
        raise ValueError(
            f"logits and target must be on the same device, got logits on {logits.device} and "
            f"target on {target.device}."
        )
    logits = logits.detach()
    target = target.detach()
    if label_mode is _LabelMode.MULTICLASS:
        return _multiclass_counts(logits, _check_multiclass_target(target, logits))
    truth = _check_binary_target(target, logits, label_mode)
    pred = _predict(logits, label_mode)
    reduce_dims = tuple(range(2, logits.ndim))
    tp = (pred & truth).sum(dim=reduce_dims)
    n_pred = pred.sum(dim=reduce_dims)
    n_true = truth.sum(dim=reduce_dims)
    return _torch.stack([tp, n_pred - tp, n_true - tp], dim=-1).long()


def _multiclass_counts(logits: _Tensor, target: _Tensor) -> _Tensor:
    batch, classes = logits.shape[:2]
    pred = _predict(logits, _LabelMode.MULTICLASS).reshape(batch, -1)
    truth = target.reshape(batch, -1)
    offset = _torch.arange(batch, device=logits.device).unsqueeze(1) * (classes * classes)
    index = offset + truth * classes + pred
    # confusion[b, t, p]: pixels of item b with true class t predicted as p.
    confusion = _torch.bincount(index.flatten(), minlength=batch * classes * classes)
    confusion = confusion.reshape(batch, classes, classes)
    tp = confusion.diagonal(dim1=1, dim2=2)
    fp = confusion.sum(dim=1) - tp
    fn = confusion.sum(dim=2) - tp
    return _torch.stack([tp, fp, fn], dim=-1)[:, 1:].long()


def _check_eps(eps: float) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__} ({eps!r}).")
    if not _math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be finite and >= 0 (the paper uses 1), got {eps!r}.")
    return float(eps)


def scores(counts: _Tensor, eps: float = 1.0) -> dict[str, _Tensor]:
    """Eq. 14 of the paper on counts of any leading shape, plus ``avg_m`` (their mean).

    DICE = (2TP + eps) / (T + P + eps), PPV = (TP + eps) / (TP + FP + eps),
    SEN = (TP + eps) / (TP + FN + eps), IoU = (TP + eps) / (T + P - TP + eps), with
    T = TP + FN and P = TP + FP. With ``eps = 0`` a zero denominator gives NaN (no truth and
    no prediction leaves DICE and IoU undefined); with ``eps > 0`` an empty prediction of an
    empty truth scores 1 everywhere. One exception to the smoothing, whatever ``eps``: an
    empty prediction of a truth with foreground (P = 0 < T) has PPV 0, and a prediction of
    an empty truth (T = 0 < P) has SEN 0, as medpy scores an undefined precision or recall
    (the smoothing alone would call both 1, and lift avg.m, which picks the best epoch).

    Args:
        counts: ``(..., 3)`` TP, FP, FN (e.g. from :func:`confusion_counts`), non-negative.
        eps: the smoothing constant, ``>= 0``; the paper's value 1 by default.

    Returns:
        ``{"dice", "ppv", "sen", "iou", "avg_m"}``, each a float64 tensor shaped ``(...)``.

    Raises:
        ValueError: the last dim is not 3, negative counts, or a negative / non-finite eps.
        TypeError: ``counts`` is not a tensor or ``eps`` is not a number.

    Example:
        >>> import torch
        >>> s = scores(torch.tensor([2, 1, 1]), eps=0.0)
        >>> float(s["dice"]), float(s["iou"])
        (0.6666666666666666, 0.5)
    """
    eps = _check_eps(eps)
    if not isinstance(counts, _Tensor):
        raise TypeError(f"counts must be a torch.Tensor, got {type(counts).__name__}.")
    if counts.ndim == 0 or counts.shape[-1] != 3:
        raise _ShapeError(
            f"counts must be shaped (..., 3) holding TP, FP, FN, got shape {tuple(counts.shape)}.",
            tuple(counts.shape),
            "(..., 3)",
        )
    if counts.is_complex() or counts.dtype == _torch.bool:
        raise TypeError(f"counts must be integer or floating, got dtype {counts.dtype}.")
    counts = counts.detach().to(_torch.float64)
    if counts.numel() > 0 and not bool((counts >= 0).all()):
        raise ValueError(
            f"counts must be non-negative, got minimum {float(counts.min())} in a tensor of "
            f"shape {tuple(counts.shape)}."
        )
    tp, fp, fn = counts.unbind(dim=-1)
    n_true, n_pred = tp + fn, tp + fp
    dice = (2 * tp + eps) / (n_true + n_pred + eps)
    zero = _torch.zeros_like(tp)
    ppv = _torch.where((n_pred == 0) & (n_true > 0), zero, (tp + eps) / (tp + fp + eps))
    sen = _torch.where((n_true == 0) & (n_pred > 0), zero, (tp + eps) / (tp + fn + eps))
    iou = (tp + eps) / (n_true + n_pred - tp + eps)
    avg_m = (dice + ppv + sen + iou) / 4
    return {"dice": dice, "ppv": ppv, "sen": sen, "iou": iou, "avg_m": avg_m}
