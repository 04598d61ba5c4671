"""The cells of the guidance tables, from one row's figures (``guidance.row_figures``): the
difference's reference, the step cost, the compute-matched columns and the verdict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "DISPLAY",
    "GAIN",
    "LEVEL",
    "best_cell",
    "cost_cell",
    "display_mode",
    "equal_cell",
    "verdict",
    "versus",
]

LEVEL = 0.005  # a mean difference smaller than this is "level"
GAIN = 0.01  # the gain issue 19 asks of a regime with scarce labels


def verdict(f: Mapping[str, Any]) -> str:
    """The "use it?" cell, from the figures alone.

    Worse than ``none`` on average: no. Within ``LEVEL`` of it: level, not worth its cost.
    Better: "for accuracy" ("yes" with a gain of >= ``GAIN`` in every seed; a smaller gain in
    every seed is called small) and, when its validation Dice at ``none``'s compute is below
    ``none``'s in most seeds, "not for time"; a gain of >= ``GAIN`` in every seed is said so.
    """
    diffs, reference = f["diffs"], f.get("reference", "none")
    mean = sum(diffs) / len(diffs)
    if mean <= -LEVEL:
        return f"**no**: use `{reference}`"
    if mean < LEVEL:
        return f"level with `{reference}`: not worth its cost"
    if not all(d > 0 for d in diffs):
        text = "for accuracy (not in every seed)"
    else:
        text = "yes, for accuracy" if mean >= GAIN else f"for a small gain (under {GAIN})"
    equal = f.get("at_none_compute")
    if equal is not None and sum(d < 0 for d in equal) > len(equal) / 2:
        text += "; not at equal compute"
    return text


#: How a benchmark variant is named in the tables (the rest as they are).
DISPLAY = {
    "hyb-aux50": "hyb, aux_fraction=0.5",
    "hyb-aux25": "hyb, aux_fraction=0.25",
    "hyb-every2": "hyb (default: aux_every=2)",
    "hyb-scale50": "hyb, aux_scale=0.5",
    "hyb-scale50-every2": "hyb, aux_scale=0.5, aux_every=2",
}


def display_mode(variant: str) -> str:
    """A variant's name in the tables: its options spelt out."""
    return DISPLAY.get(variant, variant)


def versus(f: Mapping[str, Any], cell: str) -> str:
    """A difference cell, naming its reference when it is not ``none``."""
    reference = f.get("reference", "none")
    return cell if reference == "none" else f"vs `{reference}`: {cell}"


def equal_cell(f: Mapping[str, Any]) -> str:
    """The "at none's compute" cell: the mean difference and the seeds ahead."""
    equal = f.get("at_none_compute")
    if not equal:
        return ""
    mean = sum(equal) / len(equal)
    return f"{mean:+.3f} ({sum(d > 0 for d in equal)}/{len(equal)})"


def cost_cell(f: Mapping[str, Any], memory: bool = True) -> str:
    """The step-time (and memory) cell: a semi-supervised step, a timed step, or wall time."""
    if f.get("semi_step") is not None:
        return f"{f['semi_step']:.2f}x (with its unlabelled batch)"
    step = f.get("step")
    if step is not None:
        return f"{step[0]:.2f}x / {step[1]:.2f}x" if memory else f"{step[0]:.2f}x"
    return "" if f.get("wall") is None else f"{f['wall']:.1f}x (wall)"


def best_cell(f: Mapping[str, Any]) -> str:
    """The "to none's best" cell: epochs of ``none`` to reach its best, and the seeds that did."""
    if f["reached"] is None:
        return ""
    if not f["reached"]:
        return "never (0 seeds)"
    seeds = "seed" if f["reached"] == 1 else "seeds"
    return f"{f['to_best']:.1f} vs {f['to_best_none']:.1f} ({f['reached']} {seeds})"
