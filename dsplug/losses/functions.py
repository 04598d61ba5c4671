"""The term functions: each loss term (L_image, L_mask, L_seg, L_D, L_rem, L_rei, KL) computed
from a batch's :class:`~dsplug.losses.context._Context`, as the modes' :class:`Term` s name them."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .context import _and, _Context, _need, pseudo_label
from .terms import cross_entropy, feature_mse, has_signal, intensity_bce, relative_mse

__all__ = [
    "deep_ae_term",
    "deep_rec_term",
    "deep_term",
    "image_term",
    "kl_term",
    "mask_term",
    "rei_term",
    "rem_term",
    "seg_loss_vs_target",
    "seg_loss_vs_teacher",
    "seg_rec_term",
    "seg_term",
]


def seg_loss_vs_target(c: _Context, logits: torch.Tensor, from_g: bool = False) -> torch.Tensor:
    """A segmentation output against the true target G: the user's ``seg_loss`` or L_BD.
    ``from_g``: ``logits`` come from the G pass (only informative images count; with the
    user's loss, which cannot leave images out, the term is 0 when no image is informative)."""
    if c.seg_loss is not None:
        value = c.seg_loss(logits, c.user_target)
        return value * c.informative.amax() if from_g and not c.paper else value
    if from_g:
        return c.bd(logits, c.target, c.g_valid, c.g_images)
    return c.bd(logits, c.target, c.valid, c.counted)


def seg_loss_vs_teacher(c: _Context, logits: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """L_BD of ``logits`` against a teacher's pseudo-label (confident pixels by default); the
    teachers are read from the G pass."""
    target, sure = pseudo_label(teacher, c.label_mode, c.confident)
    return c.bd(logits, target, _and(c.g_valid, sure), c.g_images)


def _levels(
    students: Mapping[int, torch.Tensor],
    targets: Mapping[int, torch.Tensor],
    level_weights: tuple[float, ...],
    all_levels: list[int],
    paper: bool,
    images: torch.Tensor | None = None,
) -> torch.Tensor:
    """Paper: Σ_k w_k MSE(student_k, target_k) (eq. 5). Default: the w-weighted mean over the
    levels that have a target of the error relative to the target's magnitude, each level once;
    a level whose target is zero across the batch (the G pass of all-empty masks at
    initialisation) is left out, and with no level left the term is 0 and sends no gradient."""
    total = students[all_levels[0]].new_zeros((), dtype=torch.float32)
    weight_sum = total.new_zeros(())
    for w, level in zip(level_weights, all_levels):
        if level in targets and level in students and w != 0:
            target = targets[level].detach()
            if paper:
                total = total + w * feature_mse(students[level], target)
            else:
                total = total + w * relative_mse(students[level], target, images)
                weight_sum = weight_sum + w * has_signal(target, images).float()
    if paper:
        return total
    return total / torch.where(weight_sum > 0, weight_sum, torch.ones_like(weight_sum))


def image_term(c: _Context) -> torch.Tensor:
    """L_image = L_BD(y, G) (eq. 1)."""
    return seg_loss_vs_target(c, c.out.logits)


def mask_term(c: _Context) -> torch.Tensor:
    """L_mask = L_BD(y^g, G) (eq. 2)."""
    c = c.aux
    return seg_loss_vs_target(c, _need(c.out.mask_logits, "mask_logits", "deep"), from_g=True)


def seg_term(c: _Context) -> torch.Tensor:
    """L_seg = L_BD(y, target y^g) (eq. 3)."""
    c = c.aux
    return seg_loss_vs_teacher(c, c.out.logits, _need(c.out.mask_logits, "mask_logits", "deep"))


def seg_rec_term(c: _Context) -> torch.Tensor:
    """L_seg' = L_BD(y, target rec_mask(G))."""
    c = c.aux
    return seg_loss_vs_teacher(c, c.out.logits, _need(c.out.rec_mask, "rec_mask", "rec"))


def deep_term(c: _Context) -> torch.Tensor:
    """L_D against the G pass's y^g_k, weighted by ω: with ``balance="paper"`` eq. 5's sum
    Σ_k ω_k MSE(y_k, y^g_k); by default the ω-weighted mean over the levels of the MSE relative
    to the target's magnitude, over the images with foreground (see :func:`_levels`)."""
    c = c.aux
    targets = _need(c.out.mask_features, "mask_features", "deep")
    levels = sorted(c.out.features)
    weights = c.weights.level_weights("omega", len(levels))
    return _levels(c.out.features, targets, weights, levels, c.paper, c.informative)


def deep_rec_term(c: _Context, weight_field: str = "sigma") -> torch.Tensor:
    """L_D' against r_k(G), through learned 1x1 projections proj_k where channels differ,
    weighted by σ: the sum Σ_k σ_k MSE(proj_k(y_k), r_k(G)) with ``balance="paper"``, the
    weighted mean of relative errors by default (as :func:`deep_term`)."""
    c = c.aux
    targets = _need(c.out.rec_features, "rec_features", "rec")
    levels = sorted(c.out.features)
    students = {**c.out.features, **(c.out.aligned_features or {})}
    weights = c.weights.level_weights(weight_field, len(levels))
    return _levels(students, targets, weights, levels, c.paper, c.informative)


def deep_ae_term(c: _Context) -> torch.Tensor:
    """U-Net-Auto's L_D: vs the autoencoder's r_k(G), weighted by ω."""
    return deep_rec_term(c, "omega")


def rem_term(c: _Context) -> torch.Tensor:
    """L_rem = L_B(rec_mask(G), G) (eq. 8)."""
    c = c.aux
    rec_mask = _need(c.out.rec_mask, "rec_mask", "rec")
    if c.seg_loss is not None:
        return seg_loss_vs_target(c, rec_mask, from_g=True)
    return cross_entropy(rec_mask, c.target, c.multiclass, c.g_valid, c.g_images)


def rei_term(c: _Context) -> torch.Tensor:
    """L_rei: eq. 9's BCE of rec_image(X) against X mapped to [0, 1] per image (default), or
    the raw MSE against X as given to the model (``balance="paper"``; on the scale of the
    user's preprocessing, which for dsplug's datasets is a z-score)."""
    c = c.aux
    rec_image = _need(c.out.rec_image, "rec_image", "rec")
    if c.paper:
        return feature_mse(rec_image, c.out.image)
    return intensity_bce(rec_image, c.out.image)


def kl_term(c: _Context) -> torch.Tensor:
    """The VAE bottleneck's KL divergence."""
    return _need(c.out.kl, "kl", "vae")
