"""Preprocessing as the paper (§4.1): 3D to 2D slices, per-volume z-score, slice selection,
pad (or resize) to one size per dataset; light augmentation; and the predict-time helpers."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "FITS",
    "Augment",
    "Preprocessing",
    "SlicedVolume",
    "pad_to",
    "slices_to_volume",
    "volume_to_slices",
]

FITS = ("pad", "resize")


def _pair(value: Sequence[int] | None, what: str) -> tuple[int, int] | None:
    if value is None:
        return None
    vals = tuple(value)
    if len(vals) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in vals):
        raise ValueError(f"{what} must be two positive integers, got {value!r}.")
    return (int(vals[0]), int(vals[1]))


@dataclass(frozen=True)
class Preprocessing:
    """Every preprocessing step, each optional; recorded in the dataset's ``config()``.

    Args:
        axis: spatial axis of a 3D volume to slice along (default: the last, axial for RAS).
        zscore: per-volume z-score, per channel (within the ROI mask where one is given).
        drop_empty: remove slices without foreground (applied in the training split only).
        slice_range: keep slices ``start <= index < stop`` along ``axis`` (Python slicing;
            BraTS as the paper: ``(30, 125)``).
        fit: ``"pad"`` zeros at the high end of each axis (crop back with ``x[..., :h, :w]``)
            or ``"resize"`` (bilinear images, nearest masks) to ``size``.
        size: the fixed slice size (H, W); ``None`` with ``fit="pad"``: the largest slice of
            the dataset rounded up to ``multiple`` (resolved when the dataset is built).
        multiple: the network's stride; ``size`` must be a multiple of it.

    Example:
        >>> Preprocessing(slice_range=(30, 125), size=(256, 256)).config()["size"]
        [256, 256]
    """

    axis: int = -1
    zscore: bool = True
    drop_empty: bool = False
    slice_range: tuple[int, int] | None = None
    fit: str = "pad"
    size: tuple[int, int] | None = None
    multiple: int = 32

    def __post_init__(self) -> None:
        if isinstance(self.axis, bool) or self.axis not in (-3, -2, -1, 0, 1, 2):
            raise ValueError(
                f"axis must be a spatial axis of a 3D volume (-3..2), got {self.axis!r}."
            )
        if self.fit not in FITS:
            raise ValueError(f"fit must be one of {list(FITS)}, got {self.fit!r}.")
        if (
            isinstance(self.multiple, bool)
            or not isinstance(self.multiple, int)
            or self.multiple < 1
        ):
            raise ValueError(f"multiple must be a positive integer, got {self.multiple!r}.")
        size = _pair(self.size, "size")
        object.__setattr__(self, "size", size)
        if size is not None and any(s % self.multiple for s in size):
            fixed = tuple(math.ceil(s / self.multiple) * self.multiple for s in size)
            raise ValueError(
                f"size {size} must be a multiple of multiple={self.multiple} (the network's "
                f"stride); e.g. {fixed}."
            )
        if self.fit == "resize" and size is None:
            raise ValueError("fit='resize' needs an explicit size, e.g. size=(480, 480).")
        if self.slice_range is not None:
            rng = tuple(self.slice_range)
            if (
                len(rng) != 2
                or not all(isinstance(v, (int, np.integer)) for v in rng)
                or not (0 <= rng[0] < rng[1])
            ):
                raise ValueError(
                    f"slice_range must be (start, stop) with 0 <= start < stop, got "
                    f"{self.slice_range!r}."
                )
            object.__setattr__(self, "slice_range", (int(rng[0]), int(rng[1])))

    def config(self) -> dict[str, Any]:
        """Plain types (JSON); :meth:`from_config` rebuilds it."""
        out = asdict(self)
        out["slice_range"] = list(self.slice_range) if self.slice_range else None
        out["size"] = list(self.size) if self.size else None
        return out

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Preprocessing:
        """Inverse of :meth:`config`; unknown keys are an error."""
        unknown = sorted(set(config) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(
                f"unknown preprocessing keys {unknown}; valid: {sorted(cls.__dataclass_fields__)}."
            )
        return cls(**config)

    def with_size(self, size: tuple[int, int]) -> Preprocessing:
        """A copy with ``size`` set."""
        return replace(self, size=size)

    def auto_size(self, slice_shapes: Sequence[tuple[int, int]]) -> tuple[int, int]:
        """``size`` if set, else the largest (H, W) over ``slice_shapes`` rounded up to
        ``multiple``."""
        if self.size is not None:
            return self.size
        if not slice_shapes:
            raise ValueError("cannot choose a size from no slices.")
        h = max(s[0] for s in slice_shapes)
        w = max(s[1] for s in slice_shapes)
        m = self.multiple
        return (math.ceil(h / m) * m, math.ceil(w / m) * m)

    def in_range(self, index: int) -> bool:
        """Whether slice ``index`` (along ``axis``) is inside ``slice_range``."""
        return self.slice_range is None or self.slice_range[0] <= index < self.slice_range[1]


@dataclass(frozen=True)
class Augment:
    """Light augmentation for training: flips and rotations by 90° (only of square slices).

    Applied to the unpadded slice, so padding stays at the high end. Draws from torch's global
    RNG (seeded per DataLoader worker), so runs are reproducible under ``torch.manual_seed``.

    Args:
        flip: flip each in-plane axis with probability ``p``.
        rot90: with probability ``p``, rotate by 90, 180 or 270 degrees (square slices only).
        p: probability of each transform.
    """

    flip: bool = True
    rot90: bool = True
    p: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.p) <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {self.p!r}.")

    def config(self) -> dict[str, Any]:
        """Plain types (JSON)."""
        return asdict(self)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> Augment | None:
        """Inverse of :meth:`config` (``None`` stays ``None``)."""
        return None if config is None else cls(**config)

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Transform ``image (C, ..., h, w)`` and ``mask (..., h, w)`` alike (last two axes)."""
        draws = torch.rand(4).tolist()
        if self.flip:
            for axis, u in ((-1, draws[0]), (-2, draws[1])):
                if u < self.p:
                    image, mask = np.flip(image, axis), np.flip(mask, axis)
        if self.rot90 and image.shape[-1] == image.shape[-2] and draws[2] < self.p:
            k = 1 + min(int(draws[3] * 3), 2)
            image, mask = np.rot90(image, k, (-2, -1)), np.rot90(mask, k, (-2, -1))
        return np.ascontiguousarray(image), np.ascontiguousarray(mask)


