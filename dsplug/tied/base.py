"""What every reconstruction decoder (tied or not) returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ReconstructionOutput"]


@dataclass
class ReconstructionOutput:
    """Outputs of a reconstruction decoder run from one bottleneck.

    Attributes:
        levels: r_k keyed by reduction (stride), shallowest first, bottleneck last. Each has the
            channels and spatial size of the encoder's feature at that reduction.
        rec_image: the reconstructed image (B, in_channels, *spatial), raw (no activation);
            None when the caller asked for no image (``image=False``).
        rec_mask: mask logits (B, classes, *spatial) from the decoder's own 1x1 head, or None when
            the mode does not use it (the head is then not built).
        kl: the KL divergence of a variational bottleneck (VAE decoder only), else None.
    """

    levels: dict[int, torch.Tensor]
    rec_image: torch.Tensor | None
    rec_mask: torch.Tensor | None = None
    kl: torch.Tensor | None = None
