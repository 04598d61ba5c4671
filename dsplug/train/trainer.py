"""The Trainer: wires the config, runtime, loop, resume, semi_steps (images without masks),
absent (classes never seen) and reporting modules into ``fit``."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..data.volumes import NativeCase, native_cases
from ..metrics import CaseMetrics
from ..semi import EMATeacher
from .absent import (
    ForegroundTally,
    VanishedClasses,
    unpredicted_classes,
    warn_unpredicted_best,
)
from .config import TrainConfig
from .distributed import DistInfo, setup_distributed
from .evaluation import evaluate_loader
from .loop import SigintFlag, TrainingInterrupted, train_epoch
from .models import model_config as derive_model_config
from .native import evaluate_native
from .recipe import field_loader, recipe_record, train_view
from .reporting import epoch_row, report_epoch, run_summary, write_overlays, write_reports
from .resume import epoch_state, resume_run, save_epoch, train_record
from .runlog import RunLog, write_json
from .runtime import Runtime, configure_determinism, make_loader, seed_everything
from .schedule import EarlyStopping, ds_progress, make_optimizer
from .semi_steps import (
    load_teacher,
    make_teacher,
    resolve_semi,
    semi_summary,
    unlabeled_loader,
    unlabeled_loss,
)
from .sliding import sliding_window_logits
from .unlabeled import describe_unlabeled

__all__ = ["Trainer"]

#: Moved to :mod:`dsplug.train.resume` (``train_record``); the old name stays importable here.
_train_record = train_record

_BATCH_NORMS = (
    torch.nn.BatchNorm1d,
    torch.nn.BatchNorm2d,
    torch.nn.BatchNorm3d,
    torch.nn.SyncBatchNorm,
)


def _has_batch_norm(module: torch.nn.Module) -> bool:
    return any(isinstance(m, _BATCH_NORMS) for m in module.modules())


class Trainer:
    """Train a :class:`~dsplug.DeepSupervised` model the paper's way, and never lose a run.

    Adam (lr 3e-4) decayed x0.9 every 3 epochs (``config.recipe="paper"``; ``"field"``:
    warm-up then poly decay per step, ``config.iterations`` steps per epoch, the field's
    augmentation of the training items); validation per epoch with per-case metrics;
    early stopping on validation avg.m (§4.3); ``ds.set_progress`` per epoch. Every epoch
    writes ``last.pt`` (and ``best.pt`` when avg.m improves) atomically, ``log.csv`` and
    ``curves.png``; the end of training writes ``summary.json`` (efficiency, best validation
    and test metrics), ``test_cases.csv`` and ``overlays.png``. Under ``torchrun`` it trains with
    DistributedDataParallel (NCCL on GPU, gloo on CPU) and rank 0 writes the files. A model
    with batch norm leaves out a last training batch of one sample per epoch (batch norm
    cannot normalise one sample at a one-voxel layer).

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
        unlabeled_data: images without masks (items with ``image``): each step adds
            ``config.unlabeled_ratio`` x ``batch_size`` of them with the recipe
            ``config.semi`` (default ``"mean-teacher"``: consistency with an EMA teacher),
            weighted by ``config.semi_weight`` after a sigmoid ramp-up over ``config.rampup`` of
            the steps. The teacher is updated after every optimiser step and saved in each
            checkpoint.

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
        unlabeled_data: Dataset | None = None,
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
        self.config = resolve_semi(config or TrainConfig(), ds, unlabeled_data)
        self.unlabeled_data = unlabeled_data
        self.teacher: EMATeacher | None = None
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
            if unlabeled_data is not None:
                data_config["unlabeled"] = describe_unlabeled(unlabeled_data)
        self.data_config = dict(data_config)
        self.train_data = train_view(train_data, self.config)  # field: augmented
        self._sched: Any = None  # the field recipe's scheduler steps per optimiser step
        self.info: DistInfo = setup_distributed(device)
        self.device = self.info.device
        self.label_mode: str = ds.label_mode
        self.runtime = Runtime.resolve(self.config, self.info)
        self.history: list[dict[str, Any]] = []
        self.global_step = 0
        self._best_state: dict[str, torch.Tensor] | None = None
        self._best_val_cases: dict[str, dict[str, float]] = {}
        self._best_unpredicted: list[int] = []  # classes the best epoch predicted nowhere
        self._vanished = VanishedClasses(self.label_mode)  # said once per class per run
        self._sigint = SigintFlag(active=False)
        self._resumed_from: Path | None = None
        self._epochs_here = 0  # epochs finished by the current fit() call
        self._loaders: dict[tuple[int, bool], DataLoader] = {}
        self._native: dict[int, list[NativeCase]] = {}

    @property
    def amp(self) -> str:
        """The mixed precision in use: ``"bfloat16"``, ``"float16"`` or ``"off"``."""
        return self.runtime.amp

    def _loader(self, data: Dataset, train: bool) -> DataLoader:
        key = (id(data), train)
        if key not in self._loaders:  # one loader per dataset: workers persist across epochs
            single = train and _has_batch_norm(self.ds)  # a last batch of one is left out
            if train and self.config.recipe == "field":  # a fixed number of steps per epoch
                self._loaders[key] = field_loader(data, self.config, self.runtime)
            else:
                self._loaders[key] = make_loader(data, train, self.config, self.runtime, single)
        return self._loaders[key]

    def _configs(self) -> dict[str, Any]:
        """What ``config.json`` holds; a checkpoint stores (and a resume matches) its configs."""
        return {
            "model_config": self.model_config,
            "wrapper_config": self.ds.config(),
            "data_config": self.data_config,
            "train_config": train_record(self.config),
            "world_size": self.info.world_size,
            "device": str(self.device),
            "amp": self.amp,
            "threads": torch.get_num_threads(),
            "recipe": recipe_record(self.config, self.train_data),
        }

    def _validate(self, data: Dataset, desc: str) -> CaseMetrics:
        self.ds.eval()
        progress = desc if self.config.progress and self.info.is_main else None
        patch = self.config.patch
        if patch is not None:  # whole cases at native resolution, by sliding windows
            if id(data) not in self._native:
                self._native[id(data)] = native_cases(data, len(patch))
            return evaluate_native(
                self._forward_eval,
                self._native[id(data)],
                self.label_mode,
                self.info,
                window=patch,
                batch_size=self.config.val_batch_size or self.config.batch_size,
                tolerance=self.config.nsd_tolerance,
                progress=progress,
            )
        return evaluate_loader(
            self.ds,
            self._loader(data, train=False),
            self.label_mode,
            self.info,
            prepare=self.runtime.prepare,
            autocast=self.runtime.autocast,
            progress=progress,
        )

    def evaluate(self, data: Dataset) -> CaseMetrics:
        """Per-case metrics of the current weights on ``data`` (gathered across ranks)."""
        self.ds.to(self.device)
        return self._validate(data, "evaluate")

    # --- the loop ----------------------------------------------------------------------------
    def fit(
        self,
        resume: bool = False,
        resume_from: str | Path | None = None,
        on_start: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """Train until early stopping or ``max_epochs``; then test and summarise.

        Ctrl-C (SIGINT, outside DDP) stops at the next safe point, between optimiser steps:
        the files of the last finished epoch stay as they are, and :class:`TrainingInterrupted`
        is raised. A second Ctrl-C interrupts at once.

        Args:
            resume: continue the run in ``out`` from ``last.pt`` exactly where it stopped.
            resume_from: continue from this checkpoint instead (any of the run's, e.g.
                ``best.pt``, or one of another folder with the same settings); implies resume.
            on_start: called by the main process once the run is accepted (a resume's checks
                passed), before ``config.json`` and the epochs' files are written.

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
        configure_determinism(cfg.deterministic, self.device)
        if not resume:
            seed_everything(cfg.seed)
        net = self.runtime.place(self.ds, cfg.compile)
        opt, sched, per_step = make_optimizer(self.ds.parameters(), cfg)
        self._sched = sched if per_step else None
        scaler = self.runtime.grad_scaler()
        self.teacher = make_teacher(self.ds, cfg)
        if resume:
            start, stopper = self._resume(source, opt, sched, scaler)
            stopper.patience = cfg.patience
        else:
            start, stopper = 1, EarlyStopping(cfg.max_epochs, cfg.min_epochs, patience=cfg.patience)
            self.history, self.global_step, self._best_state = [], 0, None
            self._best_val_cases = {}
        self._best_unpredicted = []
        self._vanished = VanishedClasses(self.label_mode)
        main = self.info.is_main
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            if on_start is not None:
                on_start()
            write_json(self.out / "config.json", self._configs())
        log = RunLog(self.out, tensorboard=cfg.tensorboard and main, first_epoch=start)
        train_loader = self._loader(self.train_data, train=True)
        self._ramp_steps = cfg.rampup * cfg.max_epochs * len(train_loader)
        unlabeled = unlabeled_loader(self.unlabeled_data, cfg, self.info, len(train_loader))
        done = bool(self.history) and stopper.should_stop(int(self.history[-1]["epoch"]))
        self._resumed_from = source if resume else None
        self._epochs_here = 0
        self._sigint = SigintFlag(active=not self.info.distributed)
        try:
            with self._sigint:
                epoch = start
                while not done and epoch <= cfg.max_epochs:
                    self._stop_if_interrupted()
                    done = self._run_epoch(
                        net,
                        train_loader,
                        epoch,
                        opt,
                        sched,
                        scaler,
                        stopper,
                        log,
                        unlabeled,
                    )
                    epoch += 1
                self._stop_if_interrupted()
        finally:
            log.close()
        return self._finish()

    def _resume(self, path: Path, opt: Any, sched: Any, scaler: Any) -> tuple[int, EarlyStopping]:
        state = resume_run(
            path, self.ds, self._configs(), self.info, self.out, opt=opt, sched=sched, scaler=scaler
        )
        self.history, self.global_step = state.history, state.global_step
        self._best_state, self._best_val_cases = state.best_state, state.best_val_cases
        if self.teacher is not None:  # the checkpoint passed its checks: read its teacher
            load_teacher(self.teacher, path)
        return state.start, state.stopper

    # --- images without masks (dsplug.train.semi_steps) --------------------------------
    def _unlabeled_loss(self, batches: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weighted loss of the next unlabelled batch, and the unweighted one to log."""
        images = self.runtime.prepare(next(batches)["image"])
        return unlabeled_loss(
            self.ds,
            self.teacher,
            images,
            self.config,
            step=self.global_step,
            ramp_steps=self._ramp_steps,
        )

    def _after_step(self) -> None:
        if self._sched is not None:
            self._sched.step()
        if self.teacher is not None:
            self.teacher.update()
        self.global_step += 1
        self._stop_if_interrupted()

    def _stop_if_interrupted(self) -> None:
        if not self._sigint.requested:
            return
        finished = int(self.history[-1]["epoch"]) if self.history else 0
        if self._epochs_here:
            checkpoint: Path | None = self.out / "last.pt"
        else:  # no epoch finished in this call: the checkpoint it started from still holds it
            checkpoint = self._resumed_from
        raise TrainingInterrupted(finished, checkpoint)

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
        unlabeled_loader: DataLoader | None = None,
    ) -> bool:
        cfg = self.config
        progress = ds_progress(epoch, cfg.max_epochs)
        self.ds.set_progress(progress)
        loader.sampler.set_epoch(epoch)
        lr = opt.param_groups[0]["lr"]
        last_good = (self.out / "last.pt", int(self.history[-1]["epoch"])) if self.history else None
        tally = ForegroundTally(self.label_mode) if self._epochs_here == 0 else None
        unlabeled = None
        if unlabeled_loader is not None:
            unlabeled_loader.sampler.set_epoch(epoch)
            unlabeled = partial(self._unlabeled_loss, iter(unlabeled_loader))
        t0 = time.perf_counter()
        losses = train_epoch(
            net,
            self.ds,
            loader,
            opt,
            scaler,
            self.runtime,
            epoch=epoch,
            desc=f"epoch {epoch}/{cfg.max_epochs}",
            progress=cfg.progress and self.info.is_main,
            last_good=last_good,
            after_step=self._after_step,
            on_target=tally.add if tally is not None else None,
            unlabeled=unlabeled,
        )
        self.runtime.sync()
        train_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        metrics = self._validate(self.val_data, f"validate {epoch}")
        summary = metrics.summary()
        val_s = time.perf_counter() - t1
        if tally is not None:
            tally.warn_absent(metrics.num_classes or 0, epoch, self.info)
        self._vanished.check(metrics, epoch, warn=self.info.is_main)
        improved = stopper.improved(epoch, summary["avg_m"])
        stop = stopper.should_stop(epoch)
        if self._sched is None:  # the paper's: per epoch
            sched.step()
        if improved:
            self._best_val_cases = metrics.per_case()
            self._best_unpredicted = unpredicted_classes(metrics)
            self._best_state = {
                k: v.detach().cpu().clone() for k, v in self.ds.state_dict().items()
            }
        row = epoch_row(
            self.history,
            epoch=epoch,
            lr=lr,
            progress=progress,
            losses=losses,
            summary=summary,
            stopper=stopper,
            train_s=train_s,
            val_s=val_s,
        )
        self.history.append(row)
        state = epoch_state(
            self.ds,
            self._configs(),
            self.info,
            epoch=epoch,
            global_step=self.global_step,
            opt=opt,
            sched=sched,
            scaler=scaler,
            stopper=stopper,
            history=self.history,
            best_val_cases=self._best_val_cases,
        )
        if self.teacher is not None:
            state["teacher_state"] = self.teacher.state_dict()
        self._epochs_here += 1
        if self.info.is_main:
            save_epoch(state, self.out, improved)
            report_epoch(
                self.history,
                log,
                self.out,
                max_epochs=cfg.max_epochs,
                plots=cfg.plots,
                progress=cfg.progress,
            )
        return stop

    def _finish(self) -> dict[str, Any]:
        cfg = self.config
        summary = run_summary(
            self.ds.config()["mode"],
            self.model_config,
            self.history,
            cfg.target_dice,
            self._best_val_cases,  # HD95 / NSD of patch runs
        )
        summary["recipe"] = recipe_record(cfg, self.train_data)
        semi = semi_summary(self.config, self.data_config, self.train_data, self.teacher)
        if semi is not None:
            summary["semi"] = semi
        if self._best_state is not None:
            self.ds.load_state_dict(self._best_state)
        if self.info.is_main:
            best = summary["efficiency"].get("epoch")
            warn_unpredicted_best(self._best_unpredicted, self.label_mode, best)
        test = None
        if self.test_data is not None:
            test = self._validate(self.test_data, "test")
            summary["test"] = test.summary()
        if self.info.is_main:
            write_reports(self.out, summary, self._best_val_cases, test)
            if cfg.plots and cfg.overlays and self._overlays_apply():
                self.ds.eval()
                write_overlays(
                    self._forward_overlay,
                    self.val_data,
                    self.label_mode,
                    self.device,
                    cfg.overlays,
                    self.out / "overlays.png",
                )
        return summary

    @torch.no_grad()
    def _forward_eval(self, x: torch.Tensor) -> torch.Tensor:
        with self.runtime.autocast():
            return self.ds(self.runtime.prepare(x))

    def _overlays_apply(self) -> bool:
        """Overlays show dataset items: not for 3D patches of a 2D-slice dataset."""
        patch = self.config.patch
        return patch is None or len(patch) == getattr(self.val_data, "spatial_dims", 2)

    def _forward_overlay(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.patch is None:
            return self._forward_eval(x)
        return sliding_window_logits(self._forward_eval, x, self.config.patch).to(x.device)
