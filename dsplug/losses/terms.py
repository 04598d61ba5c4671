"""The loss pieces: L_BD (BCE/CE + soft Dice, eq. 4), L_B (BCE/CE, eq. 10), feature MSE (eq. 5),
and their scale-free forms used by default (intensity BCE for eq. 9, relative feature MSE).

Every label-reading piece takes an optional ``valid`` mask (B, 1, *) of pixels that count: the
user's ``ignore_index`` and the unconfident pixels of a pseudo-label are left out through it;
and optional ``images`` ((B,) 0/1 weights) of images that count: the batch mean is over them
(the terms read from the G pass count only the images whose mask has foreground).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import ShapeError
from ..labels import one_hot

__all__ = [
    "bce_dice",
    "cross_entropy",
    "feature_mse",
    "has_signal",
    "intensity_bce",
    "relative_mse",
    "soft_dice",
]


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
        return one_hot(target.clamp(min=0), logits.shape[1])
    return target


def _batch_mean(per_image: torch.Tensor, images: torch.Tensor | None) -> torch.Tensor:
    """Mean of (B,) per-image values over the counted ``images`` (all by default; 0 with none)."""
    if images is None:
        return per_image.mean()
    weight = images.to(per_image.dtype)
    return (weight * per_image).sum() / weight.sum().clamp(min=1.0)


def _masked_mean(
    values: torch.Tensor, valid: torch.Tensor | None, images: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean of ``values`` over the pixels where ``valid`` (broadcast over channels) is 1, per
    image, then over the counted ``images`` (so the loss of a batch is the mean of its images'
    losses, and DDP's split batches add up to the whole)."""
    if valid is None and images is None:
        return values.mean()
    dims = tuple(range(1, values.dim()))
    if valid is None:
        return _batch_mean(values.mean(dims), images)
    weight = valid.expand_as(values)
    return _batch_mean((values * weight).sum(dims) / weight.sum(dims).clamp(min=1.0), images)


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    multiclass: bool,
    valid: torch.Tensor | None = None,
    images: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_B: BCE with logits (binary / multilabel) or CE (multiclass; indices or probabilities)."""
    if multiclass:
        if target.dim() == logits.dim():
            _check_same(logits, target, "cross-entropy")
            pixels = -(target * logits.log_softmax(dim=1)).sum(dim=1, keepdim=True)
        else:
            pixels = F.cross_entropy(logits, target.clamp(min=0), reduction="none").unsqueeze(1)
        return _masked_mean(pixels, valid, images)
    _check_same(logits, target, "binary cross-entropy")
    pixels = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return _masked_mean(pixels, valid, images)


def _dice_per_image(
    logits: torch.Tensor,
    target: torch.Tensor,
    multiclass: bool,
    smooth: float,
    valid: torch.Tensor | None,
) -> torch.Tensor:
    """(B,) soft Dice per image, the mean over its channels (multiclass: background left out)."""
    probs = logits.softmax(dim=1) if multiclass else logits.sigmoid()
    t = _as_probabilities(logits, target, multiclass)
    _check_same(probs, t, "soft Dice")
    if multiclass:
        probs, t = probs[:, 1:], t[:, 1:]
    if valid is not None:
        probs, t = probs * valid, t * valid
    dims = tuple(range(2, probs.dim()))
    inter = (probs * t).sum(dims)
    denom = probs.sum(dims) + t.sum(dims)
    return ((2 * inter + smooth) / (denom + smooth)).mean(1)


def soft_dice(
    logits: torch.Tensor,
    target: torch.Tensor,
    multiclass: bool,
    smooth: float = 1.0,
    valid: torch.Tensor | None = None,
    images: torch.Tensor | None = None,
) -> torch.Tensor:
    """Soft Dice per image and channel with smoothing, averaged over the channels and the
    counted ``images`` (eq. 4).

    Multiclass: softmax probabilities, background channel excluded.
    """
    return _batch_mean(_dice_per_image(logits, target, multiclass, smooth, valid), images)


def bce_dice(
    logits: torch.Tensor,
    target: torch.Tensor,
    multiclass: bool,
    valid: torch.Tensor | None = None,
    images: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_BD = BCE (CE for multiclass) + (1 - soft Dice), averaged over the counted ``images``
    (0 when none counts)."""
    dice_loss = 1 - _dice_per_image(logits, target, multiclass, 1.0, valid)
    return cross_entropy(logits, target, multiclass, valid, images) + _batch_mean(dice_loss, images)


def feature_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE between two feature maps of identical shape (no broadcasting)."""
    _check_same(prediction, target, "feature MSE")
    return F.mse_loss(prediction, target)


def relative_mse(
    prediction: torch.Tensor,
    target: torch.Tensor,
    images: torch.Tensor | None = None,
    floor: float = 0.1,
    eps: float = 1e-12,
) -> torch.Tensor:
    """Eq. 5's MSE relative to the target's magnitude: per image, the MSE over the target's mean
    square (detached), then the mean over the batch's counted ``images`` ((B,) 0/1 weights;
    all by default); 1 for a zero prediction at any scale.

    The scale of an image is floored at ``floor`` x the batch's mean square, so a near-empty
    target among others cannot blow the term up. A target that is zero across the counted
    images has no scale to be relative to: the term is then 0 and sends no gradient (see
    :func:`has_signal`), as an unsure teacher does.
    """
    _check_same(prediction, target, "feature MSE")
    dims = tuple(range(1, target.dim()))
    error = F.mse_loss(prediction, target, reduction="none").mean(dims)  # keeps no extra copy
    power = target.detach().pow(2).mean(dims)
    weight = torch.ones_like(power) if images is None else images.to(power.dtype)
    count = weight.sum().clamp_min(1.0)
    batch = (weight * power).sum() / count
    scale = torch.maximum(power, floor * batch)
    scale = torch.where(batch > eps, scale, torch.ones_like(scale))  # all zero: no division
    relative = torch.where(batch > eps, error / scale, torch.zeros_like(error))
    return (weight * relative).sum() / count


def has_signal(
    target: torch.Tensor, images: torch.Tensor | None = None, eps: float = 1e-12
) -> torch.Tensor:
    """1.0 where a feature target carries anything to be relative to (a 0-dim tensor, no device
    sync): its mean square over the counted ``images`` is above ``eps``."""
    power = target.detach().pow(2).flatten(1).mean(1)
    weight = torch.ones_like(power) if images is None else images.to(power.dtype)
    return ((weight * power).sum() / weight.sum().clamp_min(1.0) > eps).to(power.dtype)


def intensity_bce(logits: torch.Tensor, image: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Eq. 9's L_B(x, X): BCE of sigmoid(``logits``) against X mapped to [0, 1] per image and
    channel (min-max), so the reconstruction loss has the scale of a segmentation loss."""
    _check_same(logits, image, "intensity BCE")
    dims = tuple(range(2, image.dim()))
    low = image.detach().amin(dim=dims, keepdim=True)
    high = image.detach().amax(dim=dims, keepdim=True)
    target = (image.detach() - low) / (high - low).clamp(min=eps)
    return F.binary_cross_entropy_with_logits(logits, target)
