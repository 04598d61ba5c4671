"""dsplug's own U-Net (Ronneberger et al. 2015), as used by the μ-Net paper."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ..._checks import ShapeError, check_divisible
from ..blocks import check_net_args, init_weights, resolve_ops
from ..encoder import UNetEncoder
from ..freeze import set_frozen, set_norms_training
from .decoder import UNetDecoder

__all__ = ["UNet"]


class UNet(nn.Module):
    """A U-Net with ``depth`` levels of two 3x3 conv + norm + ReLU layers each.

    Level i has ``base_channels * 2**i`` channels (the paper: 5 levels, 64 * 2^i).

    Args:
        in_channels: image channels.
        classes: output channels (logits).
        base_channels: channels of level 0.
        depth: number of levels; inputs must be divisible by 2^(depth-1).
        norm: ``"batch"`` or ``"instance"``.
        spatial_dims: 2 or 3 (one code path, the op types are resolved once).

    Example:
        >>> net = UNet(in_channels=1, classes=2, base_channels=8, depth=3)
        >>> net(torch.zeros(1, 1, 32, 32)).shape
        torch.Size([1, 2, 32, 32])
    """

    decoder_type: type[nn.Module] = UNetDecoder
    __jit_unused_properties__: ClassVar[tuple[str, ...]] = ("divisor",)  # Python-side only

    def __init__(
        self,
        in_channels: int = 1,
        classes: int = 1,
        base_channels: int = 64,
        depth: int = 5,
        norm: str = "batch",
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        check_net_args(in_channels, classes, base_channels, depth)
        ops = resolve_ops(spatial_dims, norm)
        self.in_channels, self.classes, self.depth = in_channels, classes, depth
        self.base_channels, self.norm, self.spatial_dims = base_channels, norm, spatial_dims
        self.encoder = UNetEncoder(ops, in_channels, base_channels, depth)
        self.decoder = self.decoder_type(ops, self.encoder.channels)
        self.head = ops.conv(base_channels, classes, kernel_size=1)
        self._encoder_frozen = False
        init_weights(self)

    @property
    def divisor(self) -> int:
        """Every spatial input size must be a multiple of this (2^(depth-1))."""
        return 2 ** (self.depth - 1)

    def config(self) -> dict[str, int | str]:
        """The constructor arguments, enough to rebuild the network."""
        return {
            "in_channels": self.in_channels,
            "classes": self.classes,
            "base_channels": self.base_channels,
            "depth": self.depth,
            "norm": self.norm,
            "spatial_dims": self.spatial_dims,
        }

    def freeze_encoder(self) -> None:
        """Stop training the encoder (as smp's ``freeze_encoder``): its parameters get
        ``requires_grad=False`` and its normalisation layers stay in eval mode across
        ``.train()`` (running statistics fixed); the decoder and head train on."""
        set_frozen(self.encoder, True, self.training)
        self._encoder_frozen = True

    def unfreeze_encoder(self) -> None:
        """Undo :meth:`freeze_encoder`: the encoder trains again, its normalisation layers in
        the network's current mode."""
        set_frozen(self.encoder, False, self.training)
        self._encoder_frozen = False

    def train(self, mode: bool = True) -> UNet:
        """``nn.Module.train``, except that a frozen encoder's normalisation layers stay in eval
        mode (:meth:`freeze_encoder`)."""
        super().train(mode)
        if getattr(self, "_encoder_frozen", False):  # absent on networks pickled before it
            set_norms_training(self.encoder, False)
        return self

    @torch.jit.unused
    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ShapeError unless ``x`` is (B, in_channels, *spatial) with divisible sizes."""
        expected_dims = 2 + self.spatial_dims
        if x.dim() != expected_dims or x.shape[1] != self.in_channels:
            raise ShapeError(
                f"{type(self).__name__} expected input of shape (B, {self.in_channels}, "
                f"{', '.join('S' * self.spatial_dims)}), got {tuple(x.shape)}.",
                tuple(x.shape),
                f"(B, {self.in_channels}, *spatial[{self.spatial_dims}])",
            )
        check_divisible(tuple(x.shape[2:]), self.divisor, "input")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            _check_scripted_input(x, self.in_channels, self.spatial_dims, self.depth)
        else:
            self.check_input(x)
        return self.head(self.decoder(self.encoder(x)))


def _check_scripted_input(x: torch.Tensor, in_channels: int, spatial_dims: int, depth: int) -> None:
    """:meth:`UNet.check_input` in the TorchScript subset (same conditions, a plain message)."""
    if x.dim() != 2 + spatial_dims or x.shape[1] != in_channels:
        raise ValueError(
            "UNet expected input of shape (B, "
            + str(in_channels)
            + ", *spatial["
            + str(spatial_dims)
            + "]), got "
            + str(x.shape)
        )
    divisor = 1
    for _ in range(depth - 1):
        divisor *= 2
    for size in x.shape[2:]:
        if size % divisor != 0:
            raise ValueError(
                "input has spatial size "
                + str(x.shape[2:])
                + ", but every spatial size must be divisible by "
                + str(divisor)
                + " (2^(depth-1) for this network)"
            )
