"""Compare finished runs: a metric table with paired p-values and an efficiency table.

Like the paper's Tables 2-5: per-case test metrics (validation metrics of the best epoch when
a run has no test split; HD95 and NSD too when every run has them, their means skipping nan)
with Wilcoxon and paired t-test p-values of per-case Dice against the first run, and Avg.T,
Epoch, Tot.T per run. Only runs scored on the same data pair up (the files and label rule
each run's ``config.json`` records, not the case names alone), and NSD only at one tolerance.
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
        data: the data configuration of that split (``config.json``), None where unrecorded.
        nsd_tolerance: the NSD tolerance (mm) of its NSD column, None where unrecorded.
    """

    name: str
    summary: dict[str, Any]
    per_case: dict[str, dict[str, float]]
    split: str
    data: dict[str, Any] | None = None
    nsd_tolerance: float | None = None


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
    config = _run_config(folder)
    train = config.get("train_config")
    tolerance = float(train.get("nsd_tolerance", 1.0)) if isinstance(train, dict) else None
    data = (config.get("data_config") or {}).get(split)
    return RunRecord(folder.name, summary, _read_cases(cases_path), split, data, tolerance)


def _run_config(folder: Path) -> dict[str, Any]:
    """The run's ``config.json`` (``{}`` when it has none)."""
    path = folder / "config.json"
    if not path.is_file():
        return {}
    config = read_json(
        path,
        "it records the run's data, so compare cannot pair this run: restore the file "
        "from a copy of the run",
    )
    return config if isinstance(config, dict) else {}


#: What does not change which images and masks a split holds.
_NOT_DATA = frozenset({"augment", "info", "preprocessing", "cases", "split", "fingerprint"})


def _identity(config: dict[str, Any]) -> dict[str, Any]:
    """What makes a split's data what it is: its files (their fingerprint, wherever they
    lie) and label rule; without a fingerprint its folder; synthetic data its generator."""
    if "fingerprint" in config:
        return {"files": config["fingerprint"], "labels": config.get("labels")}
    return {k: v for k, v in config.items() if k not in _NOT_DATA}


def _names(names: Sequence[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def _data_difference(base: dict[str, Any], other: dict[str, Any]) -> str:
    """How ``other``'s data differs from ``base``'s, in a phrase ("" when it does not)."""
    a, b = _identity(base), _identity(other)
    if a == b:
        return ""
    if "files" in a and "files" in b and a["files"] != b["files"]:
        mine, theirs = a["files"], b["files"]
        differ = sorted(n for n in set(mine) & set(theirs) if mine[n] != theirs[n])
        alone = sorted(set(mine) ^ set(theirs))
        parts = [f"{len(differ)} have other contents ({_names(differ)})"] if differ else []
        parts += [f"{len(alone)} were read by one run only ({_names(alone)})"] if alone else []
        return f"of the files read, {'; '.join(parts)}"
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(
        "another label rule" if k == "labels" else f"{k} {b.get(k)!r} vs {a.get(k)!r}" for k in keys
    )


def _check_same_data(runs: Sequence[RunRecord]) -> None:
    """Refuse runs whose scored cases are other data under the same case ids (runs that
    recorded no data configuration, e.g. of a user's own dataset class, are not checked).

    Raises:
        ValueError: a run's recorded data differs from the first run's (one line).
    """
    base = runs[0]
    for run in runs[1:]:
        if not (base.data and run.data):
            continue
        difference = _data_difference(base.data, run.data)
        if difference:
            where = run.data.get("root"), base.data.get("root")
            place = f" (read from {where[0]} and {where[1]})" if all(where) else ""
            raise ValueError(
                f"run {run.name!r} was scored on other {run.split} data than {base.name!r}"
                f"{place}: {difference}; paired tests need the same cases, so compare runs "
                "of one data set."
            )


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


def _mm(value: float | None) -> str:
    return "an unrecorded tolerance" if value is None else f"{value:g} mm"


def _nsd_mix(runs: Sequence[RunRecord]) -> str:
    """Why NSD cannot share one column ("" when every run scored it at one tolerance)."""
    if len({run.nsd_tolerance for run in runs}) < 2:
        return ""
    given = ", ".join(f"{run.name!r} at {_mm(run.nsd_tolerance)}" for run in runs)
    return (
        f"NSD is left out: the runs scored it at different tolerances ({given}); "
        "`dsplug evaluate CKPT --nsd-tolerance MM` scores a run at another one."
    )


def _metric_rows(runs: Sequence[RunRecord], names: Sequence[str]) -> list[dict[str, Any]]:
    base = runs[0]
    cases = sorted(base.per_case)
    rows = []
    for run in runs:
        if sorted(run.per_case) != cases:
            missing = sorted(set(cases) ^ set(run.per_case))[:5]
            raise ValueError(
                f"Runs {base.name!r} and {run.name!r} were scored on different cases (e.g. "
                f"{missing}); paired tests need the same {run.split} cases."
            )
        row: dict[str, Any] = {"run": run.name, "mode": _mode(run.summary)}
        for metric in names:
            row[metric] = _mean([run.per_case[c][metric] for c in cases])
            if metric == "nsd":
                row["nsd_tolerance_mm"] = run.nsd_tolerance
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


def _mode(summary: dict[str, Any]) -> str:
    """The run's mode, and its semi-supervised recipe when it learnt from images without
    masks (e.g. ``up + pseudo``)."""
    semi = summary.get("semi") or {}
    mode = str(summary.get("mode", "?"))
    return f"{mode} + {semi['recipe']}" if semi.get("recipe") else mode


def _efficiency_rows(runs: Sequence[RunRecord]) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        eff = run.summary.get("efficiency", {})
        rows.append(
            {
                "run": run.name,
                "mode": _mode(run.summary),
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

    Runs must have been scored on the same data (their recorded files and label rule, or
    synthetic generator), not only on cases of the same names. NSD shares a column (with its
    tolerance, ``nsd_tolerance_mm``) only when every run scored it at one tolerance; a mix is
    left out with a warning and a note.

    Raises:
        ValueError: fewer than two runs, unfinished runs, runs scored on different cases or
            on different data.
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
    _check_same_data(runs)
    names = _metric_names(runs)
    caveats = []
    if "nsd" in names and _nsd_mix(runs):
        names.remove("nsd")
        caveats.append(_nsd_mix(runs))
    metrics = _metric_rows(runs, names)
    eff = _efficiency_rows(runs)
    cases = len(runs[0].per_case)
    if cases < MIN_PAIRED_CASES:
        caveats.append(
            f"only {cases} paired {split} case(s): p-values from fewer than "
            f"{MIN_PAIRED_CASES} cases are unreliable (treat the differences as anecdotal)."
        )
    for caveat in caveats:
        warnings.warn(caveat, UserWarning, stacklevel=2)
    note = "".join(f"Warning: {caveat}\n\n" for caveat in caveats)
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
