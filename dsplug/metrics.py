"""Segmentation metrics of the paper's eq. 14 (DICE, PPV, SEN, IoU, avg.m) and paired tests.

Counts come first: :func:`confusion_counts` turns logits and a target into TP/FP/FN per slice
(batch item) and foreground class; :func:`scores` turns any counts into eq. 14. Headline figures
are per case: :class:`CaseMetrics` sums the counts of a case's slices, scores them, averages over
foreground classes and then over cases. :func:`paired_tests` compares two runs over cases.

Label conventions (the same across dsplug):

- ``label_mode`` is ``"binary"``, ``"multilabel"`` or ``"multiclass"``; logits are
  ``(B, C, *spatial)``.
- Targets: binary ``(B, 1, *spatial)`` in {0, 1}; multilabel ``(B, C, *spatial)`` in {0, 1};
  multiclass ``(B, *spatial)`` (or ``(B, 1, *spatial)``) integer class indices in ``[0, C)``.
- Predictions: binary / multilabel ``logits > 0`` per channel; multiclass ``argmax`` over C.
- Foreground classes: binary the one channel; multilabel all C channels; multiclass classes
  ``1..C-1`` (background 0 excluded).
"""

from __future__ import annotations

import math as _math
import operator as _operator
from collections.abc import Sequence as _Sequence
from typing import Any as _Any

import numpy as _np
import torch as _torch
from scipy import stats as _stats
from torch import Tensor as _Tensor

from ._checks import ShapeError as _ShapeError
from ._checks import check_finite as _check_finite
from ._checks import look_up_option as _look_up_option

__all__ = [
    "LABEL_MODES",
    "METRIC_NAMES",
    "CaseMetrics",
    "confusion_counts",
    "paired_tests",
    "predict",
    "scores",
]

LABEL_MODES = ("binary", "multilabel", "multiclass")
METRIC_NAMES = ("dice", "ppv", "sen", "iou", "avg_m")
_STATE_KEYS = frozenset({"eps", "num_classes", "cases", "slices", "counts"})


def _check_label_mode(label_mode: str) -> str:
    return _look_up_option(label_mode, LABEL_MODES, "label_mode")


def _check_logits(logits: _Tensor, label_mode: str) -> None:
    if not isinstance(logits, _Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}.")
    if not logits.is_floating_point():
        raise TypeError(
            f"logits must be a floating-point tensor (raw network outputs), got dtype "
            f"{logits.dtype}."
        )
    if logits.ndim < 3:
        raise _ShapeError(
            f"logits must be shaped (B, C, *spatial) with at least one spatial dim, got shape "
            f"{tuple(logits.shape)}.",
            tuple(logits.shape),
            "(B, C, *spatial)",
        )
    channels = logits.shape[1]
    if label_mode == "binary" and channels != 1:
        raise _ShapeError(
            f"label_mode='binary' expects logits with exactly 1 channel, got shape "
            f"{tuple(logits.shape)} ({channels} channels); use 'multilabel' (sigmoid per "
            f"channel) or 'multiclass' (softmax) for more.",
            tuple(logits.shape),
            "(B, 1, *spatial)",
        )
    if label_mode == "multiclass" and channels < 2:
        raise _ShapeError(
            f"label_mode='multiclass' expects logits with at least 2 channels (background + "
            f"classes), got shape {tuple(logits.shape)}; use 'binary' for a single channel.",
            tuple(logits.shape),
            "(B, C>=2, *spatial)",
        )
    _check_finite(logits, "logits")


def predict(logits: _Tensor, label_mode: str) -> _Tensor:
    """Turn logits into hard predictions following the library's label conventions.

    Args:
        logits: raw outputs shaped ``(B, C, *spatial)``.
        label_mode: ``"binary"``, ``"multilabel"`` or ``"multiclass"``.

    Returns:
        binary / multilabel: a bool tensor ``(B, C, *spatial)``, ``logits > 0`` per channel;
        multiclass: an int64 tensor ``(B, *spatial)`` of class indices (argmax over C).

    Raises:
        ValueError: unknown ``label_mode``, wrong logits shape or non-finite logits.
        TypeError: ``logits`` is not a floating-point tensor.

    Example:
        >>> import torch
        >>> predict(torch.tensor([[[[-1.0, 2.0]]]]), "binary")
        tensor([[[[False,  True]]]])
    """
    label_mode = _check_label_mode(label_mode)
    _check_logits(logits, label_mode)
    return _predict(logits.detach(), label_mode)


def _predict(logits: _Tensor, label_mode: str) -> _Tensor:
    """The prediction rule alone, on checked logits (the one place it is written)."""
    if label_mode == "multiclass":
        return logits.argmax(dim=1)
    return logits > 0


