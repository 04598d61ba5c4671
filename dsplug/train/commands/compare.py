"""``dsplug compare``: metric and efficiency tables of two or more runs."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..compare import compare_runs
from ..paths import check_writes
from ._common import COMPARE_FILES, RUN_FILES, _report_folder
from .arguments import debug_option

__all__ = ["add_parser", "compare_command"]


def _compare_out(args: argparse.Namespace) -> Path:
    """``--out``, or by default ``compare`` in the runs' common folder (beside them)."""
    try:
        common = Path(os.path.commonpath([Path(r).resolve().parent for r in args.runs]))
    except ValueError:  # no common folder (e.g. two drives)
        common = Path("runs")
    default = common / "compare"
    out = Path(args.out) if args.out else default
    _report_folder(out, COMPARE_FILES, args.overwrite, str(default))
    return out


def compare_command(args: argparse.Namespace) -> int:
    """``dsplug compare``: metric and efficiency tables of two or more runs."""
    out = _compare_out(args)
    reads = [(Path(r) / name, f"a file of run {r}") for r in args.runs for name in RUN_FILES]
    check_writes([(out / name, f"compare's {name}") for name in COMPARE_FILES], reads)
    print(compare_runs(args.runs, out))
    print(f"wrote {out / 'compare.md'} (and CSV tables)")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``dsplug compare`` and its options."""
    p = commands.add_parser(
        "compare",
        help="metric and efficiency tables of two or more runs",
        description="Per-case metrics with paired p-values against the first run (a warning "
        "when fewer than 10 cases pair up), and Avg.T / Epoch / Tot.T (as the paper's Tables "
        "3-5); Markdown and CSV. Runs are labelled by their path below their common folder.",
        allow_abbrev=False,
    )
    p.add_argument("runs", nargs="+", help="run folders (the first is the baseline)")
    p.add_argument(
        "--out",
        default=None,
        help="output folder, never a run folder (default: compare/ in the runs' common folder)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an earlier comparison")
    debug_option(p)
    return p
