"""Sliding-window inference: slices larger than the training size, tiled with overlap.

Windows have the training size and overlap by half a window along each axis (the last window
ends at the border); their logits are blended with a Gaussian weight that favours window
centres, where the network sees the most context (as nnU-Net). Slices smaller than the window
are zero-padded to it at the high end, as in training.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = ["gaussian_weight", "sliding_window_logits", "window_starts"]


def window_starts(length: int, window: int, overlap: float = 0.5) -> list[int]:
    """Start offsets of windows covering ``length`` with ``overlap`` (the last ends at it).

    Example:
        >>> window_starts(100, 64), window_starts(64, 64), window_starts(200, 64)
        ([0, 36], [0], [0, 34, 68, 102, 136])
    """
    if length <= window:
        return [0]
    step = max(1, int(window * (1 - overlap)))
    count = math.ceil((length - window) / step) + 1
    return sorted({round(i * (length - window) / (count - 1)) for i in range(count)})


def gaussian_weight(size: Sequence[int], sigma_scale: float = 1 / 8) -> torch.Tensor:
    """A Gaussian bump over a window, 1 at the centre, ``sigma = size * sigma_scale``; never
    below 1e-3 so that border pixels covered by one window keep a defined value."""
    axes = []
    for n in size:
        x = torch.arange(n, dtype=torch.float32) - (n - 1) / 2
        axes.append(torch.exp(-0.5 * (x / (n * sigma_scale)) ** 2))
    weight = axes[0][:, None] * axes[1][None, :]
    return (weight / weight.max()).clamp_min(1e-3)


@torch.no_grad()
def sliding_window_logits(
    forward: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    window: Sequence[int],
    *,
    overlap: float = 0.5,
    batch_size: int = 16,
) -> torch.Tensor:
    """Logits of slices ``(S, C, H, W)`` of any size, from windows of size ``window``.

    Args:
        forward: a batch of windows ``(B, C, h, w)`` -> logits ``(B, K, h, w)``.
        images: the slices (on any device; windows are moved to ``forward``'s device by it).
        window: ``(h, w)``, the training size.
        overlap: the fraction of a window shared with its neighbour.
        batch_size: slices per forward pass.

    Returns:
        float32 logits ``(S, K, H, W)`` on the CPU: the network's own output where one window
        covers the slice, Gaussian-weighted means of overlapping windows elsewhere.
    """
    h, w = (int(n) for n in window)
    height, width = images.shape[-2:]
    padded = F.pad(images, (0, max(0, w - width), 0, max(0, h - height)))
    ys = window_starts(padded.shape[-2], h, overlap)
    xs = window_starts(padded.shape[-1], w, overlap)
    if len(ys) == len(xs) == 1:  # one window: exactly the network's output
        parts = [
            forward(padded[i : i + batch_size]).float().cpu()
            for i in range(0, len(padded), batch_size)
        ]
        return torch.cat(parts)[..., :height, :width]
    weight = gaussian_weight((h, w))
    total = torch.zeros(0)  # (S, K, H, W) once K is known
    norm = torch.zeros(padded.shape[-2:])
    for y in ys:
        for x in xs:
            norm[y : y + h, x : x + w] += weight
            for i in range(0, len(padded), batch_size):
                logits = forward(padded[i : i + batch_size, :, y : y + h, x : x + w]).float().cpu()
                if total.numel() == 0:
                    total = torch.zeros(len(padded), logits.shape[1], *padded.shape[-2:])
                total[i : i + batch_size, :, y : y + h, x : x + w] += logits * weight
    return (total / norm)[..., :height, :width]
