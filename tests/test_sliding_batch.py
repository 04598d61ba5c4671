"""Sliding windows run ``batch_size`` windows per forward pass (of one image or several), with
the logits of one window at a time."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from dsplug.train.native import case_logits
from dsplug.train.sliding import gaussian_weight, sliding_window_logits, window_starts


class _Counted(torch.nn.Module):
    """A lopsided conv (eval mode) that records how many windows each call holds."""

    def __init__(self, dims: int, channels: int = 2, classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        conv = torch.nn.Conv2d if dims == 2 else torch.nn.Conv3d
        self.conv = conv(channels, classes, 3, padding=1).eval()
        self.sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(x))
        mean = x.mean(dim=tuple(range(1, x.ndim)), keepdim=True)
        return self.conv(x) + mean  # each window's own mean: a batch must not mix them


def _one_at_a_time(model: torch.nn.Module, images: torch.Tensor, window: tuple) -> torch.Tensor:
    """The reference: each window of each image alone, Gaussian-blended."""
    spatial = images.shape[2:]
    pad = [p for n, s in zip(reversed(window), reversed(spatial)) for p in (0, max(0, n - s))]
    padded = F.pad(images, pad)
    starts = [window_starts(n, w) for n, w in zip(padded.shape[2:], window)]
    weight = gaussian_weight(window)
    total = torch.zeros(len(images), 3, *padded.shape[2:])
    norm = torch.zeros(padded.shape[2:])
    for corner in itertools.product(*starts):
        region = tuple(slice(s, s + n) for s, n in zip(corner, window))
        norm[region] += weight
        for i in range(len(images)):
            with torch.no_grad():
                out = model(padded[(slice(i, i + 1), slice(None), *region)])[0]
            total[(i, slice(None), *region)] += out * weight
    return (total / norm)[(..., *(slice(0, s) for s in spatial))]


CASES = [
    ((2, 2, 37, 29), (16, 12)),  # 2D, odd sizes, several images
    ((1, 2, 23, 9), (8, 12)),  # 2D, narrower than the window on one axis (padded)
    ((2, 2, 13, 11, 9), (8, 6, 6)),  # 3D, odd sizes
]


@pytest.mark.parametrize(("shape", "window"), CASES)
@pytest.mark.parametrize("batch_size", [1, 3, 5, 1000])
def test_batched_windows_match_one_window_at_a_time(shape, window, batch_size) -> None:
    model = _Counted(len(window))
    images = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    expected = _one_at_a_time(model, images, window)
    model.sizes.clear()
    got = sliding_window_logits(model, images, window, batch_size=batch_size)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    windows = len(images) * math.prod(
        len(window_starts(max(n, w), w)) for n, w in zip(shape[2:], window)
    )
    full, last = divmod(windows, batch_size)  # every pass full, the last one the remainder
    assert model.sizes == [batch_size] * full + ([last] if last else [])


def test_one_image_runs_its_windows_in_batches() -> None:
    model = _Counted(2)
    image = torch.randn(2, 40, 40)
    logits = case_logits(model, image, (16, 16), batch_size=5)
    assert logits.shape == (3, 40, 40)
    assert model.sizes == [5, 5, 5, 1]  # 4 x 4 windows: not sixteen passes of one
