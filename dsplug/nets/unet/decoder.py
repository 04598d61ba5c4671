"""The U-Net expansive path: up-convolution, concatenation with the skip, ConvBlock."""

from __future__ import annotations

import torch
from torch import nn

from ..blocks import ConvBlock, Ops

__all__ = ["UNetDecoder", "UpBlock"]


class UpBlock(nn.Module):
    """2x up-convolution from the deeper level, concatenated with the skip, then a ConvBlock."""

    def __init__(self, ops: Ops, deep_channels: int, skip_channels: int) -> None:
        super().__init__()
        self.up = ops.conv_transpose(deep_channels, skip_channels, kernel_size=2, stride=2)
        self.block = ConvBlock(ops, 2 * skip_channels, skip_channels)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([skip, self.up(deep)], dim=1))


class UNetDecoder(nn.Module):
    """``blocks[j]`` produces level ``depth - 2 - j`` (the last block is level 0)."""

    def __init__(self, ops: Ops, channels: list[int]) -> None:
        super().__init__()
        pairs = [(channels[k + 1], channels[k]) for k in reversed(range(len(channels) - 1))]
        self.blocks = nn.ModuleList(UpBlock(ops, deep, skip) for deep, skip in pairs)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for j, block in enumerate(self.blocks):
            x = block(x, features[-2 - j])
        return x
