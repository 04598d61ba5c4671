"""What each mode computes, as data: which branches run and which modules are built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .options import Mode, choose

__all__ = ["MODES", "ModeSpec", "mode_spec"]

Reconstruction = Literal["tied", "ae", "vae"] | None


@dataclass(frozen=True)
class ModeSpec:
    """The branches of one mode (the paper's Fig. 1 and §3.1-3.3).

    Attributes:
        name: the mode.
        paper: its name in the paper.
        needs_target: training without a target would silently drop the supervision.
        features: tap the seg decoder's levels y_k.
        mask_pass: feed G through the segmentation model (y^g, y^g_k).
        reconstruction: the reconstruction decoder: ``"tied"`` (transposes of the model's
            encoder), ``"ae"`` (an independent autoencoder: a copy of the encoder with its own
            tied decoder), ``"vae"`` (untied weights, a reparameterised bottleneck), or None.
        reconstruct_mask: also run the reconstruction decoder on G (rec_mask, r_k(G)).
        heads: side heads on the decoder levels: ``"up"`` or ``"down"``, or None.
    """

    name: Mode
    paper: str
    needs_target: bool = True
    features: bool = True
    mask_pass: bool = False
    reconstruction: Reconstruction = None
    reconstruct_mask: bool = False
    heads: Literal["up", "down"] | None = None

    @property
    def aligns_features(self) -> bool:
        """Whether y_k is compared with r_k(G) (projections where channels differ)."""
        return self.reconstruct_mask


MODES: dict[Mode, ModeSpec] = {
    spec.name: spec
    for spec in (
        ModeSpec(Mode.NONE, "U-Net", needs_target=False, features=False),
        ModeSpec(Mode.DEEP, "U-Net-Deep", mask_pass=True),
        ModeSpec(Mode.AUTO, "U-Net-Auto", reconstruction="ae", reconstruct_mask=True),
        ModeSpec(Mode.SEG, "μ-Net-Seg", mask_pass=True, reconstruction="tied"),
        ModeSpec(Mode.REC, "μ-Net-Rec", reconstruction="tied", reconstruct_mask=True),
        ModeSpec(
            Mode.HYB, "μ-Net-Hyb", mask_pass=True, reconstruction="tied", reconstruct_mask=True
        ),
        ModeSpec(Mode.UP, "U-Net with Up (M-Net)", heads="up"),
        ModeSpec(Mode.DOWN, "U-Net with Down (MLDS)", heads="down"),
        ModeSpec(Mode.VAE, "μ-Net with a VAE decoder", reconstruction="vae", reconstruct_mask=True),
    )
}


def mode_spec(mode: str) -> ModeSpec:
    """The spec of ``mode``; an unknown name raises listing the valid ones."""
    return MODES[choose(mode, Mode, "mode")]
