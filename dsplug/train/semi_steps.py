"""The Trainer's images without masks, step by step: the recipe resolved from the config, the
EMA teacher (made, resumed), the unlabelled loader, the weighted loss of each step, and what
``summary.json`` records of them. Reading the images is :mod:`dsplug.train.unlabeled`'s job;
the recipes themselves are :mod:`dsplug.semi`'s."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..semi import EMATeacher, check_recipe, default_recipe, recipe_loss, sigmoid_rampup
from .checkpoint import CheckpointError, load_checkpoint
from .config import TrainConfig
from .distributed import DistInfo
from .runtime import _ignore_sigint
from .unlabeled import EpochSampler

__all__ = [
    "load_teacher",
    "make_teacher",
    "resolve_semi",
    "semi_summary",
    "unlabeled_loader",
    "unlabeled_loss",
]


def resolve_semi(
    config: TrainConfig, ds: torch.nn.Module, unlabeled: Dataset | None
) -> TrainConfig:
    """The config with its semi-supervised recipe resolved (the mode's default,
    :func:`dsplug.semi.default_recipe`, when unlabelled images come without one); refuses a
    recipe without images, or one the mode cannot use."""
    if unlabeled is None:
        if config.semi is not None:
            raise ValueError(
                f"semi={config.semi!r} needs images without masks (unlabeled_data, or "
                "--unlabeled PATH / --labeled-cases N on the command line)."
            )
        return config
    if len(unlabeled) == 0:
        raise ValueError("unlabeled_data is empty: give at least one image without a mask.")
    if config.semi is None:
        config = replace(config, semi=default_recipe(ds.config()["mode"]))
    check_recipe(config.semi, ds.config()["mode"])
    return config


def make_teacher(ds: torch.nn.Module, config: TrainConfig) -> EMATeacher | None:
    """The EMA teacher of the recipes that have one (pseudo, mean-teacher), else None."""
    if config.semi in ("pseudo", "mean-teacher"):
        return EMATeacher(ds, config.ema_decay)
    return None


def load_teacher(teacher: EMATeacher, path: Path) -> None:
    """Read the teacher's state from the checkpoint a run resumes from.

    Raises:
        CheckpointError: the checkpoint holds no teacher.
    """
    state = load_checkpoint(path).get("teacher_state")
    if state is None:
        raise CheckpointError(f"Checkpoint {str(path)!r} lacks the teacher's state.")
    teacher.load_state_dict(state)


def unlabeled_loader(
    data: Dataset | None, config: TrainConfig, info: DistInfo, steps: int
) -> DataLoader | None:
    """``unlabeled_ratio`` x ``batch_size`` unlabelled images per step for ``steps`` steps an
    epoch, a seeded order per epoch (the same on resume); None without images."""
    if data is None:
        return None
    size = config.batch_size * config.unlabeled_ratio
    sampler = EpochSampler(len(data), steps * size, config.seed, info.rank, info.world_size)
    return DataLoader(
        data,
        batch_size=size,
        sampler=sampler,
        num_workers=config.num_workers,
        pin_memory=info.device.type == "cuda",
        persistent_workers=config.num_workers > 0,
        worker_init_fn=_ignore_sigint if config.num_workers > 0 else None,
    )


def unlabeled_loss(
    ds: Any,
    teacher: EMATeacher | None,
    images: torch.Tensor,
    config: TrainConfig,
    *,
    step: int,
    ramp_steps: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The weighted loss of a batch of unlabelled ``images`` at ``step``, and the unweighted
    one to log."""
    weight = config.semi_weight * sigmoid_rampup(step, ramp_steps)
    loss = recipe_loss(ds, teacher, images, config.semi)
    return weight * loss, {"unlabeled": loss}


def semi_summary(
    config: TrainConfig,
    data_config: dict[str, Any],
    train_data: Dataset,
    teacher: EMATeacher | None,
) -> dict[str, Any] | None:
    """What ``summary.json`` records of the semi-supervised recipe (None: supervised)."""
    if config.semi is None:
        return None
    record = dict(data_config.get("unlabeled") or {})
    record.pop("fingerprint", None)
    cases = getattr(train_data, "cases", None)
    return {
        "recipe": config.semi,
        "unlabeled_source": record.get("source"),
        "unlabeled_cases": len(record.get("cases") or []),
        "unlabeled_images": record.get("items"),
        "labeled_cases": len(cases) if cases is not None else None,
        "unlabeled_ratio": config.unlabeled_ratio,
        "rampup": config.rampup,
        "unlabeled_weight": config.semi_weight,
        "ema_decay": config.ema_decay if teacher is not None else None,
    }
