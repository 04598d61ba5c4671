"""The hand-written tied-weight decoder of dsplug's own U-Net / U-Net++ encoder (§3.3)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..nets.encoder import UNetEncoder
from .base import ReconstructionOutput
from .gain import transpose_gain
from .variational import VariationalBottleneck

__all__ = ["OwnTiedDecoder"]


class OwnTiedDecoder(nn.Module):
    """The exact transpose of a :class:`UNetEncoder`.

    Level K is the bottleneck; r_k = up(E_{k+1}^T(r_{k+1})) where E_i^T runs block i's convs in
    reverse order as ``conv_transpose`` of the same weight tensors (times the constant
    :func:`~dsplug.tied.gain.transpose_gain`, so the decoder is at unit scale at any width),
    each followed by the decoder's own bias, norm and ReLU; nearest upsampling replaces
    max-pooling.
    ``rec_image = E_0^T(r_0)`` is raw (no norm or activation after the last transpose);
    ``rec_mask`` is the decoder's own 1x1 conv from r_0.

    Args:
        encoder: the encoder whose weights are transposed (not copied, not registered here).
        mask_classes: channels of the ``rec_mask`` head, or None to build no head.
        variational: the VAE baseline: own weights cloned from the encoder's and a
            reparameterised bottleneck.
    """

    def __init__(
        self, encoder: UNetEncoder, *, mask_classes: int | None = None, variational: bool = False
    ) -> None:
        super().__init__()
        self.unit_gain = True  # False: the paper's plain transposes (balance="paper")
        convs = [conv for block in encoder.blocks for conv in block.convs()]
        self.spatial_dims = convs[0].weight.dim() - 2
        self.channels = list(encoder.channels)
        # Tied: a plain list, so the encoder's weights are neither copied nor registered here.
        self._tied_convs = [] if variational else convs
        self.own_weights = (
            nn.ParameterList(nn.Parameter(c.weight.detach().clone()) for c in convs)
            if variational
            else None
        )
        # One bias per transposed conv, shaped like the transposed output (the conv's input).
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(c.weight.shape[1])) for c in convs)
        norm_like = [block[0][1] for block in encoder.blocks]
        self.norms = nn.ModuleList(
            _same_norm(norm_like[0], c.weight.shape[1]) for c in convs[1:]
        )  # every transposed conv but the last (rec_image is raw)
        self.bottleneck = (
            VariationalBottleneck(self.channels[-1], self.spatial_dims) if variational else None
        )
        self.mask_head = (
            _conv1x1(self.spatial_dims, self.channels[0], mask_classes) if mask_classes else None
        )

    @property
    def reductions(self) -> list[int]:
        """Strides of the levels it outputs, shallowest first."""
        return [2**k for k in range(len(self.channels))]

    @property
    def level_channels(self) -> dict[int, int]:
        """Channels per level, keyed by reduction."""
        return dict(zip(self.reductions, self.channels))

    def _weight(self, index: int) -> torch.Tensor:
        if self.own_weights is not None:
            return self.own_weights[index]
        return self._tied_convs[index].weight

    def _transpose(self, x: torch.Tensor, index: int) -> torch.Tensor:
        conv_t = F.conv_transpose2d if self.spatial_dims == 2 else F.conv_transpose3d
        weight = self._weight(index)
        # g conv_t(x, W) + b, with no extra copy of x kept; g = 1 for the paper's literal form
        gain = transpose_gain(weight) if self.unit_gain else 1.0
        x = conv_t(x, weight, self.biases[index] / gain, padding=1) * gain
        if index == 0:
            return x  # rec_image: raw
        return F.relu(self.norms[index - 1](x))

    def forward(
        self,
        bottleneck: torch.Tensor,
        image_shape: Sequence[int],
        *,
        image: bool = True,
        mask: bool = True,
    ) -> ReconstructionOutput:
        """Reconstruct from ``bottleneck`` for an input of ``image_shape`` (B, C, *spatial).

        ``image=False`` skips E_0^T (``rec_image`` is then None) and ``mask=False`` skips the
        ``rec_mask`` head: the G pass needs no image and the X pass no mask.
        """
        kl = None
        if self.bottleneck is not None:
            bottleneck, kl = self.bottleneck(bottleneck)
        depth = len(self.channels)
        levels = {2 ** (depth - 1): bottleneck}
        r = bottleneck
        for level in reversed(range(1, depth)):
            r = self._transpose(self._transpose(r, 2 * level + 1), 2 * level)
            r = F.interpolate(r, scale_factor=2, mode="nearest")
            levels[2 ** (level - 1)] = r
        if tuple(r.shape[2:]) != tuple(image_shape[2:]):
            raise RuntimeError(
                f"Reconstruction has spatial size {tuple(r.shape[2:])}, expected "
                f"{tuple(image_shape[2:])}: the bottleneck does not come from this input size."
            )
        rec_image = self._transpose(self._transpose(r, 1), 0) if image else None
        rec_mask = self.mask_head(r) if mask and self.mask_head is not None else None
        return ReconstructionOutput(
            levels=dict(sorted(levels.items())), rec_image=rec_image, rec_mask=rec_mask, kl=kl
        )


def _same_norm(like: nn.Module, channels: int) -> nn.Module:
    """A fresh norm of the encoder's kind over ``channels``."""
    return type(like)(channels, affine=like.affine)


def _conv1x1(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
    return conv(in_channels, out_channels, kernel_size=1)