# --------------------------------------------------------------------------- array steps
def zscore(image: np.ndarray, roi: np.ndarray | None = None) -> np.ndarray:
    """Per-channel z-score of ``image (C, *spatial)`` (statistics inside ``roi`` where given;
    voxels outside the ROI become 0). Raises ValueError for a constant channel."""
    out = np.empty(image.shape, dtype=np.float32)
    for c in range(image.shape[0]):
        x = image[c]
        values = x[roi] if roi is not None else x
        if values.size == 0:
            raise ValueError("the ROI mask is empty: no voxels to normalise.")
        mean = float(values.mean(dtype=np.float64))
        std = float(values.std(dtype=np.float64))
        if not std > 0:
            raise ValueError(f"channel {c} is constant ({mean}); cannot z-score it.")
        np.subtract(x, np.float32(mean), out=out[c], dtype=np.float32)
        out[c] *= np.float32(1.0 / std)
        if roi is not None:
            out[c][~roi] = 0.0
    return out


def to_slices(array: np.ndarray, axis: int, channel_dims: int) -> np.ndarray:
    """``(*channels, *spatial)`` -> ``(S, *channels, h, w)``: a 3D volume sliced along
    ``axis``; a 2D image becomes one slice."""
    spatial = array.ndim - channel_dims
    if spatial == 2:
        return array[None]
    if spatial != 3:
        raise ValueError(f"expected a 2D or 3D spatial array, got shape {array.shape}.")
    return np.ascontiguousarray(np.moveaxis(array, channel_dims + (axis % 3), 0))


