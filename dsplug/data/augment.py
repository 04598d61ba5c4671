"""Augmentation of training patches (flips, rotations, scaling, intensity) from kept libraries.

MONAI's dictionary transforms in 2D and 3D when MONAI is installed (the ``monai`` extra);
otherwise ``torchvision.transforms.v2`` in 2D (its intensity step is Gaussian noise only: its
colour transforms clip to [0, 1], which z-scored images are not in). The image is resampled
bilinearly, the mask by nearest neighbour, so labels stay labels. Random draws come from
torch's global RNG (seeded per DataLoader worker), so runs repeat under ``torch.manual_seed``.
"""

from __future__ import annotations

import importlib.util
import math
from typing import Any, Literal

import torch

__all__ = ["PatchAugment"]

Backend = Literal["auto", "monai", "torchvision"]


class PatchAugment:
    """Random flips, rotation, scaling and intensity changes of one patch and its mask.

    Args:
        spatial_dims: 2 or 3.
        flip: mirror each spatial axis with probability 0.5.
        rotate: the largest rotation in degrees (about each axis in 3D; 0: none).
        scale: the largest relative zoom (0.15: 0.85x to 1.15x; 0: none).
        p_affine: probability of the rotation / scaling step (nnU-Net: 0.2).
        intensity: multiply intensities by up to +-10% and add Gaussian noise (MONAI also
            gamma), each with probability 0.15.
        backend: ``"auto"`` (MONAI if installed, else torchvision), ``"monai"`` or
            ``"torchvision"`` (2D only).

    Example:
        >>> aug = PatchAugment(2, rotate=15.0, scale=0.15)
        >>> image, mask = aug(torch.randn(1, 16, 16), torch.zeros(16, 16, dtype=torch.long))
        >>> tuple(image.shape), tuple(mask.shape), mask.dtype
        ((1, 16, 16), (16, 16), torch.int64)
    """

    def __init__(
        self,
        spatial_dims: int,
        *,
        flip: bool = True,
        rotate: float = 15.0,
        scale: float = 0.15,
        p_affine: float = 0.2,
        intensity: bool = True,
        backend: Backend = "auto",
    ) -> None:
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}.")
        if rotate < 0 or not 0 <= scale < 1 or not 0 <= p_affine <= 1:
            raise ValueError(
                f"need rotate >= 0, 0 <= scale < 1 and 0 <= p_affine <= 1, got rotate={rotate}, "
                f"scale={scale}, p_affine={p_affine}."
            )
        has_monai = importlib.util.find_spec("monai") is not None
        if backend == "auto":
            backend = "monai" if has_monai else "torchvision"
        if backend not in ("monai", "torchvision"):
            raise ValueError(f"backend must be 'auto', 'monai' or 'torchvision', got {backend!r}.")
        if backend == "monai" and not has_monai:
            raise ValueError("backend='monai' needs MONAI: pip install 'dsplug[monai]'.")
        if backend == "torchvision" and spatial_dims == 3:
            raise ValueError(
                "torchvision.transforms.v2 augments 2D images only; 3D patches need MONAI "
                "(pip install 'dsplug[monai]')."
            )
        self.spatial_dims, self.backend = spatial_dims, backend
        args = (flip, float(rotate), float(scale), float(p_affine), bool(intensity))
        self._transform = self._monai(*args) if backend == "monai" else self._torchvision(*args)

    def __repr__(self) -> str:
        return f"PatchAugment(spatial_dims={self.spatial_dims}, backend={self.backend!r})"

    def _monai(self, flip: bool, rotate: float, scale: float, p: float, intensity: bool) -> Any:
        from monai import transforms as mt

        keys, dims = ["image", "mask"], self.spatial_dims
        steps: list[Any] = []
        if flip:
            steps += [mt.RandFlipd(keys, prob=0.5, spatial_axis=axis) for axis in range(dims)]
        if rotate or scale:
            angles = (math.radians(rotate),) * (1 if dims == 2 else 3)
            steps.append(
                mt.RandAffined(
                    keys,
                    prob=p,
                    rotate_range=angles if rotate else None,
                    scale_range=(scale,) * dims if scale else None,
                    mode=("bilinear", "nearest"),
                    padding_mode="zeros",
                )
            )
        if intensity:
            steps += [
                mt.RandScaleIntensityd("image", factors=0.1, prob=0.15),
                mt.RandGaussianNoised("image", prob=0.15, std=0.1),
                mt.RandAdjustContrastd("image", prob=0.15, gamma=(0.7, 1.5)),
            ]
        return mt.Compose(steps)

    def _torchvision(
        self, flip: bool, rotate: float, scale: float, p: float, intensity: bool
    ) -> Any:
        from torchvision.transforms import v2

        steps: list[Any] = []
        if flip:
            steps += [v2.RandomHorizontalFlip(0.5), v2.RandomVerticalFlip(0.5)]
        if rotate or scale:
            affine = v2.RandomAffine(degrees=rotate, scale=(1 - scale, 1 + scale))
            steps.append(v2.RandomApply([affine], p=p))
        if intensity:
            steps.append(v2.RandomApply([v2.GaussianNoise(sigma=0.1, clip=False)], p=0.15))
        return v2.Compose(steps)

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment ``image (C, *spatial)`` and ``mask`` (``(*spatial)`` or ``(K, *spatial)``)
        alike; shapes and dtypes are kept."""
        if (
            image.ndim != self.spatial_dims + 1
            or mask.shape[-self.spatial_dims :] != (image.shape[1:])
        ):
            raise ValueError(
                f"expected image (C, *spatial) with {self.spatial_dims} spatial dims and a mask "
                f"of that spatial size, got {tuple(image.shape)} and {tuple(mask.shape)}."
            )
        channel = mask.ndim == self.spatial_dims  # add a channel axis for the transforms
        m = mask[None] if channel else mask
        if self.backend == "monai":
            from monai.utils import convert_to_tensor

            self._transform.set_random_state(int(torch.randint(0, 2**31 - 1, ()).item()))
            out = self._transform({"image": image.float(), "mask": m.float()})
            new_image, new_mask = (
                convert_to_tensor(out[k], track_meta=False) for k in ("image", "mask")
            )
        else:
            from torchvision import tv_tensors

            new_image, new_mask = self._transform(tv_tensors.Image(image), tv_tensors.Mask(m))
            new_image, new_mask = (
                new_image.as_subclass(torch.Tensor),
                new_mask.as_subclass(torch.Tensor),
            )
        new_mask = new_mask[0] if channel else new_mask
        return new_image.to(image.dtype).contiguous(), new_mask.to(mask.dtype).contiguous()
