"""Sliding-window inference in 2D and 3D, and mirror test-time augmentation.

Windows have the training size and overlap by half a window along each axis (the last window
ends at the border); their logits are blended with a Gaussian weight that favours window
centres, where the network sees the most context (as nnU-Net). Images smaller than the window
are zero-padded to it at the high end, as in training. Mirror TTA (:func:`flip_tta`, nnU-Net's
default) averages the logits of every combination of axis flips, each flipped back.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from functools import reduce

import torch
import torch.nn.functional as F

__all__ = ["flip_tta", "gaussian_weight", "sliding_window_logits", "window_starts"]

Forward = Callable[[torch.Tensor], torch.Tensor]


def window_starts(length: int, window: int, overlap: float = 0.5) -> list[int]:
    """Start offsets of windows covering ``length`` with ``overlap`` (the last ends at it).

    Example:
        >>> window_starts(100, 64), window_starts(64, 64), window_starts(200, 64)
        ([0, 18, 36], [0], [0, 27, 54, 82, 109, 136])
    """
    if length <= window:
        return [0]
    step = max(1, int(window * (1 - overlap)))
    count = math.ceil((length - window) / step) + 1
    return sorted({round(i * (length - window) / (count - 1)) for i in range(count)})


def gaussian_weight(size: Sequence[int], sigma_scale: float = 1 / 8) -> torch.Tensor:
    """A Gaussian bump over a window of any number of dims, 1 at the centre,
    ``sigma = size * sigma_scale`` per axis; never below 1e-3 so that border pixels covered
    by one window keep a defined value.

    Example:
        >>> tuple(gaussian_weight((4, 6, 8)).shape), float(gaussian_weight((5, 5))[2, 2])
        ((4, 6, 8), 1.0)
    """
    if len(size) == 0:
        raise ValueError("size must name at least one axis, got ().")
    axes = []
    for n in size:
        x = torch.arange(n, dtype=torch.float32) - (n - 1) / 2
        axes.append(torch.exp(-0.5 * (x / (n * sigma_scale)) ** 2))
    weight = reduce(lambda a, b: a[..., None] * b, axes)  # the outer product of the axes
    return (weight / weight.max()).clamp_min(1e-3)


def flip_tta(forward: Forward, x: torch.Tensor, dims: Sequence[int]) -> torch.Tensor:
    """Mirror TTA: the mean of ``forward`` over all ``2**len(dims)`` flips of ``x``'s ``dims``,
    each output flipped back (``forward`` is called once per flip).

    Args:
        forward: ``(B, C, *spatial)`` -> logits ``(B, K, *spatial)`` (the same spatial size).
        x: the input batch.
        dims: spatial dims of ``x`` to mirror (``>= 2`` or negative), e.g. ``(2, 3)`` in 2D,
            ``(2, 3, 4)`` in 3D; ``()`` is a plain forward.

    Returns:
        float32 logits, averaged; the network's own output for ``dims=()``.

    Raises:
        ValueError: a dim that is not spatial or is named twice; an output whose spatial
            size differs from the input's.
    """
    spatial = range(2, x.ndim)
    norm = [int(d) + x.ndim if int(d) < 0 else int(d) for d in dims]
    if any(d not in spatial for d in norm) or len(set(norm)) != len(norm):
        raise ValueError(
            f"dims must be distinct spatial dims of an input shaped {tuple(x.shape)} (2 to "
            f"{x.ndim - 1}, or negative), got {tuple(dims)}."
        )
    total = torch.zeros(0)
    for k in range(len(norm) + 1):
        for flips in itertools.combinations(norm, k):
            out = forward(x.flip(flips) if flips else x)
            if out.shape[2:] != x.shape[2:]:
                raise ValueError(
                    f"flip_tta needs outputs of the input's spatial size {tuple(x.shape[2:])}, "
                    f"got {tuple(out.shape)}."
                )
            out = (out.flip(flips) if flips else out).float()
            total = out if total.numel() == 0 else total + out
    return total / 2 ** len(norm)


def _mirrored(forward: Forward, dims: tuple[int, ...]) -> Forward:
    def mirrored(batch: torch.Tensor) -> torch.Tensor:
        return flip_tta(forward, batch, dims)

    return mirrored


@torch.no_grad()
def sliding_window_logits(
    forward: Forward,
    images: torch.Tensor,
    window: Sequence[int],
    *,
    overlap: float = 0.5,
    batch_size: int = 16,
    tta: bool = False,
) -> torch.Tensor:
    """Logits of images ``(B, C, *spatial)`` of any size (2D or 3D), from windows of size
    ``window``.

    Args:
        forward: a batch of windows ``(b, C, *window)`` -> logits ``(b, K, *window)``.
        images: the images (on any device; windows are moved to ``forward``'s device by it).
        window: the training size, one entry per spatial dim (``(h, w)`` or ``(d, h, w)``).
        overlap: the fraction of a window shared with its neighbour.
        batch_size: windows per forward pass (of one image or several; the last pass may
            hold fewer).
        tta: mirror each window along every spatial axis (:func:`flip_tta`: ``2**dims``
            forward passes per window).

    Returns:
        float32 logits ``(B, K, *spatial)`` on the CPU: the network's own output where one
        window covers the image, Gaussian-weighted means of overlapping windows elsewhere.

    Raises:
        ValueError: ``window`` has not one entry per spatial dim of ``images``.
    """
    size = tuple(int(n) for n in window)
    spatial = tuple(images.shape[2:])
    if len(size) != len(spatial) or min(size, default=0) < 1:
        raise ValueError(
            f"window must hold one positive size per spatial dim of images shaped "
            f"{tuple(images.shape)}, got {tuple(window)}."
        )
    if tta:
        forward = _mirrored(forward, tuple(range(2, images.ndim)))
    pad = [p for n, s in zip(reversed(size), reversed(spatial)) for p in (0, max(0, n - s))]
    padded = F.pad(images, pad)
    starts = [window_starts(n, w, overlap) for n, w in zip(padded.shape[2:], size)]
    crop = (..., *(slice(0, s) for s in spatial))
    batches = range(0, len(padded), batch_size)
    if all(len(s) == 1 for s in starts):  # one window: exactly the network's output
        parts = [forward(padded[i : i + batch_size]).float().cpu() for i in batches]
        return torch.cat(parts)[crop]
    weight = gaussian_weight(size)
    corners = list(itertools.product(*starts))
    norm = torch.zeros(padded.shape[2:])
    for corner in corners:
        norm[_region(corner, size)] += weight
    # every (image, window) pair, image-major: each image's windows add up in the order of
    # one image alone, and ``batch_size`` of them share a forward pass (the last one fewer)
    jobs = [(i, _region(corner, size)) for i in range(len(padded)) for corner in corners]
    total = torch.zeros(0)  # (B, K, *padded) once K is known
    for k in range(0, len(jobs), batch_size):
        chunk = jobs[k : k + batch_size]
        windows = torch.stack([padded[(i, slice(None), *region)] for i, region in chunk])
        logits = forward(windows).float().cpu()
        if total.numel() == 0:
            total = torch.zeros(len(padded), logits.shape[1], *padded.shape[2:])
        for (i, region), out in zip(chunk, logits):
            total[(i, slice(None), *region)] += out * weight
    return (total / norm)[crop]


def _region(corner: Sequence[int], size: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(s, s + n) for s, n in zip(corner, size))
