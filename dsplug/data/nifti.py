"""``NiftiPairsDataset``: any list of (image, label) NIfTI files; the layouts build on it."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .base import CaseSpec, RawCase, SliceDataset
from .errors import DataError
from .io import Header, read_nifti, read_nifti_header
from .label_rules import LabelRule
from .preprocess import Augment, Preprocessing

__all__ = ["NiftiPairsDataset", "nifti_case_id"]

PathIn = str | PathLike
AFFINE_ATOL = 1e-3  # world units (mm); headers written by different tools differ in float noise


def nifti_case_id(path: PathIn) -> str:
    """A case id from a file name: ``.../hippocampus_001.nii.gz`` -> ``hippocampus_001``."""
    name = Path(path).name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def _spatial(data: np.ndarray, path: Path, what: str, allow_channels: bool) -> np.ndarray:
    """Drop trailing singleton axes beyond the third; check 3D (or 4D with channels)."""
    while data.ndim > 3 and data.shape[-1] == 1 and not (allow_channels and data.ndim == 4):
        data = data[..., 0]
    if data.ndim == 3 or (allow_channels and data.ndim == 4):
        return data
    expected = "3D (X, Y, Z) or 4D (X, Y, Z, channels)" if allow_channels else "3D (X, Y, Z)"
    raise DataError(path, f"{what} has shape {data.shape}; expected {expected}")


def _same_grid(
    path: Path,
    header: Header,
    shape: tuple[int, ...],
    ref: Path,
    ref_h: Header,
    ref_shape: tuple[int, ...],
) -> None:
    if shape != ref_shape:
        raise DataError(
            path,
            f"shape {shape} does not match the label {ref} shape {ref_shape} (image and label "
            "must be on the same voxel grid)",
        )
    a, b = np.asarray(header.affine), np.asarray(ref_h.affine)
    if a.shape == b.shape and not np.allclose(a, b, rtol=0, atol=AFFINE_ATOL):
        diff = float(np.abs(a - b).max())
        raise DataError(
            path,
            f"affine differs from the label {ref} affine by up to {diff:.4g} (tolerance "
            f"{AFFINE_ATOL}); image and label must be on the same voxel grid",
        )


class NiftiPairsDataset(SliceDataset):
    """2D slices of (image, label) NIfTI pairs.

    Args:
        pairs: ``(image, label)`` per case; ``image`` is one file (3D, or 4D with channels last)
            or a sequence of 3D files stacked as channels.
        case_ids: one id per pair (default: the first image's file name without ``.nii.gz``).
        roi: optional region-of-interest mask per pair (z-score inside it, zero outside; e.g. a
            brain mask; thresholded at 0.5).
        channels: indices to keep from 4D images (default: all).
        labels: the label rule (default: binary with values {0, 1}).
        preprocessing: the preprocessing (default: :class:`Preprocessing()`).
        augment: augmentation (``split="train"`` only).
        cases: restrict to these case ids.
        split: ``"train"``, ``"val"``, ``"test"`` or None.
        cache_dir: the disk cache (default: ``$DSPLUG_CACHE`` or ``./.dsplug_cache``).
        cache: False keeps everything in memory and writes nothing.

    Raises:
        DataError: a missing, unreadable or inconsistent file (shape or affine mismatch,
            unexpected label values), or no pairs.

    Example:
        >>> ds = NiftiPairsDataset([("ct.nii.gz", "ct_seg.nii.gz")])  # doctest: +SKIP
        >>> ds[0]["image"].shape, ds.case_info("ct").spacing  # doctest: +SKIP
    """

    kind: ClassVar[str] = "nifti"
    _header_reader = staticmethod(read_nifti_header)

    def __init__(
        self,
        pairs: Sequence[tuple[PathIn | Sequence[PathIn], PathIn]],
        *,
        case_ids: Sequence[str] | None = None,
        roi: Sequence[PathIn] | None = None,
        channels: Sequence[int] | None = None,
        labels: LabelRule | None = None,
        preprocessing: Preprocessing | None = None,
        augment: Augment | None = None,
        cases: Sequence[str] | None = None,
        split: str | None = None,
        cache_dir: str | Path | None = None,
        cache: bool = True,
    ) -> None:
        specs = self._specs(pairs, case_ids, roi)
        self._channels = None if channels is None else [int(c) for c in channels]
        if self._channels is not None and (not self._channels or min(self._channels) < 0):
            raise ValueError(f"channels must be non-negative indices, got {channels!r}.")
        self._pairs_config = [[[str(p) for p in s.images], str(s.label)] for s in specs]
        self._case_ids = [s.case for s in specs]
        self._roi = None if roi is None else [str(s.roi) for s in specs]
        self._setup(
            specs,
            source=self._source_name(specs),
            labels=labels if labels is not None else LabelRule.binary((0, 1)),
            preprocessing=preprocessing,
            augment=augment,
            cases=cases,
            split=split,
            cache_dir=cache_dir,
            cache=cache,
        )

    def _source_name(self, specs: Sequence[CaseSpec]) -> str:
        if not specs:
            return "<no pairs>"
        return str(Path(specs[0].label).parent)

    @staticmethod
    def _specs(
        pairs: Sequence[tuple[PathIn | Sequence[PathIn], PathIn]],
        case_ids: Sequence[str] | None,
        roi: Sequence[PathIn] | None,
    ) -> list[CaseSpec]:
        if isinstance(pairs, (str, PathLike)):
            raise TypeError(f"pairs must be a sequence of (image, label) pairs, got {pairs!r}.")
        pairs = list(pairs)
        if case_ids is not None and len(case_ids) != len(pairs):
            raise ValueError(f"case_ids has {len(case_ids)} ids for {len(pairs)} pairs.")
        if roi is not None and len(roi) != len(pairs):
            raise ValueError(f"roi has {len(roi)} files for {len(pairs)} pairs.")
        specs = []
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(f"pairs[{i}] must be (image, label), got {pair!r}.")
            image, label = pair
            images = (
                (Path(image),)
                if isinstance(image, (str, PathLike))
                else tuple(Path(p) for p in image)
            )
            if not images:
                raise ValueError(f"pairs[{i}] has no image file.")
            case = str(case_ids[i]) if case_ids is not None else nifti_case_id(images[0])
            specs.append(
                CaseSpec(case, images, Path(label), Path(roi[i]) if roi is not None else None)
            )
        return specs

    # ------------------------------------------------------------------ reading one case
    def _read(self, spec: CaseSpec) -> RawCase:
        label, lhead = read_nifti(spec.label, label=True)
        label = _spatial(label, spec.label, "label", allow_channels=False)
        channels: list[np.ndarray] = []
        for path in spec.images:
            data, head = read_nifti(path)
            data = _spatial(data, path, "image", allow_channels=True)
            _same_grid(path, head, data.shape[:3], spec.label, lhead, label.shape)
            if data.ndim == 4:
                channels.extend(self._pick(data, path))
            elif self._channels not in (None, [0]):
                raise DataError(path, f"is 3D (one channel); cannot pick channels {self._channels}")
            else:
                channels.append(data)
        roi = None
        if spec.roi is not None:
            rdata, rhead = read_nifti(spec.roi)
            rdata = _spatial(rdata, spec.roi, "ROI mask", allow_channels=False)
            _same_grid(spec.roi, rhead, rdata.shape, spec.label, lhead, label.shape)
            roi = rdata > 0.5
            if not roi.any():
                raise DataError(spec.roi, "ROI mask is empty (no voxel > 0.5)")
        image = np.stack(channels) if len(channels) > 1 else channels[0][None]
        return RawCase(image, label, roi, lhead)

    def _pick(self, data: np.ndarray, path: Path) -> list[np.ndarray]:
        n = data.shape[3]
        wanted = list(range(n)) if self._channels is None else self._channels
        bad = [c for c in wanted if c >= n]
        if bad:
            raise DataError(path, f"has {n} channels; cannot pick channel(s) {bad}")
        return [data[..., c] for c in wanted]

    def _layout_params(self) -> dict[str, Any]:
        return {"channels": self._channels, "roi": self._roi is not None}

    def _layout_info(self) -> dict[str, Any]:
        return {"channels": self._channels}

    def _layout_config(self) -> dict[str, Any]:
        return {
            "pairs": self._pairs_config,
            "case_ids": self._case_ids,
            "roi": self._roi,
            "channels": self._channels,
        }
