"""The label-efficiency section of a data set: its plot and its table, from the JSON of
``label_efficiency.py``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks.label_efficiency.label_efficiency import markdown

__all__ = ["render_label_efficiency"]


def render_label_efficiency(table: Mapping[str, Any], plot: str) -> list[str]:
    """The lines of one data set's part: a caption, its plot (linked as ``plot``) and its table."""
    caps = sorted({(r["cases"], r["epochs_cap"]) for r in table["rows"]})
    steps = "scaled to equal optimiser steps" if table.get("equal_steps") else "equal"
    runs = [e == r["epochs_cap"] for r in table["rows"] for e in r["epochs_run"]]
    return [
        f"**{table['dataset']}** (epoch caps {steps}: "
        + ", ".join(f"{n} cases: {e}" for n, e in caps)
        + f"; {sum(runs)} of {len(runs)} runs ended at the cap, not by early stopping). "
        "Each cell: mean test Dice; for a mode, its difference from `none`, the seeds in "
        "which it beat `none` and the t-test over seeds.",
        "",
        f"![label efficiency, {table['dataset']}]({plot})",
        "",
        markdown(table),
        "",
    ]
