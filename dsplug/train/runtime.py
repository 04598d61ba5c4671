"""Where a run executes: device, mixed precision, memory format, the DDP wrap, data loaders, and
the seeds and determinism switches set before training starts."""

from __future__ import annotations

import contextlib
import os
import random
import signal
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..options import Amp, choose
from .config import TrainConfig
from .distributed import DistInfo

__all__ = ["Runtime", "configure_determinism", "make_loader", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_determinism(deterministic: bool, device: torch.device) -> None:
    """Deterministic algorithms when asked for; else cuDNN autotuning on CUDA."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def _resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype ``amp`` means on ``device`` (None: full precision)."""
    choice = choose(amp, Amp, "amp")
    if device.type != "cuda":
        if choice in (Amp.BF16, Amp.FP16):
            raise ValueError(
                f"amp={amp!r} needs CUDA, but the device is {device}; use amp='auto' or 'off'."
            )
        return None
    if choice is Amp.OFF:
        return None
    if choice is Amp.AUTO:
        choice = Amp.BF16 if torch.cuda.is_bf16_supported() else Amp.FP16
    return torch.bfloat16 if choice is Amp.BF16 else torch.float16


@dataclass(frozen=True)
class Runtime:
    """The processes, device, autocast dtype and memory format of a run.

    Attributes:
        info: rank, world size and device of this process.
        amp_dtype: the autocast dtype; None: full precision.
        channels_last: inputs and weights in channels-last memory format.
    """

    info: DistInfo
    amp_dtype: torch.dtype | None
    channels_last: bool

    @classmethod
    def resolve(cls, config: TrainConfig, info: DistInfo) -> Runtime:
        """Resolve ``config.amp`` and ``config.channels_last`` for the device of ``info``.

        Raises:
            ValueError: ``bf16`` or ``fp16`` asked for without CUDA.
        """
        device = info.device
        channels_last = config.channels_last
        if channels_last is None:
            channels_last = device.type == "cuda"
        return cls(info, _resolve_amp(config.amp, device), channels_last)

    @property
    def device(self) -> torch.device:
        """This process's device."""
        return self.info.device

    @property
    def amp(self) -> str:
        """The mixed precision in use: ``"bfloat16"``, ``"float16"`` or ``"off"``."""
        return str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "off"

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Autocast to :attr:`amp_dtype`, or nothing in full precision."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A grad scaler, enabled for fp16 only."""
        return torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Move a batch of images to the device, in the run's memory format."""
        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.dim() in (4, 5):
            fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
            x = x.contiguous(memory_format=fmt)
        return x

    def place(self, ds: torch.nn.Module, compile: bool) -> torch.nn.Module:
        """Move ``ds`` to the device (memory format, ``compile``); return the module to call:
        ``ds`` itself, or its DistributedDataParallel wrapper under DDP."""
        ds.to(self.device)
        if self.channels_last:
            volumetric = any(p.dim() == 5 for p in ds.parameters())
            fmt = torch.channels_last_3d if volumetric else torch.channels_last
            ds.to(memory_format=fmt)
        if compile:
            ds.compile()
        if not self.info.distributed:
            return ds
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(ds, device_ids=ids)

    def sync(self) -> None:
        """Wait for queued CUDA work (for honest timings); nothing on the CPU."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _ignore_sigint(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C to the main process (which stops at a safe point)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_loader(
    data: Dataset,
    train: bool,
    config: TrainConfig,
    runtime: Runtime,
    drop_single: bool = False,
) -> DataLoader:
    """A loader of this rank's share of ``data`` (shuffled by ``config.seed`` when ``train``).

    ``drop_single`` (training with batch norm): a last batch that would hold one sample is
    left out of each epoch (a different sample each epoch, as the order is shuffled). Batch
    norm cannot normalise one sample at a one-voxel layer (torch refuses it mid-run), and
    elsewhere it would take one image's statistics for the batch's.
    """
    info = runtime.info
    sampler = DistributedSampler(
        data,
        num_replicas=info.world_size,
        rank=info.rank,
        shuffle=train,
        seed=config.seed,
        drop_last=False,
    )
    batch_size = config.batch_size if train else (config.val_batch_size or config.batch_size)
    share = len(sampler)  # the same on every rank: each steps as often
    return DataLoader(
        data,
        batch_size=batch_size,
        drop_last=drop_single and share > batch_size and share % batch_size == 1,
        sampler=sampler,
        num_workers=config.num_workers,
        pin_memory=runtime.device.type == "cuda",
        persistent_workers=config.num_workers > 0,
        worker_init_fn=_ignore_sigint if config.num_workers > 0 else None,
    )
