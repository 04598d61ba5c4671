"""The field's training augmentation (nnU-Net's set), in plain torch on 2D and 3D tensors.

One spatial transform (a small rotation and a zoom, optionally an elastic displacement) is
sampled once per call and applied to the image (bilinear) and to the mask (nearest, so labels
stay labels); then 90-degree turns and mirrors (exact), then intensity changes of the image
alone: a multiplicative scale, an additive shift, gamma (statistics kept) and Gaussian noise.
Draws come from ``generator`` when given, else torch's global RNG (seeded per DataLoader
worker), so runs repeat under a seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = ["AugmentedDataset", "FieldAugment"]


def _range(name: str, value: Sequence[float], low: float = 0.0) -> tuple[float, float]:
    pair = tuple(float(v) for v in value)
    if len(pair) != 2 or not low < pair[0] <= pair[1] or not all(math.isfinite(v) for v in pair):
        raise ValueError(f"{name} must be (low, high) with {low} < low <= high, got {value!r}.")
    return pair  # type: ignore[return-value]


def _rotation(angles: Sequence[float]) -> torch.Tensor:
    """A rotation matrix in index order: one angle in 2D, one per axis pair in 3D."""
    if len(angles) == 1:
        c, s = math.cos(angles[0]), math.sin(angles[0])
        return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    out = torch.eye(3, dtype=torch.float64)
    for angle, (i, j) in zip(angles, ((1, 2), (0, 2), (0, 1))):
        r = torch.eye(3, dtype=torch.float64)
        c, s = math.cos(angle), math.sin(angle)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        out = r @ out
    return out


@dataclass(frozen=True)
class FieldAugment:
    """Random spatial and intensity augmentation of one ``(image, mask)`` pair, 2D or 3D.

    The spatial dimensionality is the image's (``(C, H, W)`` or ``(C, D, H, W)``); the mask is
    ``(*spatial)`` class indices or ``(K, *spatial)`` channels. Probabilities and ranges follow
    nnU-Net's defaults where it has one.

    Attributes:
        p_rotate: probability of a rotation by up to ``rotate`` degrees (3D: about each axis).
        rotate: the largest rotation in degrees.
        p_scale: probability of a zoom by a factor drawn in ``scale``.
        scale: the zoom range (the sampling grid is multiplied by the factor).
        p_elastic: probability of a smooth elastic displacement (0: off, as nnU-Net v2).
        elastic: its largest displacement as a fraction of the image's half-extent.
        p_rot90: probability of a turn by 90, 180 or 270 degrees in the last two axes (180
            only when they differ in size).
        mirror: mirror each spatial axis with probability 0.5.
        p_intensity: probability of a multiplicative scale drawn in ``intensity``.
        intensity: its range.
        p_shift: probability of an additive shift ``N(0, shift)``.
        shift: its standard deviation (z-scored images: in standard deviations).
        p_gamma: probability of a gamma drawn in ``gamma`` (mean and std kept).
        gamma: its range.
        p_noise: probability of Gaussian noise, its variance drawn in ``[0, noise]``.
        noise: the largest variance.

    Example:
        >>> aug = FieldAugment()
        >>> image, mask = aug(torch.randn(1, 16, 16), torch.zeros(16, 16, dtype=torch.long))
        >>> tuple(image.shape), tuple(mask.shape), mask.dtype
        ((1, 16, 16), (16, 16), torch.int64)
    """

    p_rotate: float = 0.2
    rotate: float = 15.0
    p_scale: float = 0.2
    scale: tuple[float, float] = (0.85, 1.25)
    p_elastic: float = 0.0
    elastic: float = 0.05
    p_rot90: float = 0.5
    mirror: bool = True
    p_intensity: float = 0.15
    intensity: tuple[float, float] = (0.75, 1.25)
    p_shift: float = 0.15
    shift: float = 0.1
    p_gamma: float = 0.3
    gamma: tuple[float, float] = (0.7, 1.5)
    p_noise: float = 0.1
    noise: float = 0.1

    def __post_init__(self) -> None:
        for name in ("p_rotate", "p_scale", "p_elastic", "p_rot90", "p_intensity", "p_shift"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value <= 1):
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}.")
        for name in ("p_gamma", "p_noise"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value <= 1):
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}.")
        for name in ("rotate", "elastic", "shift", "noise"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
        for name in ("scale", "intensity", "gamma"):
            object.__setattr__(self, name, _range(name, getattr(self, name)))

    def config(self) -> dict[str, Any]:
        """Plain types (JSON)."""
        out = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    def __call__(
        self,
        image: torch.Tensor,
        mask: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment ``image (C, *spatial)`` and ``mask`` alike; shapes and dtypes are kept."""
        dims = image.ndim - 1
        if dims not in (2, 3) or tuple(mask.shape[-dims:]) != tuple(image.shape[1:]):
            raise ValueError(
                "expected image (C, H, W) or (C, D, H, W) and a mask of its spatial size, got "
                f"{tuple(image.shape)} and {tuple(mask.shape)}."
            )
        g = generator

        def rand() -> float:
            return float(torch.rand((), generator=g))

        def uniform(low: float, high: float) -> float:
            return low + (high - low) * rand()

        channel = mask.ndim == dims  # class indices: a channel axis for grid_sample
        m = (mask[None] if channel else mask).float()
        x = image.float()
        x, m = self._spatial(x, m, dims, rand, uniform, g)
        if rand() < self.p_rot90:
            square = x.shape[-1] == x.shape[-2]
            k = int(torch.randint(1, 4, (), generator=g)) if square else 2
            x, m = (torch.rot90(t, k, dims=(-2, -1)) for t in (x, m))
        if self.mirror:
            for axis in range(1, dims + 1):
                if rand() < 0.5:
                    x, m = x.flip(axis), m.flip(axis)
        x = self._intensity(x, rand, uniform, g)
        m = m[0] if channel else m
        return x.to(image.dtype).contiguous(), m.to(mask.dtype).contiguous()

    def _spatial(
        self, x: torch.Tensor, m: torch.Tensor, dims: int, rand: Any, uniform: Any, g: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One rotation / zoom / elastic grid for both (identity: nothing resampled)."""
        rotate, zoom, elastic = (
            rand() < self.p_rotate,
            rand() < self.p_scale,
            rand() < self.p_elastic,
        )
        if not (rotate or zoom or elastic):
            return x, m
        a = torch.eye(dims, dtype=torch.float64)
        if rotate:
            limit = math.radians(self.rotate)
            a = _rotation([uniform(-limit, limit) for _ in range(1 if dims == 2 else 3)])
        if zoom:
            a = a * uniform(*self.scale)
        # index coordinates -> normalised ones (so that a rotation stays a rotation on
        # non-square images), then affine_grid's (x, y[, z]) order: the reverse of the axes
        sizes = torch.tensor(x.shape[1:], dtype=torch.float64)
        a = torch.diag(1 / sizes) @ a @ torch.diag(sizes)
        a = a.flip(0).flip(1)
        theta = torch.cat([a, torch.zeros(dims, 1, dtype=torch.float64)], 1).float()
        grid = F.affine_grid(theta[None], [1, 1, *x.shape[1:]], align_corners=False)
        if elastic:
            coarse = [max(2, n // 16) for n in x.shape[1:]]
            field = torch.randn(1, dims, *coarse, generator=g) * self.elastic
            mode = "bilinear" if dims == 2 else "trilinear"
            field = F.interpolate(field, size=x.shape[1:], mode=mode, align_corners=True)
            grid = grid + field.movedim(1, -1)
        x = F.grid_sample(x[None], grid, mode="bilinear", align_corners=False)[0]
        m = F.grid_sample(m[None], grid, mode="nearest", align_corners=False)[0]
        return x, m

    def _intensity(self, x: torch.Tensor, rand: Any, uniform: Any, g: Any) -> torch.Tensor:
        if rand() < self.p_intensity:
            x = x * uniform(*self.intensity)
        if rand() < self.p_shift:
            x = x + float(torch.randn((), generator=g)) * self.shift
        if rand() < self.p_gamma:
            gamma = uniform(*self.gamma)
            flat = x.flatten(1)
            mean, std = flat.mean(1), flat.std(1)
            low, span = flat.min(1).values, flat.max(1).values - flat.min(1).values
            shape = (-1,) + (1,) * (x.ndim - 1)
            low, span = low.view(shape), span.view(shape) + 1e-7
            x = ((x - low) / span).clamp(0, 1) ** gamma * span + low
            new = x.flatten(1)
            x = (x - new.mean(1).view(shape)) / (new.std(1).view(shape) + 1e-7)
            x = x * std.view(shape) + mean.view(shape)
        if rand() < self.p_noise:
            variance = uniform(0.0, self.noise) if self.noise > 0 else 0.0
            x = x + torch.randn(x.shape, generator=g) * math.sqrt(variance)
        return x


class AugmentedDataset(Dataset):
    """A dataset's items with ``transform`` applied to ``image`` and ``mask`` at each access;
    every other attribute (``cases``, ``config()``, ``label_mode`` ...) is the dataset's."""

    def __init__(self, data: Dataset, transform: FieldAugment) -> None:
        self.data, self.transform = data, transform

    def __getattr__(self, name: str) -> Any:
        if name in ("data", "transform"):  # not yet set (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.data, name)

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.data[index])
        item["image"], item["mask"] = self.transform(item["image"], item["mask"])
        return item
