"""What a run reports: one history row and one line per epoch, the log and curves, and at the
end the efficiency figures (the paper's §4.3), ``summary.json``, per-case tables and overlays."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..metrics import METRIC_NAMES, SURFACE_METRIC_NAMES, CaseMetrics
from .evaluation import overlay_samples
from .native import case_rows
from .plots import plot_curves, plot_overlays
from .runlog import RunLog, write_csv, write_json
from .schedule import EarlyStopping

__all__ = [
    "efficiency",
    "epoch_row",
    "report_epoch",
    "run_summary",
    "write_overlays",
    "write_reports",
]


def efficiency(history: list[Mapping[str, Any]], target_dice: float | None) -> dict[str, Any]:
    """The paper's efficiency figures (§4.3) from a run's history.

    Returns:
        ``avg_t_s`` (training seconds per epoch), ``epoch`` (the best epoch), ``tot_t_s``
        (avg_t_s x epoch), ``epochs_run``, ``wall_s`` (training + validation time of all
        epochs), ``target_dice`` and ``time_to_target_s`` (wall time until validation Dice
        first reached the target; None if it never did or no target was set).
    """
    if not history:
        raise ValueError("efficiency() needs at least one epoch of history, got none.")
    avg_t = float(np.mean([row["train_s"] for row in history]))
    best_epoch = int(history[-1]["best_epoch"])
    reached = None
    if target_dice is not None:
        reached = next((row for row in history if row["val_dice"] >= target_dice), None)
    return {
        "avg_t_s": avg_t,
        "epoch": best_epoch,
        "tot_t_s": avg_t * best_epoch,
        "epochs_run": len(history),
        "wall_s": float(history[-1]["wall_s"]),
        "target_dice": target_dice,
        "time_to_target_s": None if reached is None else float(reached["wall_s"]),
        "epoch_to_target": None if reached is None else int(reached["epoch"]),
    }


def epoch_row(
    history: list[Mapping[str, Any]],
    *,
    epoch: int,
    lr: float,
    progress: float,
    losses: Mapping[str, float],
    summary: Mapping[str, float],
    stopper: EarlyStopping,
    train_s: float,
    val_s: float,
) -> dict[str, Any]:
    """The history row of ``epoch``: learning rate, losses, validation metrics, best epoch and
    times (``wall_s`` adds this epoch to the last row of ``history``)."""
    previous_wall = history[-1]["wall_s"] if history else 0.0
    row: dict[str, Any] = {"epoch": epoch, "lr": lr, "ds_progress": progress}
    row.update(losses)
    row.update({f"val_{name}": summary[name] for name in METRIC_NAMES})
    row.update(
        {
            "val_cases": summary["cases"],
            "best_epoch": stopper.best_epoch,
            "best_avg_m": stopper.best_score,
            "train_s": train_s,
            "val_s": val_s,
            "wall_s": previous_wall + train_s + val_s,
        }
    )
    return row


def report_epoch(
    history: list[Mapping[str, Any]],
    log: RunLog,
    out: Path,
    *,
    max_epochs: int,
    plots: bool,
    progress: bool,
) -> None:
    """Log the last row of ``history`` (``log.csv``, TensorBoard), redraw ``curves.png`` when
    ``plots``, and print one line when ``progress``."""
    log.log(history)
    if plots:
        plot_curves(history, out / "curves.png")
    if progress:
        row = history[-1]
        tqdm.write(
            f"epoch {row['epoch']}/{max_epochs}  loss {row.get('loss', float('nan')):.4f}  "
            f"val dice {row['val_dice']:.4f}  avg.m {row['val_avg_m']:.4f}  "
            f"best {row['best_epoch']}  {row['train_s']:.1f}+{row['val_s']:.1f} s"
        )


def run_summary(
    mode: str,
    model_config: Mapping[str, Any],
    history: list[Mapping[str, Any]],
    target_dice: float | None,
    best_val_cases: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, Any]:
    """The summary of a finished run: mode, model, efficiency and the best validation metrics
    (with the means of HD95 / NSD over ``best_val_cases`` where they hold them: patch runs)."""
    summary: dict[str, Any] = {
        "mode": mode,
        "model": model_config,
        "efficiency": efficiency(history, target_dice),
    }
    best_epoch = summary["efficiency"]["epoch"]
    summary["best_val"] = (
        {name: history[best_epoch - 1][f"val_{name}"] for name in METRIC_NAMES}
        if best_epoch
        else None
    )
    if summary["best_val"] is not None and best_val_cases:
        summary["best_val"].update(_surface_means(list(best_val_cases.values())))
    return summary


def _surface_means(rows: list[Mapping[str, float]]) -> dict[str, float]:
    """The mean of each surface metric the case rows hold, nan values left out (nan: none)."""
    means = {}
    for name in SURFACE_METRIC_NAMES:
        if name in rows[0]:
            values = np.asarray([row[name] for row in rows], dtype=np.float64)
            kept = values[~np.isnan(values)]
            means[name] = float(kept.mean()) if kept.size else float("nan")
    return means


def write_reports(
    out: Path,
    summary: Mapping[str, Any],
    best_val_cases: Mapping[str, Mapping[str, float]],
    test: CaseMetrics | None,
) -> None:
    """Write ``test_cases.csv`` (when tested: the columns of ``dsplug evaluate``'s
    ``cases.csv``, each class's values too with several foreground classes), ``val_cases.csv``
    (the best epoch's) and ``summary.json``."""
    if test is not None:
        write_csv(out / "test_cases.csv", case_rows(test))
    write_csv(
        out / "val_cases.csv",
        [{"case": case, **values} for case, values in best_val_cases.items()],
    )
    write_json(out / "summary.json", summary)


def write_overlays(
    forward: Callable[[torch.Tensor], torch.Tensor],
    data: Dataset,
    label_mode: str,
    device: torch.device,
    count: int,
    path: Path,
) -> None:
    """Draw ``count`` items of ``data`` with their predictions (nothing when it has none)."""
    samples = overlay_samples(forward, data, label_mode, device, count)
    if samples:
        plot_overlays(samples, path)
