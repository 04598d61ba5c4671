"""The ``field`` training recipe per task family: its augmentation, its loader of a fixed
number of steps per epoch, and the record of a run's recipe (``config.json``, summary).

The families (2D patches, 3D patches, 2D slices) share nnU-Net's values for now: Adam at
1e-3 after a one-epoch linear warm-up, poly decay (exponent 0.9) to zero at ``max_epochs``,
250 steps per epoch, a third of patches centred on foreground (patch datasets), and
:class:`~dsplug.data.field_augment.FieldAugment`. :data:`FIELD_AUGMENT` is where a family's
measured values go.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader, Dataset

from ..data.field_augment import AugmentedDataset, FieldAugment
from .config import TrainConfig, task_family
from .runtime import Runtime, _ignore_sigint
from .unlabeled import EpochSampler

__all__ = [
    "FAMILIES",
    "FIELD_AUGMENT",
    "field_loader",
    "recipe_record",
    "task_family",
    "train_view",
]

#: The task families of the field recipe.
FAMILIES = ("2d-slices", "2d-patches", "3d-patches")
#: Each family's augmentation.
FIELD_AUGMENT: dict[str, FieldAugment] = {family: FieldAugment() for family in FAMILIES}


def train_view(data: Dataset, config: TrainConfig) -> Dataset:
    """The training items as the recipe serves them: augmented with ``field``, else as they
    are (the paper's recipe augments only what the dataset itself does)."""
    if config.recipe != "field":
        return data
    return AugmentedDataset(data, FIELD_AUGMENT[task_family(config.patch)])


def field_loader(data: Dataset, config: TrainConfig, runtime: Runtime) -> DataLoader:
    """``config.iterations`` full batches per epoch and rank, whatever ``len(data)``: seeded
    permutations of the items, repeated as needed, a fresh order each epoch (``set_epoch``)."""
    info = runtime.info
    count = int(config.iterations or 1) * config.batch_size
    sampler = EpochSampler(len(data), count, config.seed, info.rank, info.world_size)  # type: ignore[arg-type]
    return DataLoader(
        data,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=config.num_workers,
        pin_memory=runtime.device.type == "cuda",
        persistent_workers=config.num_workers > 0,
        worker_init_fn=_ignore_sigint if config.num_workers > 0 else None,
    )


def recipe_record(config: TrainConfig, train_data: Dataset) -> dict[str, Any]:
    """What ``config.json`` and ``summary.json`` say of the run's recipe."""
    stopping = (
        f"patience {config.patience} epochs"
        if config.patience is not None
        else "paper: at 2 x the best epoch"
    )
    record: dict[str, Any] = {
        "name": config.recipe,
        "optimizer": "adam",
        "lr": config.lr,
        "stopping": stopping,
        "min_epochs": config.min_epochs,
    }
    if config.recipe == "paper":
        record["schedule"] = f"x{config.lr_gamma} every {config.lr_step} epochs"
        return record
    family = task_family(config.patch)
    fraction = getattr(train_data, "foreground_fraction", None)
    record.update(
        family=family,
        schedule=f"linear warm-up {config.warmup_epochs} epoch(s), then poly 0.9 to 0",
        iterations=config.iterations,
        foreground_fraction=fraction,
        augmentation=FIELD_AUGMENT[family].config(),
    )
    return record
