"""Compare finished runs: a metric table with paired p-values and an efficiency table.

Like the paper's Tables 2-5: per-case test metrics (validation metrics of the best epoch when
a run has no test split; HD95 and NSD too when every run has them, their means skipping nan)
with Wilcoxon and paired t-test p-values of per-case Dice against the first run, and Avg.T,
Epoch, Tot.T per run.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..data.io import read_json
from ..metrics import METRIC_NAMES, SURFACE_METRIC_NAMES, paired_tests
from .runlog import write_csv, write_text_atomic

__all__ = [
    "MIN_PAIRED_CASES",
    "RunRecord",
    "compare_runs",
    "load_run",
    "markdown_table",
    "run_labels",
]

#: Fewer paired cases than this get a warning: their p-values mean little.
MIN_PAIRED_CASES = 10


@dataclass(frozen=True)
class RunRecord:
    """What a run folder holds for comparison.

    Attributes:
        name: the run's label (its folder's name; :func:`compare_runs` uses its path below the
            runs' common folder).
        summary: its ``summary.json``.
        per_case: case -> metrics from ``test_cases.csv`` (or ``val_cases.csv``).
        split: ``"test"`` or ``"val"``: where ``per_case`` comes from.
    """

    name: str
    summary: dict[str, Any]
    per_case: dict[str, dict[str, float]]
    split: str


#: What to do about a damaged file of a finished run (training wrote it at its end).
_FIX = "restore it from a copy, or leave this run out of the comparison"


def _read_cases(path: Path) -> dict[str, dict[str, float]]:
    """case -> metrics: eq. 14's, and HD95 / NSD where the CSV has them (runs trained with
    --patch, evaluate reports); other columns (per class) are left out."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = set(reader.fieldnames or ())
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (damaged at byte {exc.start}); {_FIX}") from None
    names = METRIC_NAMES + tuple(m for m in SURFACE_METRIC_NAMES if m in columns)
    try:
        return {row["case"]: {m: float(row[m]) for m in names} for row in rows}
    except (KeyError, ValueError) as exc:
        raise ValueError(
            f"{str(path)!r} is not a per-case metric CSV (columns case, "
            f"{', '.join(METRIC_NAMES)}): {exc}"
        ) from exc


