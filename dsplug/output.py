"""The typed container that ``DeepSupervised(x, y)`` returns, in train and eval alike."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["DSOutput"]


@dataclass
class DSOutput:
    """Every branch a mode computes. Feature dicts are keyed by reduction (stride 2^k).

    Attributes:
        logits: y, the seg logits on X (exactly what ``model(x)`` returns).
        image: X, the input (the target of L_rei).
        features: y_k, the seg decoder's features on X, the bottleneck y_K included.
        mask_logits: y^g, the seg logits on G fed as input (deep, seg, hyb).
        mask_features: y^g_k (deep, seg, hyb).
        rec_image: rec_image(X) of the reconstruction decoder (auto, seg, rec, hyb, vae).
        rec_mask: rec_mask(G) logits (auto, rec, hyb, vae).
        rec_features: r_k(G), the reconstruction decoder's features on G (auto, rec, hyb, vae).
        aligned_features: y_k through a learned 1x1 projection to r_k's channels (student side).
        aux_logits: the side heads' logits per level (up, down).
        kl: the KL term of the VAE bottleneck (vae).
        aux_index: the images of the batch the auxiliary branches ran on (``aux_fraction``
            < 1): every G-pass and reconstruction output has one row per index; None: all.
        aux_image: X as the auxiliary branches saw it (pooled, ``aux_scale`` < 1; the target
            of L_rei), or None: ``image``.
        aux_target: the target as the auxiliary branches saw it (pooled like ``aux_image``,
            dense: float (B, C, *) or int64 (B, *), void pixels at ``ignore_index``; rows of
            ``aux_index``), or None: the full-resolution target.
        aux_weight: the factor on this step's auxiliary terms (``aux_every`` = k: k on a step
            that ran the branches, 0 on one that skipped them); 1.0 otherwise.
        target: an unlabelled batch's pseudo-target from a teacher (``ds.unlabeled``), in the
            form ``ds.loss`` takes a target; None for a labelled batch (``ds(x, y)``) and for
            an unlabelled one without a teacher.
        target_valid: (B, 1, *) 1 where ``target`` counts (the teacher is confident).
        labeled: False for the output of ``ds.unlabeled``: ``ds.loss(out)`` then takes no
            target and gives the label-free part of the mode's loss.
    """

    logits: torch.Tensor
    image: torch.Tensor
    features: dict[int, torch.Tensor] = field(default_factory=dict)
    mask_logits: torch.Tensor | None = None
    mask_features: dict[int, torch.Tensor] | None = None
    rec_image: torch.Tensor | None = None
    rec_mask: torch.Tensor | None = None
    rec_features: dict[int, torch.Tensor] | None = None
    aligned_features: dict[int, torch.Tensor] | None = None
    aux_logits: dict[int, torch.Tensor] | None = None
    kl: torch.Tensor | None = None
    aux_index: torch.Tensor | None = None
    aux_image: torch.Tensor | None = None
    aux_target: torch.Tensor | None = None
    aux_weight: float = 1.0
    target: torch.Tensor | None = None
    target_valid: torch.Tensor | None = None
    labeled: bool = True
