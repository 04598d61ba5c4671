"""Cases at native resolution, for patch training and sliding-window evaluation.

A dataset's items are slices padded to one size; here they come back at their own size: 2D
images (or the slices of volumes) cropped to ``size``, or whole 3D volumes stacked from the
preprocessed slices of a :class:`~dsplug.data.base.SliceDataset` (read and z-scored once,
through its cache; no resize). Volumes keep the axis order of the files, so their spacing is
the header's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["NativeCase", "case_spacing", "case_volume", "native_cases"]


@dataclass(frozen=True)
class NativeCase:
    """One image or volume at native resolution.

    Attributes:
        image: float32 ``(C, *spatial)``.
        mask: the item's mask convention: binary ``(1, *spatial)`` float32, multilabel
            ``(K, *spatial)`` float32, multiclass ``(*spatial)`` int64.
        case: the case id.
        index: the slice index within the case (0 for a volume or a 2D image).
        spacing: voxel size per spatial axis in mm, or None (unknown: 1).
    """

    image: torch.Tensor
    mask: torch.Tensor
    case: str
    index: int
    spacing: tuple[float, ...] | None


def _crop(tensor: torch.Tensor, size: list[int]) -> torch.Tensor:
    return tensor[(..., *(slice(0, s) for s in size))].contiguous()


def case_spacing(dataset: Any, case: str, spatial_dims: int) -> tuple[float, ...] | None:
    """The spacing of ``case`` as scored: a volume's (file axis order); a 2D image's; the slices
    of a volume stacked along a last axis: in-plane, then the slicing axis. None for data
    without geometry (synthetic phantoms: 1 mm)."""
    if not callable(getattr(dataset, "case_info", None)):
        return None
    info = dataset.case_info(case)
    spacing = tuple(float(s) for s in info.spacing)
    if len(info.shape) == 2 or spatial_dims == 3:
        return spacing[: len(info.shape)]
    axis = dataset.preprocessing.axis % 3
    plane = tuple(s for i, s in enumerate(spacing[:3]) if i != axis)
    slices = dataset.slices_of(case) if callable(getattr(dataset, "slices_of", None)) else [0, 1]
    return (*plane, spacing[axis]) if len(slices) > 1 else plane


def case_volume(dataset: Any, case: str) -> NativeCase:
    """A whole preprocessed 3D volume of a slice dataset, its axes in the files' order.

    Raises:
        ValueError: the dataset holds 2D images, or selects slices (a slice range), which
            would leave holes in the volume.
    """
    info = dataset.case_info(case)
    if len(info.shape) != 3:
        raise ValueError(f"case {case!r} is a 2D image ({info.shape}); 3D patches need volumes.")
    if dataset.preprocessing.slice_range is not None:
        raise ValueError("3D patches take whole volumes; drop the slice range (--slice-range).")
    image, mask = dataset.case_slices(case)
    axis = dataset.preprocessing.axis % 3
    volume = np.moveaxis(np.asarray(image, np.float32), 0, 1 + axis)  # (C, X, Y, Z)
    if dataset.label_mode == "multilabel":
        labels = np.moveaxis(np.asarray(mask, np.float32), 0, 1 + axis)
    else:
        labels = np.moveaxis(np.asarray(mask), 0, axis)
        labels = labels[None].astype(np.float32) if dataset.label_mode == "binary" else labels
        labels = labels.astype(np.int64) if dataset.label_mode == "multiclass" else labels
    return NativeCase(
        torch.from_numpy(np.ascontiguousarray(volume)),
        torch.from_numpy(np.ascontiguousarray(labels)),
        case,
        0,
        case_spacing(dataset, case, 3),
    )


def native_cases(dataset: Any, spatial_dims: int) -> list[NativeCase]:
    """Every item of ``dataset`` at native resolution: its items cropped to their ``size``
    when they have ``spatial_dims`` dims, else (3D from a slice dataset) its volumes.

    Raises:
        ValueError: 3D asked of 2D images.
    """
    if spatial_dims == getattr(dataset, "spatial_dims", 2):
        cases = []
        for i in range(len(dataset)):
            item = dataset[i]
            size = [int(s) for s in item["size"]]
            cases.append(
                NativeCase(
                    _crop(item["image"], size),
                    _crop(item["mask"], size),
                    str(item["case"]),
                    int(item["slice"]),
                    case_spacing(dataset, str(item["case"]), spatial_dims),
                )
            )
        return cases
    if spatial_dims != 3 or not callable(getattr(dataset, "case_slices", None)):
        raise ValueError(
            f"{type(dataset).__name__} holds {getattr(dataset, 'spatial_dims', 2)}D items and "
            f"no volumes; {spatial_dims}D patches do not apply (give --patch H W)."
        )
    return [case_volume(dataset, case) for case in dataset.cases]
