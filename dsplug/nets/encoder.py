"""The contracting path shared by the own U-Net and U-Net++."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import ConvBlock, Ops, level_channels

__all__ = ["UNetEncoder"]


class UNetEncoder(nn.Module):
    """Level 0 is a ConvBlock at full resolution; level i > 0 is max-pool then a ConvBlock.

    ``forward`` returns the features of every level, shallowest first; the last one is the
    bottleneck (stride 2^(depth-1)).
    """

    def __init__(self, ops: Ops, in_channels: int, base_channels: int, depth: int) -> None:
        super().__init__()
        self.channels = level_channels(base_channels, depth)
        ins = [in_channels, *self.channels[:-1]]
        self.blocks = nn.ModuleList(ConvBlock(ops, i, o) for i, o in zip(ins, self.channels))
        self.pool = ops.pool(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for i, block in enumerate(self.blocks):
            x = block(x if i == 0 else self.pool(x))
            features.append(x)
        return features
