"""The running per-case state: counts keyed by (case, slice), scored per case (eq. 14)."""

from __future__ import annotations

import operator as _operator
from collections.abc import Sequence as _Sequence
from typing import Any as _Any

import numpy as _np
import torch as _torch
from torch import Tensor as _Tensor

from .._checks import ShapeError as _ShapeError
from .stats import METRIC_NAMES, _check_eps, scores

__all__ = ["CaseMetrics"]

_STATE_KEYS = frozenset({"eps", "num_classes", "cases", "slices", "counts"})


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

    Args:
        eps: the smoothing constant of eq. 14 (``>= 0``; the paper's 1 by default).

    Example:
        >>> import torch
        >>> m = CaseMetrics()
        >>> m.update(torch.tensor([[[4, 0, 0]], [[0, 0, 0]]]), ["case0", "case0"], [0, 1])
        >>> m.update(torch.tensor([[[4, 0, 0]]]), ["case0"], [0])  # same key: replaced
        >>> m.summary()["dice"], m.summary()["cases"]
        (1.0, 1)
    """

    def __init__(self, eps: float = 1.0) -> None:
        self.eps = _check_eps(eps)
        self._num_classes: int | None = None
        self._counts: dict[tuple[str, int], _Tensor] = {}

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

    def update(self, counts: _Tensor, cases: _Sequence[str], slices: _Sequence[int]) -> None:
        """Add the counts of a batch, one row per slice.

        Args:
            counts: ``(B, F, 3)`` integer TP/FP/FN from :func:`confusion_counts`, computed on
                slices already cropped back to their original size.
            cases: the case id of each batch item (B strings).
            slices: the slice index of each batch item within its case (B integers; a 1-D
                integer tensor, as a DataLoader collates them, is accepted).

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
        self._check_num_classes(counts.shape[1], "counts")
        for case, index, row in zip(cases, slice_ids, counts):
            self._counts[(case, index)] = row.clone()

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
        if other._num_classes is not None:
            self._check_num_classes(other._num_classes, "the merged CaseMetrics")
        for key, row in other._counts.items():
            self._counts[key] = row.clone()

    def state(self) -> dict:
        """Everything held, as plain Python types (pickle / ``all_gather_object`` friendly).

        Returns:
            ``{"eps": float, "num_classes": int | None, "cases": [str], "slices": [int],
            "counts": [[[tp, fp, fn], ...], ...]}``, one entry per (case, slice) key.
        """
        keys = sorted(self._counts)
        return {
            "eps": self.eps,
            "num_classes": self._num_classes,
            "cases": [case for case, _ in keys],
            "slices": [index for _, index in keys],
            "counts": [self._counts[key].tolist() for key in keys],
        }

    @classmethod
    def from_state(cls, state: dict) -> CaseMetrics:
        """Rebuild an accumulator from :meth:`state`.

        Raises:
            ValueError: missing or unknown keys, or lists of different lengths.
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from CaseMetrics.state(), got {type(state)}.")
        if set(state) != _STATE_KEYS:
            raise ValueError(
                f"state must have exactly the keys {sorted(_STATE_KEYS)}, got {sorted(state)}."
            )
        lengths = {len(state[name]) for name in ("cases", "slices", "counts")}
        if len(lengths) != 1:
            raise ValueError(
                f"state lists must have one entry per key, got {len(state['cases'])} cases, "
                f"{len(state['slices'])} slices and {len(state['counts'])} count rows."
            )
        metrics = cls(eps=state["eps"])
        if state["num_classes"] is not None:
            metrics._num_classes = _operator.index(state["num_classes"])
        if state["counts"]:
            counts = _torch.tensor(state["counts"], dtype=_torch.int64)
            metrics.update(counts, state["cases"], state["slices"])
        return metrics

    def case_counts(self) -> dict[str, _Tensor]:
        """TP/FP/FN summed over each case's slices: case -> int64 ``(F, 3)``, cases sorted."""
        grouped: dict[str, list[_Tensor]] = {}
        for (case, _), row in sorted(self._counts.items()):
            grouped.setdefault(case, []).append(row)
        return {case: _torch.stack(rows).sum(dim=0) for case, rows in grouped.items()}

    def per_case_class(self) -> dict[str, list[dict[str, float]]]:
        """Eq. 14 per case and foreground class: case -> [{metric: value} per class]."""
        result = {}
        for case, counts in self.case_counts().items():
            per_metric = {
                name: values.tolist() for name, values in scores(counts, self.eps).items()
            }
            result[case] = [
                {name: per_metric[name][k] for name in METRIC_NAMES} for k in range(len(counts))
            ]
        return result

    def per_case(self) -> dict[str, dict[str, float]]:
        """Eq. 14 per case, averaged over foreground classes: case -> {metric: value}."""
        result = {}
        for case, counts in self.case_counts().items():
            result[case] = {
                name: float(values.mean()) for name, values in scores(counts, self.eps).items()
            }
        return result

    def summary(self) -> dict[str, float]:
        """The headline figures: the mean over cases of :meth:`per_case`, and ``"cases"``.

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
        return result
