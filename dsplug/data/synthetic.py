"""``SyntheticDataset``: seeded phantoms (an organ-like blob, small structures near its
boundary, a bias field and noise), 2D or 3D, binary, multilabel or multiclass."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from torch.utils.data import Dataset

from .._checks import look_up_option
from ..options import LabelMode
from .preprocess import Augment, Preprocessing
from .records import Item, make_item
from .splits import SPLITS

__all__ = ["SyntheticDataset", "phantom"]


def _grid(shape: tuple[int, ...], center: np.ndarray) -> list[np.ndarray]:
    axes = [np.arange(n, dtype=np.float32) - c for n, c in zip(shape, center)]
    return list(np.meshgrid(*axes, indexing="ij", sparse=True))


def _organ_radius(units: list[np.ndarray], coef: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Relative boundary radius (around 1) along the unit directions ``units``."""
    if len(units) == 2:
        theta = np.arctan2(units[0], units[1])
        r = 1.0 + sum(coef[k] * np.cos((k + 2) * theta + phase[k]) for k in range(3))
    else:
        uz, uy, ux = units
        theta = np.arctan2(uy, ux)
        r = (
            1.0
            + coef[0] * uz * uy
            + coef[1] * (ux * ux - uy * uy)
            + coef[2] * uz
            + 0.5 * coef[0] * np.cos(3 * theta + phase[0]) * (1 - uz * uz)
        )
    return r


def phantom(
    shape: tuple[int, ...],
    rng: np.random.Generator,
    *,
    structure_types: int = 1,
    in_channels: int = 1,
    noise: float = 0.25,
) -> tuple[np.ndarray, np.ndarray]:
    """One phantom: ``image (C, *shape)`` float32 (z-scored per channel) and a uint8 class
    map ``(*shape)``: 0 background, 1 organ, ``2 + t`` a small structure of type ``t``.

    The organ is a smooth star-shaped blob filling 20-35% of the field of view; 2-5 small
    structures (radius 4-8% of the field of view, at least 1.5 px) sit on its boundary, most
    of each inside. Tissue intensities differ per channel; a linear bias field and Gaussian
    noise (std ``noise`` relative to the organ contrast) are added.
    """
    dims = len(shape)
    fov = float(min(shape))
    center = np.asarray(shape, np.float32) / 2 + rng.uniform(-0.08, 0.08, dims) * fov
    radius = rng.uniform(0.2, 0.3) * fov
    stretch = rng.uniform(0.8, 1.2, dims).astype(np.float32)
    coef, phase = rng.uniform(-0.12, 0.12, 3), rng.uniform(0, 2 * np.pi, 3)
    grid = [g / s for g, s in zip(_grid(shape, center), stretch)]
    rho = np.sqrt(sum(g * g for g in grid)) + 1e-6
    boundary = radius * _organ_radius([g / rho for g in grid], coef, phase)
    classes = (rho < boundary).astype(np.uint8)

    full = _grid(shape, np.zeros(dims))
    for i in range(int(rng.integers(2, 6))):
        direction = rng.normal(size=dims)
        direction /= np.linalg.norm(direction) + 1e-9
        rel = _organ_radius([np.float32(d) for d in direction], coef, phase)
        dist = radius * float(rel) * rng.uniform(0.9, 1.05)
        pos = center + direction * dist * stretch
        rs = max(1.5, rng.uniform(0.04, 0.08) * fov)
        ball = sum((g - p) ** 2 for g, p in zip(full, pos)) < rs * rs
        classes[ball] = 2 + (i % structure_types)

    image = np.empty((in_channels, *shape), np.float32)
    bias_dir = rng.normal(size=dims)
    bias = sum(b * g for b, g in zip(bias_dir, full)) / fov * rng.uniform(0.0, 0.4)
    for c in range(in_channels):
        sign = -1.0 if c % 2 else 1.0
        tissue = np.asarray(
            [0.0, sign * (1.0 + 0.3 * c)]
            + [sign * (2.2 + 0.5 * t) * (-1) ** t for t in range(structure_types)],
            np.float32,
        )
        x = tissue[classes] + bias + rng.normal(0.0, noise, shape).astype(np.float32)
        image[c] = (x - x.mean()) / (x.std() + 1e-6)
    return image, classes


