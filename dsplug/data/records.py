"""The plain records the datasets pass around: a case's files (:class:`CaseSpec`), its arrays as
read from disk (:class:`RawCase`), the facts kept with its slices (:class:`CaseInfo`), and the
library-wide item (:func:`make_item`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from .io import Header

__all__ = ["CaseInfo", "CaseSpec", "Item", "RawCase", "make_item"]

Item = dict[str, Any]


@dataclass(frozen=True)
class CaseSpec:
    """The files of one case: image file(s) (one per channel group), label, optional ROI."""

    case: str
    images: tuple[Path, ...]
    label: Path
    roi: Path | None = None

    @property
    def files(self) -> tuple[Path, ...]:
        """Every source file (the cache key's fingerprints)."""
        return (*self.images, self.label, *((self.roi,) if self.roi is not None else ()))


class RawCase(NamedTuple):
    """A case as read from disk: ``image (C, *spatial)`` float32, raw ``label (*spatial)``,
    optional boolean ``roi (*spatial)``, and the label's header (spatial geometry)."""

    image: np.ndarray
    label: np.ndarray
    roi: np.ndarray | None
    header: Header


@dataclass(frozen=True)
class CaseInfo:
    """Per-case facts kept with the preprocessed slices (no file is re-read to get them).

    ``shape``, ``spacing`` and ``affine`` describe the case's spatial grid as stored (the
    affine maps voxel indices to world mm; 2D images get unit spacing and identity).
    """

    case: str
    image_files: tuple[str, ...]
    label_file: str
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    affine: tuple[tuple[float, ...], ...]
    in_channels: int
    slices: int
    foreground_slices: int


def make_item(
    image: np.ndarray,
    mask: np.ndarray,
    label_mode: str,
    case: str,
    index: int,
    size: Sequence[int],
) -> Item:
    """The library-wide item: ``image`` float32 ``(C, *spatial)``; ``mask`` float32
    ``(1, *spatial)`` (binary), float32 ``(K, *spatial)`` (multilabel) or int64 ``(*spatial)``
    (multiclass); ``case``; ``slice``; ``size`` int64 (the spatial size before padding).

    ``mask`` comes without the binary channel axis; conversions happen in numpy (one torch
    call per tensor keeps items cheap).
    """
    m = np.ascontiguousarray(mask, dtype=np.int64 if label_mode == "multiclass" else np.float32)
    if label_mode == "binary":
        m = m[None]
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
        "mask": torch.from_numpy(m),
        "case": case,
        "slice": int(index),
        "size": torch.from_numpy(np.asarray(size, dtype=np.int64)),
    }
