"""Markdown cells and tables shared by the studies' reports and ``guidance.py``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["cell", "diff_cell", "machine", "mean_sd_cell", "p_cell", "table"]


def cell(value: Any, digits: int = 4) -> str:
    """A cell: ``-`` when absent or not finite, yes / no, an int as is, else ``digits`` decimals."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def p_cell(value: Any) -> str:
    """A p-value: two significant digits, scientific below 0.001, ``-`` when absent."""
    if value is None:
        return "-"
    return f"{value:.2g}" if value >= 0.001 else f"{value:.1e}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine(config: Mapping[str, Any]) -> str:
    """The machine a result ran on, in one line (its config's ``machine``)."""
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


def mean_sd_cell(stat: Mapping[str, Any] | None, digits: int = 4) -> str:
    """mean ± sd over seeds (the mean alone for one seed), ``-`` when absent."""
    if not stat or stat.get("mean") is None:
        return "-"
    if stat.get("n", 0) > 1:
        return f"{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f}"
    return f"{stat['mean']:.{digits}f}"


def diff_cell(f: Mapping[str, Any], per_seed: bool = True) -> str:
    """A difference from ``none``: mean (seeds better / seeds, p; and each seed's when
    ``per_seed``)."""
    diffs = f["diffs"]
    mean = sum(diffs) / len(diffs)
    better = sum(d > 0 for d in diffs)
    p = "" if f["p"] is None else f", p = {f['p']:.2g}"
    if not per_seed:
        return f"{mean:+.3f} ({better}/{len(diffs)}{p})"
    seeds = ", ".join(f"{d:+.3f}" for d in diffs)
    return f"{mean:+.3f} ({better}/{len(diffs)}{p}; {seeds})"
