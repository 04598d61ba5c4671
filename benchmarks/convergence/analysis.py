"""Convergence benchmark statistics: per-variant figures over seeds, seed-aware comparisons
against ``none``, the paper's ordering, and the duration estimate.

Usage (recompute the comparisons of stored results in place, no run repeated):
    python benchmarks/convergence/analysis.py runs/convergence/convergence.json

The comparison with ``none`` (:func:`dsplug.metrics.paired.compare_seeds`) treats the training
seed as the unit of replication: the per-case values of one seed are not independent of each
other (they share one trained network), so pooling seed-averaged cases as independent pairs (what
:func:`dsplug.metrics.paired_tests` does on them, kept as ``pooled_cases`` for reference)
overstates the evidence: it reported p = 1e-5 for a difference that held in 2 of 3 seeds.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.convergence.settings import PAPER_ORDER, VARIANTS, ConvergenceSettings
from dsplug.metrics import METRIC_NAMES, paired_tests
from dsplug.metrics.paired import compare_seeds

__all__ = [
    "analyse",
    "best_within",
    "compare_to_none",
    "equal_compute",
    "estimate_seconds",
    "upgrade",
]


def _mean_sd(values: Sequence[float]) -> dict[str, float | None]:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"mean": None, "sd": None, "n": 0}
    sd = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
    return {"mean": float(np.mean(vals)), "sd": sd, "n": len(vals)}


P_VALUES = (
    "seed-aware, against 'none' with the same seeds: p is a two-sided one-sample t-test of the "
    "per-seed differences in mean test Dice (the seed is the unit, df = seeds - 1); "
    "k/n: seeds in which the variant's mean test Dice is higher"
)


def compare_to_none(variant: Mapping[str, Any], none: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`compare_seeds` of a variant's summary against ``none``'s, test Dice, by seed.

    Uses the seeds both ran; the per-case values of each seed when both summaries store them
    (``seeds[i]["test_per_case_dice"]``, written since the seed-aware statistics), else each
    seed's mean test Dice. ``pooled_cases`` keeps the former test (paired over the cases'
    seed-averaged values as if independent), for reference only.
    """
    own = {s["seed"]: s for s in variant["seeds"]}
    ref = {s["seed"]: s for s in none["seeds"]}
    seeds = sorted(set(own) & set(ref))
    if not seeds:
        raise ValueError(f"variant {variant['variant']['name']!r} shares no seed with 'none'.")
    pairs = [(own[s], ref[s]) for s in seeds]
    case_sets = {tuple(sorted(r.get("test_per_case_dice") or ())) for p in pairs for r in p}
    if len(case_sets) == 1 and () not in case_sets:
        cases = next(iter(case_sets))
        a = [[o["test_per_case_dice"][c] for c in cases] for o, _ in pairs]
        b = [[r["test_per_case_dice"][c] for c in cases] for _, r in pairs]
    else:
        a = [o["test"]["dice"] for o, _ in pairs]
        b = [r["test"]["dice"] for _, r in pairs]
    cases = sorted(variant["test_per_case"])
    pooled = paired_tests(
        [variant["test_per_case"][c]["dice"] for c in cases],
        [none["test_per_case"][c]["dice"] for c in cases],
    )
    return {
        "metric": "dice",
        "seeds": seeds,
        **compare_seeds(a, b),
        "pooled_cases": pooled,
    }


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
        "test_per_case_dice": {
            c: float(v["dice"]) for c, v in sorted(run["test"]["per_case"].items())
        },
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
        ``{"variants": {name: {...}}, "ordering": {"paper", "observed", "reproduced"}}``;
        each variant's ``p_vs_none`` is :func:`compare_to_none` and its ``equal_compute``
        :func:`equal_compute` (None for ``none``).
    """
    by_variant: dict[str, list[Mapping[str, Any]]] = {}
    for (name, _), run in sorted(records.items(), key=lambda kv: kv[0][1]):
        by_variant.setdefault(name, []).append(run)
    if "none" not in by_variant:
        raise ValueError("analyse needs the runs of 'none' (the reference).")
    none_runs = {run["seed"]: run for run in by_variant["none"]}
    variants = {}
    for name in [n for n in VARIANTS if n in by_variant]:
        missing = sorted({r["seed"] for r in by_variant[name]} - set(none_runs))
        if missing:
            raise ValueError(f"variant {name!r} has seeds {missing} without a run of 'none'.")
        variants[name] = _variant_summary(name, by_variant[name], none_runs, step["ratios"])
    _compare_all(variants)
    _equal_compute_all(variants, stops=True)  # the trainer's early stopping ends every run
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


def _compare_all(variants: Mapping[str, dict[str, Any]]) -> None:
    for name, v in variants.items():
        v["p_vs_none"] = None if name == "none" else compare_to_none(v, variants["none"])


EQUAL_COMPUTE = (
    "validation Dice at equal training compute, from the stored per-epoch curves (no run "
    "repeated), per seed against 'none' with the same seed: a run's budget is what it used over "
    "all its epochs, in measured training seconds (the sum of train_s; validation left out) or "
    "in 'none' epochs (epochs x step-time ratio); a run's value within a budget is its best "
    "validation Dice among the epochs that ended within it; at none's budget: the variant's "
    "value within the budget 'none' used, minus none's best; at the variant's budget: the "
    "variant's best minus none's value within the variant's budget, which is none's best where "
    "'none' ended first: by its own early stopping (the same recipe would not have used more "
    "compute) or at the epoch cap (more epochs might have helped it); time to none's best: the "
    "variant's compute until its validation Dice first reaches none's best, over none's compute "
    "until its own best; k/n and p as for the test Dice (compare_seeds, the seed is the unit)"
)
_TOL = 1e-9  # relative slack for budgets compared with sums of floats


def _cumulative_s(curve: Sequence[Mapping[str, Any]]) -> list[float]:
    return [float(t) for t in np.cumsum([float(row["train_s"]) for row in curve])]


def best_within(
    curve: Sequence[Mapping[str, Any]], budget: float, ratio: float | None = None
) -> float | None:
    """A run's best validation Dice among the epochs that ended within ``budget``.

    Args:
        curve: the run's per-epoch rows (``epoch``, ``val_dice``, ``train_s``), in order.
        budget: training seconds (cumulative ``train_s``), or ``none`` epochs with ``ratio``.
        ratio: the run's step-time ratio to ``none``: epoch e then costs e x ratio.

    Returns:
        The best ``val_dice``, or None when not even the first epoch fits.

    Example:
        >>> curve = [{"epoch": 1, "val_dice": 0.5, "train_s": 2.0},
        ...          {"epoch": 2, "val_dice": 0.7, "train_s": 2.0}]
        >>> best_within(curve, 3.0), best_within(curve, 4.0), best_within(curve, 4.0, ratio=3.0)
        (0.5, 0.7, 0.5)
    """
    costs = _cumulative_s(curve) if ratio is None else [int(row["epoch"]) * ratio for row in curve]
    limit = budget * (1.0 + _TOL)
    fits = [float(row["val_dice"]) for row, c in zip(curve, costs, strict=True) if c <= limit]
    return max(fits) if fits else None


def _time_to(curve: Sequence[Mapping[str, Any]], epoch: int | None) -> float | None:
    return None if epoch is None else _cumulative_s(curve)[epoch - 1]


def _none_end(none_seed: Mapping[str, Any], stops: bool) -> str:
    """How ``none``'s run ended: its early stopping (e >= 2 x best epoch at the last epoch,
    which is >= min_epochs) or the epoch cap."""
    stopped = stops and none_seed["epochs_run"] >= 2 * none_seed["epoch"]
    return "early_stopping" if stopped else "epoch_cap"


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _equal_compute_seed(
    run: Mapping[str, Any], none_run: Mapping[str, Any], ratio: float, stops: bool
) -> dict[str, Any]:
    """One seed's equal-compute figures (see ``EQUAL_COMPUTE``)."""
    curve, ref = run["val_curve"], none_run["val_curve"]
    budget_s, none_s = _cumulative_s(curve)[-1], _cumulative_s(ref)[-1]
    budget_e, none_e = len(curve) * ratio, float(len(ref))
    to_target_s = _time_to(curve, run["epochs_to_target"])
    none_to_target_s = _time_to(ref, none_run["epochs_to_target"])
    return {
        "seed": run["seed"],
        "budget_s": budget_s,
        "none_budget_s": none_s,
        "budget_none_epochs": budget_e,
        "none_budget_none_epochs": none_e,
        "best_val_dice": max(float(r["val_dice"]) for r in curve),
        "none_best_val_dice": max(float(r["val_dice"]) for r in ref),
        "val_dice_at_none_budget_s": best_within(curve, none_s),
        "val_dice_at_none_budget_none_epochs": best_within(curve, none_e, ratio),
        "none_val_dice_at_budget_s": best_within(ref, budget_s),
        "none_val_dice_at_budget_none_epochs": best_within(ref, budget_e, 1.0),
        "none_ended_first_s": none_s < budget_s,
        "none_ended_first_none_epochs": none_e < budget_e,
        "none_end": _none_end(none_run, stops),
        "measured_epoch_ratio": (budget_s / len(curve)) / (none_s / len(ref)),
        "time_to_target_measured_s": to_target_s,
        "time_to_target_ratio_s": _ratio(to_target_s, none_to_target_s),
        "time_to_target_ratio_none_epochs": _ratio(
            run["time_to_target_none_epochs"], none_run["epochs_to_target"]
        ),
    }


