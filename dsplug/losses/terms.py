"""The loss pieces of SPEC §2: L_BD (BCE/CE + soft Dice), L_B (BCE/CE), feature MSE."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import ShapeError
from ..labels import one_hot

__all__ = ["bce_dice", "cross_entropy", "feature_mse", "soft_dice"]


def _check_same(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    # F.mse_loss would broadcast (B,1,H,W) against (B,H,W) with only a warning: refuse it.
    if a.shape != b.shape:
        raise ShapeError(
            f"{what}: prediction shape {tuple(a.shape)} and target shape {tuple(b.shape)} differ.",
            tuple(b.shape),
            str(tuple(a.shape)),
        )


def _as_probabilities(logits: torch.Tensor, target: torch.Tensor, multiclass: bool) -> torch.Tensor:
    """A hard multiclass target (B, *) as one-hot; soft or binary targets as they are."""
    if multiclass and target.dim() == logits.dim() - 1:
        return one_hot(target, logits.shape[1])
    return target


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, multiclass: bool) -> torch.Tensor:
    """L_B: BCE with logits (binary / multilabel) or CE (multiclass; indices or probabilities)."""
    if multiclass:
        if target.dim() == logits.dim():
            _check_same(logits, target, "cross-entropy")
        return F.cross_entropy(logits, target)
    _check_same(logits, target, "binary cross-entropy")
    return F.binary_cross_entropy_with_logits(logits, target)


def soft_dice(
    logits: torch.Tensor, target: torch.Tensor, multiclass: bool, smooth: float = 1.0
) -> torch.Tensor:
    """Soft Dice per image and channel with smoothing, averaged over the batch (eq. 4).

    Multiclass: softmax probabilities, background channel excluded.
    """
    probs = logits.softmax(dim=1) if multiclass else logits.sigmoid()
    t = _as_probabilities(logits, target, multiclass)
    _check_same(probs, t, "soft Dice")
    if multiclass:
        probs, t = probs[:, 1:], t[:, 1:]
    dims = tuple(range(2, probs.dim()))
    inter = (probs * t).sum(dims)
    denom = probs.sum(dims) + t.sum(dims)
    return ((2 * inter + smooth) / (denom + smooth)).mean()


def bce_dice(logits: torch.Tensor, target: torch.Tensor, multiclass: bool) -> torch.Tensor:
    """L_BD = BCE (CE for multiclass) + (1 - soft Dice)."""
    return cross_entropy(logits, target, multiclass) + 1 - soft_dice(logits, target, multiclass)


def feature_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE between two feature maps of identical shape (no broadcasting)."""
    _check_same(prediction, target, "feature MSE")
    return F.mse_loss(prediction, target)
