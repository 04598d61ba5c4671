"""One loss class per mode (eq. 6, 7, 11, 12, 13 and the §4.6-4.7 baselines), each importable alone.

Example:
    >>> from dsplug.losses import HybLoss
    >>> loss = HybLoss(weights="brats", label_mode="multilabel")
"""

from __future__ import annotations

from ..options import Mode
from .base import DeepSupervisionLoss
from .baselines import consistency_term, down_term, up_term
from .context import Term
from .functions import (
    deep_ae_term,
    deep_rec_term,
    deep_term,
    image_term,
    kl_term,
    mask_term,
    rei_term,
    rem_term,
    seg_rec_term,
    seg_term,
)

__all__ = [
    "LOSSES",
    "AutoLoss",
    "DeepLoss",
    "DownLoss",
    "HybLoss",
    "NoneLoss",
    "RecLoss",
    "SegLoss",
    "UpLoss",
    "VAELoss",
]

IMAGE = Term("image", "alpha", image_term, scheduled=False)
MASK = Term("mask", "beta", mask_term)
SEG = Term("seg", "gamma", seg_term)
DEEP = Term("deep", "lam", deep_term)
REM = Term("rem", "a", rem_term)
REI = Term("rei", "b", rei_term, label_free=True)
SEG_REC = Term("seg_rec", "xi", seg_rec_term)
#: The side outputs' consistency on an unlabelled batch (URPC): computed on unlabelled batches only.
CONS = Term("cons", "aux", consistency_term, label_free=True)
DEEP_REC = Term("deep_rec", "eta", deep_rec_term)


class NoneLoss(DeepSupervisionLoss):
    """U-Net: L_image (α)."""

    mode = Mode.NONE
    terms = (IMAGE,)


class DeepLoss(DeepSupervisionLoss):
    """U-Net-Deep (eq. 6): α L_image + β L_mask + γ L_seg + λ Σ ω_k L_D."""

    mode = Mode.DEEP
    terms = (IMAGE, MASK, SEG, DEEP)


class AutoLoss(DeepSupervisionLoss):
    """U-Net-Auto (eq. 7): α L_image + a L_rem + b L_rei + γ L_seg + λ Σ ω_k L_D, with the
    pseudo-labels from an independent autoencoder."""

    mode = Mode.AUTO
    terms = (
        IMAGE,
        REM,
        REI,
        Term("seg", "gamma", seg_rec_term),
        Term("deep", "lam", deep_ae_term),
    )


class SegLoss(DeepSupervisionLoss):
    """μ-Net-Seg (eq. 11): α L_image + β L_mask + b L_rei + γ L_seg + λ Σ ω_k L_D."""

    mode = Mode.SEG
    terms = (IMAGE, MASK, REI, SEG, DEEP)


class RecLoss(DeepSupervisionLoss):
    """μ-Net-Rec (eq. 12): α L_image + a L_rem + b L_rei + ξ L_seg' + η Σ σ_k L_D'."""

    mode = Mode.REC
    terms = (IMAGE, REM, REI, SEG_REC, DEEP_REC)


class HybLoss(DeepSupervisionLoss):
    """μ-Net-Hyb (eq. 13): every term of Seg and Rec."""

    mode = Mode.HYB
    terms = (IMAGE, MASK, REM, REI, SEG, SEG_REC, DEEP, DEEP_REC)


class UpLoss(DeepSupervisionLoss):
    """U-Net with Up (M-Net): α L_image + aux Σ_k L_BD(upsample(head_k(y_k)), G); on an
    unlabelled batch, aux · the heads' consistency (URPC)."""

    mode = Mode.UP
    terms = (IMAGE, Term("aux", "aux", up_term))
    unlabeled_terms = (CONS,)


class DownLoss(DeepSupervisionLoss):
    """U-Net with Down (MLDS): α L_image + aux Σ_k L_B(head_k(y_k), maxpool_k(G)); on an
    unlabelled batch, aux · the heads' consistency (URPC)."""

    mode = Mode.DOWN
    terms = (IMAGE, Term("aux", "aux", down_term))
    unlabeled_terms = (CONS,)


class VAELoss(DeepSupervisionLoss):
    """μ-Net with a VAE decoder: the terms of Rec plus kl · KL."""

    mode = Mode.VAE
    terms = (*RecLoss.terms, Term("kl", "kl", kl_term, label_free=True))


LOSSES: dict[str, type[DeepSupervisionLoss]] = {
    cls.mode: cls
    for cls in (
        NoneLoss,
        DeepLoss,
        AutoLoss,
        SegLoss,
        RecLoss,
        HybLoss,
        UpLoss,
        DownLoss,
        VAELoss,
    )
}
