"""Per-case evaluation of a model over a loader: crop back, count, gather across ranks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from tqdm.auto import tqdm

from ..metrics import CaseMetrics, confusion_counts, foreground_masks, predict
from .distributed import DistInfo, all_gather_objects
from .plots import OverlaySample, mask_to_labels

__all__ = [
    "batch_counts",
    "crop_to_size",
    "evaluate_loader",
    "gather_metrics",
    "overlay_samples",
]


def crop_to_size(tensor: torch.Tensor, size: Iterable[int]) -> torch.Tensor:
    """Crop the trailing spatial dims of ``tensor`` to ``size`` (padding sits at the high end)."""
    size = [int(s) for s in size]
    return tensor[(..., *(slice(0, s) for s in size))]


def batch_counts(
    logits: torch.Tensor, target: torch.Tensor, sizes: torch.Tensor, label_mode: str
) -> torch.Tensor:
    """TP/FP/FN per item and foreground class, each item cropped back to its own size.

    Items that share a size are counted together (one call per distinct size).

    Args:
        logits: (B, C, *spatial) raw outputs.
        target: the batch's masks (label conventions of ``dsplug.metrics``).
        sizes: (B, spatial_dims) int sizes before padding.
        label_mode: ``binary``, ``multilabel`` or ``multiclass``.

    Returns:
        int64 (B, F, 3) on the logits' device.

    Raises:
        ValueError: ``sizes`` has the wrong shape.
    """
    spatial_dims = logits.dim() - 2
    if sizes.dim() != 2 or sizes.shape != (logits.shape[0], spatial_dims):
        raise ValueError(
            f"sizes must be (B={logits.shape[0]}, {spatial_dims}) sizes before padding, "
            f"got shape {tuple(sizes.shape)}."
        )
    rows = [tuple(int(s) for s in row) for row in sizes.tolist()]
    counts: list[torch.Tensor | None] = [None] * len(rows)
    for size in dict.fromkeys(rows):
        index = [i for i, row in enumerate(rows) if row == size]
        picked = torch.tensor(index, device=logits.device)
        part = confusion_counts(
            crop_to_size(logits.index_select(0, picked), size),
            crop_to_size(target.index_select(0, picked.to(target.device)), size),
            label_mode,
        )
        for i, row in zip(index, part):
            counts[i] = row
    return torch.stack(counts)  # type: ignore[arg-type]


def gather_metrics(metrics: CaseMetrics, info: DistInfo) -> CaseMetrics:
    """Merge every rank's counts keyed by (case, slice); padded duplicates count once."""
    if not info.distributed:
        return metrics
    merged = (
        CaseMetrics(
            eps=metrics.eps,
            surface=True,
            spacing=metrics.spacing,
            tolerance=metrics.tolerance,
        )
        if metrics.surface
        else CaseMetrics(eps=metrics.eps)
    )
    for state in all_gather_objects(metrics.state(), info):
        merged.merge(CaseMetrics.from_state(state))
    return merged


@torch.no_grad()
def evaluate_loader(
    forward: Callable[[torch.Tensor], torch.Tensor],
    loader: Iterable[Mapping[str, Any]],
    label_mode: str,
    info: DistInfo,
    *,
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
    autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
    eps: float = 1.0,
    progress: str | None = None,
    metrics: CaseMetrics | None = None,
) -> CaseMetrics:
    """Run ``forward`` (eval-mode logits) over ``loader`` and count per case.

    Args:
        forward: image batch -> logits (e.g. an eval-mode ``DeepSupervised`` or bare model).
        loader: yields dataset batches (``image``, ``mask``, ``case``, ``slice``, ``size``).
        label_mode: ``binary``, ``multilabel`` or ``multiclass``.
        info: this process's place; counts are gathered from every rank.
        prepare: moves an image batch to the device (and memory format); default: ``info.device``.
        autocast: a context factory for mixed precision.
        eps: eq. 14's smoothing constant.
        progress: a tqdm description, or None for no bar.
        metrics: the accumulator to fill (default ``CaseMetrics(eps)``); one with
            ``surface=True`` also gets each item's masks, cropped to its size (a case's slices
            must all be in ``loader`` to be stacked into its volume).

    Returns:
        The merged :class:`CaseMetrics` (identical on every rank).
    """
    metrics = CaseMetrics(eps=eps) if metrics is None else metrics
    move = prepare or (lambda x: x.to(info.device, non_blocking=True))
    batches = tqdm(loader, desc=progress, leave=False, disable=progress is None)
    for batch in batches:
        with autocast():
            logits = forward(move(batch["image"]))
        target = batch["mask"].to(logits.device, non_blocking=True)
        counts = batch_counts(logits.float(), target, batch["size"], label_mode)
        masks: dict[str, Any] = {}
        if metrics.surface:
            pairs = [
                foreground_masks(
                    crop_to_size(logits[i : i + 1].float(), size),
                    crop_to_size(target[i : i + 1], size),
                    label_mode,
                )
                for i, size in enumerate(batch["size"].tolist())
            ]
            masks = {"pred": [p[0] for p, _ in pairs], "truth": [t[0] for _, t in pairs]}
        metrics.update(counts, list(batch["case"]), batch["slice"], **masks)
    return gather_metrics(metrics, info)


@torch.no_grad()
def overlay_samples(
    forward: Callable[[torch.Tensor], torch.Tensor],
    dataset: Any,
    label_mode: str,
    device: torch.device,
    count: int = 4,
) -> list[OverlaySample]:
    """Up to ``count`` dataset items (spread over it, foreground first) with their predictions.

    Items are cropped back to their size; 3D items show their middle slice along the last axis.
    """
    n = len(dataset)
    if n == 0 or count < 1:
        return []
    candidates = sorted({round(i * (n - 1) / max(1, 4 * count - 1)) for i in range(4 * count)})
    items = [dataset[i] for i in candidates]
    with_fg = [item for item in items if bool((item["mask"] > 0).any())]
    chosen = (with_fg + [item for item in items if not bool((item["mask"] > 0).any())])[:count]
    samples = []
    for item in chosen:
        logits = forward(item["image"].unsqueeze(0).to(device)).float()
        size = [int(s) for s in item["size"]]
        image = crop_to_size(item["image"], size)
        truth = crop_to_size(item["mask"], size)
        pred = crop_to_size(predict(logits, label_mode)[0].cpu(), size)
        if image.dim() == 4:  # 3D: (C, D, H, W) -> the middle of the last axis
            mid = image.shape[-1] // 2
            image, truth, pred = image[..., mid], truth[..., mid], pred[..., mid]
        samples.append(
            OverlaySample(
                image=image.numpy(),
                truth=mask_to_labels(truth.numpy(), label_mode),
                prediction=mask_to_labels(pred.numpy().astype("int64"), label_mode),
                title=f"{item['case']} / {int(item['slice'])}",
            )
        )
    return samples
