"""The running per-case state: counts keyed by (case, slice), scored per case (eq. 14)."""

from __future__ import annotations

import math as _math
import operator as _operator
from collections.abc import Mapping as _Mapping
from collections.abc import Sequence as _Sequence
from typing import Any as _Any

import numpy as _np
import torch as _torch
from torch import Tensor as _Tensor

from .._checks import ShapeError as _ShapeError
from .stats import METRIC_NAMES, _check_eps, scores
from .surface import SURFACE_METRIC_NAMES, surface_scores

__all__ = ["CaseMetrics"]

_STATE_KEYS = frozenset({"eps", "num_classes", "cases", "slices", "counts"})
_SURFACE_STATE_KEY = "surface"

# A case's masks: (shape, packed pred bits, packed truth bits), shape (F, *spatial).
_Packed = tuple[tuple[int, ...], _np.ndarray, _np.ndarray]


def _nanmean(values: _Any) -> float:
    """The mean of the non-nan values (nan when there are none; inf stays inf)."""
    array = _np.asarray(values, dtype=_np.float64)
    kept = array[~_np.isnan(array)]
    return float(kept.mean()) if kept.size else float("nan")


def _pack(mask: _Any) -> tuple[tuple[int, ...], _np.ndarray]:
    array = _np.asarray(mask.detach().cpu() if isinstance(mask, _Tensor) else mask, dtype=bool)
    return tuple(array.shape), _np.packbits(array, axis=None)


def _unpack(shape: tuple[int, ...], bits: _np.ndarray) -> _np.ndarray:
    count = int(_np.prod(shape))
    return _np.unpackbits(bits, count=count).astype(bool).reshape(shape)


def _as_slice_index(value: _Any) -> int:
    if isinstance(value, bool):
        raise TypeError(f"slice indices must be integers, got a bool ({value!r}).")
    try:
        return _operator.index(value)
    except TypeError:
        raise TypeError(
            f"slice indices must be integers, got {type(value).__name__} ({value!r})."
        ) from None


