"""``ImageFolderDataset``: 2D images and masks (PNG, TIFF, GIF, BMP via Pillow) paired by glob
templates with an ``{id}`` field."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from .base import CaseSpec, RawCase, SliceDataset
from .errors import DataError
from .io import COLORS, Header, read_image, read_image_header, read_mask
from .label_rules import LabelRule
from .pairing import pair_files
from .preprocess import Augment, Preprocessing

__all__ = ["ImageFolderDataset"]


class ImageFolderDataset(SliceDataset):
    """2D image/mask pairs; each pair is one case with one slice (``slice`` 0).

    Templates are relative to ``root``; ``*`` and ``?`` work as in glob and ``{id}`` names the
    case (it may repeat, and must then match). Examples:

    - ``image/{id}.png`` + ``label/{id}.png`` (ISBI 2012, as shipped with zhixuhao/unet),
    - ``images/{id}_training.tif`` + ``1st_manual/{id}_manual1.gif`` (DRIVE),
    - ``images/{id}/{id}_Dermoscopic_Image/{id}.png`` + ``images/{id}/{id}_lesion/{id}_lesion.png``
      (PH2's per-case folders).

    A file without its partner is an error. Masks are mapped by ``labels``; the default,
    ``LabelRule.binary((0, 255))``, accepts only 0 and 255 and makes 255 the foreground (use
    ``LabelRule.threshold(t)`` to binarise any values, or ``LabelRule.multiclass`` for class
    maps). Images are z-scored per image and channel (``preprocessing.zscore``).

    Args:
        root: the folder the templates are relative to.
        image: the image template.
        mask: the mask template.
        color: ``"auto"`` (the files' kind; all must agree), ``"gray"`` or ``"rgb"``.

    The other arguments (``labels``, ``preprocessing``, ``augment``, ``cases``, ``split``,
    ``cache_dir``, ``cache``) are as :class:`~dsplug.data.NiftiPairsDataset`'s
    (``preprocessing.slice_range`` and ``axis`` do not apply to 2D images and must stay at
    their defaults).

    Example:
        >>> ds = ImageFolderDataset("isbi2012_em_membrane/train", "image/{id}.png",
        ...                         "label/{id}.png")  # doctest: +SKIP
    """

    kind: ClassVar[str] = "folder"
    _header_reader = staticmethod(read_image_header)

    def __init__(
        self,
        root: str | Path,
        image: str,
        mask: str,
        *,
        color: str = "auto",
        labels: LabelRule | None = None,
        preprocessing: Preprocessing | None = None,
        augment: Augment | None = None,
        cases: Sequence[str] | None = None,
        split: str | None = None,
        cache_dir: str | Path | None = None,
        cache: bool = True,
    ) -> None:
        if color not in COLORS:
            raise ValueError(f"color must be one of {list(COLORS)}, got {color!r}.")
        if preprocessing is not None and (
            preprocessing.slice_range is not None or preprocessing.axis != -1
        ):
            raise ValueError(
                "slice_range and axis apply to 3D volumes; 2D images need the defaults "
                f"(got slice_range={preprocessing.slice_range}, axis={preprocessing.axis})."
            )
        self.root = Path(root)
        self._templates = (image, mask)
        self.color = color
        specs = [
            CaseSpec(case, (img,), lbl) for case, img, lbl in pair_files(self.root, image, mask)
        ]
        self._setup(
            specs,
            source=self.root,
            labels=labels if labels is not None else LabelRule.binary((0, 255)),
            preprocessing=preprocessing,
            augment=augment,
            cases=cases,
            split=split,
            cache_dir=cache_dir,
            cache=cache,
        )

    def _read(self, spec: CaseSpec) -> RawCase:
        image = read_image(spec.images[0], self.color)
        mask = read_mask(spec.label)
        if image.shape[1:] != mask.shape:
            raise DataError(
                spec.images[0],
                f"image size {image.shape[1:]} does not match the mask {spec.label} size "
                f"{mask.shape}",
            )
        eye = tuple(tuple(float(i == j) for j in range(3)) for i in range(3))
        return RawCase(image, mask, None, Header(mask.shape, (1.0, 1.0), eye))

    def _layout_params(self) -> dict[str, Any]:
        return {"color": self.color}

    def _layout_info(self) -> dict[str, Any]:
        return {"color": "rgb" if self.in_channels == 3 else "gray"}

    def _layout_config(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "image": self._templates[0],
            "mask": self._templates[1],
            "color": self.color,
        }