def load_run(folder: str | Path, split: str | None = None) -> RunRecord:
    """Read a finished run folder (``summary.json`` and the per-case CSV).

    Args:
        folder: the run's ``--out`` folder.
        split: ``"test"`` or ``"val"``; None: test when present, else val.

    Raises:
        ValueError: the folder is missing, or holds no finished run or the requested split.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"Run folder {str(folder)!r} does not exist.")
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        raise ValueError(
            f"{str(folder)!r} holds no finished run (no summary.json); train it to the end, "
            "or resume it with `dsplug train ... --resume`."
        )
    summary = read_json(summary_path, _FIX)
    if split is None:
        split = "test" if (folder / "test_cases.csv").is_file() else "val"
    cases_path = folder / f"{split}_cases.csv"
    if not cases_path.is_file():
        raise ValueError(f"{str(folder)!r} has no {split}_cases.csv (per-case {split} metrics).")
    return RunRecord(folder.name, summary, _read_cases(cases_path), split)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """A GitHub Markdown table of ``rows`` (columns: the first row's keys)."""
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _mean(values: Sequence[float]) -> float:
    """The mean of the non-nan values (HD95 / NSD are nan where a class is absent)."""
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else float("nan")


def _metric_names(runs: Sequence[RunRecord]) -> list[str]:
    """The metrics every run reports (HD95 and NSD only when all have them)."""
    names = list(METRIC_NAMES + SURFACE_METRIC_NAMES)
    for run in runs:
        first = next(iter(run.per_case.values()), {})
        names = [m for m in names if m in first]
    return names


def _metric_rows(runs: Sequence[RunRecord]) -> list[dict[str, Any]]:
    base = runs[0]
    cases = sorted(base.per_case)
    names = _metric_names(runs)
    rows = []
    for run in runs:
        if sorted(run.per_case) != cases:
            missing = sorted(set(cases) ^ set(run.per_case))[:5]
            raise ValueError(
                f"Runs {base.name!r} and {run.name!r} were scored on different cases (e.g. "
                f"{missing}); paired tests need the same {run.split} cases."
            )
        row: dict[str, Any] = {"run": run.name, "mode": run.summary.get("mode", "?")}
        for metric in names:
            row[metric] = _mean([run.per_case[c][metric] for c in cases])
        row["cases"] = len(cases)
        if run is base or len(cases) < 2:
            row.update({"dice_diff": None, "p_wilcoxon": None, "p_ttest": None})
        else:
            test = paired_tests(
                [run.per_case[c]["dice"] for c in cases], [base.per_case[c]["dice"] for c in cases]
            )
            row.update(
                {
                    "dice_diff": test["mean_diff"],
                    "p_wilcoxon": test["wilcoxon_p"],
                    "p_ttest": test["ttest_p"],
                }
            )
        rows.append(row)
    return rows


def _efficiency_rows(runs: Sequence[RunRecord]) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        eff = run.summary.get("efficiency", {})
        rows.append(
            {
                "run": run.name,
                "mode": run.summary.get("mode", "?"),
                "Avg.T (s)": eff.get("avg_t_s"),
                "Epoch": eff.get("epoch"),
                "Tot.T (s)": eff.get("tot_t_s"),
                "epochs run": eff.get("epochs_run"),
                "target Dice": eff.get("target_dice"),
                "time to target (s)": eff.get("time_to_target_s"),
            }
        )
    return rows


def run_labels(folders: Sequence[str | Path]) -> list[str]:
    """Each run's path relative to the runs' common parent folder, so that ``a/hyb`` and
    ``b/hyb`` stay apart (``runs/demo/none``, ``runs/demo/hyb`` -> ``none``, ``hyb``).

    Raises:
        ValueError: a folder is given twice.
    """
    paths = [Path(f).resolve() for f in folders]
    if len(set(paths)) < len(paths):
        twice = next(str(f) for f, p in zip(folders, paths) if paths.count(p) > 1)
        raise ValueError(f"run folder {twice} is given twice; compare different runs.")
    try:
        common = Path(os.path.commonpath([p.parent for p in paths]))
    except ValueError:  # e.g. different drives: no common folder
        return [str(p) for p in paths]
    return [p.relative_to(common).as_posix() for p in paths]


def compare_runs(folders: Sequence[str | Path], out: str | Path | None = None) -> str:
    """Compare two or more runs; the first is the baseline of the p-values.

    Writes ``compare.md``, ``compare_metrics.csv`` and ``compare_efficiency.csv`` to ``out``
    (when given) and returns the Markdown. Runs are labelled by :func:`run_labels`. Fewer than
    :data:`MIN_PAIRED_CASES` paired cases give a ``UserWarning`` and a note under the table.

    Raises:
        ValueError: fewer than two runs, unfinished runs, or runs scored on different cases.
    """
    if len(folders) < 2:
        raise ValueError(f"compare needs two or more run folders, got {len(folders)}.")
    labels = run_labels(folders)
    runs = [load_run(f) for f in folders]
    splits = {run.split for run in runs}
    if len(splits) > 1:  # compare like with like: validation everywhere
        runs = [load_run(f, "val") for f in folders]
    runs = [replace(run, name=label) for run, label in zip(runs, labels)]
    split = runs[0].split
    metrics = _metric_rows(runs)
    eff = _efficiency_rows(runs)
    note = ""
    cases = len(runs[0].per_case)
    if cases < MIN_PAIRED_CASES:
        caveat = (
            f"only {cases} paired {split} case(s): p-values from fewer than "
            f"{MIN_PAIRED_CASES} cases are unreliable (treat the differences as anecdotal)."
        )
        warnings.warn(caveat, UserWarning, stacklevel=2)
        note = f"Warning: {caveat}\n\n"
    text = (
        f"## Accuracy ({split} split, per case; p-values of per-case Dice vs {runs[0].name!r})\n\n"
        f"{markdown_table(metrics)}\n\n{note}"
        "## Efficiency (Avg.T: training seconds per epoch; Epoch: best epoch; "
        "Tot.T = Avg.T x Epoch)\n\n"
        f"{markdown_table(eff)}\n"
    )
    if out is not None:
        out = Path(out)
        write_text_atomic(out / "compare.md", text)
        write_csv(out / "compare_metrics.csv", metrics)
        write_csv(out / "compare_efficiency.csv", eff)
    return text