def _paired(rows: Sequence[Mapping[str, Any]], own: str, ref: str) -> dict[str, Any] | None:
    """:func:`compare_seeds` of ``rows[own]`` against ``rows[ref]`` over the seeds with both."""
    kept = [r for r in rows if r[own] is not None and r[ref] is not None]
    if not kept:
        return None
    return {
        "seeds": [r["seed"] for r in kept],
        **compare_seeds([r[own] for r in kept], [r[ref] for r in kept]),
    }


def _ended_first(rows: Sequence[Mapping[str, Any]], key: str) -> dict[str, int]:
    """Seeds where ``none`` ended before the variant's budget, by how it ended."""
    ended = [r["none_end"] for r in rows if r[key]]
    return {"early_stopping": ended.count("early_stopping"), "epoch_cap": ended.count("epoch_cap")}


def equal_compute(
    variant: Mapping[str, Any], none: Mapping[str, Any], stops: bool = True
) -> dict[str, Any]:
    """Validation Dice of a variant and ``none`` at equal training compute, by seed.

    Computed from the stored per-seed curves of both summaries (``seeds[i]["val_curve"]``);
    the rules are in ``EQUAL_COMPUTE``.

    Args:
        variant: the variant's summary (``seeds``, ``step_time_ratio``).
        none: ``none``'s summary, with the same seeds.
        stops: whether the runs used early stopping (else every run ended at the cap).

    Returns:
        ``{"seeds": [per-seed figures], "at_none_budget_s" / "..._none_epochs" and
        "at_budget_s" / "..._none_epochs": compare_seeds + "seeds" (None without a seed),
        "none_ended_first_s" / "..._none_epochs": {"early_stopping", "epoch_cap"} counts,
        "time_to_target_ratio_s" / "..._none_epochs", "measured_epoch_ratio": mean/sd}``.
    """
    ref = {s["seed"]: s for s in none["seeds"]}
    ratio = float(variant["step_time_ratio"])
    rows = [
        _equal_compute_seed(s, ref[s["seed"]], ratio, stops)
        for s in variant["seeds"]
        if s["seed"] in ref
    ]
    if not rows:
        raise ValueError(f"variant {variant['variant']['name']!r} shares no seed with 'none'.")
    out: dict[str, Any] = {"seeds": rows}
    for unit in ("s", "none_epochs"):
        out[f"at_none_budget_{unit}"] = _paired(
            rows, f"val_dice_at_none_budget_{unit}", "none_best_val_dice"
        )
        out[f"at_budget_{unit}"] = _paired(rows, "best_val_dice", f"none_val_dice_at_budget_{unit}")
        out[f"none_ended_first_{unit}"] = _ended_first(rows, f"none_ended_first_{unit}")
        out[f"time_to_target_ratio_{unit}"] = _mean_sd(
            [r[f"time_to_target_ratio_{unit}"] for r in rows]
        )
    out["measured_epoch_ratio"] = _mean_sd([r["measured_epoch_ratio"] for r in rows])
    return out


