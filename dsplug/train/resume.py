"""Exact resume: what each epoch's checkpoint of a run holds, and continuing a run from one.

Files and their integrity are :mod:`dsplug.train.checkpoint`'s job; this module decides their
content (weights, optimiser, scheduler, scaler, early stopping, history, every rank's RNG) and
checks that a resumed run has the settings of the run it continues.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._version import __version__
from .checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    CheckpointError,
    capture_rng,
    load_checkpoint,
    load_weights,
    restore_rng,
    save_checkpoint,
)
from .config import TrainConfig
from .distributed import DistInfo, all_gather_objects
from .schedule import EarlyStopping, ds_progress

__all__ = [
    "FREE_ON_RESUME",
    "Resumed",
    "check_resumable",
    "epoch_state",
    "resume_run",
    "save_epoch",
    "train_record",
]

#: Settings that may differ between a run and its resume (they do not change the trajectory).
FREE_ON_RESUME = frozenset(
    {
        "max_epochs",
        "min_epochs",
        "num_workers",
        "progress",
        "tensorboard",
        "plots",
        "overlays",
        "target_dice",
        "compile",
        "val_batch_size",
    }
)
#: The configs a checkpoint stores and a resume must match exactly.
_CONFIGS = ("model_config", "wrapper_config", "data_config")


#: The fields a run stores only when it uses them (earlier checkpoints lack them).
_SEMI_FIELDS = ("semi", "unlabeled_ratio", "rampup", "unlabeled_weight", "ema_decay")
_FIELD_FIELDS = ("recipe", "iterations", "warmup_epochs")


def train_record(config: TrainConfig) -> dict[str, Any]:
    """The config as checkpoints store it: a supervised run's without the semi-supervised
    fields, a paper-recipe run's without the field recipe's, and without ``patience`` unless
    set (as before they existed, so earlier checkpoints still resume)."""
    record = config.to_dict()
    if record["semi"] is None:
        for name in _SEMI_FIELDS:
            record.pop(name)
    if record["recipe"] == "paper":
        for name in _FIELD_FIELDS:
            record.pop(name)
    if record["patience"] is None:
        record.pop("patience")
    return record


@dataclass
class Resumed:
    """Where a resumed run continues: its next epoch and what it had done so far."""

    start: int
    stopper: EarlyStopping
    history: list[dict[str, Any]]
    global_step: int
    best_val_cases: dict[str, dict[str, float]]
    best_state: dict[str, torch.Tensor] | None


def epoch_state(
    ds: torch.nn.Module,
    configs: Mapping[str, Any],
    info: DistInfo,
    *,
    epoch: int,
    global_step: int,
    opt: torch.optim.Optimizer,
    sched: Any,
    scaler: torch.amp.GradScaler,
    stopper: EarlyStopping,
    history: list[dict[str, Any]],
    best_val_cases: dict[str, dict[str, float]],
) -> dict[str, Any]:
    """The checkpoint of a finished epoch (every rank calls it: the RNG states are gathered).

    Args:
        ds: the wrapper (its weights, and the bare model's under ``model_state``).
        configs: ``model_config``, ``wrapper_config``, ``data_config`` and ``train_config``.
    """
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "dsplug_version": __version__,
        "epoch": epoch,
        "global_step": global_step,
        "world_size": info.world_size,
        "model_config": configs["model_config"],
        "wrapper_config": configs["wrapper_config"],
        "data_config": configs["data_config"],
        "train_config": configs["train_config"],
        "model_state": ds.model.state_dict(),  # shares storage with wrapper_state
        "wrapper_state": ds.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "scaler": scaler.state_dict(),
        "early_stopping": stopper.state(),
        "history": history,
        "best_val_cases": best_val_cases,
        "rng": all_gather_objects(capture_rng(), info),
    }


def save_epoch(state: dict[str, Any], out: Path, improved: bool) -> None:
    """Write ``last.pt``, and ``best.pt`` when the epoch improved.

    ``last.pt`` first: if the process dies before ``best.pt`` is written, ``last.pt`` is the
    best epoch and resume takes the best weights from it.
    """
    save_checkpoint(state, out / "last.pt")
    if improved:
        save_checkpoint(state, out / "best.pt")


def _comparable(stored: Any, now: Any) -> Any:
    """A stored data config as this dsplug writes it: an older checkpoint's relative root made
    absolute and its missing fingerprint taken as the current one (other values as stored).

    A data set that moved is the same data: the root of a config whose recorded fingerprint
    equals the current one (the same files, by their names under the root) is taken as the
    current root. The fingerprint decides, never the path.
    """
    if not (isinstance(stored, dict) and isinstance(now, dict)):
        return stored
    if all(isinstance(v, dict) for v in stored.values()):  # {split: config}
        return {k: _comparable(v, now.get(k)) for k, v in stored.items()}
    stored = dict(stored)
    root = stored.get("root")
    if isinstance(root, str) and not os.path.isabs(root):
        stored["root"] = os.path.abspath(root)
    if stored.get("fingerprint") and stored.get("fingerprint") == now.get("fingerprint"):
        stored["root"] = now.get("root", stored.get("root"))  # moved: the same files
    if "fingerprint" in now and "fingerprint" not in stored:
        stored["fingerprint"] = now["fingerprint"]
    return stored


def _data_diffs(stored: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """The differing entries of two data configs, per split (files changed: one phrase)."""
    diffs = []
    for split in sorted(set(stored) | set(now)):
        a, b = stored.get(split), now.get(split)
        if not (isinstance(a, dict) and isinstance(b, dict)):
            if a != b:
                diffs.append(f"data_config[{split!r}]: checkpoint {a!r}, now {b!r}")
            continue
        for key in sorted(set(a) | set(b)):
            if a.get(key) == b.get(key):
                continue
            if key == "fingerprint":
                diffs.append(f"the {split} data files changed since the checkpoint")
            else:
                diffs.append(
                    f"data_config[{split!r}][{key!r}]: checkpoint {a.get(key)!r}, now "
                    f"{b.get(key)!r}"
                )
    return diffs


def check_resumable(
    ckpt: Mapping[str, Any], path: Path, configs: Mapping[str, Any], world_size: int
) -> None:
    """Refuse a checkpoint made with other settings; warn when the process count differs.

    Args:
        configs: the run's ``model_config``, ``wrapper_config``, ``data_config`` and
            ``train_config`` (only the latter's :data:`FREE_ON_RESUME` fields may differ).

    Raises:
        ValueError: a setting differs (each difference is named).
    """
    stored = ckpt["train_config"]
    now = configs["train_config"]
    diffs = [
        f"{key}: checkpoint {stored.get(key)!r}, now {now[key]!r}"
        for key in now
        if key not in FREE_ON_RESUME and stored.get(key) != now[key]
    ]
    for name in _CONFIGS:
        stored_config = _comparable(ckpt[name], configs[name])
        if name == "data_config" and stored_config != configs[name]:
            diffs.extend(_data_diffs(stored_config, configs[name]))
        elif stored_config != configs[name]:
            diffs.append(f"{name}: checkpoint {ckpt[name]!r}, now {configs[name]!r}")
    if diffs:
        raise ValueError(
            f"Cannot resume from {str(path)!r}: the run's settings differ from the "
            f"checkpoint's ({'; '.join(diffs)}). Resume with the same settings, or start a "
            "new run in another folder."
        )
    if ckpt["world_size"] != world_size:
        warnings.warn(
            f"Resuming a run trained on {ckpt['world_size']} processes with "
            f"{world_size}: the data order differs from an uninterrupted run.",
            stacklevel=4,
        )


def _last_as_best(
    ckpt: Mapping[str, Any],
    now: Mapping[str, Any],
    path: Path,
    best_path: Path,
    exc: CheckpointError,
) -> tuple[EarlyStopping, dict[str, dict[str, float]]]:
    """A lost ``best.pt``: the resumed epoch counts as the best so far (warned once).

    Early stopping then counts from that epoch, and the best epoch's per-case validation
    metrics are unknown until a later epoch improves.
    """
    epoch = int(ckpt["epoch"])
    score = next(
        (row.get("val_avg_m") for row in ckpt["history"] if int(row["epoch"]) == epoch), None
    )
    reason = " ".join(str(exc).split())
    warnings.warn(
        f"{best_path} cannot serve as the best epoch ({reason}); its weights are lost, so "
        f"{path.name} (epoch {epoch}) counts as the best so far and training continues from it.",
        stacklevel=4,
    )
    stopper = EarlyStopping(
        now["max_epochs"],
        now["min_epochs"],
        epoch,
        float(score) if score is not None else -float("inf"),
    )
    return stopper, {}


def _nothing_left(
    ckpt: Mapping[str, Any], now: Mapping[str, Any], stopper: EarlyStopping, path: Path
) -> bool:
    """Whether the checkpoint's run has no epoch left to train (warned once when so)."""
    epoch = int(ckpt["epoch"])
    if epoch < now["max_epochs"] and not stopper.should_stop(epoch):
        return False
    if epoch >= now["max_epochs"]:
        why = f"it ends epoch {epoch} and max_epochs (--epochs) is {now['max_epochs']}"
        advice = f"raise --epochs above {epoch}"
    else:
        why = (
            f"early stopping ended it at epoch {epoch} (best epoch {stopper.best_epoch}, "
            f"min_epochs {now['min_epochs']})"
        )
        advice = f"raise --min-epochs and --epochs above {epoch}"
    warnings.warn(
        f"nothing left to train from {path}: {why}; no epoch is trained, the best weights are "
        f"tested and the summary written again; to train on, resume with {advice}.",
        stacklevel=4,
    )
    return True


def _warn_rescaled(ckpt: Mapping[str, Any], now: Mapping[str, Any]) -> None:
    """Say that another max_epochs stretches or shrinks the deep-supervision schedule."""
    before, after = int(ckpt["train_config"]["max_epochs"]), int(now["max_epochs"])
    schedule = ckpt["wrapper_config"].get("schedule", "constant")
    if before == after or schedule == "constant":
        return
    epoch = int(ckpt["epoch"])
    warnings.warn(
        f"max_epochs (--epochs) {after} differs from the checkpoint's {before}: the {schedule} "
        f"deep-supervision schedule is rescaled to end at epoch {after} instead of {before} "
        f"(progress {ds_progress(epoch, before):.2f} at epoch {epoch}, "
        f"{ds_progress(epoch + 1, after):.2f} at epoch {epoch + 1}), so the run differs from "
        f"one started with --epochs {after}.",
        stacklevel=4,
    )


def resume_run(
    path: Path,
    ds: torch.nn.Module,
    configs: Mapping[str, Any],
    info: DistInfo,
    out: Path,
    *,
    opt: torch.optim.Optimizer,
    sched: Any,
    scaler: torch.amp.GradScaler,
) -> Resumed:
    """Load the checkpoint at ``path`` into ``ds``, ``opt``, ``sched``, ``scaler`` and the RNGs.

    The best weights come from ``path`` itself when it is the best epoch (``best.pt`` in
    ``out`` is rewritten from it: a crash may have left it behind), else from the ``best.pt``
    next to ``path`` (copied into ``out`` when that is another folder).

    A checkpoint with nothing left to train (its epoch reaches ``max_epochs``, or early
    stopping ended it) is warned about, and written to ``out/last.pt`` when it is not that
    file, so that ``out`` can be resumed later with more epochs. Another ``max_epochs`` than
    the checkpoint's is warned about when it changes the deep-supervision schedule.

    Args:
        out: the run folder that continues.

    Raises:
        CheckpointError: the checkpoint at ``path`` is missing or damaged. A missing or
            damaged ``best.pt`` (or one of another epoch) is not an error: ``path`` then counts
            as the best epoch so far, with a warning.
        ValueError: the run's settings differ from the checkpoint's.
    """
    ckpt = load_checkpoint(path)
    check_resumable(ckpt, path, configs, info.world_size)
    load_weights(ds, ckpt["wrapper_state"], path, "wrapper_state")
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    if ckpt["scaler"]:
        scaler.load_state_dict(ckpt["scaler"])
    now = configs["train_config"]  # the epoch limits may change on resume
    stored = EarlyStopping.from_state(ckpt["early_stopping"])
    stopper = EarlyStopping(
        now["max_epochs"], now["min_epochs"], stored.best_epoch, stored.best_score
    )
    best_state = None
    best_val_cases = dict(ckpt["best_val_cases"])
    if stopper.best_epoch == ckpt["epoch"]:
        best_state = ckpt["wrapper_state"]
        if info.is_main:  # heal a best.pt the crash may have left behind
            save_checkpoint(ckpt, out / "best.pt")
    elif stopper.best_epoch > 0:
        best_path = path.parent / "best.pt"  # the best epoch of the run resumed from
        try:
            best = load_checkpoint(best_path)
            if best["epoch"] != stopper.best_epoch:
                raise CheckpointError(
                    f"{str(best_path)!r} holds epoch {best['epoch']}, not the best epoch "
                    f"{stopper.best_epoch} that {str(path)!r} names"
                )
        except CheckpointError as exc:
            stopper, best_val_cases = _last_as_best(ckpt, now, path, best_path, exc)
            best_state = ckpt["wrapper_state"]
            if info.is_main:
                save_checkpoint(ckpt, out / "best.pt")
        else:
            best_state = best["wrapper_state"]
            if info.is_main and best_path.resolve() != (out / "best.pt").resolve():
                save_checkpoint(best, out / "best.pt")  # a new folder gets the best too
    if _nothing_left(ckpt, now, stopper, path):
        if info.is_main and path.resolve() != (out / "last.pt").resolve():
            save_checkpoint(ckpt, out / "last.pt")  # the folder can be resumed later
    else:
        _warn_rescaled(ckpt, now)
    rng = ckpt["rng"]
    restore_rng(rng[info.rank] if info.rank < len(rng) else rng[0])
    return Resumed(
        start=int(ckpt["epoch"]) + 1,
        stopper=stopper,
        history=list(ckpt["history"]),
        global_step=int(ckpt["global_step"]),
        best_val_cases=best_val_cases,
        best_state=best_state,
    )