def _check_binary_target(target: _Tensor, logits: _Tensor, label_mode: str) -> _Tensor:
    if target.shape != logits.shape:
        raise _ShapeError(
            f"label_mode={label_mode!r} expects a target shaped like the logits, got target "
            f"shape {tuple(target.shape)} and logits shape {tuple(logits.shape)}.",
            tuple(target.shape),
            str(tuple(logits.shape)),
        )
    if target.is_complex():
        raise TypeError(f"target must be real-valued, got dtype {target.dtype}.")
    if target.dtype != _torch.bool:
        is_binary = (target == 0) | (target == 1)
        if not bool(is_binary.all()):
            bad = target[~is_binary]
            raise ValueError(
                f"label_mode={label_mode!r} expects a target in {{0, 1}}, got "
                f"{bad.numel()} other value(s) (e.g. {bad.flatten()[:5].tolist()}); threshold "
                f"soft labels or use label_mode='multiclass' for class indices."
            )
    return target.bool()


def _check_multiclass_target(target: _Tensor, logits: _Tensor) -> _Tensor:
    spatial = tuple(logits.shape[2:])
    batch = logits.shape[0]
    shape = tuple(target.shape)
    if shape == (batch, 1, *spatial):
        target = target[:, 0]
    elif shape != (batch, *spatial):
        raise _ShapeError(
            f"label_mode='multiclass' expects a target of class indices shaped "
            f"{(batch, *spatial)} or {(batch, 1, *spatial)} for logits shape "
            f"{tuple(logits.shape)}, got target shape {shape}.",
            shape,
            str((batch, *spatial)),
        )
    if target.is_floating_point() or target.is_complex():
        raise TypeError(
            f"label_mode='multiclass' expects an integer target of class indices, got dtype "
            f"{target.dtype}; convert it with target.long() if it holds whole numbers."
        )
    target = target.long()
    classes = logits.shape[1]
    if target.numel() > 0:
        low, high = int(target.min()), int(target.max())
        if low < 0 or high >= classes:
            raise ValueError(
                f"label_mode='multiclass' expects class indices in [0, {classes - 1}] for logits "
                f"with {classes} channels, got values in [{low}, {high}]."
            )
    return target


def confusion_counts(logits: _Tensor, target: _Tensor, label_mode: str) -> _Tensor:
    """Count TP, FP and FN per slice (batch item) and foreground class.

    Args:
        logits: raw outputs shaped ``(B, C, *spatial)``.
        target: ground truth following the label conventions of ``label_mode`` (module doc).
        label_mode: ``"binary"``, ``"multilabel"`` or ``"multiclass"``.

    Returns:
        An int64 tensor ``(B, F, 3)`` on the logits' device: ``[..., 0]`` TP, ``[..., 1]`` FP,
        ``[..., 2]`` FN, for the F foreground classes (1 binary, C multilabel, C - 1
        multiclass, class k + 1 at index k).

    Raises:
        ValueError: unknown ``label_mode``; shapes that do not match (both are named); a
            binary / multilabel target with values other than 0 and 1; class indices outside
            ``[0, C)``; non-finite logits; tensors on different devices.
        TypeError: non-tensor inputs, non-floating logits or a floating multiclass target.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[[[3.0, 3.0, -3.0, -3.0]]]])
        >>> target = torch.tensor([[[[1, 0, 1, 0]]]])
        >>> confusion_counts(logits, target, "binary")
        tensor([[[1, 1, 1]]])
    """
    label_mode = _check_label_mode(label_mode)
    _check_logits(logits, label_mode)
    if not isinstance(target, _Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}.")
    if target.device != logits.device:
        raise ValueError(
            f"logits and target must be on the same device, got logits on {logits.device} and "
            f"target on {target.device}."
        )
    logits = logits.detach()
    target = target.detach()
    if label_mode == "multiclass":
        return _multiclass_counts(logits, _check_multiclass_target(target, logits))
    truth = _check_binary_target(target, logits, label_mode)
    pred = _predict(logits, label_mode)
    reduce_dims = tuple(range(2, logits.ndim))
    tp = (pred & truth).sum(dim=reduce_dims)
    n_pred = pred.sum(dim=reduce_dims)
    n_true = truth.sum(dim=reduce_dims)
    return _torch.stack([tp, n_pred - tp, n_true - tp], dim=-1).long()


def _multiclass_counts(logits: _Tensor, target: _Tensor) -> _Tensor:
    batch, classes = logits.shape[:2]
    pred = _predict(logits, "multiclass").reshape(batch, -1)
    truth = target.reshape(batch, -1)
    offset = _torch.arange(batch, device=logits.device).unsqueeze(1) * (classes * classes)
    index = offset + truth * classes + pred
    # confusion[b, t, p]: pixels of item b with true class t predicted as p.
    confusion = _torch.bincount(index.flatten(), minlength=batch * classes * classes)
    confusion = confusion.reshape(batch, classes, classes)
    tp = confusion.diagonal(dim1=1, dim2=2)
    fp = confusion.sum(dim=1) - tp
    fn = confusion.sum(dim=2) - tp
    return _torch.stack([tp, fp, fn], dim=-1)[:, 1:].long()


def _check_eps(eps: float) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__} ({eps!r}).")
    if not _math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be finite and >= 0 (the paper uses 1), got {eps!r}.")
    return float(eps)


