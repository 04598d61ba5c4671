"""The Trainer: the paper's schedule and early stopping, exact resume, DDP, logs and plots."""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import threading
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from .. import __version__
from ..metrics import METRIC_NAMES, CaseMetrics
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
from .distributed import DistInfo, all_gather_objects, setup_distributed
from .evaluation import evaluate_loader, overlay_samples
from .models import model_config as derive_model_config
from .plots import plot_curves, plot_overlays
from .runlog import RunLog, write_csv, write_json
from .schedule import EarlyStopping, ds_progress, paper_optimizer, paper_scheduler

__all__ = [
    "NonFiniteLossError",
    "TrainConfig",
    "Trainer",
    "TrainingInterrupted",
    "efficiency",
    "seed_everything",
]

_AMP = ("auto", "bf16", "fp16", "off")
# Settings that may differ between a run and its resume (they do not change the trajectory).
_FREE_ON_RESUME = frozenset(
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


class _SigintFlag:
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

    def __enter__(self) -> _SigintFlag:
        if self.active:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.active:
            signal.signal(signal.SIGINT, self._previous)


def _ignore_sigint(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C to the main process (which stops at a safe point)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class TrainConfig:
    """How to train (every field a plain type; stored in each checkpoint).

    Attributes:
        max_epochs: the epoch budget.
        min_epochs: never stop before this epoch (the paper's early stopping, §4.3).
        batch_size: images per optimiser step and process (DDP: per rank).
        lr: Adam's initial learning rate (paper: 3e-4).
        lr_step: multiply the learning rate by ``lr_gamma`` every ``lr_step`` epochs (paper: 3).
        lr_gamma: the decay factor (paper: 0.9).
        seed: seeds initialisation, data order and every RNG.
        num_workers: DataLoader worker processes.
        amp: ``auto`` (bf16 where supported, else fp16 with a grad scaler, on CUDA; off on
            CPU), ``bf16``, ``fp16`` (both CUDA only) or ``off``.
        channels_last: channels-last memory format; None: on CUDA only.
        compile: ``torch.compile`` the wrapper in place (state-dict keys unchanged).
        deterministic: deterministic algorithms (slower on CUDA; CPU runs are deterministic
            for a fixed thread count anyway).
        target_dice: report the wall time until validation Dice first reaches this.
        val_batch_size: validation batch size; None: ``batch_size``.
        progress: tqdm bars and one line per epoch.
        tensorboard: TensorBoard events when the package is installed.
        plots: learning curves each epoch and prediction overlays at the end (PNG).
        overlays: rows of the overlay figure.
    """

    max_epochs: int = 100
    min_epochs: int = 10
    batch_size: int = 4
    lr: float = 3e-4
    lr_step: int = 3
    lr_gamma: float = 0.9
    seed: int = 0
    num_workers: int = 0
    amp: str = "auto"
    channels_last: bool | None = None
    compile: bool = False
    deterministic: bool = False
    target_dice: float | None = None
    val_batch_size: int | None = None
    progress: bool = True
    tensorboard: bool = True
    plots: bool = True
    overlays: int = 4

    def __post_init__(self) -> None:
        for name in ("max_epochs", "min_epochs", "batch_size", "lr_step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}.")
        if self.min_epochs > self.max_epochs:
            raise ValueError(
                f"min_epochs ({self.min_epochs}) must not exceed max_epochs ({self.max_epochs})."
            )
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got {self.num_workers!r}.")
        if self.amp not in _AMP:
            raise ValueError(f"amp must be one of {list(_AMP)}, got {self.amp!r}.")
        if self.target_dice is not None and not 0 < self.target_dice <= 1:
            raise ValueError(f"target_dice must be in (0, 1], got {self.target_dice!r}.")
        if self.val_batch_size is not None and self.val_batch_size < 1:
            raise ValueError(f"val_batch_size must be >= 1, got {self.val_batch_size!r}.")
        if not isinstance(self.overlays, int) or self.overlays < 0:
            raise ValueError(f"overlays must be an int >= 0, got {self.overlays!r}.")

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`to_dict` (unknown keys are an error)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown TrainConfig keys {unknown}; valid keys: {sorted(known)}.")
        return cls(**values)


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


class Trainer:
    """Train a :class:`~dsplug.DeepSupervised` model the paper's way, and never lose a run.

    Adam (lr 3e-4) decayed x0.9 every 3 epochs; validation per epoch with per-case metrics;
    early stopping on validation avg.m (§4.3); ``ds.set_progress`` per epoch. Every epoch
    writes ``last.pt`` (and ``best.pt`` when avg.m improves) atomically, ``log.csv`` and
    ``curves.png``; the end of training writes ``summary.json`` (efficiency, best validation
    and test metrics), ``test_cases.csv`` and ``overlays.png``. Under ``torchrun`` it trains with
    DistributedDataParallel (NCCL on GPU, gloo on CPU) and rank 0 writes the files.

    Args:
        ds: the wrapped model (``DeepSupervised``).
        train_data: training dataset (items: ``image``, ``mask``, ``case``, ``slice``, ``size``).
        val_data: validation dataset (early stopping and the best checkpoint).
        out: the run folder.
        config: how to train; default ``TrainConfig()``.
        test_data: evaluated with the best weights at the end, if given.
        model_config: rebuilds the bare model (``build_model``); default derived from
            ``ds.model`` (dsplug's nets and smp models).
        data_config: how the data was built (stored for ``evaluate`` / ``predict``); default
            ``{"train": train_data.config(), "val": ..., "test": ...}`` for datasets with one.
        device: force a device; default CUDA when present, else CPU.

    Example:
        >>> trainer = Trainer(ds, train, val, out="runs/hyb", config=TrainConfig(max_epochs=5))
        >>> summary = trainer.fit()            # or fit(resume=True) after a crash
    """

    def __init__(
        self,
        ds: torch.nn.Module,
        train_data: Dataset,
        val_data: Dataset,
        *,
        out: str | Path,
        config: TrainConfig | None = None,
        test_data: Dataset | None = None,
        model_config: dict[str, Any] | None = None,
        data_config: dict[str, Any] | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        for name in ("loss", "set_progress", "config", "model", "label_mode"):
            if not hasattr(ds, name):
                raise TypeError(
                    f"Trainer needs a DeepSupervised model (with .{name}), got {type(ds).__name__}."
                )
        if len(train_data) == 0 or len(val_data) == 0:
            raise ValueError(
                f"Trainer needs non-empty datasets, got {len(train_data)} training and "
                f"{len(val_data)} validation items."
            )
        self.config = config or TrainConfig()
        self.ds = ds
        self.train_data, self.val_data, self.test_data = train_data, val_data, test_data
        self.out = Path(out)
        self.model_config = model_config or derive_model_config(ds.model)
        if data_config is None:
            splits = (("train", train_data), ("val", val_data), ("test", test_data))
            data_config = {
                name: data.config()
                for name, data in splits
                if data is not None and callable(getattr(data, "config", None))
            }
        self.data_config = dict(data_config)
        self.info: DistInfo = setup_distributed(device)
        self.device = self.info.device
        self.label_mode: str = ds.label_mode
        self._amp_dtype = self._resolve_amp()
        self._channels_last = (
            self.config.channels_last
            if self.config.channels_last is not None
            else self.device.type == "cuda"
        )
        self.history: list[dict[str, Any]] = []
        self.global_step = 0
        self._best_state: dict[str, torch.Tensor] | None = None
        self._best_val_cases: dict[str, dict[str, float]] = {}
        self._sigint = _SigintFlag(active=False)
        self._resumed_from: Path | None = None
        self._epochs_here = 0  # epochs finished by the current fit() call
        self._loaders: dict[tuple[int, bool], DataLoader] = {}

    @property
    def amp(self) -> str:
        """The mixed precision in use: ``"bfloat16"``, ``"float16"`` or ``"off"``."""
        return str(self._amp_dtype).replace("torch.", "") if self._amp_dtype else "off"

    # --- setup -------------------------------------------------------------------------------
    def _resolve_amp(self) -> torch.dtype | None:
        amp = self.config.amp
        if self.device.type != "cuda":
            if amp in ("bf16", "fp16"):
                raise ValueError(
                    f"amp={amp!r} needs CUDA, but the device is {self.device}; use amp='auto' "
                    "or 'off'."
                )
            return None
        if amp == "off":
            return None
        if amp == "auto":
            amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return torch.bfloat16 if amp == "bf16" else torch.float16

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self._amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self._amp_dtype)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self._channels_last and x.dim() in (4, 5):
            fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
            x = x.contiguous(memory_format=fmt)
        return x

    def _loader(self, data: Dataset, train: bool) -> DataLoader:
        key = (id(data), train)
        if key not in self._loaders:  # one loader per dataset: workers persist across epochs
            self._loaders[key] = self._make_loader(data, train)
        return self._loaders[key]

    def _make_loader(self, data: Dataset, train: bool) -> DataLoader:
        cfg = self.config
        sampler = DistributedSampler(
            data,
            num_replicas=self.info.world_size,
            rank=self.info.rank,
            shuffle=train,
            seed=cfg.seed,
            drop_last=False,
        )
        return DataLoader(
            data,
            batch_size=cfg.batch_size if train else (cfg.val_batch_size or cfg.batch_size),
            sampler=sampler,
            num_workers=cfg.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=cfg.num_workers > 0,
            worker_init_fn=_ignore_sigint if cfg.num_workers > 0 else None,
        )

    def _setup_model(self) -> torch.nn.Module:
        self.ds.to(self.device)
        if self._channels_last:
            volumetric = any(p.dim() == 5 for p in self.ds.parameters())
            fmt = torch.channels_last_3d if volumetric else torch.channels_last
            self.ds.to(memory_format=fmt)
        if self.config.compile:
            self.ds.compile()
        if not self.info.distributed:
            return self.ds
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.ds, device_ids=ids)

    # --- checkpoints -------------------------------------------------------------------------
    def _state(self, epoch: int, stopper: EarlyStopping, opt: Any, sched: Any, scaler: Any) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "dsplug_version": __version__,
            "epoch": epoch,
            "global_step": self.global_step,
            "world_size": self.info.world_size,
            "model_config": self.model_config,
            "wrapper_config": self.ds.config(),
            "data_config": self.data_config,
            "train_config": self.config.to_dict(),
            "model_state": self.ds.model.state_dict(),  # shares storage with wrapper_state
            "wrapper_state": self.ds.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "scaler": scaler.state_dict(),
            "early_stopping": stopper.state(),
            "history": self.history,
            "best_val_cases": self._best_val_cases,
            "rng": all_gather_objects(capture_rng(), self.info),
        }

    def _check_resumable(self, ckpt: dict[str, Any], path: Path) -> None:
        stored = ckpt["train_config"]
        now = self.config.to_dict()
        diffs = [
            f"{key}: checkpoint {stored.get(key)!r}, now {now[key]!r}"
            for key in now
            if key not in _FREE_ON_RESUME and stored.get(key) != now[key]
        ]
        for name, mine in (
            ("model_config", self.model_config),
            ("wrapper_config", self.ds.config()),
            ("data_config", self.data_config),
        ):
            if ckpt[name] != mine:
                diffs.append(f"{name}: checkpoint {ckpt[name]!r}, now {mine!r}")
        if diffs:
            raise ValueError(
                f"Cannot resume from {str(path)!r}: the run's settings differ from the "
                f"checkpoint's ({'; '.join(diffs)}). Resume with the same settings, or start a "
                "new run in another folder."
            )
        if ckpt["world_size"] != self.info.world_size:
            warnings.warn(
                f"Resuming a run trained on {ckpt['world_size']} processes with "
                f"{self.info.world_size}: the data order differs from an uninterrupted run.",
                stacklevel=3,
            )

    def _resume(self, path: Path, opt: Any, sched: Any, scaler: Any) -> tuple[int, EarlyStopping]:
        ckpt = load_checkpoint(path)
        self._check_resumable(ckpt, path)
        load_weights(self.ds, ckpt["wrapper_state"], path, "wrapper_state")
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        if ckpt["scaler"]:
            scaler.load_state_dict(ckpt["scaler"])
        stored = EarlyStopping.from_state(ckpt["early_stopping"])
        stopper = EarlyStopping(
            self.config.max_epochs, self.config.min_epochs, stored.best_epoch, stored.best_score
        )
        self.history = list(ckpt["history"])
        self.global_step = int(ckpt["global_step"])
        self._best_val_cases = dict(ckpt["best_val_cases"])
        if stopper.best_epoch == ckpt["epoch"]:
            self._best_state = ckpt["wrapper_state"]
            if self.info.is_main:  # heal a best.pt the crash may have left behind
                save_checkpoint(ckpt, self.out / "best.pt")
        elif stopper.best_epoch > 0:
            best_path = path.parent / "best.pt"  # the best epoch of the run resumed from
            best = load_checkpoint(best_path)
            if best["epoch"] != stopper.best_epoch:
                raise CheckpointError(
                    f"{str(best_path)!r} holds epoch {best['epoch']}, but {str(path)!r} says "
                    f"the best epoch is {stopper.best_epoch}; the run folder was modified."
                )
            self._best_state = best["wrapper_state"]
            if self.info.is_main and best_path.resolve() != (self.out / "best.pt").resolve():
                save_checkpoint(best, self.out / "best.pt")  # a new folder gets the best too
        rng = ckpt["rng"]
        restore_rng(rng[self.info.rank] if self.info.rank < len(rng) else rng[0])
        return int(ckpt["epoch"]) + 1, stopper

    # --- one epoch ---------------------------------------------------------------------------
    def _train_epoch(
        self, net: torch.nn.Module, loader: DataLoader, epoch: int, opt: Any, scaler: Any
    ) -> dict[str, float]:
        self.ds.train()
        sums: dict[str, float] = {}
        steps = 0
        bar = tqdm(
            loader,
            desc=f"epoch {epoch}/{self.config.max_epochs}",
            leave=False,
            disable=not (self.config.progress and self.info.is_main),
        )
        for batch in bar:
            x = self._prepare(batch["image"])
            y = batch["mask"].to(self.device, non_blocking=True)
            with self._autocast():
                out = net(x, y)
                breakdown = self.ds.loss(out, y)
            # One device-to-host transfer per step: the total and every term.
            names = list(breakdown.tensors)
            values = torch.stack(
                [breakdown.total.detach(), *(breakdown.tensors[n].float() for n in names)]
            ).tolist()
            total, terms = values[0], dict(zip(names, values[1:]))
            if not math.isfinite(total):
                self._non_finite(epoch, steps + 1, total, terms)
            opt.zero_grad(set_to_none=True)
            scaler.scale(breakdown.total).backward()
            scaler.step(opt)
            scaler.update()
            steps += 1
            self.global_step += 1
            sums["loss"] = sums.get("loss", 0.0) + total
            for name, value in terms.items():
                sums[f"loss/{name}"] = sums.get(f"loss/{name}", 0.0) + value
            bar.set_postfix(loss=f"{total:.4f}", refresh=False)
            self._stop_if_interrupted()
        means = {name: value / max(steps, 1) for name, value in sums.items()}
        if self.info.distributed:  # the mean over every rank's steps
            gathered = all_gather_objects(means, self.info)
            means = {name: float(np.mean([g[name] for g in gathered])) for name in means}
        return means

    def _stop_if_interrupted(self) -> None:
        if not self._sigint.requested:
            return
        finished = int(self.history[-1]["epoch"]) if self.history else 0
        if self._epochs_here:
            checkpoint: Path | None = self.out / "last.pt"
        else:  # no epoch finished in this call: the checkpoint it started from still holds it
            checkpoint = self._resumed_from
        raise TrainingInterrupted(finished, checkpoint)

    def _non_finite(self, epoch: int, step: int, total: float, terms: dict[str, float]) -> None:
        bad = sorted(name for name, value in terms.items() if not math.isfinite(value))
        last = self.out / "last.pt"
        kept = (
            f"The last good checkpoint, {str(last)!r} (epoch {self.history[-1]['epoch']}), is "
            "intact: fix the cause, then resume with --resume."
            if self.history
            else "No epoch finished, so no checkpoint was written."
        )
        raise NonFiniteLossError(
            f"The training loss is {total} at epoch {epoch}, step {step} (non-finite terms: "
            f"{bad or 'none; the total overflowed'}); the run stopped before this step changed "
            f"the weights. {kept} Common causes: a learning rate too high, unnormalised or "
            "corrupted inputs, fp16 overflow (try amp='bf16' or 'off')."
        )

    def _validate(self, data: Dataset, desc: str) -> CaseMetrics:
        self.ds.eval()
        return evaluate_loader(
            self.ds,
            self._loader(data, train=False),
            self.label_mode,
            self.info,
            prepare=self._prepare,
            autocast=self._autocast,
            progress=desc if self.config.progress and self.info.is_main else None,
        )

    def evaluate(self, data: Dataset) -> CaseMetrics:
        """Per-case metrics of the current weights on ``data`` (gathered across ranks)."""
        self.ds.to(self.device)
        return self._validate(data, "evaluate")

    # --- the loop ----------------------------------------------------------------------------
    def fit(self, resume: bool = False, resume_from: str | Path | None = None) -> dict[str, Any]:
        """Train until early stopping or ``max_epochs``; then test and summarise.

        Ctrl-C (SIGINT, outside DDP) stops at the next safe point, between optimiser steps:
        the files of the last finished epoch stay as they are, and :class:`TrainingInterrupted`
        is raised. A second Ctrl-C interrupts at once.

        Args:
            resume: continue the run in ``out`` from ``last.pt`` exactly where it stopped.
            resume_from: continue from this checkpoint instead (any of the run's, e.g.
                ``best.pt``, or one of another folder with the same settings); implies resume.

        Returns:
            The summary also written to ``out/summary.json``.

        Raises:
            NonFiniteLossError: the loss became NaN or Inf (the last checkpoint stays intact).
            TrainingInterrupted: Ctrl-C; ``last.pt`` holds the last finished epoch.
            CheckpointError: resuming and the checkpoint is missing or damaged.
            ValueError: resuming with settings that differ from the checkpoint's.
        """
        source = Path(resume_from) if resume_from is not None else self.out / "last.pt"
        resume = resume or resume_from is not None
        cfg = self.config
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if not resume:
            seed_everything(cfg.seed)
        net = self._setup_model()
        opt = paper_optimizer(self.ds.parameters(), cfg.lr)
        sched = paper_scheduler(opt, cfg.lr_step, cfg.lr_gamma)
        scaler = torch.amp.GradScaler(self.device.type, enabled=self._amp_dtype == torch.float16)
        if resume:
            start, stopper = self._resume(source, opt, sched, scaler)
        else:
            start, stopper = 1, EarlyStopping(cfg.max_epochs, cfg.min_epochs)
            self.history, self.global_step, self._best_state = [], 0, None
            self._best_val_cases = {}
        main = self.info.is_main
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_json(self.out / "config.json", self._configs())
        log = RunLog(self.out, tensorboard=cfg.tensorboard and main, first_epoch=start)
        train_loader = self._loader(self.train_data, train=True)
        done = bool(self.history) and stopper.should_stop(int(self.history[-1]["epoch"]))
        self._resumed_from = source if resume else None
        self._epochs_here = 0
        self._sigint = _SigintFlag(active=not self.info.distributed)
        try:
            with self._sigint:
                epoch = start
                while not done and epoch <= cfg.max_epochs:
                    self._stop_if_interrupted()
                    done = self._run_epoch(
                        net, train_loader, epoch, opt, sched, scaler, stopper, log
                    )
                    epoch += 1
                self._stop_if_interrupted()
        finally:
            log.close()
        return self._finish()

    def _run_epoch(
        self,
        net: torch.nn.Module,
        loader: DataLoader,
        epoch: int,
        opt: Any,
        sched: Any,
        scaler: Any,
        stopper: EarlyStopping,
        log: RunLog,
    ) -> bool:
        cfg = self.config
        progress = ds_progress(epoch, cfg.max_epochs)
        self.ds.set_progress(progress)
        loader.sampler.set_epoch(epoch)
        lr = opt.param_groups[0]["lr"]
        t0 = time.perf_counter()
        losses = self._train_epoch(net, loader, epoch, opt, scaler)
        self._sync()
        train_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        metrics = self._validate(self.val_data, f"validate {epoch}")
        summary = metrics.summary()
        val_s = time.perf_counter() - t1
        improved = stopper.improved(epoch, summary["avg_m"])
        stop = stopper.should_stop(epoch)
        sched.step()
        if improved:
            self._best_val_cases = metrics.per_case()
            self._best_state = {
                k: v.detach().cpu().clone() for k, v in self.ds.state_dict().items()
            }
        previous_wall = self.history[-1]["wall_s"] if self.history else 0.0
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
        self.history.append(row)
        state = self._state(epoch, stopper, opt, sched, scaler)
        self._epochs_here += 1
        if self.info.is_main:
            # last.pt first: if the process dies before best.pt is written, last.pt is the
            # best epoch and resume takes the best weights from it.
            save_checkpoint(state, self.out / "last.pt")
            if improved:
                save_checkpoint(state, self.out / "best.pt")
            log.log(self.history)
            if cfg.plots:
                plot_curves(self.history, self.out / "curves.png")
            if cfg.progress:
                tqdm.write(
                    f"epoch {epoch}/{cfg.max_epochs}  loss {row.get('loss', float('nan')):.4f}  "
                    f"val dice {summary['dice']:.4f}  avg.m {summary['avg_m']:.4f}  "
                    f"best {stopper.best_epoch}  {train_s:.1f}+{val_s:.1f} s"
                )
        return stop

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _configs(self) -> dict[str, Any]:
        return {
            "model_config": self.model_config,
            "wrapper_config": self.ds.config(),
            "data_config": self.data_config,
            "train_config": self.config.to_dict(),
            "world_size": self.info.world_size,
            "device": str(self.device),
            "amp": self.amp,
        }

    def _finish(self) -> dict[str, Any]:
        cfg = self.config
        summary: dict[str, Any] = {
            "mode": self.ds.config()["mode"],
            "model": self.model_config,
            "efficiency": efficiency(self.history, cfg.target_dice),
        }
        best_epoch = summary["efficiency"]["epoch"]
        summary["best_val"] = (
            {name: self.history[best_epoch - 1][f"val_{name}"] for name in METRIC_NAMES}
            if best_epoch
            else None
        )
        if self._best_state is not None:
            self.ds.load_state_dict(self._best_state)
        if self.test_data is not None:
            metrics = self._validate(self.test_data, "test")
            summary["test"] = metrics.summary()
            if self.info.is_main:
                per_case = metrics.per_case()
                write_csv(
                    self.out / "test_cases.csv",
                    [{"case": case, **values} for case, values in per_case.items()],
                )
        if self.info.is_main:
            write_csv(
                self.out / "val_cases.csv",
                [{"case": case, **values} for case, values in self._best_val_cases.items()],
            )
            write_json(self.out / "summary.json", summary)
            if cfg.plots and cfg.overlays:
                self.ds.eval()
                samples = overlay_samples(
                    self._forward_eval, self.val_data, self.label_mode, self.device, cfg.overlays
                )
                if samples:
                    plot_overlays(samples, self.out / "overlays.png")
        return summary

    @torch.no_grad()
    def _forward_eval(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.ds(self._prepare(x))
