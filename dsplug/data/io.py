"""Reading NIfTI volumes (nibabel) and 2D images (Pillow); every failure names the file."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DataError

__all__ = [
    "COLORS",
    "Header",
    "read_image",
    "read_image_header",
    "read_json",
    "read_mask",
    "read_nifti",
    "read_nifti_header",
]

COLORS = ("auto", "gray", "rgb")
_READ_ERRORS = (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError)


@dataclass(frozen=True)
class Header:
    """What a file's header says: array shape, voxel spacing and affine (identity for 2D).

    ``shape`` is the full array shape (a 4D NIfTI includes its channel axis; a 2D image is
    ``(H, W)``); ``spacing`` and ``affine`` describe the spatial axes.
    """

    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    affine: tuple[tuple[float, ...], ...]

    def config(self) -> dict[str, Any]:
        """Plain types (JSON)."""
        return {
            "shape": list(self.shape),
            "spacing": list(self.spacing),
            "affine": [list(r) for r in self.affine],
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Header:
        """Inverse of :meth:`config`."""
        return cls(
            tuple(int(s) for s in config["shape"]),
            tuple(float(s) for s in config["spacing"]),
            tuple(tuple(float(v) for v in r) for r in config["affine"]),
        )


def read_json(path: str | Path, fix: str) -> Any:
    """The JSON in ``path`` (UTF-8); a file that is not UTF-8 JSON raises one line naming
    the file, what is wrong with it and ``fix`` (what to do about it).

    Raises:
        DataError: the file cannot be read, is not UTF-8 text, or is not valid JSON.
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at {exc.start})"
    except json.JSONDecodeError as exc:
        problem = f"not valid JSON, damaged or cut short ({exc.msg}, line {exc.lineno})"
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror or exc})"
    raise DataError(path, f"{problem}; {fix}")


def _exists(path: Path) -> None:
    if not path.is_file():
        raise DataError(path, "file not found" if not path.exists() else "not a regular file")


def _open_nifti(path: Path) -> Any:
    _exists(path)
    try:
        img = nib.load(str(path))
    except _READ_ERRORS as exc:
        raise DataError(path, f"cannot read as NIfTI ({type(exc).__name__}: {exc})") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise DataError(path, f"expected a NIfTI file, nibabel read it as {type(img).__name__}")
    return img


def _nifti_header(img: Any) -> Header:
    shape = tuple(int(s) for s in img.shape)
    zooms = tuple(float(z) for z in img.header.get_zooms()[: min(3, len(shape))])
    affine = tuple(tuple(float(v) for v in row) for row in np.asarray(img.affine))
    return Header(shape, zooms, affine)


def read_nifti_header(path: str | Path) -> Header:
    """Shape, spacing and affine of a NIfTI file (reads the header only)."""
    return _nifti_header(_open_nifti(Path(path)))


def read_nifti(path: str | Path, *, label: bool = False) -> tuple[np.ndarray, Header]:
    """Read a NIfTI file: float32 data for an image, the stored (scaled) values for a label.

    Raises:
        DataError: missing or unreadable file, or non-finite image values.
    """
    path = Path(path)
    img = _open_nifti(path)
    try:
        data = np.asanyarray(img.dataobj) if label else img.get_fdata(dtype=np.float32)
    except _READ_ERRORS as exc:
        raise DataError(path, f"cannot read NIfTI data ({type(exc).__name__}: {exc})") from exc
    if not label and not np.isfinite(data).all():
        raise DataError(path, f"image has {int((~np.isfinite(data)).sum())} NaN/Inf voxels")
    return np.asarray(data), _nifti_header(img)


def _open_image(path: Path) -> Image.Image:
    _exists(path)
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, *_READ_ERRORS) as exc:
        raise DataError(path, f"cannot read as an image ({type(exc).__name__}: {exc})") from exc
    if getattr(img, "n_frames", 1) > 1:
        raise DataError(
            path,
            f"multi-frame image ({img.n_frames} frames); expected one 2D image per file "
            "(split the stack into one file per slice)",
        )
    return img


def read_image_header(path: str | Path) -> Header:
    """Size of a 2D image as a Header with shape (H, W), unit spacing and identity affine."""
    path = Path(path)
    _exists(path)
    try:
        with Image.open(path) as img:
            w, h = img.size
    except (UnidentifiedImageError, *_READ_ERRORS) as exc:
        raise DataError(path, f"cannot read as an image ({type(exc).__name__}: {exc})") from exc
    eye = tuple(tuple(float(i == j) for j in range(3)) for i in range(3))
    return Header((h, w), (1.0, 1.0), eye)


def _opaque(img: Image.Image, path: Path) -> None:
    alpha = np.asarray(img.getchannel("A"))
    if alpha.min() < 255:
        raise DataError(
            path, f"image mode {img.mode} has a non-opaque alpha channel; expected gray or RGB"
        )


def read_image(path: str | Path, color: str = "auto") -> np.ndarray:
    """Read a 2D image as float32 ``(C, H, W)``: C = 1 (gray) or 3 (RGB).

    Args:
        path: PNG, TIFF, GIF, BMP or any format Pillow reads.
        color: ``"auto"`` keeps the file's kind (gray or RGB); ``"gray"`` converts RGB with
            Pillow's luminance formula; ``"rgb"`` replicates gray into three channels.

    Raises:
        DataError: missing or unreadable file, multi-frame file, transparent pixels.
    """
    if color not in COLORS:
        raise ValueError(f"color must be one of {list(COLORS)}, got {color!r}.")
    path = Path(path)
    img = _open_image(path)
    mode = img.mode
    if mode in ("RGBA", "LA", "PA"):
        _opaque(img, path)
    if mode == "P":
        img = img.convert("RGBA")
        _opaque(img, path)
    if img.mode in ("RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
    elif img.mode in ("LA", "1"):
        img = img.convert("L")
    if img.mode == "RGB" and color == "gray":
        img = img.convert("L")
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
        if color == "rgb":
            arr = np.repeat(arr, 3, axis=0)
    elif arr.ndim == 3 and arr.shape[2] == 3:
        arr = np.ascontiguousarray(arr.transpose(2, 0, 1))
    else:
        raise DataError(path, f"unsupported image mode {mode} (array shape {arr.shape})")
    return arr


def read_mask(path: str | Path) -> np.ndarray:
    """Read a 2D mask as an integer array ``(H, W)`` of its stored values.

    1-bit masks read as {0, 255}; palette masks through their palette (as shown); an RGB mask
    must be gray (equal channels).

    Raises:
        DataError: missing or unreadable file, a coloured or multi-frame mask.
    """
    path = Path(path)
    img = _open_image(path)
    mode = img.mode
    if mode in ("1", "P", "LA", "PA"):
        img = img.convert("L")
    arr = np.asarray(img)
    if arr.ndim == 3:
        channels = arr[..., :3]
        if not (
            np.array_equal(channels[..., 0], channels[..., 1])
            and np.array_equal(channels[..., 0], channels[..., 2])
        ):
            raise DataError(
                path,
                f"mask mode {mode} has differing colour channels; expected a single-channel "
                "label image (gray values or class indices)",
            )
        arr = channels[..., 0]
    if not np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.float64)
    return arr