class CaseMetrics:
    """Accumulates counts keyed by (case, slice): re-adding the same key replaces it, so slices
    duplicated by a distributed sampler are not counted twice.

    Per case, the TP/FP/FN of all its slices are summed before eq. 14 is applied (so a slice
    without foreground does not score 1 on its own); scores are then averaged over foreground
    classes, and :meth:`summary` averages cases. Counts are kept on the CPU; cases are reported
    in sorted order so that two runs line up for :func:`paired_tests`. With ``eps = 0`` an
    undefined score (NaN) propagates into the means rather than being skipped.

    With ``surface=True`` each case also gets HD95 and normalised surface Dice per foreground
    class (:mod:`dsplug.metrics.surface`, MONAI's conventions for empty masks), from the
    boolean masks passed to :meth:`update`: a case of one key is scored as it is (a 2D image
    or a 3D volume); a case of several slices is first stacked in slice order along a new
    last axis (so its spacing lists the in-plane axes, then the slice axis). Means over
    classes and cases skip ``nan``; :meth:`summary` also says how many (case, class) values
    were ``nan`` (``"hd95_nan"``, ``"nsd_nan"``). Masks are held bit-packed until scored.

    Args:
        eps: the smoothing constant of eq. 14 (``>= 0``; the paper's 1 by default).
        surface: also score HD95 and NSD (off by default: outputs stay as they were).
        spacing: voxel size (mm) per spatial axis of a case as scored: one sequence for all
            cases, a mapping case -> sequence, or None (1 per axis).
        tolerance: the NSD tolerance in mm (the units of ``spacing``).

    Example:
        >>> import torch
        >>> m = CaseMetrics()
        >>> m.update(torch.tensor([[[4, 0, 0]], [[0, 0, 0]]]), ["case0", "case0"], [0, 1])
        >>> m.update(torch.tensor([[[4, 0, 0]]]), ["case0"], [0])  # same key: replaced
        >>> m.summary()["dice"], m.summary()["cases"]
        (1.0, 1)
    """

    def __init__(
        self,
        eps: float = 1.0,
        *,
        surface: bool = False,
        spacing: _Sequence[float] | _Mapping[str, _Sequence[float]] | None = None,
        tolerance: float = 1.0,
    ) -> None:
        self.eps = _check_eps(eps)
        self.surface = bool(surface)
        if not surface and (spacing is not None or tolerance != 1.0):
            raise ValueError(
                "spacing and tolerance only apply to surface metrics; pass surface=True."
            )
        if isinstance(tolerance, bool) or not (
            isinstance(tolerance, (int, float)) and _math.isfinite(tolerance) and tolerance >= 0
        ):
            raise ValueError(f"tolerance must be a finite number >= 0 (mm), got {tolerance!r}.")
        self.tolerance = float(tolerance)
        self.spacing = (
            {str(k): tuple(float(v) for v in s) for k, s in spacing.items()}
            if isinstance(spacing, _Mapping)
            else None
            if spacing is None
            else tuple(float(v) for v in spacing)
        )
        self._num_classes: int | None = None
        self._counts: dict[tuple[str, int], _Tensor] = {}
        self._masks: dict[tuple[str, int], _Packed] = {}
        self._surface_cache: dict[str, dict[str, _np.ndarray]] = {}

    @property
    def num_classes(self) -> int | None:
        """Number of foreground classes seen so far (None before the first update)."""
        return self._num_classes

    def __len__(self) -> int:
        """Number of distinct (case, slice) keys held."""
        return len(self._counts)

    def __repr__(self) -> str:
        cases = len({case for case, _ in self._counts})
        return (
            f"CaseMetrics(eps={self.eps}, num_classes={self._num_classes}, cases={cases}, "
            f"slices={len(self._counts)})"
        )

    def _check_num_classes(self, num_classes: int, source: str) -> None:
        if self._num_classes is None:
            self._num_classes = num_classes
        elif num_classes != self._num_classes:
            raise ValueError(
                f"{source} has {num_classes} foreground classes, but this CaseMetrics holds "
                f"counts for {self._num_classes}; use one CaseMetrics per label setup."
            )

    def update(
        self,
        counts: _Tensor,
        cases: _Sequence[str],
        slices: _Sequence[int],
        *,
        pred: _Tensor | _Sequence[_Tensor] | None = None,
        truth: _Tensor | _Sequence[_Tensor] | None = None,
    ) -> None:
        """Add the counts of a batch, one row per slice.

        Args:
            counts: ``(B, F, 3)`` integer TP/FP/FN from :func:`confusion_counts`, computed on
                slices already cropped back to their original size.
            cases: the case id of each batch item (B strings).
            slices: the slice index of each batch item within its case (B integers; a 1-D
                integer tensor, as a DataLoader collates them, is accepted).
            pred: with ``surface=True`` (and only then), the boolean masks of each
                item per foreground class, cropped like the counts: ``(B, F, *spatial)``
                tensors, or B tensors ``(F, *spatial)`` when sizes differ (e.g. from
                :func:`~dsplug.metrics.surface.foreground_masks`).
            truth: the true masks, as ``pred``.

        Raises:
            ValueError: wrong shapes, lengths that differ from B, negative counts or a
                foreground class count that differs from earlier updates.
            TypeError: non-integer counts, non-string case ids or non-integer slice indices.
        """
        if not isinstance(counts, _Tensor):
            raise TypeError(f"counts must be a torch.Tensor, got {type(counts).__name__}.")
        if counts.ndim != 3 or counts.shape[-1] != 3:
            raise _ShapeError(
                f"counts must be shaped (B, F, 3) as returned by confusion_counts, got shape "
                f"{tuple(counts.shape)}.",
                tuple(counts.shape),
                "(B, F, 3)",
            )
        if counts.is_floating_point() or counts.is_complex() or counts.dtype == _torch.bool:
            raise TypeError(
                f"counts must be an integer tensor (TP/FP/FN pixel counts), got dtype "
                f"{counts.dtype}."
            )
        if isinstance(cases, str):
            raise TypeError(
                f"cases must be a sequence of case ids, one per batch item, got the single "
                f"string {cases!r}."
            )
        cases = list(cases)
        slice_ids = [_as_slice_index(s) for s in slices]
        batch = counts.shape[0]
        if len(cases) != batch or len(slice_ids) != batch:
            raise ValueError(
                f"counts has {batch} rows (shape {tuple(counts.shape)}), but got {len(cases)} "
                f"case ids and {len(slice_ids)} slice indices; expected one of each per row."
            )
        for case in cases:
            if not isinstance(case, str):
                raise TypeError(f"case ids must be strings, got {type(case).__name__} ({case!r}).")
        counts = counts.detach().to("cpu", _torch.int64)
        if counts.numel() > 0 and int(counts.min()) < 0:
            raise ValueError(f"counts must be non-negative, got minimum {int(counts.min())}.")
        packed = self._check_masks(pred, truth, counts.shape[:2])
        self._check_num_classes(counts.shape[1], "counts")
        for i, (case, index, row) in enumerate(zip(cases, slice_ids, counts)):
            self._counts[(case, index)] = row.clone()
            if packed is not None:
                self._masks[(case, index)] = packed[i]
                self._surface_cache.pop(case, None)

    def _check_masks(self, pred: _Any, truth: _Any, rows: tuple[int, int]) -> list[_Packed] | None:
        if not self.surface:
            if pred is not None or truth is not None:
                raise ValueError("pred / truth masks are for surface metrics; pass surface=True.")
            return None
        if pred is None or truth is None:
            raise ValueError(
                "CaseMetrics(surface=True) needs the masks of each batch: update(counts, "
                "cases, slices, pred=..., truth=...) (see dsplug.metrics.surface."
                "foreground_masks)."
            )
        if len(pred) != rows[0] or len(truth) != rows[0]:
            raise ValueError(
                f"pred and truth must hold one mask per count row ({rows[0]}), got "
                f"{len(pred)} and {len(truth)}."
            )
        packed = []
        for p, t in zip(pred, truth):
            (shape, p_bits), (t_shape, t_bits) = _pack(p), _pack(t)
            if shape != t_shape or len(shape) < 2 or shape[0] != rows[1]:
                raise _ShapeError(
                    f"pred and truth masks must be (F={rows[1]}, *spatial) alike, got "
                    f"{shape} and {t_shape}.",
                    shape,
                    f"(F={rows[1]}, *spatial)",
                )
            packed.append((shape, p_bits, t_bits))
        return packed

    def merge(self, other: CaseMetrics) -> None:
        """Add another accumulator's counts (e.g. gathered from another rank).

        A (case, slice) key present in both takes ``other``'s counts (replacement, not a sum),
        so slices that a distributed sampler gave to two ranks count once.

        Raises:
            TypeError: ``other`` is not a CaseMetrics.
            ValueError: different ``eps`` or a different number of foreground classes.
        """
        if not isinstance(other, CaseMetrics):
            raise TypeError(f"can only merge a CaseMetrics, got {type(other).__name__}.")
        if other.eps != self.eps:
            raise ValueError(
                f"cannot merge CaseMetrics with eps={other.eps} into one with eps={self.eps}."
            )
        if other.surface != self.surface:
            raise ValueError(
                f"cannot merge CaseMetrics with surface={other.surface} into one with "
                f"surface={self.surface}."
            )
        if other._num_classes is not None:
            self._check_num_classes(other._num_classes, "the merged CaseMetrics")
        for key, row in other._counts.items():
            self._counts[key] = row.clone()
        for key, packed in other._masks.items():
            self._masks[key] = packed
            self._surface_cache.pop(key[0], None)

    def state(self) -> dict:
        """Everything held, as plain Python types (pickle / ``all_gather_object`` friendly).

        Returns:
            ``{"eps": float, "num_classes": int | None, "cases": [str], "slices": [int],
            "counts": [[[tp, fp, fn], ...], ...]}``, one entry per (case, slice) key.
        """
        keys = sorted(self._counts)
        state: dict[str, _Any] = {
            "eps": self.eps,
            "num_classes": self._num_classes,
            "cases": [case for case, _ in keys],
            "slices": [index for _, index in keys],
            "counts": [self._counts[key].tolist() for key in keys],
        }
        if self.surface:  # only then, so the state of a plain CaseMetrics is unchanged
            state[_SURFACE_STATE_KEY] = {
                "spacing": self.spacing,
                "tolerance": self.tolerance,
                "masks": [
                    (list(m[0]), m[1].tobytes(), m[2].tobytes())
                    for m in (self._masks[key] for key in keys)
                ],
            }
        return state

    @classmethod
    def from_state(cls, state: dict) -> CaseMetrics:
        """Rebuild an accumulator from :meth:`state`.

        Raises:
            ValueError: missing or unknown keys, or lists of different lengths.
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from CaseMetrics.state(), got {type(state)}.")
        if set(state) - {_SURFACE_STATE_KEY} != _STATE_KEYS:
            raise ValueError(
                f"state must have exactly the keys {sorted(_STATE_KEYS)} (and "
                f"{_SURFACE_STATE_KEY!r} for surface metrics), got {sorted(state)}."
            )
        lengths = {len(state[name]) for name in ("cases", "slices", "counts")}
        if len(lengths) != 1:
            raise ValueError(
                f"state lists must have one entry per key, got {len(state['cases'])} cases, "
                f"{len(state['slices'])} slices and {len(state['counts'])} count rows."
            )
        surface = state.get(_SURFACE_STATE_KEY)
        if surface is None:
            metrics = cls(eps=state["eps"])
            pred = truth = None
        else:
            metrics = cls(
                eps=state["eps"],
                surface=True,
                spacing=surface["spacing"],
                tolerance=surface["tolerance"],
            )
            shapes = [tuple(m[0]) for m in surface["masks"]]
            pred = [
                _unpack(shape, _np.frombuffer(m[1], _np.uint8))
                for shape, m in zip(shapes, surface["masks"])
            ]
            truth = [
                _unpack(shape, _np.frombuffer(m[2], _np.uint8))
                for shape, m in zip(shapes, surface["masks"])
            ]
        if state["num_classes"] is not None:
            metrics._num_classes = _operator.index(state["num_classes"])
        if state["counts"]:
            counts = _torch.tensor(state["counts"], dtype=_torch.int64)
            metrics.update(counts, state["cases"], state["slices"], pred=pred, truth=truth)
        return metrics

    def case_counts(self) -> dict[str, _Tensor]:
        """TP/FP/FN summed over each case's slices: case -> int64 ``(F, 3)``, cases sorted."""
        grouped: dict[str, list[_Tensor]] = {}
        for (case, _), row in sorted(self._counts.items()):
            grouped.setdefault(case, []).append(row)
        return {case: _torch.stack(rows).sum(dim=0) for case, rows in grouped.items()}

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The metrics reported per case: eq. 14's, then ``hd95`` and ``nsd`` if surface."""
        return METRIC_NAMES + (SURFACE_METRIC_NAMES if self.surface else ())

    def _case_spacing(self, case: str) -> tuple[float, ...] | None:
        if isinstance(self.spacing, dict):
            if case not in self.spacing:
                raise KeyError(f"no spacing given for case {case!r} (spacing maps case ids).")
            return self.spacing[case]
        return self.spacing

    def _surface(self, case: str) -> dict[str, _np.ndarray]:
        """HD95 and NSD per foreground class of one case (cached until it changes)."""
        if case not in self._surface_cache:
            keys = sorted(key for key in self._masks if key[0] == case)
            parts = [self._masks[key] for key in keys]
            pred = [_unpack(shape, bits) for shape, bits, _ in parts]
            truth = [_unpack(shape, bits) for shape, _, bits in parts]
            if len(parts) > 1:
                if len({p.shape for p in pred}) != 1:
                    raise ValueError(
                        f"the slices of case {case!r} differ in size "
                        f"({sorted({p.shape for p in pred})}); cannot stack them into a volume."
                    )
                pred, truth = [_np.stack(pred, axis=-1)], [_np.stack(truth, axis=-1)]
            self._surface_cache[case] = surface_scores(
                pred[0], truth[0], self._case_spacing(case), self.tolerance
            )
        return self._surface_cache[case]

    def _per_class_values(self, case: str, counts: _Tensor) -> dict[str, _np.ndarray]:
        values = {name: v.numpy() for name, v in scores(counts, self.eps).items()}
        if self.surface:
            values.update(self._surface(case))
        return values

    def per_case_class(self) -> dict[str, list[dict[str, float]]]:
        """Per case and foreground class: case -> [{metric: value} per class]."""
        result = {}
        for case, counts in self.case_counts().items():
            values = self._per_class_values(case, counts)
            result[case] = [
                {name: float(values[name][k]) for name in self.metric_names}
                for k in range(len(counts))
            ]
        return result

    def per_case(self) -> dict[str, dict[str, float]]:
        """Per case, averaged over foreground classes: case -> {metric: value}.

        Eq. 14's means keep ``nan`` (with ``eps = 0``); the surface means skip it.
        """
        result = {}
        for case, counts in self.case_counts().items():
            values = self._per_class_values(case, counts)
            row = {name: float(values[name].mean()) for name in METRIC_NAMES}
            row.update({name: _nanmean(values[name]) for name in values if name not in row})
            result[case] = row
        return result

    def summary(self) -> dict[str, float]:
        """The headline figures: the mean over cases of :meth:`per_case`, and ``"cases"``;
        with ``surface=True`` also ``hd95`` and ``nsd`` (means skipping nan) and the number of
        (case, class) values skipped, ``hd95_nan`` and ``nsd_nan``.

        Raises:
            ValueError: nothing has been accumulated.
        """
        per_case = self.per_case()
        if not per_case:
            raise ValueError("CaseMetrics.summary() needs counts, but none were added yet.")
        result: dict[str, float] = {
            name: float(_np.mean([values[name] for values in per_case.values()]))
            for name in METRIC_NAMES
        }
        result["cases"] = len(per_case)
        if self.surface:
            per_class = self.per_case_class()
            for name in SURFACE_METRIC_NAMES:
                result[name] = _nanmean([values[name] for values in per_case.values()])
                result[f"{name}_nan"] = sum(
                    _math.isnan(row[name]) for rows in per_class.values() for row in rows
                )
        return result