def scores(counts: _Tensor, eps: float = 1.0) -> dict[str, _Tensor]:
    """Eq. 14 of the paper on counts of any leading shape, plus ``avg_m`` (their mean).

    DICE = (2TP + eps) / (T + P + eps), PPV = (TP + eps) / (TP + FP + eps),
    SEN = (TP + eps) / (TP + FN + eps), IoU = (TP + eps) / (T + P - TP + eps), with
    T = TP + FN and P = TP + FP. With ``eps = 0`` a zero denominator gives NaN (no truth and
    no prediction leaves DICE and IoU undefined); with ``eps > 0`` an empty prediction of an
    empty truth scores 1 everywhere.

    Args:
        counts: ``(..., 3)`` TP, FP, FN (e.g. from :func:`confusion_counts`), non-negative.
        eps: the smoothing constant, ``>= 0``; the paper's value 1 by default.

    Returns:
        ``{"dice", "ppv", "sen", "iou", "avg_m"}``, each a float64 tensor shaped ``(...)``.

    Raises:
        ValueError: the last dim is not 3, negative counts, or a negative / non-finite eps.
        TypeError: ``counts`` is not a tensor or ``eps`` is not a number.

    Example:
        >>> import torch
        >>> s = scores(torch.tensor([2, 1, 1]), eps=0.0)
        >>> float(s["dice"]), float(s["iou"])
        (0.6666666666666666, 0.5)
    """
    eps = _check_eps(eps)
    if not isinstance(counts, _Tensor):
        raise TypeError(f"counts must be a torch.Tensor, got {type(counts).__name__}.")
    if counts.ndim == 0 or counts.shape[-1] != 3:
        raise _ShapeError(
            f"counts must be shaped (..., 3) holding TP, FP, FN, got shape {tuple(counts.shape)}.",
            tuple(counts.shape),
            "(..., 3)",
        )
    if counts.is_complex() or counts.dtype == _torch.bool:
        raise TypeError(f"counts must be integer or floating, got dtype {counts.dtype}.")
    counts = counts.detach().to(_torch.float64)
    if counts.numel() > 0 and not bool((counts >= 0).all()):
        raise ValueError(
            f"counts must be non-negative, got minimum {float(counts.min())} in a tensor of "
            f"shape {tuple(counts.shape)}."
        )
    tp, fp, fn = counts.unbind(dim=-1)
    n_true, n_pred = tp + fn, tp + fp
    dice = (2 * tp + eps) / (n_true + n_pred + eps)
    ppv = (tp + eps) / (tp + fp + eps)
    sen = (tp + eps) / (tp + fn + eps)
    iou = (tp + eps) / (n_true + n_pred - tp + eps)
    avg_m = (dice + ppv + sen + iou) / 4
    return {"dice": dice, "ppv": ppv, "sen": sen, "iou": iou, "avg_m": avg_m}


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


def _as_float_array(values: _Sequence[float], name: str) -> _np.ndarray:
    array = _np.asarray(values, dtype=_np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of numbers, got shape {array.shape}.")
    if not _np.isfinite(array).all():
        raise ValueError(f"{name} must hold finite numbers, got {array.tolist()}.")
    return array


def paired_tests(a: _Sequence[float], b: _Sequence[float]) -> dict[str, float]:
    """Paired significance tests between two runs scored on the same cases, in the same order.

    Both tests are two-sided with scipy's defaults: ``scipy.stats.wilcoxon(a, b)`` (signed-rank;
    zero differences dropped, exact distribution for small samples) and
    ``scipy.stats.ttest_rel(a, b)``. When every difference is exactly zero (identical inputs)
    both p-values are reported as 1.0 (no evidence of a difference) where scipy would give NaN
    or warn. Constant non-zero differences give a t-test p of 0.0, as scipy does. Cost: with
    ties or zero differences and at most 13 pairs, scipy's Wilcoxon runs an exact permutation
    test over the 2^n sign flips (seconds at n = 12-13); otherwise it is instant.

    Args:
        a: per-case values of the first run (e.g. ``[v["dice"] for v in per_case.values()]``).
        b: per-case values of the second run, same cases in the same order.

    Returns:
        ``{"wilcoxon_p", "ttest_p", "mean_diff" (mean of a - b), "n"}``.

    Raises:
        ValueError: lengths differ, fewer than 2 pairs, or non-finite values.

    Example:
        >>> paired_tests([0.8, 0.9, 0.7], [0.8, 0.9, 0.7])["wilcoxon_p"]
        1.0
    """
    x = _as_float_array(a, "a")
    y = _as_float_array(b, "b")
    if x.shape != y.shape:
        raise ValueError(
            f"paired tests need the same cases in both runs, got {len(x)} values in a and "
            f"{len(y)} in b."
        )
    if len(x) < 2:
        raise ValueError(f"paired tests need at least 2 pairs, got {len(x)}.")
    diff = x - y
    result = {"mean_diff": float(diff.mean()), "n": len(x)}
    if not diff.any():
        return {"wilcoxon_p": 1.0, "ttest_p": 1.0, **result}
    return {
        "wilcoxon_p": float(_stats.wilcoxon(x, y).pvalue),
        "ttest_p": float(_stats.ttest_rel(x, y).pvalue),
        **result,
    }
