"""The U-Net++ nested decoder (Zhou et al. 2018): dense skip pathways between node X^{i,j}."""

from __future__ import annotations

import torch
from torch import nn

from ..blocks import ConvBlock, Ops

__all__ = ["NestedBlock", "UNetPlusPlusDecoder"]


class NestedBlock(nn.Module):
    """Node X^{i,j}: up-convolve X^{i+1,j-1}, concatenate with X^{i,0..j-1}, then a ConvBlock."""

    def __init__(self, ops: Ops, deep_channels: int, channels: int, n_skips: int) -> None:
        super().__init__()
        self.up = ops.conv_transpose(deep_channels, channels, kernel_size=2, stride=2)
        self.block = ConvBlock(ops, (n_skips + 1) * channels, channels)

    def forward(self, deep: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        return self.block(torch.cat([*skips, self.up(deep)], dim=1))


class UNetPlusPlusDecoder(nn.Module):
    """``blocks["x_i_j"]`` is node X^{i,j} (j >= 1); the output is X^{0,K}.

    The final expansive path is X^{k,K-k}: those nodes are the decoder levels deep supervision
    taps, not the dense inner nodes.
    """

    def __init__(self, ops: Ops, channels: list[int]) -> None:
        super().__init__()
        self.depth = len(channels)
        top = self.depth - 1
        self.blocks = nn.ModuleDict()
        for j in range(1, top + 1):
            for i in range(top - j + 1):
                self.blocks[f"x_{i}_{j}"] = NestedBlock(ops, channels[i + 1], channels[i], j)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        top = self.depth - 1
        nodes: dict[tuple[int, int], torch.Tensor] = {(i, 0): f for i, f in enumerate(features)}
        for j in range(1, top + 1):
            for i in range(top - j + 1):
                skips = [nodes[(i, s)] for s in range(j)]
                nodes[(i, j)] = self.blocks[f"x_{i}_{j}"](nodes[(i + 1, j - 1)], skips)
        return nodes[(0, top)]
