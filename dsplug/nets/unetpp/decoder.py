"""The U-Net++ nested decoder (Zhou et al. 2018): dense skip pathways between node X^{i,j}."""

from __future__ import annotations

import torch
from torch import nn

from ..blocks import ConvBlock, Ops

__all__ = ["NestedBlock", "UNetPlusPlusDecoder"]


class NestedBlock(nn.Module):
    """Node X^{i,j}: up-convolve X^{i+1,j-1}, concatenate with X^{i,0..j-1}, then a ConvBlock."""

    def __init__(
        self, ops: Ops, deep_channels: int, channels: int, n_skips: int, row: int = 0
    ) -> None:
        super().__init__()
        self.row, self.column = row, n_skips  # the node's (i, j)
        self.up = ops.conv_transpose(deep_channels, channels, kernel_size=2, stride=2)
        self.block = ConvBlock(ops, (n_skips + 1) * channels, channels)

    def forward(self, deep: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        # TorchScript cannot unpack a list into a list display: no [*skips, ...]
        return self.block(torch.cat(skips + [self.up(deep)], dim=1))  # noqa: RUF005


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
                self.blocks[f"x_{i}_{j}"] = NestedBlock(ops, channels[i + 1], channels[i], j, i)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        # nodes[i][j] is X^{i,j}; the blocks were built column by column (j outer), the order
        # they run in, so X^{i,0..j-1} and X^{i+1,j-1} exist when X^{i,j} is computed.
        # (Iterating the ModuleDict, not indexing it by name, keeps this TorchScript-able.)
        nodes: list[list[torch.Tensor]] = [[f] for f in features]
        for block in self.blocks.values():
            i, j = block.row, block.column
            nodes[i].append(block(nodes[i + 1][j - 1], nodes[i][:j]))
        return nodes[0][self.depth - 1]
