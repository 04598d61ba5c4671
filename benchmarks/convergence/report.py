"""The convergence study's tables: accuracy, p-values, efficiency and equal compute per
variant (beside the paper's figures), and the recipe ablation (each term family of ``hyb`` left
out, against ``hyb`` and ``none`` seed by seed)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

from benchmarks._tables import cell, diff_cell, machine, mean_sd_cell, p_cell, table
from benchmarks.paper import (
    DATASETS,
    PAPER,
    PAPER_EFFICIENCY,
    PAPER_NAMES,
    PAPER_TEST_DICE,
    paper_ratios,
)
from dsplug.metrics.paired import compare_seeds

__all__ = ["LEFT_OUT", "render_convergence", "render_equal_compute", "render_recipe"]


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
        f"{c.get('torch_threads_per_run', '?')} thread(s) each; {machine(c)}.",
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
                mean_sd_cell(v["test_over_seeds"]["dice"]),
                cell(t["ppv"]),
                cell(t["sen"]),
                cell(t["iou"]),
                _vs_none(p),
                mean_sd_cell(v["epoch"], 1),
                mean_sd_cell(v["avg_t_s"], 1),
                mean_sd_cell(v["tot_t_s"], 1),
                cell(v["step_time_ratio"], 2),
                cell(tot / none_tot if tot is not None and none_tot else None, 2),
                f"{mean_sd_cell(reached, 1)} ({v.get('seeds_reaching_target', 0)}/"
                f"{len(v.get('seeds_run', []))})",
                mean_sd_cell(v.get("time_to_target_none_epochs"), 1),
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
        [f"`{name}`", *(cell(v["test_per_class"][c]["dice"]) for c in classes)]
        for name, v in variants.items()
    ]
    paper_rows = [
        [
            f"`{mode}` ({PAPER_NAMES[mode]})",
            " / ".join(f"{PAPER_TEST_DICE[mode][d]:.4f}" for d in DATASETS),
            " / ".join(str(PAPER_EFFICIENCY[mode][d][1]) for d in DATASETS),
            paper_ratios(mode, 0),
            paper_ratios(mode, 2),
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
        table(headers, rows),
        _hyb_sentence(variants),
    ]
    if len(classes) > 1:
        parts += ["Per foreground class (test Dice):", table(["variant", *classes], class_rows)]
    parts.append(_ordering_sentence(result["ordering"]))
    if any(v.get("equal_compute") for v in variants.values()):
        parts.append(render_equal_compute(result, full_caption=with_paper))
    if with_paper:
        parts += [
            f"The paper's figures ({PAPER}, Tables 4-5; † Tables 2-3), for comparison "
            "(different data, networks and hardware; ratios to its U-Net):",
            table(paper_headers, paper_rows),
        ]
    return "\n\n".join(parts)


def _cmp(c: Mapping[str, Any] | None) -> str:
    """A table cell from a compare_seeds result: mean difference (k/n seeds, p)."""
    if c is None:
        return "-"
    return f"{c['mean_diff']:+.4f} ({c['better_seeds']}/{c['n_seeds']}, p = {p_cell(c['p'])})"


def _ended_first(counts: Mapping[str, int]) -> str:
    return f"{counts['early_stopping']} / {counts['epoch_cap']}"


def _reached(stat: Mapping[str, Any], n: int) -> str:
    return f"{mean_sd_cell(stat, 2)} ({stat.get('n', 0)}/{n})"


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
        f"({seeds(a)}; p = {p_cell(a['p'])}); at `hyb`'s budget {b['mean_diff']:+.4f}, better in "
        f"{b['better_seeds']} of {b['n_seeds']} seeds ({seeds(b)}; p = {p_cell(b['p'])}), where "
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
                cell(v["step_time_ratio"], 2),
                mean_sd_cell(ec["measured_epoch_ratio"], 2),
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
        table(headers, rows),
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
    return f"{p['mean_diff']:+.4f} ({p['better_seeds']}/{p['n_seeds']}, p = {p_cell(p['p'])})"


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
            else f"; seeds × cases bootstrap: p = {p_cell(boot['p'])}, 95% CI "
            f"{boot['ci95'][0]:+.3f} to {boot['ci95'][1]:+.3f}"
        )
        said.append(
            f"`{name}` − `none`: {p['mean_diff']:+.4f} test Dice, better in "
            f"{p['better_seeds']} of {p['n_seeds']} seeds ({seeds}; p = {p_cell(p['p'])} over "
            f"seeds{ci}{boot_said})"
        )
    return "; ".join(said) + "." if said else ""


#: What each ablated variant leaves out of hyb's recipe.
LEFT_OUT = {
    "hyb": "nothing (the default)",
    "rec": "the G pass (L_mask, L_seg, L_D: hyb is μ-Net-Rec plus these)",
    "hyb-no-rec-x": "L_rei (reconstruction of X)",
    "hyb-no-rec-g": "L_rem (reconstruction of G)",
    "hyb-no-pseudo": "the pseudo-label terms (L_seg, L_seg')",
    "hyb-no-features": "the feature terms (L_D, L_D')",
}


def render_recipe(result: Mapping[str, Any]) -> str:
    """The recipe ablation (a convergence result): each variant's test Dice against hyb and
    none, seed by seed."""
    variants, ratios = result["variants"], result["step_time"]["ratios"]

    def per_seed(name: str) -> list[float]:
        return [s["test"]["dice"] for s in sorted(variants[name]["seeds"], key=lambda s: s["seed"])]

    lines = [
        "| left out of `hyb` | variant | test Dice | vs `hyb` | vs `none` | step time |",
        "|---|---|---|---|---|---|",
    ]
    for name in variants:
        if name == "none":
            continue
        dice = per_seed(name)
        cells = [LEFT_OUT.get(name, name), f"`{name}`", f"{statistics.mean(dice):.4f}"]
        for reference in ("hyb", "none"):
            if name == reference or reference not in variants:
                cells.append("")
                continue
            f = compare_seeds(dice, per_seed(reference))
            cells.append(diff_cell({"diffs": f["per_seed_diff"], "p": f["p"]}))
        cells.append(f"{ratios[name]['time']:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
