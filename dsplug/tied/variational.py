"""The reparameterised bottleneck of the VAE baseline (the paper's §4.7)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["VariationalBottleneck"]


class VariationalBottleneck(nn.Module):
    """Maps a bottleneck to mu and log-variance with 1x1 convs and samples z = mu + eps * std.

    In eval mode it returns mu (no sampling), so validation is deterministic. ``forward``
    returns ``(z, kl)`` with the KL divergence to N(0, I) averaged over all elements.
    """

    def __init__(self, channels: int, spatial_dims: int) -> None:
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.mu = conv(channels, channels, kernel_size=1)
        self.logvar = conv(channels, channels, kernel_size=1)
        nn.init.zeros_(self.logvar.weight)
        nn.init.constant_(self.logvar.bias, -4.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu = self.mu(x)
        logvar = self.logvar(x).clamp(-10.0, 10.0)
        kl = -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())
        if not self.training:
            return mu, kl
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar), kl
