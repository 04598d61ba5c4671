"""Paired significance tests between two runs scored on the same cases."""

from __future__ import annotations

from collections.abc import Sequence as _Sequence

import numpy as _np
from scipy import stats as _stats

__all__ = ["paired_tests"]


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