def resize_slices(x: np.ndarray, size: tuple[int, int], *, nearest: bool) -> np.ndarray:
    """Resize ``(S, C, h, w)`` to ``(S, C, *size)``: bilinear (antialiased) or nearest."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    t = torch.from_numpy(np.ascontiguousarray(x))
    if nearest:
        out = F.interpolate(t.float(), size=size, mode="nearest-exact").to(t.dtype)
    else:
        out = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out.numpy()


def pad_to(x: np.ndarray, size: Sequence[int], dtype: np.dtype | type | None = None) -> np.ndarray:
    """Zero-pad the trailing ``len(size)`` axes of ``x`` at their high end up to ``size``
    (always a new array, of ``dtype`` if given)."""
    tail = x.shape[-len(size) :]
    if any(t > s for t, s in zip(tail, size)):
        raise ValueError(f"cannot pad a slice of size {tuple(tail)} to the smaller {tuple(size)}.")
    out = np.zeros((*x.shape[: -len(size)], *size), dtype=dtype or x.dtype)
    out[(..., *(slice(0, t) for t in tail))] = x
    return out


def prepare_image(
    image: np.ndarray, prep: Preprocessing, roi: np.ndarray | None = None
) -> np.ndarray:
    """``image (C, *spatial)`` -> normalised slices ``(S, C, h, w)`` (resized with
    ``fit="resize"``, unpadded otherwise)."""
    if prep.zscore:
        image = zscore(image, roi)
    elif roi is not None:
        image = np.where(roi[None], image, 0).astype(np.float32)
    slices = to_slices(image.astype(np.float32, copy=False), prep.axis, 1)
    if prep.fit == "resize" and prep.size is not None:
        slices = resize_slices(slices, prep.size, nearest=False)
    return slices


def prepare_mask(mask_slices: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Sliced masks ``(S, h, w)`` or ``(S, K, h, w)`` resized (nearest) when
    ``fit="resize"``."""
    if prep.fit != "resize" or prep.size is None:
        return mask_slices
    flat = mask_slices if mask_slices.ndim == 4 else mask_slices[:, None]
    flat = resize_slices(flat, prep.size, nearest=True)
    return flat if mask_slices.ndim == 4 else flat[:, 0]


# --------------------------------------------------------------------------- predict helpers
@dataclass(frozen=True)
class SlicedVolume:
    """One volume as network-ready slices, plus what :func:`slices_to_volume` needs.

    Attributes:
        images: float32 ``(S, C, H, W)``, padded at the high end (or resized).
        sizes: int64 ``(S, 2)``, each slice's (h, w) before padding (as the items' ``size``).
        indices: each slice's index along ``axis`` in the original volume.
        shape: the volume's spatial shape.
        axis: the slicing axis.
        fit: ``"pad"`` or ``"resize"``.
    """

    images: torch.Tensor
    sizes: torch.Tensor
    indices: tuple[int, ...]
    shape: tuple[int, ...]
    axis: int
    fit: str


