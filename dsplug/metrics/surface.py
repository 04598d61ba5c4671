"""Boundary metrics per case and class: HD95 and normalised surface Dice (NSD), 2D and 3D.

Both follow MONAI (``HausdorffDistanceMetric(percentile=95)``, ``SurfaceDiceMetric`` without
sub-voxels) and are cross-checked against it in ``tests/test_surface_metrics.py``:

- A boundary is a mask's voxels that a binary erosion (face connectivity, zero outside the
  array) removes. Distances are Euclidean between boundary voxel centres, in the units of
  ``spacing`` (mm; unit spacing when None), exactly (scipy's distance transform).
- HD95 is the larger of the two directed 95th percentiles (linear interpolation) of the
  distances from each boundary to the other.
- NSD is the share of both boundaries' voxels within ``tolerance`` (same units, inclusive)
  of the other boundary.
- Empty masks, as MONAI 1.6: both prediction and truth empty: HD95 ``nan`` and NSD ``nan``
  (nothing to score); exactly one empty: HD95 ``nan`` too (MONAI takes the percentile of
  all-infinite distances, which ``torch.quantile`` makes ``nan``; its plain Hausdorff
  distance says ``inf``) and NSD ``0``. Means skip ``nan``, so a missed structure shows in
  NSD and Dice, not in HD95; :class:`~dsplug.metrics.CaseMetrics` counts the skipped values.
"""

from __future__ import annotations

import math as _math
from collections.abc import Sequence as _Sequence

import numpy as _np
import torch as _torch
from scipy import ndimage as _ndimage
from torch import Tensor as _Tensor

from ..options import LabelMode as _LabelMode
from .prediction import _check_label_mode, _check_logits, _predict
from .stats import _check_binary_target, _check_multiclass_target

__all__ = [
    "SURFACE_METRIC_NAMES",
    "boundary",
    "foreground_masks",
    "hd95",
    "surface_dice",
    "surface_distances",
    "surface_scores",
]

SURFACE_METRIC_NAMES = ("hd95", "nsd")


def _check_spacing(spacing: _Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    values = tuple(float(s) for s in spacing)
    if len(values) != ndim or not all(_math.isfinite(s) and s > 0 for s in values):
        raise ValueError(
            f"spacing must hold {ndim} positive finite numbers (one per spatial axis of the "
            f"mask), got {tuple(spacing)}."
        )
    return values


def _check_pair(pred: _np.ndarray, truth: _np.ndarray) -> tuple[_np.ndarray, _np.ndarray]:
    pred, truth = _np.asarray(pred, dtype=bool), _np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape or pred.ndim not in (2, 3):
        raise ValueError(
            f"pred and truth must be masks of one shape with 2 or 3 spatial dims, got "
            f"{pred.shape} and {truth.shape}."
        )
    return pred, truth


def boundary(mask: _np.ndarray) -> _np.ndarray:
    """The voxels of a boolean mask that an erosion removes (zero outside the array).

    Example:
        >>> int(boundary(_np.ones((4, 4), bool)).sum())  # all but the 2 x 2 interior
        12
    """
    mask = _np.asarray(mask, dtype=bool)
    return mask & ~_ndimage.binary_erosion(mask)


def surface_distances(
    pred: _np.ndarray, truth: _np.ndarray, spacing: _Sequence[float] | None = None
) -> tuple[_np.ndarray, _np.ndarray]:
    """Distances from each boundary voxel of ``pred`` to ``truth``'s boundary, and back.

    Args:
        pred, truth: boolean masks of one shape, 2D or 3D.
        spacing: voxel size per axis (mm); None: 1.

    Returns:
        float64 ``(pred_to_truth, truth_to_pred)``, one distance per boundary voxel; ``inf``
        for every voxel when the other boundary is empty (as MONAI).
    """
    pred, truth = _check_pair(pred, truth)
    sampling = _check_spacing(spacing, pred.ndim)
    union = pred | truth
    if not union.any():
        return _np.zeros(0), _np.zeros(0)
    # Crop to the union's box plus one voxel: both boundaries lie inside it, so the distances
    # are exact, and large volumes with small structures stay cheap.
    box = tuple(slice(max(0, int(idx.min()) - 1), int(idx.max()) + 2) for idx in _np.nonzero(union))
    edge_pred, edge_truth = boundary(pred)[box], boundary(truth)[box]

    def directed(source: _np.ndarray, target: _np.ndarray) -> _np.ndarray:
        if not target.any():
            return _np.full(int(source.sum()), _np.inf)
        return _ndimage.distance_transform_edt(~target, sampling=sampling)[source]

    return directed(edge_pred, edge_truth), directed(edge_truth, edge_pred)


def hd95(
    pred: _np.ndarray,
    truth: _np.ndarray,
    spacing: _Sequence[float] | None = None,
    percentile: float = 95.0,
) -> float:
    """The symmetric 95th-percentile Hausdorff distance (nan when either mask is empty, as
    MONAI).

    Example:
        >>> a = _np.zeros((8, 8), bool); a[2:5, 2:5] = True
        >>> hd95(a, _np.roll(a, 2, axis=1), spacing=(1.0, 0.5))
        1.0
    """
    if not 0.0 <= float(percentile) <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile!r}.")
    return _hd(*surface_distances(pred, truth, spacing), percentile)


