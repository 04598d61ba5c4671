"""Paired significance tests: two runs scored on the same cases (:func:`paired_tests`), and two
variants trained with the same seeds, the seed as the unit (:func:`compare_seeds`)."""

from __future__ import annotations

import math as _math
from collections.abc import Sequence as _Sequence
from typing import Any as _Any

import numpy as _np
from scipy import stats as _stats

__all__ = ["compare_seeds", "paired_tests"]


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


def compare_seeds(
    a: _Sequence[float] | _Sequence[_Sequence[float]],
    b: _Sequence[float] | _Sequence[_Sequence[float]],
    *,
    n_boot: int = 10_000,
    rng_seed: int = 0,
) -> dict[str, _Any]:
    """Paired comparison of two variants trained with the same seeds: the seed is the unit.

    Row ``s`` of ``a`` and ``b`` belongs to seed ``s``. Per seed, the difference of the means
    (over cases) is taken; the p-value is Student's two-sided one-sample t-test of these
    differences against 0 (``scipy.stats.ttest_1samp``, df = seeds - 1), and ``ci95`` its
    t-interval. Seeds that disagree in sign give a large p however consistent the cases are
    within each seed (pooling seed-averaged cases as independent pairs would not). With 3 seeds
    the smallest p needs the 3 differences to be close to each other, as it should.

    When per-case values are given (2-D), a two-level bootstrap adds a CI and p-value that also
    reflect which test cases were drawn: each replicate resamples the seeds with replacement and
    the cases with replacement, and averages the differences over the drawn (seed, case) pairs.
    The same test cases are scored in every seed (cases are crossed with seeds, not nested in
    them), so one case resample is shared by the drawn seeds: Owen's pigeonhole bootstrap for
    crossed random effects (A. B. Owen, Ann. Appl. Stat. 1(1), 2007), the crossed counterpart of
    the hierarchical bootstrap (Saravanan et al., Neurons Behav. Data Anal. Theory 2020). Its p is
    twice the smaller tail of the replicates at 0 ((count + 1) / (n_boot + 1)), capped at 1;
    with few seeds the resampled seed sets are few (10 for 3 seeds), so read it beside the t-test
    and "k of n", not instead of them.

    Args:
        a: per-seed values of the variant: shape (seeds,) (each seed's mean) or
            (seeds, cases) (the same cases, in the same order, in every seed).
        b: the reference's values (``none``), same shape and seed order.
        n_boot: bootstrap replicates (2-D input only).
        rng_seed: seed of the bootstrap's generator (``numpy.random.default_rng``): the result
            is deterministic.

    Returns:
        ``{"per_seed_diff", "better_seeds" (seeds where a > b), "n_seeds", "mean_diff",
        "p" (None for one seed), "ci95" ([low, high] or None), "bootstrap" (None for 1-D
        input, else ``{"p", "ci95", "n_boot", "rng_seed", "cases"}``)}``.

    Raises:
        ValueError: shapes differ, no seed, or non-finite values.

    Example:
        >>> r = compare_seeds([0.75, 0.76, 0.73], [0.72, 0.72, 0.74])
        >>> r["better_seeds"], r["n_seeds"], round(r["p"], 2)
        (2, 3, 0.32)
    """
    x, y = _np.asarray(a, dtype=float), _np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim not in (1, 2) or x.shape[0] < 1 or 0 in x.shape:
        raise ValueError(
            f"compare_seeds needs values of the same seeds (and cases) for both variants, got "
            f"shapes {x.shape} and {y.shape}: (seeds,) or (seeds, cases)."
        )
    if not (_np.isfinite(x).all() and _np.isfinite(y).all()):
        raise ValueError("compare_seeds got non-finite values.")
    diff = x - y
    per_seed = diff if diff.ndim == 1 else diff.mean(axis=1)
    n = len(per_seed)
    mean = float(per_seed.mean())
    p, ci = None, None
    if n > 1:
        se = float(per_seed.std(ddof=1)) / _math.sqrt(n)
        if se == 0.0:  # identical differences: the limits (t = 0 -> p = 1, |t| = inf -> 0)
            p, ci = (1.0 if mean == 0.0 else 0.0), [mean, mean]
        else:  # scipy.stats.ttest_1samp(per_seed, 0), written out
            p = float(2.0 * _stats.t.sf(abs(mean / se), n - 1))
            half = float(_stats.t.ppf(0.975, n - 1)) * se
            ci = [mean - half, mean + half]
    boot = None
    if diff.ndim == 2:
        rng = _np.random.default_rng(rng_seed)
        seeds_drawn = rng.integers(0, n, size=(n_boot, n))
        cases_drawn = rng.integers(0, diff.shape[1], size=(n_boot, diff.shape[1]))
        reps = diff[seeds_drawn[:, :, None], cases_drawn[:, None, :]].mean(axis=(1, 2))
        tail = min(int((reps <= 0).sum()), int((reps >= 0).sum()))
        boot = {
            "p": min(1.0, 2 * (tail + 1) / (n_boot + 1)),
            "ci95": [float(v) for v in _np.percentile(reps, [2.5, 97.5])],
            "n_boot": n_boot,
            "rng_seed": rng_seed,
            "cases": int(diff.shape[1]),
        }
    return {
        "per_seed_diff": [float(v) for v in per_seed],
        "better_seeds": int((per_seed > 0).sum()),
        "n_seeds": n,
        "mean_diff": mean,
        "p": p,
        "ci95": ci,
        "bootstrap": boot,
    }
