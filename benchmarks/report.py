"""Render the benchmark JSON (step_time, inference, convergence) as the README's results section.

Every figure in the section comes from the JSON files given (nothing is typed by hand) except
the paper's own published numbers (Tables 3-5 of Yuan et al., 2023), which are constants here
and shown beside ours. The section of README.md between ``<!-- results:start -->`` and
``<!-- results:end -->`` is replaced (the markers are appended when absent); the rest of the file
is left as it is.

Usage:
    python benchmarks/report.py --step-time runs/step_time.json \\
        --inference runs/inference.json --convergence runs/convergence/convergence.json
    python benchmarks/report.py --convergence runs/convergence/convergence.json --print
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "END",
    "PAPER_EFFICIENCY",
    "PAPER_TEST_DICE",
    "START",
    "load_json",
    "main",
    "render",
    "render_convergence",
    "render_equal_compute",
    "render_inference",
    "render_step_time",
    "replace_section",
]

START = "<!-- results:start -->"
END = "<!-- results:end -->"
DATASETS = ("BraTS", "Cardiac", "Spleen", "Liver")
#: The paper's Avg.T (h), Epoch and Tot.T (h) per dataset (Table 5; ``up`` and ``down``:
#: Table 3's M-Net and MLDS-Net, the published models the paper's Up / Down variants follow).
PAPER_EFFICIENCY: dict[str, dict[str, tuple[float, int, float]]] = {
    "none": {
        "BraTS": (0.1960, 8, 1.5679),
        "Cardiac": (0.0277, 19, 0.5269),
        "Spleen": (0.0499, 59, 2.9462),
        "Liver": (0.1619, 60, 9.9216),
    },
    "deep": {
        "BraTS": (0.3778, 14, 5.2888),
        "Cardiac": (0.0555, 39, 2.1649),
        "Spleen": (0.1076, 55, 5.9202),
        "Liver": (0.6589, 31, 21.9312),
    },
    "auto": {
        "BraTS": (0.6386, 12, 7.6635),
        "Cardiac": (0.0795, 23, 1.8286),
        "Spleen": (0.1400, 45, 6.2980),
        "Liver": (0.8831, 15, 13.0363),
    },
    "seg": {
        "BraTS": (0.4769, 11, 5.2463),
        "Cardiac": (0.0748, 23, 1.7211),
        "Spleen": (0.1295, 39, 5.0524),
        "Liver": (0.4962, 17, 8.4356),
    },
    "rec": {
        "BraTS": (0.5696, 8, 4.5569),
        "Cardiac": (0.0761, 19, 1.4450),
        "Spleen": (0.1253, 39, 4.8880),
        "Liver": (0.5222, 14, 7.3112),
    },
    "hyb": {
        "BraTS": (0.6470, 7, 4.5289),
        "Cardiac": (0.0841, 13, 1.0934),
        "Spleen": (0.1459, 21, 3.0639),
        "Liver": (0.6145, 10, 6.1450),
    },
    "up": {
        "BraTS": (0.3073, 30, 9.2179),
        "Cardiac": (0.0405, 50, 2.0266),
        "Spleen": (0.0848, 83, 7.0373),
        "Liver": (0.2538, 51, 12.9438),
    },
    "down": {
        "BraTS": (0.2982, 49, 14.6107),
        "Cardiac": (0.0411, 76, 3.1248),
        "Spleen": (0.0831, 115, 9.5576),
        "Liver": (0.2497, 56, 13.9832),
    },
}
#: The paper's test Dice (Table 4; ``up`` / ``down``: Table 2's M-Net and MLDS-Net).
PAPER_TEST_DICE: dict[str, dict[str, float]] = {
    "none": {"BraTS": 0.7145, "Cardiac": 0.9057, "Spleen": 0.8940, "Liver": 0.8530},
    "deep": {"BraTS": 0.7245, "Cardiac": 0.9252, "Spleen": 0.9246, "Liver": 0.8539},
    "auto": {"BraTS": 0.7268, "Cardiac": 0.9307, "Spleen": 0.9291, "Liver": 0.8543},
    "seg": {"BraTS": 0.7319, "Cardiac": 0.9308, "Spleen": 0.9681, "Liver": 0.8546},
    "rec": {"BraTS": 0.7340, "Cardiac": 0.9332, "Spleen": 0.9744, "Liver": 0.8623},
    "hyb": {"BraTS": 0.7384, "Cardiac": 0.9360, "Spleen": 0.9768, "Liver": 0.8926},
    "up": {"BraTS": 0.7163, "Cardiac": 0.9135, "Spleen": 0.9243, "Liver": 0.8310},
    "down": {"BraTS": 0.7232, "Cardiac": 0.9163, "Spleen": 0.9044, "Liver": 0.8385},
}
PAPER_NAMES = {
    "none": "U-Net",
    "deep": "U-Net-Deep",
    "auto": "U-Net-Auto",
    "seg": "μ-Net-Seg",
    "rec": "μ-Net-Rec",
    "hyb": "μ-Net-Hyb",
    "up": "M-Net†",
    "down": "MLDS-Net†",
}
PAPER = "Yuan et al., μ-Net (2023)"
CONVERGENCE_TODO = (
    "The full setting (30 runs; about 1.4 h on 2 idle cores) and this section are made with:\n\n"
    "```bash\n"
    "mkdir -p runs && nohup .venv/bin/python benchmarks/convergence/convergence.py \\\n"
    "    --out runs/convergence > runs/convergence.log 2>&1 &\n"
    ".venv/bin/python benchmarks/report.py --step-time runs/bench/step_time.json \\\n"
    "    --inference runs/bench/inference.json --convergence runs/convergence/convergence.json\n"
    "```"
)


def load_json(path: str | Path, kind: str, keys: Sequence[str]) -> dict[str, Any]:
    """Read a benchmark JSON and check that it has ``keys`` at the top level.

    Raises:
        ValueError: the file is missing, not JSON, or lacks one of ``keys``.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read the {kind} JSON {str(path)!r}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{str(path)!r} is not JSON ({exc}); expected a {kind} result.") from exc
    missing = [k for k in keys if not isinstance(data, dict) or k not in data]
    if missing:
        raise ValueError(
            f"{str(path)!r} is not a {kind} result: it lacks {missing} (expected the keys "
            f"{list(keys)})."
        )
    return data