def _equal_compute_all(variants: Mapping[str, dict[str, Any]], stops: bool) -> None:
    for name, v in variants.items():
        v["equal_compute"] = None if name == "none" else equal_compute(v, variants["none"], stops)


def upgrade(result: dict[str, Any]) -> dict[str, Any]:
    """A stored ``convergence.json`` with its comparisons recomputed by :func:`compare_to_none`
    and its equal-compute figures (:func:`equal_compute`) from the figures it already holds (no
    run is repeated); ``result`` is changed in place."""
    _compare_all(result["variants"])
    _equal_compute_all(result["variants"], stops="min_epochs" in result["config"])
    result["config"]["p_values"] = P_VALUES
    result["config"]["equal_compute"] = EQUAL_COMPUTE
    return result


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


def main(argv: Sequence[str] | None = None) -> int:
    """``python benchmarks/convergence/analysis.py FILE...``: :func:`upgrade` each stored result
    in place (the comparisons and equal-compute figures only; every other figure is left as it
    was)."""
    paths = list(sys.argv[1:] if argv is None else argv)
    if not paths:
        usage = "usage: python benchmarks/convergence/analysis.py convergence.json ..."
        print(usage, file=sys.stderr)
        return 2
    for path in map(Path, paths):
        result = upgrade(json.loads(path.read_text(encoding="utf-8")))
        path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"{path}: comparisons and equal-compute figures recomputed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