class SyntheticDataset(Dataset):
    """Seeded phantoms, the default data of the demo and of the tests without real data.

    Case ``i`` depends only on ``(seed, i)`` and is generated on the fly (about 0.1 ms for 64 x
    64, 2 ms for 64^3), so workers and subsets need no shared state. Each case is one item
    (``slice`` 0); 3D items are ``(C, D, H, W)``.

    Label modes: ``"binary"`` (organ and structures, C = 1); ``"multiclass"`` with ``classes``
    >= 2 (0 background, 1 organ, 2.. structure types); ``"multilabel"`` with ``classes`` >= 1
    channels (0: organ and structures, k: structures of type k).

    Args:
        num_cases: number of phantoms.
        size: spatial size: one int (square / cube) or one per axis.
        dim: 2 or 3.
        label_mode: ``"binary"``, ``"multilabel"`` or ``"multiclass"``.
        classes: logit channels (default 1 binary, 3 multiclass, 2 multilabel).
        in_channels: image channels (each with its own tissue contrasts).
        noise: Gaussian noise std (the organ's contrast is about 1).
        seed: the seed.
        cases: restrict to these case ids (``synthetic_0000`` ...).
        split: ``"train"``, ``"val"``, ``"test"`` or None.
        augment: augmentation (``split="train"`` only).

    Example:
        >>> ds = SyntheticDataset(8, size=32, label_mode="multiclass")
        >>> ds[0]["image"].shape, ds[0]["mask"].shape, ds.classes
        (torch.Size([1, 32, 32]), torch.Size([32, 32]), 3)
    """

    kind: ClassVar[str] = "synthetic"

    def __init__(
        self,
        num_cases: int = 64,
        *,
        size: int | Sequence[int] = 64,
        dim: int = 2,
        label_mode: str = "binary",
        classes: int | None = None,
        in_channels: int = 1,
        noise: float = 0.25,
        seed: int = 0,
        cases: Sequence[str] | None = None,
        split: str | None = None,
        augment: Augment | None = None,
    ) -> None:
        if isinstance(num_cases, bool) or not isinstance(num_cases, int) or num_cases < 1:
            raise ValueError(f"num_cases must be a positive integer, got {num_cases!r}.")
        if dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {dim!r}.")
        shape = (size,) * dim if isinstance(size, int) else tuple(int(s) for s in size)
        if len(shape) != dim or min(shape) < 8:
            raise ValueError(f"size must be one int or {dim} ints, each >= 8; got {size!r}.")
        look_up_option(label_mode, LabelMode, "label_mode")
        default = {"binary": 1, "multiclass": 3, "multilabel": 2}[label_mode]
        classes = default if classes is None else classes
        low = {"binary": 1, "multiclass": 2, "multilabel": 1}[label_mode]
        if (
            not isinstance(classes, int)
            or classes < low
            or (label_mode == "binary" and classes != 1)
        ):
            raise ValueError(
                f"classes={classes!r} is invalid for label_mode={label_mode!r} "
                f"(binary: 1; multiclass: >= 2; multilabel: >= 1)."
            )
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}.")
        if not noise >= 0:
            raise ValueError(f"noise must be >= 0, got {noise!r}.")
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)} or None, got {split!r}.")
        if augment is not None and split != "train":
            raise ValueError(f"augmentation applies to split='train' only, got split={split!r}.")
        self.num_cases, self.shape, self.dim = num_cases, shape, dim
        self.label_mode, self.classes, self.in_channels = label_mode, classes, in_channels
        self.noise, self.seed, self.split, self.augment = float(noise), int(seed), split, augment
        self.spatial_dims = dim
        self.preprocessing = Preprocessing(size=shape, multiple=1) if dim == 2 else None
        self._all = [f"synthetic_{i:04d}" for i in range(num_cases)]
        self._restricted = cases is not None
        self._select(cases)

    def _select(self, cases: Sequence[str] | None) -> None:
        if cases is None:
            self.cases = list(self._all)
        else:
            known = set(self._all)
            unknown = [c for c in cases if c not in known]
            if unknown or not cases or isinstance(cases, str):
                raise ValueError(
                    f"cases must be a non-empty list of ids from synthetic_0000 to "
                    f"{self._all[-1]}; unknown: {list(unknown)[:10]}."
                )
            self.cases = sorted(set(cases), key=self._all.index)

    @property
    def _structure_types(self) -> int:
        if self.label_mode == "multiclass":
            return max(1, self.classes - 2)
        if self.label_mode == "multilabel":
            return max(1, self.classes - 1)
        return 1

    def _mask(self, classes: np.ndarray) -> np.ndarray:
        if self.label_mode == "binary":
            return (classes > 0).astype(np.uint8)
        if self.label_mode == "multiclass":
            return np.minimum(classes, self.classes - 1).astype(np.uint8)
        out = np.empty((self.classes, *classes.shape), np.uint8)
        out[0] = classes > 0
        for k in range(1, self.classes):
            out[k] = classes == k + 1
        return out

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, i: int) -> Item:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} cases.")
        case = self.cases[i]
        rng = np.random.default_rng([self.seed, int(case.rsplit("_", 1)[1])])
        image, classes = phantom(
            self.shape,
            rng,
            structure_types=self._structure_types,
            in_channels=self.in_channels,
            noise=self.noise,
        )
        mask = self._mask(classes)
        if self.augment is not None:
            image, mask = self.augment(image, mask)
        return make_item(image, mask, self.label_mode, case, 0, image.shape[1:])

    def subset(
        self, cases: Sequence[str], split: str | None = None, augment: Augment | None = None
    ) -> SyntheticDataset:
        """The same phantoms restricted to ``cases``."""
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)} or None, got {split!r}.")
        if augment is not None and split != "train":
            raise ValueError(f"augmentation applies to split='train' only, got split={split!r}.")
        out = copy.copy(self)
        out.split, out.augment, out._restricted = split, augment, True
        out._select(cases)
        return out

    def config(self) -> dict[str, Any]:
        """Plain types (JSON) that rebuild this dataset."""
        return {
            "kind": self.kind,
            "num_cases": self.num_cases,
            "size": list(self.shape),
            "dim": self.dim,
            "label_mode": self.label_mode,
            "classes": self.classes,
            "in_channels": self.in_channels,
            "noise": self.noise,
            "seed": self.seed,
            "augment": self.augment.config() if self.augment is not None else None,
            "cases": list(self.cases) if self._restricted else None,
            "split": self.split,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SyntheticDataset:
        """Inverse of :meth:`config`."""
        cfg = {k: v for k, v in config.items() if k not in ("kind", "info")}
        cfg["augment"] = Augment.from_config(cfg.get("augment"))
        return cls(cfg.pop("num_cases"), **cfg)

    def __repr__(self) -> str:
        return (
            f"SyntheticDataset(cases={len(self)}, shape={self.shape}, label_mode="
            f"{self.label_mode!r}, classes={self.classes}, in_channels={self.in_channels}, "
            f"seed={self.seed}, split={self.split!r})"
        )
