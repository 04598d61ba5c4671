"""HD95 and normalised surface Dice: hand-computable cases, spacing, empty masks, MONAI."""

from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dsplug.metrics import METRIC_NAMES, CaseMetrics
from dsplug.metrics.surface import (
    boundary,
    foreground_masks,
    hd95,
    surface_dice,
    surface_distances,
    surface_scores,
)

try:  # an optional extra: the cross-check runs where it is installed (it is in `test`)
    from monai import metrics as monai_metrics
except ImportError:  # pragma: no cover
    monai_metrics = None


def square(shape: tuple[int, ...], start: tuple[int, ...], side: int) -> np.ndarray:
    """A box of ``side`` voxels per axis at ``start`` in a zero array of ``shape``."""
    mask = np.zeros(shape, bool)
    mask[tuple(slice(s, s + side) for s in start)] = True
    return mask


# --- hand-computable cases -----------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3])
def test_hd95_of_two_squares_offset_by_k_is_k(k: int) -> None:
    # The left column of a (5 voxels of 16 on the boundary) lies k from b's; nothing is farther.
    a = square((16, 16), (4, 3), 5)
    b = square((16, 16), (4, 3 + k), 5)
    assert hd95(a, b) == pytest.approx(k)
    assert hd95(b, a) == pytest.approx(k)


@pytest.mark.parametrize("k", [1, 2])
def test_hd95_of_two_cubes_offset_by_k_is_k(k: int) -> None:
    a = square((12, 12, 12), (3, 3, 3), 4)
    b = square((12, 12, 12), (3, 3 + k, 3), 4)
    assert hd95(a, b) == pytest.approx(k)


def test_spacing_of_the_offset_axis_scales_hd95_and_the_other_axis_does_not() -> None:
    a = square((16, 16), (4, 3), 5)
    b = square((16, 16), (4, 5), 5)  # offset 2 voxels along axis 1
    assert hd95(a, b, spacing=(1.0, 0.7)) == pytest.approx(1.4)
    assert hd95(a, b, spacing=(3.0, 1.0)) == pytest.approx(2.0)
    a3 = square((10, 10, 10), (2, 2, 2), 4)
    b3 = square((10, 10, 10), (3, 2, 2), 4)  # offset along axis 0 (the slice axis)
    assert hd95(a3, b3, spacing=(2.5, 0.8, 0.8)) == pytest.approx(2.5)


@given(
    masks=hnp.arrays(bool, st.sampled_from([(6, 7), (4, 5, 6)])).flatmap(
        lambda a: st.tuples(st.just(a), hnp.arrays(bool, a.shape))
    ),
    scale=st.sampled_from([0.5, 2.0, 3.0]),
)
@settings(max_examples=40, deadline=None)
def test_isotropic_spacing_multiplies_every_distance(masks, scale: float) -> None:
    a, b = masks
    base, scaled = hd95(a, b), hd95(a, b, spacing=(scale,) * a.ndim)
    if math.isfinite(base):
        assert scaled == pytest.approx(base * scale)
    else:
        assert np.isnan(base) == np.isnan(scaled) and np.isinf(base) == np.isinf(scaled)


def test_nsd_at_the_tolerance_boundary() -> None:
    a = square((16, 16), (4, 3), 5)
    b = square((16, 16), (4, 5), 5)
    assert surface_dice(a, b, tolerance=2.0) == 1.0  # the farthest voxels sit exactly at 2
    # Below 2, of each square's 16 boundary voxels 6 are out: its far column (5) and the
    # middle of its near column, which lies inside the other square, 2 from every rim.
    assert surface_dice(a, b, tolerance=1.99) == pytest.approx(20 / 32)
    # At 0, only voxels on both rims count: the 3 + 3 of the shared top and bottom rows.
    assert surface_dice(a, b, tolerance=0.0) == pytest.approx(12 / 32)
    # Tolerance is in mm: the same 2 voxels at 0.5 mm are within 1 mm.
    assert surface_dice(a, b, tolerance=1.0, spacing=(0.5, 0.5)) == 1.0


def test_boundary_is_the_eroded_away_rim_and_the_array_edge_counts() -> None:
    assert boundary(square((6, 6), (1, 1), 4)).sum() == 12
    assert boundary(np.ones((3, 3), bool)).sum() == 8  # zero outside the array
    assert boundary(square((5, 5, 5), (1, 1, 1), 3)).sum() == 26


# --- empty masks: MONAI's conventions -------------------------------------------------------