def volume_to_slices(
    volume: np.ndarray,
    prep: Preprocessing,
    *,
    channel_axis: int | None = None,
    roi: np.ndarray | None = None,
) -> SlicedVolume:
    """Turn one 3D volume (or 2D image) into preprocessed slices, the dataset's own steps.

    Slicing axis, z-score, slice range, and pad / resize follow ``prep`` (use the
    ``preprocessing`` of a dataset's ``config()``, whose ``size`` is resolved); ``drop_empty``
    needs labels and does not apply.

    Args:
        volume: ``(X, Y, Z)`` or ``(X, Y)``, optionally with a channel axis.
        prep: the preprocessing; with ``fit="pad"`` and no ``size``, the slice size rounded up
            to ``prep.multiple``.
        channel_axis: position of the channel axis in ``volume`` (``None``: one channel).
        roi: optional boolean mask of the spatial shape (e.g. a brain mask).

    Example:
        >>> sv = volume_to_slices(np.random.rand(35, 50, 30), Preprocessing(size=(64, 64)))
        >>> tuple(sv.images.shape), slices_to_volume(sv.images[:, 0] > 0, sv).shape
        ((30, 1, 64, 64), (35, 50, 30))
    """
    arr = np.asarray(volume, dtype=np.float32)
    arr = arr[None] if channel_axis is None else np.moveaxis(arr, channel_axis, 0)
    if arr.ndim not in (3, 4):
        raise ValueError(
            f"volume must be 2D or 3D plus an optional channel axis, got shape {volume.shape} "
            f"with channel_axis={channel_axis}."
        )
    if not np.isfinite(arr).all():
        raise ValueError("volume contains NaN or Inf values.")
    spatial = tuple(arr.shape[1:])
    if roi is not None:
        roi = np.asarray(roi) > 0.5
        if roi.shape != spatial:
            raise ValueError(f"roi shape {roi.shape} does not match the volume's {spatial}.")
    slices = prepare_image(arr, prep, roi)
    n = slices.shape[0]
    indices = [i for i in range(n) if len(spatial) == 2 or prep.in_range(i)]
    if not indices:
        raise ValueError(f"slice_range {prep.slice_range} selects no slice of {n}.")
    slices = slices[indices]
    h, w = slices.shape[-2:]
    size = prep.size if prep.size is not None else prep.auto_size([(h, w)])
    if prep.fit == "pad" and (h > size[0] or w > size[1]):
        raise ValueError(
            f"slices of size {(h, w)} do not fit the preprocessing size {size}; build the "
            "preprocessing with a larger size (a multiple of the network's stride)."
        )
    padded = pad_to(slices, size) if prep.fit == "pad" else slices
    sizes = torch.tensor([[h, w]] * len(indices), dtype=torch.int64)
    return SlicedVolume(
        torch.from_numpy(np.ascontiguousarray(padded)),
        sizes,
        tuple(indices),
        spatial,
        prep.axis % 3 if len(spatial) == 3 else -1,
        prep.fit,
    )


def slices_to_volume(
    slices: torch.Tensor | np.ndarray, sliced: SlicedVolume, *, fill: float = 0
) -> np.ndarray:
    """Stack per-slice predictions back into a volume of the original spatial shape.

    Args:
        slices: ``(S, *extra, H, W)`` aligned with ``sliced`` (e.g. class indices ``(S, H, W)``
            or probabilities ``(S, K, H, W)``).
        sliced: what :func:`volume_to_slices` returned.
        fill: the value of slices outside the slice range.

    Returns:
        ``(*extra, *shape)``: padding cropped off (or resized back: nearest for integer and
        boolean dtypes, bilinear otherwise), slices put back along the slicing axis.
    """
    arr = slices.detach().cpu().numpy() if isinstance(slices, torch.Tensor) else np.asarray(slices)
    n = len(sliced.indices)
    if arr.ndim < 3 or arr.shape[0] != n:
        raise ValueError(
            f"slices must be (S={n}, *extra, H, W) for this volume, got shape {arr.shape}."
        )
    spatial = sliced.shape
    plane = (
        spatial[:2]
        if len(spatial) == 2
        else tuple(s for i, s in enumerate(spatial) if i != sliced.axis)
    )
    if sliced.fit == "pad":
        arr = arr[..., : plane[0], : plane[1]]
    else:
        flat = arr.reshape(n, -1, *arr.shape[-2:])
        integer = not np.issubdtype(arr.dtype, np.floating)
        flat = resize_slices(flat.astype(np.float32) if integer else flat, plane, nearest=integer)
        arr = flat.astype(arr.dtype).reshape(*arr.shape[:-2], *plane)
    if len(spatial) == 2:
        return np.ascontiguousarray(arr[0])
    extra = arr.shape[1:-2]
    out = np.full((spatial[sliced.axis], *extra, *plane), fill, dtype=arr.dtype)
    out[list(sliced.indices)] = arr
    # (S, *extra, a, b) -> (*extra, *spatial) with S moved back to the slicing axis.
    out = np.moveaxis(out, 0, len(extra) + sliced.axis)
    return np.ascontiguousarray(out)
