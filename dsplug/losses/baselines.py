"""Terms of the deep-supervision baselines: U-Net with Up (M-Net) and with Down (MLDS)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..labels import one_hot, to_probabilities
from .context import _Context, _need
from .functions import seg_loss_vs_target
from .terms import cross_entropy

__all__ = ["consistency_term", "down_term", "up_term"]


def _weighted_heads(c: _Context, mode: str) -> list[tuple[float, int, torch.Tensor]]:
    """The side outputs, shallowest first, each with its ``aux_levels`` weight (a weight of 0
    still computes its term, so that every head stays in the graph, as DDP expects)."""
    aux = _need(c.out.aux_logits, "aux_logits", mode)
    heads = sorted(aux.items())  # by reduction: level 1 first, the bottleneck last
    weights = c.weights.level_weights("aux_levels", len(heads))
    return [(w, reduction, logits) for w, (reduction, logits) in zip(weights, heads)]


def up_term(c: _Context) -> torch.Tensor:
    """Σ_k w_k L_BD(upsample(head_k(y_k)), G): side outputs upsampled to the input size (the
    user's ``seg_loss`` in place of L_BD when given); w_k from ``aux_levels``."""
    size = c.out.logits.shape[2:]
    mode = "bilinear" if len(size) == 2 else "trilinear"
    total = c.out.logits.new_zeros(())
    for w, _, logits in _weighted_heads(c, "up"):
        up = F.interpolate(logits, size=size, mode=mode, align_corners=False)
        total = total + w * seg_loss_vs_target(c, up)
    return total


def down_term(c: _Context) -> torch.Tensor:
    """Σ_k w_k L_B(head_k(y_k), maxpool_k(G)) at each level's native size, multi-label
    targets; w_k from ``aux_levels``."""
    target = one_hot(c.target, c.out.logits.shape[1]) if c.multiclass else c.target
    pool = F.max_pool2d if target.dim() == 4 else F.max_pool3d
    total = c.out.logits.new_zeros(())
    for w, reduction, logits in _weighted_heads(c, "down"):
        pooled = pool(target, kernel_size=reduction, stride=reduction)
        # a pooled pixel counts when every pixel under it does
        valid = (
            None if c.valid is None else -pool(-c.valid, kernel_size=reduction, stride=reduction)
        )
        total = total + w * cross_entropy(logits, pooled, False, valid)
    return total


def _as_distributions(logits: torch.Tensor, label_mode: str) -> torch.Tensor:
    """Per-pixel class distributions (B, C', *): softmax over classes (multiclass), or each
    sigmoid channel as a two-outcome distribution stacked on the channel axis."""
    probs = to_probabilities(logits, label_mode)
    return probs if label_mode == "multiclass" else torch.cat([probs, 1 - probs], dim=1)


def consistency_term(c: _Context) -> torch.Tensor:
    """Uncertainty-rectified consistency across the side outputs and the main output, for an
    unlabelled batch (URPC, Luo et al. 2021): with p_s the (upsampled) prediction of output s
    and p̄ their mean, Σ_s [Σ_x e^{-D_s} ||p_s - p̄||² / Σ_x e^{-D_s} + mean_x D_s] / S, where
    D_s = KL(p_s || p̄) per pixel. Reads no mask."""
    size = c.out.logits.shape[2:]
    interp = "bilinear" if len(size) == 2 else "trilinear"
    heads = [c.out.logits] + [
        F.interpolate(logits, size=size, mode=interp, align_corners=False)
        for _, _, logits in _weighted_heads(c, "up")
    ]
    probs = [_as_distributions(h.float(), c.label_mode) for h in heads]
    mean = torch.stack(probs).mean(dim=0)
    total = mean.new_zeros(())
    for p in probs:
        kl = (p * (torch.log(p + 1e-8) - torch.log(mean + 1e-8))).sum(dim=1)
        weight = torch.exp(-kl)
        squared = ((p - mean) ** 2).sum(dim=1)
        total = total + (weight * squared).sum() / (weight.sum() + 1e-8) + kl.mean()
    return total / len(probs)
