"""What the command modules share: the failures printed as they are, the files a run or a
report holds, the options' helpers and the refusal of a run folder as a report's --out."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..lock import RunLockedError
from ..loop import NonFiniteLossError

__all__ = [
    "COMPARE_FILES",
    "EVALUATE_FILES",
    "EXPECTED_FAILURES",
    "RUN_FILES",
    "PredictFailures",
    "parse_options",
]


class PredictFailures(RuntimeError):
    """Some ``predict`` inputs were skipped (each named on stderr); the others are written."""


#: Failures while running whose message says it all (printed without the exception's name).
EXPECTED_FAILURES: tuple[type[Exception], ...] = (
    NonFiniteLossError,
    OSError,
    RunLockedError,
    PredictFailures,
)


#: What a training run writes into its folder (``--overwrite`` deletes exactly these).
RUN_FILES = (
    "last.pt",
    "best.pt",
    "log.csv",
    "curves.png",
    "overlays.png",
    "summary.json",
    "val_cases.csv",
    "test_cases.csv",
    "splits.json",
    "config.json",
    "tb",
)


# Written before the first epoch ends: a folder holding only these holds no run yet.
_STARTUP_FILES = frozenset({"splits.json", "config.json", "tb"})


def _listed(flags: list[str], one: str, many: str) -> str:
    """``"--size does"`` / ``"--size, --fit do"``."""
    return f"{', '.join(flags)} {one if len(flags) == 1 else many}"


def _given(args: argparse.Namespace, pairs: tuple[tuple[str, str], ...]) -> list[str]:
    """The flags of ``pairs`` given on the command line (their value is not None / False)."""
    values = [(flag, getattr(args, dest, None)) for flag, dest in pairs]
    return [flag for flag, value in values if value is not None and value is not False]


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``["num_cases=40", "modalities=[\\"t1ce\\"]"]`` -> dict; values are JSON when they parse.

    Raises:
        ValueError: an entry without ``=``.
    """
    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--option expects KEY=VALUE, got {pair!r}.")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def _synthetic(args: argparse.Namespace) -> bool:
    return args.data == "synthetic" or args.kind == "synthetic"


#: What ``evaluate`` writes into its --out.
EVALUATE_FILES = ("cases.csv", "summary.json", "overlays.png")
#: What ``compare`` writes into its --out.
COMPARE_FILES = ("compare.md", "compare_metrics.csv", "compare_efficiency.csv")


def _run_markers(folder: Path) -> list[str]:
    """The files that only a training run writes (a report's summary.json is not one)."""
    markers = ("last.pt", "best.pt", "log.csv", "config.json", "splits.json", "val_cases.csv")
    return [name for name in markers if (folder / name).exists()]


def _report_folder(out: Path, files: tuple[str, ...], overwrite: bool, default: str) -> None:
    """Refuse a run folder as a report's --out, and an existing report without --overwrite.

    Raises:
        ValueError: ``out`` is a file, a run folder, or holds the report (no ``overwrite``).
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: a file, not a folder.")
    held = _run_markers(out)
    if held:
        raise ValueError(
            f"--out {out} is a training run's folder ({', '.join(held[:3])}, ...): reports "
            f"never go into it, where they would replace the run's own files; use the default "
            f"({default}) or another --out."
        )
    existing = [name for name in files if (out / name).exists()]
    if existing and not overwrite:
        raise ValueError(
            f"--out {out} already holds a report ({', '.join(existing)}); replace it with "
            "--overwrite, or choose another --out."
        )


def _holds_run(folder: Path) -> list[str]:
    """The files of a run in ``folder`` (those a start writes first, or user files, are not)."""
    if not folder.is_dir():
        return []
    run = set(RUN_FILES) - _STARTUP_FILES
    return sorted(p.name for p in folder.iterdir() if p.name in run)
