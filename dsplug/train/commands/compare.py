"""``dsplug compare``: metric and efficiency tables of two or more runs."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..compare import compare_runs
from ..paths import check_writes
from ._common import COMPARE_FILES, RUN_FILES, _report_folder

__all__ = ["compare_command"]


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