def _hd(to_truth: _np.ndarray, to_pred: _np.ndarray, percentile: float = 95.0) -> float:
    if to_truth.size == 0 or to_pred.size == 0:
        return float("nan")  # a boundary is empty (its distances would all be inf)
    return float(max(_np.percentile(to_truth, percentile), _np.percentile(to_pred, percentile)))


def surface_dice(
    pred: _np.ndarray,
    truth: _np.ndarray,
    tolerance: float,
    spacing: _Sequence[float] | None = None,
) -> float:
    """Normalised surface Dice at ``tolerance`` (inclusive; nan: both empty; 0: one empty).

    Example:
        >>> a = _np.zeros((8, 8), bool); a[2:5, 2:5] = True
        >>> surface_dice(a, _np.roll(a, 1, axis=0), tolerance=1.0)
        1.0
    """
    if not (_math.isfinite(float(tolerance)) and float(tolerance) >= 0):
        raise ValueError(f"tolerance must be finite and >= 0 (mm), got {tolerance!r}.")
    return _nsd(*surface_distances(pred, truth, spacing), float(tolerance))


def _nsd(to_truth: _np.ndarray, to_pred: _np.ndarray, tolerance: float) -> float:
    total = to_truth.size + to_pred.size
    if total == 0:
        return float("nan")
    within = int((to_truth <= tolerance).sum() + (to_pred <= tolerance).sum())
    return within / total


def surface_scores(
    pred: _np.ndarray | _Tensor,
    truth: _np.ndarray | _Tensor,
    spacing: _Sequence[float] | None = None,
    tolerance: float = 1.0,
) -> dict[str, _np.ndarray]:
    """HD95 and NSD of one case for each foreground class (one pair of distance transforms per
    class, shared by both).

    Args:
        pred: boolean ``(F, *spatial)`` per-class masks of one case (2 or 3 spatial
            dims), e.g. one row of :func:`foreground_masks`.
        truth: the true masks, as ``pred``.
        spacing: voxel size per spatial axis (mm); None: 1.
        tolerance: NSD tolerance, in the units of ``spacing``.

    Returns:
        ``{"hd95": (F,), "nsd": (F,)}`` float64 arrays.
    """
    pred = _np.asarray(pred.cpu() if isinstance(pred, _Tensor) else pred, dtype=bool)
    truth = _np.asarray(truth.cpu() if isinstance(truth, _Tensor) else truth, dtype=bool)
    if pred.shape != truth.shape or pred.ndim not in (3, 4):
        raise ValueError(
            f"pred and truth must be (F, *spatial) masks of one shape with 2 or 3 spatial dims, "
            f"got {pred.shape} and {truth.shape}."
        )
    if not (_math.isfinite(float(tolerance)) and float(tolerance) >= 0):
        raise ValueError(f"tolerance must be finite and >= 0 (mm), got {tolerance!r}.")
    # one pair of distance transforms per class, shared by HD95 and NSD
    distances = [surface_distances(p, t, spacing) for p, t in zip(pred, truth)]
    hd = [_hd(*d) for d in distances]
    nsd = [_nsd(*d, float(tolerance)) for d in distances]
    return {"hd95": _np.asarray(hd, dtype=_np.float64), "nsd": _np.asarray(nsd, dtype=_np.float64)}


def foreground_masks(logits: _Tensor, target: _Tensor, label_mode: str) -> tuple[_Tensor, _Tensor]:
    """Predicted and true masks per foreground class, the classes of ``confusion_counts``.

    Args:
        logits: raw outputs ``(B, C, *spatial)``.
        target: the ground truth in ``label_mode``'s convention (see :mod:`dsplug.metrics`).
        label_mode: ``"binary"``, ``"multilabel"`` or ``"multiclass"``.

    Returns:
        bool ``(pred, truth)``, each ``(B, F, *spatial)`` on the CPU (multiclass: classes
        ``1..C-1``).
    """
    mode = _check_label_mode(label_mode)
    _check_logits(logits, mode)
    logits, target = logits.detach(), target.detach()
    pred = _predict(logits, mode)
    if mode is _LabelMode.MULTICLASS:
        truth_idx = _check_multiclass_target(target, logits)
        classes = _torch.arange(1, logits.shape[1], device=logits.device)
        shape = (1, -1) + (1,) * (logits.ndim - 2)
        pred = pred.unsqueeze(1) == classes.view(shape)
        truth = truth_idx.unsqueeze(1) == classes.view(shape)
    else:
        truth = _check_binary_target(target, logits, mode)
    return pred.cpu(), truth.cpu()
