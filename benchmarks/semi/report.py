"""The semi-supervised section: per labelled size, each arm against ``none``, ``up`` and mean
teacher seed by seed, the target's verdict, and the pseudo-mask designs tried; from the JSON of
``semi.py`` and ``semi_designs.py``."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

from benchmarks._tables import diff_cell

__all__ = ["SEMI_ARMS", "demo_line", "render_semi"]

#: What each arm of ``benchmarks/semi/semi.py`` does with the unlabelled cases.
SEMI_ARMS = {
    "none": "none (labelled cases only)",
    "up": "up (labelled cases only)",
    "hyb": "hyb (labelled cases only)",
    "mean-teacher": "mean teacher on `none`",
    "mean-teacher-1": "mean teacher on `none`, weight 1",
    "pseudo-none": "`none` on the EMA teacher's pseudo-masks",
    "pseudo-up": "`up` on the pseudo-masks",
    "hyb-semi": "`hyb` on the pseudo-masks (G pass and tied decoder too)",
    "hyb-rei": "`hyb`, tied decoder reconstructing unlabelled X (no teacher)",
    "up-mt": "mean teacher on `up`",
    "up-cons": "`up`, side outputs agreeing on unlabelled X (`consistency`, no teacher)",
    "up-cons-01": "`up` + `consistency`, weight 0.1",
    "up-cons-0": "`up` + the unlabelled pass at weight 0 (control: batch norm's statistics)",
    "up-cons-0-ks": "the control, batch norm's running statistics kept (equals `up`)",
    "up-cons-01-ks": "`up` + `consistency` 0.1, running statistics kept (the loss alone)",
    "up-mt-ks": "mean teacher on `up`, running statistics kept (the loss alone)",
    "full": "`none` with every pool case labelled (upper line)",
    "full-up": "`up` with every pool case labelled (upper line)",
}
#: The issue's target over ``up`` per data set and labelled size (a default per data set).
TARGETS = {"hippocampus": {2: 0.05, None: 0.03}, "isbi2012": {None: 0.02}}
#: Arms trained on masks alone (the rest learn from the unlabelled images too).
SUPERVISED = ("none", "up", "hyb", "full", "full-up")


def render_semi(
    result: Mapping[str, Any],
    plot: str,
    designs: Mapping[str, Any] | None = None,
    steps: Mapping[str, Any] | None = None,
) -> str:
    """The semi-supervised section: per labelled size, each arm's test Dice against ``none``,
    ``up`` and mean teacher seed by seed, its step time, and the verdict of the issue's rule
    (the best recipe beats ``up`` by >= 0.03 in every seed); ``plot`` links its plot, and
    ``designs`` (``semi_designs.py``'s JSON) adds the pseudo-mask designs tried, ``steps``
    (``cost/step_semi.py``'s JSON) the interleaved cost of an unlabelled batch."""
    config = result["config"]
    data = config.get("data", "hippocampus")
    where = (
        "ISBI 2012 at 128 px, the contiguous 15 / 3 / 12 slices (the unlabelled: the rest of "
        "the 15)"
        if data == "isbi2012"
        else f"Task04 2D, empty slices kept; {config['val']} validation and {config['test']} "
        "test cases"
    )
    lines = [
        f"{where}; batch {config.get('batch', 8)}; at most {config['steps']} optimiser steps "
        f"per arm (validation every {config['eval_every']}, the paper's early stopping); seeds "
        f"{config['seeds']}.",
        "",
        f"![semi-supervised]({plot})",
        "",
        "Step time: each run's wall time per step over `none`'s, median over seeds; the runs "
        "shared the machine with other jobs, so it is rough, and the `up-mt` and `up-cons` runs "
        "ran beside up to five other jobs: their wall ratios are not comparable."
        + ("" if steps is None else " " + _step_costs(steps)),
        "",
        "| labelled | arm | test Dice | vs `none` | vs `up` | vs mean teacher (on `none`) | "
        "step time |",
        "|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for n, rows in result["table"].items():
        for arm, row in rows.items():
            cells = [n, SEMI_ARMS.get(arm, arm)]
            cells.append(f"{row['test_dice_mean']:.4f} ± {row['test_dice_sd']:.4f}")
            for ref in ("none", "up", "mean-teacher"):
                f = row.get(f"vs_{ref}")
                cells.append(diff_cell({"diffs": f["per_seed_diff"], "p": f["p"]}) if f else "")
            ratio = row.get("step_time_vs_none")
            cells.append(f"{ratio:.2f}x" if ratio else "")
            lines.append("| " + " | ".join(cells) + " |")
        semi = {a: r for a, r in rows.items() if a not in SUPERVISED and "vs_up" in r}
        if semi:
            best = max(semi, key=lambda a: semi[a]["test_dice_mean"])
            diffs = semi[best]["vs_up"]["per_seed_diff"]
            targets = TARGETS.get(data, TARGETS["hippocampus"])
            target = targets.get(int(n), targets[None])
            met = min(diffs) >= target
            teacher = semi[best].get("vs_mean-teacher")
            versus = (
                ""
                if teacher is None
                else f", {statistics.mean(teacher['per_seed_diff']):+.4f} over mean teacher"
            )
            verdicts.append(
                f"- {n} labelled: the best unlabelled-image arm is `{best}`, "
                f"{statistics.mean(diffs):+.4f} over `up` ({semi[best]['vs_up']['better_seeds']}"
                f"/{len(diffs)} seeds){versus}; the target (>= +{target:.2f} over `up` in every "
                f"seed) is {'met' if met else 'not met'}."
            )
    return "\n".join([*lines, "", *verdicts, *([] if designs is None else _designs(designs))])


def _designs(result: Mapping[str, Any]) -> list[str]:
    """The pseudo-label designs tried (``semi_designs_hippocampus.json``), seed 0."""
    ref = result["reference"]
    lines = [
        "",
        "The pseudo-mask designs tried (`pseudo-none`, seed 0, chosen by validation Dice; "
        f"`none` {ref['none']['val_dice_best']:.3f} validation, {ref['none']['test_dice']:.4f} "
        f"test; `up` {ref['up']['val_dice_best']:.3f}, {ref['up']['test_dice']:.4f}):",
        "",
        "| design | best validation Dice (step) | test Dice |",
        "|---|---|---|",
    ]
    for d in result["designs"]:
        lines.append(
            f"| {d['design']} | {d['val_dice_best']:.3f} ({d['best_step']}) | "
            f"{d['test_dice']:.4f} |"
        )
    return lines


def demo_line(result: Mapping[str, Any]) -> str:
    """The last line ``dsplug demo`` prints: what learning from unlabelled phantoms gave in the
    demo's regime with few masks (``demo_semi.py``'s JSON), each arm against ``none`` seed by
    seed, and whether anything paid (a mean gain of >= 0.01 in every seed)."""
    table, seeds = result["table"], len(result["seeds"])
    parts, paid = [], []
    for arm, row in table.items():
        if arm == "none" or "vs_none" not in row:
            continue
        diffs = row["vs_none"]["per_seed_diff"]
        mean = statistics.mean(diffs)
        parts.append(f"{arm} {mean:+.3f} ({sum(d > 0 for d in diffs)}/{seeds} seeds)")
        if mean >= 0.01 and min(diffs) > 0:
            paid.append(arm)
    verdict = (
        f"learning from the unlabelled phantoms pays here ({', '.join(paid)})"
        if paid
        else "nothing paid on phantoms: none is as good"
    )
    return (
        f"With few masks ({result['labeled']} labelled phantoms, the other training phantoms "
        f"unlabelled; epochs: {result['settings']['epochs']}), measured over {seeds} seeds, "
        f"test Dice vs none: {'; '.join(parts)}: {verdict} (benchmarks/semi/demo_semi.py; "
        f"try it: dsplug train --data synthetic --mode up --labeled-cases {result['labeled']} "
        "--unlabeled-weight 1)."
    )


def _step_costs(steps: Mapping[str, Any]) -> str:
    """The unlabelled part of a step per recipe, and the whole steps timed as one, interleaved."""
    rows = steps["unlabeled"]
    parts = ", ".join(f"{k} {r['time']:.2f}x" for k, r in rows.items() if not k.startswith("step:"))
    whole = ", ".join(
        f"{k.removeprefix('step: ')} {r['time']:.2f}x"
        for k, r in rows.items()
        if k.startswith("step:")
    )
    text = (
        "Timed interleaved on one thread (`benchmarks/cost/step_semi.py`), the unlabelled batch "
        f"adds, as a share of a labelled `none` step: {parts}"
    )
    if whole:
        text += f"; whole steps (both batches, one backward), timed as one: {whole}"
    return text + "."
