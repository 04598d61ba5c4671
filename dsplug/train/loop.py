"""One training epoch, step by step, and how a run stops early: a non-finite loss or Ctrl-C."""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .distributed import all_gather_objects
from .runtime import Runtime

__all__ = [
    "NonFiniteLossError",
    "SigintFlag",
    "TrainingInterrupted",
    "non_finite_error",
    "train_epoch",
]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or Inf; the run stopped before the step touched the weights."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped training at a safe point (between optimiser steps or epochs).

    A ``KeyboardInterrupt``, so code that catches that still does. ``last.pt`` is untouched by
    the interruption: it holds the last finished epoch, from which ``fit(resume=True)`` continues
    exactly.

    Attributes:
        epoch: the last finished epoch (0: none finished, nothing to resume).
        checkpoint: ``last.pt`` of the run, or None when no epoch finished.
    """

    def __init__(self, epoch: int, checkpoint: Path | None) -> None:
        kept = f"{checkpoint} holds epoch {epoch}" if checkpoint else "no epoch finished"
        super().__init__(f"training interrupted; {kept}")
        self.epoch = epoch
        self.checkpoint = checkpoint


class SigintFlag:
    """While active, SIGINT only sets :attr:`requested` (the loop stops at its next safe point);
    a second SIGINT interrupts at once. Inactive outside the main thread and under DDP, where
    ranks could not agree on a common step (Ctrl-C then raises KeyboardInterrupt as usual)."""

    def __init__(self, active: bool) -> None:
        self.active = active and threading.current_thread() is threading.main_thread()
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> SigintFlag:
        if self.active:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.active:
            signal.signal(signal.SIGINT, self._previous)


def non_finite_error(
    epoch: int, step: int, total: float, terms: dict[str, float], last_good: tuple[Path, int] | None
) -> NonFiniteLossError:
    """The error for a non-finite loss, naming the terms at fault and the checkpoint kept.

    Args:
        last_good: ``last.pt`` and the epoch it holds; None when no epoch finished.
    """
    bad = sorted(name for name, value in terms.items() if not math.isfinite(value))
    kept = (
        f"The last good checkpoint, {str(last_good[0])!r} (epoch {last_good[1]}), is "
        "intact: fix the cause, then resume with --resume."
        if last_good is not None
        else "No epoch finished, so no checkpoint was written."
    )
    return NonFiniteLossError(
        f"The training loss is {total} at epoch {epoch}, step {step} (non-finite terms: "
        f"{bad or 'none; the total overflowed'}); the run stopped before this step changed "
        f"the weights. {kept} Common causes: a learning rate too high, unnormalised or "
        "corrupted inputs, fp16 overflow (try amp='bf16' or 'off')."
    )


def train_epoch(
    net: torch.nn.Module,
    ds: torch.nn.Module,
    loader: DataLoader,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    runtime: Runtime,
    *,
    epoch: int,
    desc: str,
    progress: bool,
    last_good: tuple[Path, int] | None,
    after_step: Callable[[], None],
    on_target: Callable[[torch.Tensor], None] | None = None,
    unlabeled: Callable[[], tuple[torch.Tensor, dict[str, torch.Tensor]]] | None = None,
) -> dict[str, float]:
    """Train one epoch: forward ``net(x, y)``, ``ds.loss``, backward and an optimiser step per
    batch.

    Args:
        net: the module to call (``ds``, or its DDP wrapper).
        ds: the ``DeepSupervised`` wrapper (its ``loss``).
        epoch: the 1-based epoch (for messages).
        desc: the progress bar's label; ``progress`` shows the bar.
        last_good: ``last.pt`` and its epoch, named when the loss turns non-finite.
        after_step: called after each optimiser step (counting steps, stopping on Ctrl-C,
            updating a teacher).
        on_target: called with each batch's masks (e.g. a :class:`ForegroundTally`'s ``add``).
        unlabeled: called once per step, in the step's autocast: the weighted loss of an
            unlabelled batch (added to the total) and terms to log (as ``loss/<name>``).

    Returns:
        The mean loss (``loss``) and the mean of each term (``loss/<name>``) over the
        epoch's steps, averaged over ranks under DDP.

    Raises:
        NonFiniteLossError: the loss became NaN or Inf (before that step's update).
    """
    ds.train()
    sums: dict[str, float] = {}
    steps = 0
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress)
    for batch in bar:
        x = runtime.prepare(batch["image"])
        y = batch["mask"].to(runtime.device, non_blocking=True)
        if on_target is not None:
            on_target(y)
        with runtime.autocast():
            out = net(x, y)
            breakdown = ds.loss(out, y)
            loss, logged = breakdown.total, dict(breakdown.tensors)
            if unlabeled is not None:
                extra, extra_terms = unlabeled()
                loss = loss + extra
                logged.update(extra_terms)
        # One device-to-host transfer per step: the total and every term.
        names = list(logged)
        values = torch.stack(
            [loss.detach().float(), *(logged[n].detach().float() for n in names)]
        ).tolist()
        total, terms = values[0], dict(zip(names, values[1:]))
        if not math.isfinite(total):
            raise non_finite_error(epoch, steps + 1, total, terms, last_good)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        steps += 1
        sums["loss"] = sums.get("loss", 0.0) + total
        for name, value in terms.items():
            sums[f"loss/{name}"] = sums.get(f"loss/{name}", 0.0) + value
        bar.set_postfix(loss=f"{total:.4f}", refresh=False)
        after_step()
    means = {name: value / max(steps, 1) for name, value in sums.items()}
    if runtime.info.distributed:  # the mean over every rank's steps
        gathered = all_gather_objects(means, runtime.info)
        means = {name: float(np.mean([g[name] for g in gathered])) for name in means}
    return means
