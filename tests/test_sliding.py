"""Sliding windows in 2D and 3D (Gaussian blending) and mirror TTA."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dsplug.train.sliding import flip_tta, gaussian_weight, sliding_window_logits, window_starts


class Counting(nn.Module):
    """Wraps a module and counts its forward calls."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


class Ramp(nn.Module):
    """Logits = x * (index along the last axis): flipping the input does not flip the output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.arange(x.shape[-1], dtype=x.dtype)


# --- the Gaussian weight --------------------------------------------------------------------


def test_gaussian_weight_in_2d_is_unchanged() -> None:
    h, w = 12, 7
    ys = torch.exp(-0.5 * ((torch.arange(h) - (h - 1) / 2) / (h / 8)) ** 2)
    xs = torch.exp(-0.5 * ((torch.arange(w) - (w - 1) / 2) / (w / 8)) ** 2)
    old = ys[:, None] * xs[None, :]
    old = (old / old.max()).clamp_min(1e-3)
    assert torch.equal(gaussian_weight((h, w)), old)


@given(size=st.lists(st.integers(1, 9), min_size=1, max_size=3))
@settings(max_examples=30, deadline=None)
def test_gaussian_weight_is_a_separable_bump_in_any_dims(size: list[int]) -> None:
    weight = gaussian_weight(size)
    assert tuple(weight.shape) == tuple(size)
    assert float(weight.max()) == pytest.approx(1.0) and float(weight.min()) >= 1e-3
    assert torch.equal(weight, weight.flip(tuple(range(len(size)))))  # symmetric
    if len(size) == 3:  # the 3D weight is the 2D one times the third axis
        axis = gaussian_weight(size[2:])
        face = gaussian_weight(size[:2])
        expected = (face[..., None] * axis).clamp_min(1e-3)
        torch.testing.assert_close(weight, expected)


# --- sliding windows ------------------------------------------------------------------------


@given(
    shape=st.tuples(st.integers(3, 19), st.integers(3, 19), st.integers(3, 19)),
    window=st.tuples(st.integers(2, 8), st.integers(2, 8), st.integers(2, 8)),
    batch=st.integers(1, 3),
)
@settings(max_examples=25, deadline=None)
def test_3d_windows_equal_a_pointwise_model_on_the_whole_volume(shape, window, batch) -> None:
    torch.manual_seed(0)
    pointwise = nn.Conv3d(2, 3, kernel_size=1)  # the same output however the volume is cut
    images = torch.randn(batch, 2, *shape)
    with torch.no_grad():
        expected = pointwise(images)
    got = sliding_window_logits(pointwise, images, window, batch_size=2)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_3d_windows_call_forward_once_per_batch_of_windows() -> None:
    model = Counting(nn.Conv3d(1, 2, kernel_size=1))
    images = torch.randn(3, 1, 10, 12, 8)
    sliding_window_logits(model, images, (6, 6, 8), batch_size=2)
    windows = len(window_starts(10, 6)) * len(window_starts(12, 6)) * 1
    assert windows == 9 and model.calls == math.ceil(3 * windows / 2)  # 2 windows per pass


def test_overlapping_windows_are_blended_by_their_gaussian_weights() -> None:
    calls: list[float] = []

    def constant(x: torch.Tensor) -> torch.Tensor:  # window n answers n everywhere
        calls.append(float(len(calls)))
        return torch.full((x.shape[0], 1, *x.shape[2:]), calls[-1])

    got = sliding_window_logits(constant, torch.zeros(1, 1, 4, 4, 12), (4, 4, 8), batch_size=1)
    assert window_starts(12, 8) == [0, 4]  # windows [0, 8) and [4, 12) along the last axis
    weight = gaussian_weight((4, 4, 8))
    assert torch.all(got[..., :4] == 0) and torch.all(got[..., 8:] == 1)
    w0, w1 = weight[..., 4:8], weight[..., 0:4]  # each window's weights on the overlap
    torch.testing.assert_close(got[0, 0, ..., 4:8], w1 / (w0 + w1))


def test_a_window_that_does_not_fit_the_images_is_named() -> None:
    with pytest.raises(ValueError, match="one positive size per spatial dim"):
        sliding_window_logits(nn.Identity(), torch.zeros(1, 1, 8, 8, 8), (4, 4))


# --- mirror TTA -----------------------------------------------------------------------------


@pytest.mark.parametrize("dims", [(2, 3), (2, 3, 4), (-1,)])
def test_flip_tta_calls_forward_once_per_flip(dims: tuple[int, ...]) -> None:
    model = Counting(nn.Conv3d(1, 2, kernel_size=1))
    x = torch.randn(2, 1, 3, 4, 5)
    with torch.no_grad():
        got = flip_tta(model, x, dims)
        torch.testing.assert_close(got, model.inner(x))  # a pointwise model is flip-equivariant
    assert model.calls == 2 ** len(dims)  # (the reference above called the inner module)


def test_flip_tta_averages_a_model_whose_flipped_outputs_differ() -> None:
    x = torch.randn(1, 1, 4, 6)
    ramp = Ramp()
    plain = ramp(x)
    # Mirroring the last axis: mean of x * i and x * (W - 1 - i), i.e. x * (W - 1) / 2.
    torch.testing.assert_close(flip_tta(ramp, x, (3,)), x * 2.5)
    # Mirroring the other axis alone changes nothing for this model.
    torch.testing.assert_close(flip_tta(ramp, x, (2,)), plain)
    torch.testing.assert_close(flip_tta(ramp, x, (2, 3)), x * 2.5)
    assert not torch.allclose(flip_tta(ramp, x, (3,)), plain)
    torch.testing.assert_close(flip_tta(ramp, x, ()), plain)


def test_sliding_windows_with_tta_mirror_every_window_in_3d() -> None:
    model = Counting(Ramp())
    x = torch.randn(1, 1, 6, 6, 10)
    got = sliding_window_logits(model, x, (6, 6, 10), tta=True)  # one window
    assert model.calls == 8  # 2 ** 3 flips
    torch.testing.assert_close(got, x * 4.5)  # (W - 1) / 2 with W = 10


def test_flip_tta_rejects_non_spatial_dims() -> None:
    for dims in [(1,), (0, 2), (2, 2), (5,)]:
        with pytest.raises(ValueError, match="distinct spatial dims"):
            flip_tta(nn.Identity(), torch.zeros(1, 1, 4, 4), dims)