def test_empty_masks_follow_monai() -> None:
    empty, full = np.zeros((8, 8), bool), square((8, 8), (2, 2), 3)
    assert math.isnan(hd95(empty, empty)) and math.isnan(surface_dice(empty, empty, 1.0))
    assert math.isnan(hd95(empty, full)) and math.isnan(hd95(full, empty))  # MONAI 1.6
    assert surface_dice(empty, full, 1.0) == 0.0 and surface_dice(full, empty, 1.0) == 0.0
    to_truth, to_pred = surface_distances(full, empty)
    assert to_truth.size == 8 and np.isinf(to_truth).all() and to_pred.size == 0


def test_bad_arguments_are_named() -> None:
    a = square((8, 8), (2, 2), 3)
    with pytest.raises(ValueError, match="spacing must hold 2"):
        hd95(a, a, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        hd95(a, a, spacing=(1.0, 0.0))
    with pytest.raises(ValueError, match="one shape"):
        hd95(a, a[:4])
    with pytest.raises(ValueError, match="tolerance"):
        surface_dice(a, a, tolerance=-1.0)


# --- per-class masks from logits ------------------------------------------------------------


def test_foreground_masks_match_the_classes_of_confusion_counts() -> None:
    target = torch.tensor([[[0, 1, 2], [2, 2, 0]]])  # (B=1, H=2, W=3), 3 classes
    logits = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float()
    pred, truth = foreground_masks(logits, target, "multiclass")
    assert pred.shape == truth.shape == (1, 2, 2, 3) and pred.dtype == torch.bool
    assert torch.equal(pred, truth)
    assert torch.equal(truth[0, 1], target[0] == 2)
    scores = surface_scores(pred[0], truth[0], spacing=(1.0, 1.0))
    assert scores["hd95"].tolist() == [0.0, 0.0] and scores["nsd"].tolist() == [1.0, 1.0]
    bin_pred, bin_truth = foreground_masks(
        torch.randn(2, 1, 4, 5, 6), torch.ones(2, 1, 4, 5, 6), "binary"
    )
    assert bin_pred.shape == bin_truth.shape == (2, 1, 4, 5, 6) and bool(bin_truth.all())


# --- cross-check against MONAI --------------------------------------------------------------


@st.composite
def mask_pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    shape = draw(st.sampled_from([(9, 11), (12, 7), (6, 7, 8)]))
    pair = []
    for _ in range(2):
        kind = draw(st.sampled_from(["box", "noise", "empty"]))
        if kind == "empty":
            pair.append(np.zeros(shape, bool))
        elif kind == "box":
            start = tuple(draw(st.integers(0, n - 2)) for n in shape)
            side = draw(st.integers(1, 5))
            pair.append(square(shape, start, side))
        else:
            pair.append(draw(hnp.arrays(bool, shape)))
    spacing = tuple(draw(st.sampled_from([0.5, 1.0, 1.5, 2.0])) for _ in shape)
    return pair[0], pair[1], spacing


@pytest.mark.skipif(monai_metrics is None, reason="monai is not installed")
@given(case=mask_pairs(), tolerance=st.sampled_from([0.0, 1.0, 2.0, 3.0]))
@settings(max_examples=25, deadline=None)
def test_hd95_and_nsd_equal_monai(case, tolerance: float) -> None:
    pred, truth, spacing = case
    y_pred = torch.from_numpy(pred)[None, None].float()
    y = torch.from_numpy(truth)[None, None].float()
    hd_metric = monai_metrics.HausdorffDistanceMetric(include_background=True, percentile=95)
    nsd_metric = monai_metrics.SurfaceDiceMetric([tolerance], include_background=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns on empty masks
        want_hd = float(hd_metric(y_pred, y, spacing=list(spacing)))
        want_nsd = float(nsd_metric(y_pred, y, spacing=list(spacing)))
    got_hd, got_nsd = hd95(pred, truth, spacing), surface_dice(pred, truth, tolerance, spacing)
    np.testing.assert_allclose(got_hd, want_hd, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_nsd, want_nsd, rtol=1e-6, atol=1e-6)


# --- in the per-case accumulator ------------------------------------------------------------


def _batch(pred: np.ndarray, truth: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """counts (1, 1, 3) and (1, 1, *spatial) masks of one binary item."""
    p, t = torch.from_numpy(pred)[None, None], torch.from_numpy(truth)[None, None]
    tp = int((p & t).sum())
    counts = torch.tensor([[[tp, int(p.sum()) - tp, int(t.sum()) - tp]]])
    return counts, p, t


def test_case_metrics_without_surface_is_unchanged() -> None:
    a = square((8, 8), (2, 2), 3)
    counts, p, t = _batch(a, a)
    metrics = CaseMetrics()
    metrics.update(counts, ["c"], [0])
    assert set(metrics.summary()) == {*METRIC_NAMES, "cases"}
    assert set(metrics.state()) == {"eps", "num_classes", "cases", "slices", "counts"}
    assert set(metrics.per_case_class()["c"][0]) == set(METRIC_NAMES)
    with pytest.raises(ValueError, match="surface=True"):
        metrics.update(counts, ["c"], [0], pred=p, truth=t)
    with pytest.raises(ValueError, match="surface=True"):
        CaseMetrics(spacing=(1.0, 1.0))


def test_case_metrics_scores_each_image_and_skips_nan_in_means() -> None:
    a = square((16, 16), (4, 3), 5)
    metrics = CaseMetrics(surface=True, spacing={"shift": (1.0, 0.5), "empty": (1.0, 1.0)})
    metrics.update(*_batch(a, np.roll(a, 2, axis=1))[:1], ["shift"], [0], **_masks(a, 2))
    empty = np.zeros_like(a)
    metrics.update(*_batch(empty, empty)[:1], ["empty"], [0], **_masks(empty, 0))
    per_case = metrics.per_case()
    assert per_case["shift"]["hd95"] == pytest.approx(1.0)  # 2 voxels of 0.5 mm
    assert per_case["shift"]["nsd"] == 1.0  # within the 1 mm default tolerance
    assert math.isnan(per_case["empty"]["hd95"]) and math.isnan(per_case["empty"]["nsd"])
    summary = metrics.summary()
    assert summary["hd95"] == pytest.approx(1.0) and summary["nsd"] == 1.0  # nan skipped
    assert summary["hd95_nan"] == 1 and summary["nsd_nan"] == 1 and summary["cases"] == 2
    with pytest.raises(ValueError, match="needs the masks"):
        metrics.update(*_batch(a, a)[:1], ["other"], [0])


def _masks(a: np.ndarray, shift: int) -> dict[str, torch.Tensor]:
    return {
        "pred": torch.from_numpy(a)[None, None],
        "truth": torch.from_numpy(np.roll(a, shift, axis=1))[None, None],
    }


def test_slices_of_a_case_are_scored_as_one_volume() -> None:
    # Two cubes offset by one slice: per slice the rims agree except at the ends; as a
    # volume the offset is one slice of 3 mm.
    pred = square((10, 10, 8), (2, 2, 2), 4)
    truth = square((10, 10, 8), (2, 2, 3), 4)
    spacing = (0.5, 0.5, 3.0)
    metrics = CaseMetrics(surface=True, spacing=spacing, tolerance=2.0)
    for z in [5, 0, 3, 1, 7, 2, 6, 4]:  # any order: stacked by slice index
        counts, p, t = _batch(pred[..., z], truth[..., z])
        metrics.update(counts, ["vol"], [z], pred=p, truth=t)
    got = metrics.per_case_class()["vol"][0]
    assert got["hd95"] == pytest.approx(hd95(pred, truth, spacing)) == pytest.approx(3.0)
    assert got["nsd"] == pytest.approx(surface_dice(pred, truth, 2.0, spacing))
    assert 0 < got["nsd"] < 1


def test_surface_state_round_trips_and_merges() -> None:
    a = square((12, 12), (3, 3), 4)
    ranks = [CaseMetrics(surface=True, tolerance=1.5) for _ in range(2)]
    for rank, case in zip(ranks, ["c0", "c1"]):
        counts, p, t = _batch(a, np.roll(a, 1 + int(case[1]), axis=1))
        rank.update(counts, [case], [0], pred=p, truth=t)
    merged = CaseMetrics(surface=True, tolerance=1.5)
    for rank in ranks:
        merged.merge(CaseMetrics.from_state(pickle.loads(pickle.dumps(rank.state()))))
    assert merged.per_case_class() == {
        **ranks[0].per_case_class(),
        **ranks[1].per_case_class(),
    }
    assert merged.summary()["hd95"] == pytest.approx(1.5)  # (1 + 2) / 2
    with pytest.raises(ValueError, match="surface"):
        merged.merge(CaseMetrics())


def test_new_masks_of_a_scored_case_are_rescored() -> None:
    a = square((12, 12), (3, 3), 4)
    metrics = CaseMetrics(surface=True)
    counts, p, t = _batch(a, np.roll(a, 1, axis=1))
    metrics.update(counts, ["c"], [0], pred=p, truth=t)
    assert metrics.per_case()["c"]["hd95"] == pytest.approx(1.0)  # scored and cached
    counts, p, t = _batch(a, np.roll(a, 3, axis=1))
    metrics.update(counts, ["c"], [0], pred=p, truth=t)  # same key: replaced
    assert metrics.per_case()["c"]["hd95"] == pytest.approx(3.0)
    other = CaseMetrics(surface=True)
    counts, p, t = _batch(a, np.roll(a, 2, axis=1))
    other.update(counts, ["c"], [0], pred=p, truth=t)
    metrics.merge(other)
    assert metrics.per_case()["c"]["hd95"] == pytest.approx(2.0)
