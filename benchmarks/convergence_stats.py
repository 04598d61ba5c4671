"""Convergence benchmark statistics: per-variant figures over seeds, paired tests against
``none``, the paper's ordering, and the duration estimate."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from benchmarks.convergence_settings import PAPER_ORDER, VARIANTS, ConvergenceSettings
from dsplug.metrics import METRIC_NAMES, paired_tests

__all__ = ["analyse", "estimate_seconds"]


def _mean_sd(values: Sequence[float]) -> dict[str, float | None]:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"mean": None, "sd": None, "n": 0}
    sd = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
    return {"mean": float(np.mean(vals)), "sd": sd, "n": len(vals)}


def _first_epoch_reaching(history: Sequence[Mapping[str, Any]], target: float) -> int | None:
    return next((int(row["epoch"]) for row in history if row["val_dice"] >= target), None)


def _seed_figures(
    run: Mapping[str, Any], none_run: Mapping[str, Any], ratio: float
) -> dict[str, Any]:
    history = run["history"]
    target = max(row["val_dice"] for row in none_run["history"])
    reached = _first_epoch_reaching(history, target)
    none_avg_t = none_run["efficiency"]["avg_t_s"]
    eff = run["efficiency"]
    return {
        "seed": run["seed"],
        "epoch": eff["epoch"],
        "epochs_run": eff["epochs_run"],
        "avg_t_s": eff["avg_t_s"],
        "tot_t_s": eff["tot_t_s"],
        "best_val_dice": max(row["val_dice"] for row in history),
        "best_val": run["best_val"],
        "test": {m: run["test"]["summary"][m] for m in METRIC_NAMES},
        "target_dice": target,
        "epochs_to_target": reached,
        # time in units of one `none` epoch, and in seconds of this seed's `none` epochs
        "time_to_target_none_epochs": None if reached is None else reached * ratio,
        "time_to_target_s": None if reached is None else reached * ratio * none_avg_t,
        "tot_t_ratio_s": eff["epoch"] * ratio * none_avg_t,
        "val_curve": [
            {k: row[k] for k in ("epoch", "val_dice", "val_avg_m", "train_s", "val_s")}
            for row in history
        ],
    }


def _mean_per_case(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    cases = sorted(runs[0]["test"]["per_case"])
    for run in runs:
        if sorted(run["test"]["per_case"]) != cases:
            raise ValueError("runs of one benchmark were scored on different test cases.")
    return {
        c: {m: float(np.mean([r["test"]["per_case"][c][m] for r in runs])) for m in METRIC_NAMES}
        for c in cases
    }


def _mean_per_case_class(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, float]]]:
    first = runs[0]["test"]["per_case_class"]
    return {
        c: [
            {
                m: float(np.mean([r["test"]["per_case_class"][c][k][m] for r in runs]))
                for m in METRIC_NAMES
            }
            for k in range(len(first[c]))
        ]
        for c in sorted(first)
    }


def _variant_summary(
    name: str,
    runs: Sequence[Mapping[str, Any]],
    none_runs: Mapping[int, Mapping[str, Any]],
    ratios: Mapping[str, Any],
    none_cases: Mapping[str, Mapping[str, float]] | None,
) -> dict[str, Any]:
    ratio = float(ratios[name]["time"])
    seeds = [_seed_figures(run, none_runs[run["seed"]], ratio) for run in runs]
    per_case = _mean_per_case(runs)
    per_case_class = _mean_per_case_class(runs)
    classes = runs[0]["test"]["classes"]
    per_class = {
        cls: {
            m: float(np.mean([per_case_class[c][k][m] for c in per_case_class]))
            for m in METRIC_NAMES
        }
        for k, cls in enumerate(classes)
    }
    reached = [s["epochs_to_target"] for s in seeds]
    max_epochs = runs[0].get("settings", {}).get("epochs", math.inf)
    summary: dict[str, Any] = {
        "variant": runs[0]["variant"],
        "seeds_run": [s["seed"] for s in seeds],
        "test": {m: float(np.mean([v[m] for v in per_case.values()])) for m in METRIC_NAMES},
        "test_over_seeds": {m: _mean_sd([s["test"][m] for s in seeds]) for m in METRIC_NAMES},
        "test_per_class": per_class,
        "epoch": _mean_sd([s["epoch"] for s in seeds]),
        "avg_t_s": _mean_sd([s["avg_t_s"] for s in seeds]),
        "tot_t_s": _mean_sd([s["tot_t_s"] for s in seeds]),
        "step_time_ratio": ratio,
        "tot_t_ratio_s": _mean_sd([s["tot_t_ratio_s"] for s in seeds]),
        "best_val_dice": _mean_sd([s["best_val_dice"] for s in seeds]),
        "epochs_to_target": _mean_sd(reached),
        "seeds_stopped_early": sum(s["epochs_run"] < max_epochs for s in seeds),
        "seeds_reaching_target": sum(r is not None for r in reached),
        "time_to_target_none_epochs": _mean_sd([s["time_to_target_none_epochs"] for s in seeds]),
        "time_to_target_s": _mean_sd([s["time_to_target_s"] for s in seeds]),
        "p_vs_none": None,
        "seeds": seeds,
        "test_per_case": per_case,
        "test_per_case_class": per_case_class,
    }
    if none_cases is not None and name != "none":
        cases = sorted(per_case)
        summary["p_vs_none"] = paired_tests(
            [per_case[c]["dice"] for c in cases], [none_cases[c]["dice"] for c in cases]
        )
    return summary


def analyse(
    records: Mapping[tuple[str, int], Mapping[str, Any]], step: Mapping[str, Any]
) -> dict[str, Any]:
    """Per-variant figures over seeds, p-values against ``none``, and the paper's ordering.

    Args:
        records: run records (:func:`run_variant`) keyed by (variant, seed); every variant's
            seeds must include runs of ``none`` with the same seeds.
        step: the step-time result (``ratios`` per variant).

    Returns:
        ``{"variants": {name: {...}}, "ordering": {"paper", "observed", "reproduced"}}``.
    """
    by_variant: dict[str, list[Mapping[str, Any]]] = {}
    for (name, _), run in sorted(records.items(), key=lambda kv: kv[0][1]):
        by_variant.setdefault(name, []).append(run)
    if "none" not in by_variant:
        raise ValueError("analyse needs the runs of 'none' (the reference).")
    none_runs = {run["seed"]: run for run in by_variant["none"]}
    none_cases = _mean_per_case(by_variant["none"])
    variants = {}
    for name in [n for n in VARIANTS if n in by_variant]:
        missing = sorted({r["seed"] for r in by_variant[name]} - set(none_runs))
        if missing:
            raise ValueError(f"variant {name!r} has seeds {missing} without a run of 'none'.")
        variants[name] = _variant_summary(
            name, by_variant[name], none_runs, step["ratios"], none_cases
        )
    present = [m for m in PAPER_ORDER if m in variants]
    observed = sorted(present, key=lambda m: variants[m]["test"]["dice"])
    return {
        "variants": variants,
        "ordering": {
            "metric": "test Dice (per case, mean over seeds)",
            "paper": present,
            "observed": observed,
            "reproduced": observed == present,
        },
    }


def estimate_seconds(
    settings: ConvergenceSettings, step: Mapping[str, Any], slices: Mapping[str, int]
) -> dict[str, float]:
    """Rough duration of all runs from the measured step and evaluation times of ``none``.

    Training: steps per epoch x epochs x seeds x the sum of the variants' time ratios x the
    median step time of ``none``; evaluation: validation slices every epoch and the test
    slices once per run, at the measured eval time per slice; both divided by ``jobs``. Data
    loading and checkpoints are not included.
    """
    none = step["absolute"]["none"]
    steps = math.ceil(slices["train"] / settings.batch)
    ratio_sum = sum(step["ratios"][v]["time"] for v in settings.variants)
    seeds = len(settings.seeds)
    train_s = none["time_median_s"] * steps * settings.epochs * seeds * ratio_sum
    runs = seeds * len(settings.variants)
    per_slice = none.get("eval_s_per_slice", none["time_median_s"] / settings.batch / 3)
    eval_s = per_slice * runs * (slices["val"] * settings.epochs + slices["test"])
    return {
        "train_s": train_s,
        "eval_s": eval_s,
        "total_s": (train_s + eval_s) / settings.jobs,
        "jobs": settings.jobs,
    }
