"""Random patches at native resolution from 2D images or 3D volumes, a share on foreground.

As nnU-Net: each draw is centred on a foreground voxel with probability
``foreground_fraction`` (a third by default; the class is chosen first, uniformly among those
present, so rare classes are seen), else placed uniformly; several patches per image per
epoch. Images smaller than the patch are zero-padded at the high end (as the rest of
dsplug); ``size`` says how much of the patch is image. Draws use torch's global RNG (seeded
per DataLoader worker), so runs repeat under ``torch.manual_seed``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..options import LabelMode, choose
from .records import make_item

__all__ = ["PatchDataset", "patch_starts"]

Transform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def patch_starts(
    shape: Sequence[int], patch: Sequence[int], centre: Sequence[int] | None = None
) -> tuple[int, ...]:
    """The corner of a patch inside ``shape``: around ``centre`` (moved inwards at the
    borders, so the centre stays inside), or uniform when None; 0 where the patch is larger.

    Example:
        >>> patch_starts((100, 50), (32, 32), centre=(50, 2))
        (34, 0)
    """
    starts = []
    for i, (n, p) in enumerate(zip(shape, patch)):
        high = max(0, int(n) - int(p))
        if centre is None:
            starts.append(int(torch.randint(0, high + 1, ()).item()))
        else:
            starts.append(min(max(int(centre[i]) - int(p) // 2, 0), high))
    return tuple(starts)


class PatchDataset(Dataset):
    """Patches of arrays held in memory, in the item format of :func:`make_item`.

    Item ``i`` is a patch of image ``i // patches_per_image`` (its ``slice`` is
    ``i % patches_per_image``), drawn anew at each access.

    Args:
        images: per case, ``(C, *spatial)`` arrays (2 or 3 spatial dims), float.
        masks: per case, ``(*spatial)`` labels (binary {0, 1} or class indices) or
            ``(K, *spatial)`` (multilabel).
        patch_size: one size per spatial dim.
        label_mode: ``"binary"``, ``"multilabel"`` or ``"multiclass"``.
        patches_per_image: patches of each image per epoch.
        foreground_fraction: the probability that a patch is centred on foreground.
        transform: ``(image, mask) -> (image, mask)`` on the item's tensors (e.g.
            :class:`~dsplug.data.augment.PatchAugment`).
        cases: case ids (default ``"case0"``, ...).
        max_locations: foreground voxels kept per class and image to draw centres from.

    Example:
        >>> images = [np.random.rand(1, 40, 50).astype("float32")]
        >>> masks = [(np.random.rand(40, 50) > 0.9).astype("int64")]
        >>> ds = PatchDataset(images, masks, (16, 16), label_mode="binary", patches_per_image=3)
        >>> len(ds), tuple(ds[0]["image"].shape), tuple(ds[0]["mask"].shape)
        (3, (1, 16, 16), (1, 16, 16))
    """

    def __init__(
        self,
        images: Sequence[np.ndarray | torch.Tensor],
        masks: Sequence[np.ndarray | torch.Tensor],
        patch_size: Sequence[int],
        *,
        label_mode: str,
        patches_per_image: int = 4,
        foreground_fraction: float = 1 / 3,
        transform: Transform | None = None,
        cases: Sequence[str] | None = None,
        max_locations: int = 10_000,
    ) -> None:
        self.label_mode = choose(label_mode, LabelMode, "label_mode")
        self.patch_size = tuple(int(p) for p in patch_size)
        if len(self.patch_size) not in (2, 3) or min(self.patch_size) < 1:
            raise ValueError(f"patch_size must be 2 or 3 sizes >= 1, got {tuple(patch_size)}.")
        if patches_per_image < 1 or not 0.0 <= foreground_fraction <= 1.0:
            raise ValueError(
                f"need patches_per_image >= 1 and foreground_fraction in [0, 1], got "
                f"{patches_per_image} and {foreground_fraction}."
            )
        if len(images) != len(masks) or len(images) == 0:
            raise ValueError(
                f"need one mask per image and at least one image, got {len(images)} images "
                f"and {len(masks)} masks."
            )
        self.cases = [f"case{i}" for i in range(len(images))] if cases is None else list(cases)
        if len(self.cases) != len(images):
            raise ValueError(f"got {len(self.cases)} case ids for {len(images)} images.")
        self.patches_per_image = int(patches_per_image)
        self.foreground_fraction = float(foreground_fraction)
        self.transform = transform
        self.images = [np.asarray(im, dtype=np.float32) for im in images]
        self.masks = [np.asarray(m) for m in masks]
        dims = len(self.patch_size)
        self._locations: list[list[np.ndarray]] = []
        for case, image, mask in zip(self.cases, self.images, self.masks):
            per_class = mask.ndim == dims + 1  # multilabel (K, *spatial)
            if (
                image.ndim != dims + 1
                or mask.shape[-dims:] != image.shape[1:]
                or not (per_class == (self.label_mode is LabelMode.MULTILABEL))
            ):
                raise ValueError(
                    f"case {case!r}: expected image (C, *spatial) with {dims} spatial dims and "
                    f"a mask {'(K, *spatial)' if self.label_mode == 'multilabel' else '(*spatial)'}"
                    f" for label_mode={str(self.label_mode)!r}, got {image.shape} and {mask.shape}."
                )
            self._locations.append(self._foreground(mask, per_class, max_locations))

    @staticmethod
    def _foreground(mask: np.ndarray, per_class: bool, limit: int) -> list[np.ndarray]:
        """Per present class, up to ``limit`` foreground voxel coordinates (a fixed subset)."""
        rng = np.random.default_rng(0)
        if per_class:
            regions = [channel > 0 for channel in mask]
        else:
            regions = [mask == value for value in np.unique(mask) if value != 0]
        found = []
        for region in regions:
            coords = np.argwhere(region)
            if len(coords) > limit:
                coords = coords[rng.choice(len(coords), limit, replace=False)]
            if len(coords):
                found.append(coords)
        return found

    def __len__(self) -> int:
        return len(self.images) * self.patches_per_image

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} patches.")
        n, k = divmod(int(index), self.patches_per_image)
        image, mask, locations = self.images[n], self.masks[n], self._locations[n]
        spatial = image.shape[1:]
        centre = None
        if locations and float(torch.rand(())) < self.foreground_fraction:
            coords = locations[int(torch.randint(0, len(locations), ()))]
            centre = coords[int(torch.randint(0, len(coords), ()))]
        starts = patch_starts(spatial, self.patch_size, centre)
        region = tuple(slice(s, s + p) for s, p in zip(starts, self.patch_size))
        size = [min(n_, p) for n_, p in zip(spatial, self.patch_size)]
        pad = [(0, p - s) for p, s in zip(self.patch_size, size)]
        patch = np.pad(image[(slice(None), *region)], [(0, 0), *pad])
        lead = [(0, 0)] * (mask.ndim - len(spatial))
        label = np.pad(mask[(*(slice(None),) * len(lead), *region)], [*lead, *pad])
        item = make_item(patch, label, str(self.label_mode), self.cases[n], k, size)
        if self.transform is not None:
            item["image"], item["mask"] = self.transform(item["image"], item["mask"])
        return item