def _f(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def _p(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.2g}" if value >= 0.001 else f"{value:.1e}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _machine(config: Mapping[str, Any]) -> str:
    m = config.get("machine", {})
    parts = [
        f"{m.get('processor', '?')}, {m.get('cpu_count', '?')} cores",
        f"torch threads: {m.get('torch_threads', '?')}",
        f"device {m.get('device', config.get('device', '?'))}",
        f"torch {m.get('torch', '?')}",
    ]
    if m.get("gpu"):
        parts.insert(0, str(m["gpu"]))
    return "; ".join(parts)


def _paper_ratios(mode: str, index: int) -> str:
    """The paper's value of ``mode`` over U-Net's (index 0: Avg.T, 1: Epoch, 2: Tot.T)."""
    if mode not in PAPER_EFFICIENCY:
        return "-"
    values = [
        PAPER_EFFICIENCY[mode][d][index] / PAPER_EFFICIENCY["none"][d][index] for d in DATASETS
    ]
    return " / ".join(f"{v:.2f}" for v in values)


def render_step_time(result: Mapping[str, Any]) -> str:
    """Train-step cost ratios to ``none`` beside the paper's Avg.T ratios (Tables 3, 5)."""
    c = result.get("config", {})
    rows = []
    for mode, r in result["ratios"].items():
        rows.append(
            [
                f"`{mode}`",
                _f(r.get("time"), 2),
                _f(r.get("cpu_time"), 2),
                _f(r.get("memory"), 2),
                _f(r.get("flops"), 2),
                _paper_ratios(mode, 0) + (" †" if mode in ("up", "down") else ""),
            ]
        )
    headers = [
        "mode",
        "step time ×none",
        "CPU time ×none",
        "peak memory ×none",
        "FLOPs ×none",
        f"paper Avg.T ×U-Net ({' / '.join(DATASETS)})",
    ]
    setting = (
        f"dsplug's own {c.get('model', '?')} (base {c.get('base', '?')}, depth "
        f"{c.get('depth', '?')}), batch {c.get('batch', '?')} of {c.get('size', '?')}², "
        f"{c.get('repeats', '?')} interleaved rounds (median); {_machine(c)}"
    )
    return (
        "### Training-step cost (`benchmarks/cost/step_time.py`)\n\n"
        f"{setting}.\n\n{_table(headers, rows)}\n\n"
        "The paper's ratios are per epoch on a GPU with its networks and data (Table 5; "
        "† rows: Table 3's M-Net and MLDS-Net, which the paper's Up / Down variants follow)."
    )


def render_inference(result: Mapping[str, Any]) -> str:
    """Eval-mode time of ``ds(x)`` over the bare model, and output identity."""
    c = result.get("config", {})
    identical = result.get("outputs_identical", {})
    rows = [
        [f"`{mode}`", _f(r.get("time"), 3), _f(identical.get(mode))]
        for mode, r in result["ratios"].items()
    ]
    setting = (
        f"{c.get('model', '?')} base {c.get('base', '?')}, depth {c.get('depth', '?')}, batch "
        f"{c.get('batch', '?')} of {c.get('size', '?')}², {c.get('repeats', '?')} rounds; "
        f"{_machine(c)}"
    )
    return (
        "### Inference (`benchmarks/cost/inference.py`)\n\n"
        f"{setting}.\n\n"
        f"{_table(['mode', 'eval time ×bare model', 'outputs identical'], rows)}"
    )


def _mean_sd(stat: Mapping[str, Any] | None, digits: int = 4) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    if stat.get("n", 0) > 1:
        return f"{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f}"
    return f"{stat['mean']:.{digits}f}"


def _convergence_caption(result: Mapping[str, Any]) -> str:
    c = result["config"]
    slices = c.get("slices", {})
    cases = {k: len(v) for k, v in c.get("cases", {}).items()}
    seeds = ", ".join(str(s) for s in c.get("seeds", []))
    size = "x".join(str(s) for s in c.get("size", []))
    setting = c.get("setting", "?")
    epochs = c.get("epochs", "?")
    variants = result.get("variants", {}).values()
    early = sum(v.get("seeds_stopped_early", 0) for v in variants)
    runs = sum(len(v.get("seeds_run", [])) for v in variants)
    stopping = (
        f"the paper's early stopping (after epoch e when e >= max({c.get('min_epochs', '?')}, "
        f"2 x best epoch)), at most {epochs} epochs: {early} of {runs} runs stopped early"
        if "min_epochs" in c
        else f"{epochs} epochs per run (fixed)"
    )
    lines = [
        f"Setting **{setting}**: {c.get('dataset', '?')} ({c.get('label_mode', '?')}: "
        f"{', '.join(c.get('classes', []))}), cases train / val / test "
        f"{cases.get('train', '?')} / {cases.get('val', '?')} / {cases.get('test', '?')} "
        f"(slices {slices.get('train', '?')} / {slices.get('val', '?')} / "
        f"{slices.get('test', '?')}), a seeded case split (seed {c.get('split_seed', '?')}), "
        f"slices of {size}.",
        f"Own U-Net, base {c.get('base', '?')}, depth {c.get('depth', '?')}, batch "
        f"{c.get('batch', '?')}; {c.get('optimizer', '?')}; {stopping}; "
        f"seeds {seeds}; {c.get('jobs', '?')} run(s) at a time with "
        f"{c.get('torch_threads_per_run', '?')} thread(s) each; {_machine(c)}.",
        f"Test metrics: per case (slices' counts summed, classes averaged), mean over seeds "
        f"per case, then over cases; ± is the sd over seeds of the per-seed means; vs none: "
        f"the difference in mean test Dice, better in k of n seeds, and p ({c.get('p_values', '?')}"
        "). Epoch: best epoch by validation avg.m; "
        "Avg.T: measured training seconds per epoch; Tot.T = Avg.T × Epoch; step ×none: the "
        "interleaved step-time ratio on a real training batch; Tot.T ×none: Epoch × step ratio "
        "over `none`'s Epoch (noise between runs left out); to none's best: epochs until "
        "validation Dice first reaches the best validation Dice of `none` with the same seed "
        "(seeds that reached it), and that time in `none` epochs (epochs × step ratio).",
    ]
    if setting == "quick":
        lines.append(
            "**This is the quick (CI) setting: far too short to compare strategies; its "
            "numbers show that the pipeline runs, not how the methods compare.**"
        )
    elif setting not in ("full", "thin"):
        lines.append(f"**A {setting} setting, not the published full setting.**")
    return "\n".join(lines)


def _ordering_sentence(ordering: Mapping[str, Any]) -> str:
    paper = " < ".join(f"`{m}`" for m in ordering["paper"])
    observed = " < ".join(f"`{m}`" for m in ordering["observed"])
    if ordering["reproduced"]:
        return f"The paper's ordering by test Dice, {paper}, is reproduced here."
    return (
        f"The paper's ordering by test Dice, {paper}, is **not reproduced** here: the observed "
        f"order is {observed}."
    )


def render_convergence(result: Mapping[str, Any], with_paper: bool = True) -> str:
    """The ablation on real data: accuracy, p-values, efficiency, equal compute; the paper's
    beside it (and the equal-compute rules in full) when ``with_paper``."""
    variants = result["variants"]
    none_tot = variants.get("none", {}).get("tot_t_ratio_s", {}).get("mean")
    rows = []
    for name, v in variants.items():
        tot = v.get("tot_t_ratio_s", {}).get("mean")
        p = v.get("p_vs_none")
        t = v["test"]
        reached = v.get("epochs_to_target", {})
        rows.append(
            [
                f"`{name}`",
                _mean_sd(v["test_over_seeds"]["dice"]),
                _f(t["ppv"]),
                _f(t["sen"]),
                _f(t["iou"]),
                _vs_none(p),
                _mean_sd(v["epoch"], 1),
                _mean_sd(v["avg_t_s"], 1),
                _mean_sd(v["tot_t_s"], 1),
                _f(v["step_time_ratio"], 2),
                _f(tot / none_tot if tot is not None and none_tot else None, 2),
                f"{_mean_sd(reached, 1)} ({v.get('seeds_reaching_target', 0)}/"
                f"{len(v.get('seeds_run', []))})",
                _mean_sd(v.get("time_to_target_none_epochs"), 1),
            ]
        )
    headers = [
        "variant",
        "DICE",
        "PPV",
        "SEN",
        "IoU",
        "vs none: Δ Dice (k/n seeds, p)",
        "Epoch",
        "Avg.T (s)",
        "Tot.T (s)",
        "step ×none",
        "Tot.T ×none",
        "epochs to none's best",
        "time to it (none epochs)",
    ]
    first = next(iter(variants.values()))
    classes = list(first.get("test_per_class", {}))
    class_rows = [
        [f"`{name}`", *(_f(v["test_per_class"][c]["dice"]) for c in classes)]
        for name, v in variants.items()
    ]
    paper_rows = [
        [
            f"`{mode}` ({PAPER_NAMES[mode]})",
            " / ".join(f"{PAPER_TEST_DICE[mode][d]:.4f}" for d in DATASETS),
            " / ".join(str(PAPER_EFFICIENCY[mode][d][1]) for d in DATASETS),
            _paper_ratios(mode, 0),
            _paper_ratios(mode, 2),
        ]
        for mode in PAPER_EFFICIENCY
        if mode in {v["variant"]["mode"] for v in variants.values()}
    ]
    paper_headers = [
        "mode (paper)",
        f"test DICE ({' / '.join(DATASETS)})",
        "Epoch",
        "Avg.T ×U-Net",
        "Tot.T ×U-Net",
    ]
    parts = [
        f"### Convergence ablation on {result['config'].get('dataset', '?')} "
        "(`benchmarks/convergence/convergence.py`)",
        _convergence_caption(result),
        _table(headers, rows),
        _hyb_sentence(variants),
    ]
    if len(classes) > 1:
        parts += ["Per foreground class (test Dice):", _table(["variant", *classes], class_rows)]
    parts.append(_ordering_sentence(result["ordering"]))
    if any(v.get("equal_compute") for v in variants.values()):
        parts.append(render_equal_compute(result, full_caption=with_paper))
    if with_paper:
        parts += [
            f"The paper's figures ({PAPER}, Tables 4-5; † Tables 2-3), for comparison "
            "(different data, networks and hardware; ratios to its U-Net):",
            _table(paper_headers, paper_rows),
        ]
    return "\n\n".join(parts)


def _cmp(c: Mapping[str, Any] | None) -> str:
    """A table cell from a compare_seeds result: mean difference (k/n seeds, p)."""
    if c is None:
        return "-"
    return f"{c['mean_diff']:+.4f} ({c['better_seeds']}/{c['n_seeds']}, p = {_p(c['p'])})"


def _ended_first(counts: Mapping[str, int]) -> str:
    return f"{counts['early_stopping']} / {counts['epoch_cap']}"


def _reached(stat: Mapping[str, Any], n: int) -> str:
    return f"{_mean_sd(stat, 2)} ({stat.get('n', 0)}/{n})"


def _equal_compute_caption(result: Mapping[str, Any], full: bool = True) -> str:
    """The rules (``full``, else a pointer to the first table) and this data set's caveats."""
    ratios = [
        r["measured_epoch_ratio"]
        for v in result["variants"].values()
        if v.get("equal_compute")
        for r in v["equal_compute"]["seeds"]
    ]
    val = len(result["config"].get("cases", {}).get("val", [])) or "?"
    here = (
        f"Validation has {val} cases here; a variant's measured epoch time over `none`'s ranges "
        f"{min(ratios):.2f}-{max(ratios):.2f}x across seeds and variants."
    )
    if not full:
        return f"Columns as in the first equal-compute table. {here}"
    return (
        "Validation Dice at equal training compute, per seed against `none` with the same "
        "seed, from the stored per-epoch validation curves (no run repeated; "
        "`python benchmarks/convergence/analysis.py FILE` adds them to a stored JSON). A run's "
        "budget is what it used over all its epochs: measured training seconds (the sum of "
        "its epochs' training time, validation left out) or `none` epochs (epochs × step "
        "ratio). A run's value within a budget is its best validation Dice among the epochs "
        "that ended within it. *At none's budget*: the variant within what `none` used, minus "
        "`none`'s best. *At the variant's budget*: the variant's best minus `none`'s best "
        "within the variant's budget; `none` had ended before in the seeds counted in the next "
        "column, by its own early stopping (the same recipe would not have used more compute) "
        "or at the epoch cap (more epochs might have helped it, so there the difference favours "
        "the variant). *Compute to none's best*: the variant's compute until its validation "
        "Dice first reaches `none`'s best, over `none`'s compute until its own best (seeds that "
        "reached it). k/n: seeds in which the variant is higher; p: t-test over seeds. Test "
        "Dice is measured once per run (at its best epoch), so only the equal-epochs column is "
        "on the test set. The measured seconds come from runs sharing a 2-core machine, so "
        f"they vary with its load; the step ratio (interleaved, one batch) is the steadier unit. "
        f"{here}"
    )


def _hyb_equal_compute_sentence(variants: Mapping[str, Any], cap: Any) -> str:
    """hyb at equal compute, per seed, in ``none`` epochs."""
    ec = variants.get("hyb", {}).get("equal_compute")
    if not ec or ec["at_none_budget_none_epochs"] is None:
        return ""
    a, b = ec["at_none_budget_none_epochs"], ec["at_budget_none_epochs"]
    ended = ec["none_ended_first_none_epochs"]

    def seeds(c: Mapping[str, Any]) -> str:
        pairs = zip(c["seeds"], c["per_seed_diff"], strict=True)
        return ", ".join(f"{d:+.4f} (seed {s})" for s, d in pairs)

    return (
        f"`hyb` − `none` in validation Dice, in `none` epochs: at `none`'s budget "
        f"{a['mean_diff']:+.4f}, better in {a['better_seeds']} of {a['n_seeds']} seeds "
        f"({seeds(a)}; p = {_p(a['p'])}); at `hyb`'s budget {b['mean_diff']:+.4f}, better in "
        f"{b['better_seeds']} of {b['n_seeds']} seeds ({seeds(b)}; p = {_p(b['p'])}), where "
        f"`none` had ended first in {ended['early_stopping'] + ended['epoch_cap']} seeds "
        f"({ended['early_stopping']} by its early stopping, {ended['epoch_cap']} at the "
        f"{cap}-epoch cap)."
    )


def render_equal_compute(result: Mapping[str, Any], full_caption: bool = True) -> str:
    """The equal-compute table of one convergence result (validation Dice, compute to target);
    ``full_caption=False`` refers to the first table for the rules."""
    variants, c = result["variants"], result["config"]
    rows = []
    for name, v in variants.items():
        ec = v.get("equal_compute")
        if ec is None:
            continue
        n = len(ec["seeds"])
        rows.append(
            [
                f"`{name}`",
                _f(v["step_time_ratio"], 2),
                _mean_sd(ec["measured_epoch_ratio"], 2),
                _vs_none(v.get("p_vs_none")),
                _cmp(ec["at_none_budget_s"]),
                _cmp(ec["at_none_budget_none_epochs"]),
                _cmp(ec["at_budget_s"]),
                _cmp(ec["at_budget_none_epochs"]),
                f"{_ended_first(ec['none_ended_first_s'])} · "
                f"{_ended_first(ec['none_ended_first_none_epochs'])}",
                _reached(ec["time_to_target_ratio_s"], n),
                _reached(ec["time_to_target_ratio_none_epochs"], n),
            ]
        )
    headers = [
        "variant",
        "step ×none",
        "measured epoch ×none",
        "test Dice vs none, equal epochs (k/n, p)",
        "val Dice at none's budget (s)",
        "same (none epochs)",
        "val Dice at the variant's budget (s)",
        "same (none epochs)",
        "none ended first: stopped / capped (s · none epochs)",
        "compute to none's best ×none (s)",
        "same (none epochs)",
    ]
    parts = [
        f"#### Equal compute on {c.get('dataset', '?')} (setting {c.get('setting', '?')}, at "
        f"most {c.get('epochs', '?')} epochs)",
        _equal_compute_caption(result, full_caption),
        _table(headers, rows),
        _hyb_equal_compute_sentence(variants, c.get("epochs", "?")),
    ]
    return "\n\n".join(p for p in parts if p)


def _check_comparison(p: Mapping[str, Any]) -> None:
    if "per_seed_diff" not in p:
        raise ValueError(
            "this convergence JSON holds the former pooled p-values (seed-averaged cases paired "
            "as if independent); recompute its comparisons from the stored figures with "
            "`python benchmarks/convergence/analysis.py FILE.json`."
        )


def _vs_none(p: Mapping[str, Any] | None) -> str:
    """A table cell: the difference, better in k of n seeds, and the seed-level p."""
    if p is None:
        return "-"
    _check_comparison(p)
    return f"{p['mean_diff']:+.4f} ({p['better_seeds']}/{p['n_seeds']}, p = {_p(p['p'])})"


def _hyb_sentence(variants: Mapping[str, Any]) -> str:
    """hyb - none (and the paper-literal hyb - none) in mean test Dice: per seed, k of n, p."""
    said = []
    for name in ("hyb", "hyb-paper"):
        v = variants.get(name)
        if v is None or v.get("p_vs_none") is None:
            continue
        p = v["p_vs_none"]
        _check_comparison(p)
        seeds = ", ".join(
            f"{d:+.4f} (seed {s})" for s, d in zip(p["seeds"], p["per_seed_diff"], strict=True)
        )
        ci = "" if p["ci95"] is None else f", 95% CI {p['ci95'][0]:+.3f} to {p['ci95'][1]:+.3f}"
        boot = p.get("bootstrap")
        boot_said = (
            ""
            if boot is None
            else f"; seeds × cases bootstrap: p = {_p(boot['p'])}, 95% CI "
            f"{boot['ci95'][0]:+.3f} to {boot['ci95'][1]:+.3f}"
        )
        said.append(
            f"`{name}` − `none`: {p['mean_diff']:+.4f} test Dice, better in "
            f"{p['better_seeds']} of {p['n_seeds']} seeds ({seeds}; p = {_p(p['p'])} over "
            f"seeds{ci}{boot_said})"
        )
    return "; ".join(said) + "." if said else ""


def render(
    step_time: Mapping[str, Any] | None = None,
    inference: Mapping[str, Any] | None = None,
    convergence: Sequence[Mapping[str, Any]] = (),
    sources: Mapping[str, str] | None = None,
) -> str:
    """The whole results section (between the markers, markers included)."""
    parts = [
        START,
        "## Results",
        "Generated by `python benchmarks/report.py` from the benchmarks' JSON; do not edit by "
        "hand. Data: Medical Segmentation Decathlon Task04 (Simpson et al., arXiv:1902.09063; "
        "CC-BY-SA 4.0); ISBI 2012 EM segmentation challenge (Arganda-Carreras et al., Front. "
        "Neuroanat. 2015).",
    ]
    for name, title, result, render_one in (
        ("step_time", "Training-step cost", step_time, render_step_time),
        ("inference", "Inference", inference, render_inference),
        ("convergence", "Convergence ablation", convergence or None, None),
    ):
        if name == "convergence" and result is not None:
            parts += [render_convergence(r, with_paper=i == 0) for i, r in enumerate(result)]
        elif result is None:
            parts.append(
                f"### {title} (`benchmarks/{name}.py`)\n\nNot run yet (no JSON given to "
                "`report.py`)."
            )
            if name == "convergence":
                parts.append(CONVERGENCE_TODO)
        else:
            parts.append(render_one(result))
    if sources:
        listed = ", ".join(f"{k}: `{v}`" for k, v in sources.items())  # "a`, `b" for lists
        parts.append(f"Sources: {listed}.")
    parts.append(END)
    return "\n\n".join(parts) + "\n"


def replace_section(text: str, section: str) -> str:
    """``text`` with the part between the markers replaced by ``section`` (markers included).

    Raises:
        ValueError: the markers are unbalanced or out of order.
    """
    starts, ends = text.count(START), text.count(END)
    if starts == 0 and ends == 0:
        return text.rstrip("\n") + "\n\n" + section
    if starts != 1 or ends != 1 or text.index(START) > text.index(END):
        raise ValueError(
            f"README markers must appear once each, {START!r} before {END!r}; found {starts} "
            f"start and {ends} end markers."
        )
    before = text[: text.index(START)]
    after = text[text.index(END) + len(END) :]
    return before + section.rstrip("\n") + after


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--step-time", type=Path, help="JSON of benchmarks/cost/step_time.py")
    parser.add_argument("--inference", type=Path, help="JSON of benchmarks/cost/inference.py")
    parser.add_argument(
        "--convergence",
        type=Path,
        action="append",
        help="convergence.json of convergence.py (repeat for several data sets)",
    )
    parser.add_argument(
        "--readme",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "docs" / "results" / "benchmarks.md",
        help="the page to update (default: the docs' docs/results/benchmarks.md)",
    )
    parser.add_argument(
        "--print", action="store_true", help="print the section instead of writing the README"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.step_time or args.inference or args.convergence):
        parser.error("give at least one of --step-time, --inference, --convergence.")
    try:
        step = args.step_time and load_json(args.step_time, "step_time", ("ratios", "config"))
        inference = args.inference and load_json(
            args.inference, "inference", ("ratios", "outputs_identical", "config")
        )
        convergence = [
            load_json(path, "convergence", ("config", "variants", "ordering"))
            for path in args.convergence or []
        ]
    except ValueError as exc:
        parser.error(str(exc))
    given = {
        "step_time": [args.step_time] if args.step_time else [],
        "inference": [args.inference] if args.inference else [],
        "convergence": args.convergence or [],
    }
    sources = {k: "`, `".join(map(str, v)) for k, v in given.items() if v}
    try:
        section = render(step or None, inference or None, convergence, sources)
    except ValueError as exc:  # e.g. a convergence JSON with the former pooled p-values
        parser.error(str(exc))
    if args.print:
        sys.stdout.write(section)
        return 0
    text = args.readme.read_text(encoding="utf-8") if args.readme.is_file() else ""
    args.readme.write_text(replace_section(text, section), encoding="utf-8")
    print(f"updated {args.readme}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
