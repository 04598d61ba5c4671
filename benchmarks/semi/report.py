"""The semi-supervised section: per labelled size, each arm against ``none``, ``up`` and mean
teacher seed by seed, the target's verdict, and the pseudo-mask designs tried; from the JSON of
``semi.py`` and ``semi_designs.py``."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

from benchmarks._tables import diff_cell

__all__ = ["SEMI_ARMS", "render_semi"]

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
    "full": "`none` with every pool case labelled (upper line)",
}


def render_semi(
    result: Mapping[str, Any], plot: str, designs: Mapping[str, Any] | None = None
) -> str:
    """The semi-supervised section: per labelled size, each arm's test Dice against ``none``,
    ``up`` and mean teacher seed by seed, its step time, and the verdict of the issue's rule
    (the best recipe beats ``up`` by >= 0.03 in every seed); ``plot`` links its plot, and
    ``designs`` (``semi_designs.py``'s JSON) adds the pseudo-mask designs tried."""
    config = result["config"]
    lines = [
        f"Task04 2D, empty slices kept; {config['val']} validation and {config['test']} test "
        f"cases; at most {config['steps']} optimiser steps per arm (validation every "
        f"{config['eval_every']}, the paper's early stopping); seeds {config['seeds']}.",
        "",
        f"![semi-supervised]({plot})",
        "",
        "Step time: each run's wall time per step over `none`'s, median over seeds; the runs "
        "shared the machine with other jobs, so it is rough (`benchmarks/cost/step_time.py` times "
        "the unlabelled steps interleaved).",
        "",
        "| labelled cases | arm | test Dice | vs `none` | vs `up` | vs mean teacher | step time |",
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
        supervised = ("none", "up", "hyb", "full")
        semi = {a: r for a, r in rows.items() if a not in supervised and "vs_up" in r}
        if semi:
            best = max(semi, key=lambda a: semi[a]["test_dice_mean"])
            diffs = semi[best]["vs_up"]["per_seed_diff"]
            met = min(diffs) >= 0.03
            verdicts.append(
                f"- {n} labelled cases: the best unlabelled-image arm is `{best}`, "
                f"{statistics.mean(diffs):+.4f} over `up` ({semi[best]['vs_up']['better_seeds']}"
                f"/{len(diffs)} seeds); the target (>= +0.03 in every seed) is "
                f"{'met' if met else 'not met'}."
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
