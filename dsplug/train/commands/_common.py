"""What the command modules share: the failures printed as they are, the files a run or a
report holds, the options' helpers and the refusal of a run folder as a report's --out."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...options import LabelMode
from ..lock import RunLockedError
from ..loop import NonFiniteLossError

__all__ = [
    "COMPARE_FILES",
    "EVALUATE_FILES",
    "EXPECTED_FAILURES",
    "RUN_FILES",
    "PredictFailures",
    "check_synthetic_options",
    "json_value",
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
        options[key] = json_value(value)
    return options


def json_value(text: str) -> Any:
    """``text`` as JSON when it parses (``"40"`` -> 40), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _integer(value: Any, low: int | None = None) -> bool:
    ok = isinstance(value, int) and not isinstance(value, bool)
    return ok and (low is None or value >= low)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


#: The synthetic phantoms' options: (what a value must be, whether one is).
_SYNTHETIC_OPTIONS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "num_cases": ("a positive integer, e.g. num_cases=40", lambda v: _integer(v, 1)),
    "size": (
        "an integer >= 8 (a square, or a cube with dim=3) or a list of one per axis, e.g. "
        "size=64 or size=[64,48]",
        lambda v: (
            _integer(v, 8)
            or (isinstance(v, list) and len(v) in (2, 3) and all(_integer(s, 8) for s in v))
        ),
    ),
    "dim": ("2 or 3", lambda v: v in (2, 3) and _integer(v)),
    "label_mode": ("binary, multiclass or multilabel", lambda v: v in list(LabelMode)),
    "classes": ("a positive integer", lambda v: _integer(v, 1)),
    "in_channels": ("a positive integer", lambda v: _integer(v, 1)),
    "noise": ("a number >= 0, e.g. noise=0.25", _number),
    "seed": ("an integer", _integer),
}


#: How a JSON value reads to a user (what ``--option KEY=VALUE`` was understood as).
_KINDS = {
    float: "a decimal number",
    int: "an integer out of range",
    bool: "true / false",
    list: "a list",
    dict: "a JSON object",
    type(None): "null",
}


def check_synthetic_options(pairs: list[str] | None) -> None:
    """Refuse a synthetic ``--option KEY=VALUE`` that is unknown or of the wrong type, in the
    CLI's words (before the phantoms' own checks, which speak Python).

    Raises:
        ValueError: ``--option KEY=VALUE`` as given, with what is expected.
    """
    options = parse_options(pairs)
    for pair in pairs or []:
        key, _, text = pair.partition("=")
        if key not in _SYNTHETIC_OPTIONS:
            raise ValueError(
                f"--option {pair}: synthetic data takes no option {key!r}; it takes "
                f"{', '.join(_SYNTHETIC_OPTIONS)}."
            )
        expected, ok = _SYNTHETIC_OPTIONS[key]
        value = json_value(text)
        if not ok(value):
            got = _KINDS.get(type(value), "text")
            raise ValueError(f"--option {pair}: expected {expected}; got {got}.")
    size, dim = options.get("size"), options.get("dim", 2)
    if isinstance(size, list) and len(size) != dim:
        given = next(p for p in reversed(pairs or []) if p.startswith("size="))
        raise ValueError(
            f"--option {given}: expected {dim} sizes for dim={dim} (one per axis), or one "
            f"integer; got {len(size)}."
        )


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
