"""Per-case evaluation at native resolution: Gaussian sliding windows of the training patch
(2D images or slices, or whole 3D volumes), optional mirror TTA, Dice & co. and the surface
metrics (HD95, NSD) of each case's own voxels (a volume is scored as a volume)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data.volumes import NativeCase, case_spacing, native_cases
from ..metrics import CaseMetrics, confusion_counts, foreground_masks
from .distributed import DistInfo
from .evaluation import evaluate_loader, gather_metrics
from .sliding import flip_tta, sliding_window_logits

__all__ = ["case_logits", "case_rows", "evaluate_native", "score_dataset", "surface_metrics"]


@torch.no_grad()
def case_logits(
    forward: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    window: Sequence[int],
    *,
    batch_size: int = 4,
    tta: bool = False,
) -> torch.Tensor:
    """The logits of one whole image or volume ``(C, *spatial)`` at its native size, by
    Gaussian sliding windows of ``window``: what ``evaluate`` scores and ``predict`` writes
    for a patch-trained model (one function for both, so the two agree voxel for voxel).

    Returns:
        float32 ``(K, *spatial)`` on the CPU.
    """
    logits = sliding_window_logits(forward, image[None], window, batch_size=batch_size, tta=tta)
    return logits[0]


def surface_metrics(cases: Sequence[NativeCase], tolerance: float, eps: float = 1.0) -> CaseMetrics:
    """An accumulator scoring HD95 and NSD too, with each case's spacing (1 mm where unknown)."""
    spacing = {c.case: c.spacing or (1.0,) * (c.image.dim() - 1) for c in cases}
    return CaseMetrics(eps, surface=True, spacing=spacing, tolerance=tolerance)


@torch.no_grad()
def evaluate_native(
    forward: Callable[[torch.Tensor], torch.Tensor],
    cases: Sequence[NativeCase],
    label_mode: str,
    info: DistInfo,
    *,
    window: Sequence[int],
    tta: bool = False,
    batch_size: int = 4,
    tolerance: float = 1.0,
    eps: float = 1.0,
    progress: str | None = None,
) -> CaseMetrics:
    """Score ``forward`` on native-resolution cases with sliding windows of ``window``.

    Each rank scores its share of the cases (every ``world_size``-th); the counts and masks
    are gathered so that every rank returns the same :class:`CaseMetrics`.

    Args:
        forward: a batch of windows -> logits (eval mode).
        cases: from :func:`dsplug.data.volumes.native_cases`.
        label_mode: ``binary``, ``multilabel`` or ``multiclass``.
        info: this process's place.
        window: the training patch, one size per spatial dim of the cases.
        tta: mirror TTA per window (``2**dims`` forward passes each).
        batch_size: windows per forward pass.
        tolerance: the NSD tolerance in mm.
        eps: eq. 14's smoothing constant.
        progress: a tqdm description, or None for no bar.
    """
    metrics = surface_metrics(cases, tolerance, eps)
    mine = list(cases)[info.rank :: info.world_size]
    for item in tqdm(mine, desc=progress, leave=False, disable=progress is None):
        logits = case_logits(forward, item.image, window, batch_size=batch_size, tta=tta)[None]
        target = item.mask[None]
        counts = confusion_counts(logits, target, label_mode)
        pred, truth = foreground_masks(logits, target, label_mode)
        metrics.update(counts, [item.case], [item.index], pred=pred, truth=truth)
    return gather_metrics(metrics, info)


def _device_forward(
    model: torch.nn.Module, device: torch.device
) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(x: torch.Tensor) -> torch.Tensor:
        return model(x.to(device))

    return forward


@torch.no_grad()
def score_dataset(
    model: torch.nn.Module,
    dataset: Any,
    label_mode: str,
    device: torch.device,
    *,
    patch: Sequence[int] | None = None,
    tta: bool = False,
    tolerance: float = 1.0,
    batch_size: int = 16,
    workers: int = 0,
) -> CaseMetrics:
    """Per-case metrics, HD95 and NSD of an eval-mode model on a whole dataset (one process).

    Args:
        model: the bare model, on ``device``.
        dataset: a dataset of dsplug's item format.
        patch: the training patch of a patch-trained model: whole cases at native
            resolution (2D images or slices, or 3D volumes) by Gaussian sliding windows of
            it; None: the dataset's items as they are (a case's slices stacked into its
            volume for the surface metrics).
        tta: mirror TTA (all axis flips; ``2**dims`` forward passes per window or item).
        tolerance: the NSD tolerance in mm.
        batch_size: items (windows) per forward pass.
        workers: DataLoader workers (items as they are).
    """
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=device)
    forward = _device_forward(model, device)
    if patch is not None:
        cases = native_cases(dataset, len(patch))
        return evaluate_native(
            forward,
            cases,
            label_mode,
            info,
            window=patch,
            tta=tta,
            batch_size=batch_size,
            tolerance=tolerance,
        )
    dims = getattr(dataset, "spatial_dims", 2)
    spacing = {case: case_spacing(dataset, case, dims) or (1.0,) * dims for case in dataset.cases}
    metrics = CaseMetrics(surface=True, spacing=spacing, tolerance=tolerance)
    if tta:
        plain = forward

        def forward(x: torch.Tensor) -> torch.Tensor:
            return flip_tta(plain, x, tuple(range(2, x.dim())))

    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    return evaluate_loader(forward, loader, label_mode, info, metrics=metrics)


def case_rows(metrics: CaseMetrics) -> list[dict[str, Any]]:
    """The per-case CSV rows: the means over classes, then (with several foreground classes)
    each class's values as ``<metric>_<k>`` (k = 1, 2, ...)."""
    per_class = metrics.per_case_class()
    rows = []
    for case, values in metrics.per_case().items():
        row: dict[str, Any] = {"case": case, **values}
        if len(per_class[case]) > 1:
            for k, scores in enumerate(per_class[case], start=1):
                row.update({f"{name}_{k}": value for name, value in scores.items()})
        rows.append(row)
    return rows
