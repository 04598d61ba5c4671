"""The cost study's tables: the training step against ``none`` (beside the paper's Avg.T
ratios) and inference against the bare model, from the JSON of ``step_time.py`` and
``inference.py``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks._tables import cell, machine, table
from benchmarks.paper import DATASETS, paper_ratios

__all__ = ["render_inference", "render_step_time"]


def render_step_time(result: Mapping[str, Any]) -> str:
    """Train-step cost ratios to ``none`` beside the paper's Avg.T ratios (Tables 3, 5)."""
    c = result.get("config", {})
    rows = []
    for mode, r in result["ratios"].items():
        rows.append(
            [
                f"`{mode}`",
                cell(r.get("time"), 2),
                cell(r.get("cpu_time"), 2),
                cell(r.get("memory"), 2),
                cell(r.get("flops"), 2),
                paper_ratios(mode, 0) + (" †" if mode in ("up", "down") else ""),
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
        f"{c.get('repeats', '?')} interleaved rounds (median); {machine(c)}"
    )
    return (
        "### Training-step cost (`benchmarks/cost/step_time.py`)\n\n"
        f"{setting}.\n\n{table(headers, rows)}\n\n"
        "The paper's ratios are per epoch on a GPU with its networks and data (Table 5; "
        "† rows: Table 3's M-Net and MLDS-Net, which the paper's Up / Down variants follow)."
    )


def render_inference(result: Mapping[str, Any]) -> str:
    """Eval-mode time of ``ds(x)`` over the bare model, and output identity."""
    c = result.get("config", {})
    identical = result.get("outputs_identical", {})
    rows = [
        [f"`{mode}`", cell(r.get("time"), 3), cell(identical.get(mode))]
        for mode, r in result["ratios"].items()
    ]
    setting = (
        f"{c.get('model', '?')} base {c.get('base', '?')}, depth {c.get('depth', '?')}, batch "
        f"{c.get('batch', '?')} of {c.get('size', '?')}², {c.get('repeats', '?')} rounds; "
        f"{machine(c)}"
    )
    return (
        "### Inference (`benchmarks/cost/inference.py`)\n\n"
        f"{setting}.\n\n"
        f"{table(['mode', 'eval time ×bare model', 'outputs identical'], rows)}"
    )
