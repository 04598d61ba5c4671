"""``BraTSDataset``: BraTS case folders; modalities by name (T1ce by default, as the paper),
the WT / TC / ET regions as a multilabel mask, an optional brain mask."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from .._checks import look_up_option
from .errors import DataError
from .label_rules import LabelRule
from .nifti import NiftiPairsDataset
from .preprocess import Augment, Preprocessing
from .splits import natural_key

__all__ = ["BRATS_FILES", "BRATS_REGIONS", "BraTSDataset"]

#: Regions of the BraTS label map (0 background, 1 necrosis, 2 edema, 3 non-enhancing tumour,
#: 4 enhancing tumour), as the paper: whole tumour, tumour core, enhancing tumour.
BRATS_REGIONS: dict[str, tuple[int, ...]] = {"WT": (1, 2, 3, 4), "TC": (1, 3, 4), "ET": (4,)}

#: Glob patterns of each file kind inside a case folder: DeepMedic's BraTS 2015 copy, BraTS
#: 2017-2021 (``*_t1ce.nii.gz``) and BraTS 2023 (``*-t1c.nii.gz``) names.
BRATS_FILES: dict[str, tuple[str, ...]] = {
    "t1ce": ("T1c_*.nii.gz", "*_t1ce.nii.gz", "*-t1c.nii.gz"),
    "flair": ("Flair_*.nii.gz", "*_flair.nii.gz", "*-t2f.nii.gz"),
    "t1": ("T1_*.nii.gz", "*_t1.nii.gz", "*-t1n.nii.gz"),
    "t2": ("T2_*.nii.gz", "*_t2.nii.gz", "*-t2w.nii.gz"),
    "label": ("OTMultiClass*.nii.gz", "*_seg.nii.gz", "*-seg.nii.gz"),
    "brainmask": ("brainmask*.nii.gz",),
}
_ALIASES = {"t1c": "t1ce", "t1gd": "t1ce", "t2f": "flair", "t1n": "t1", "t2w": "t2"}


def _one(folder: Path, kind: str, patterns: Sequence[str]) -> Path:
    found = sorted({p for pat in patterns for p in folder.glob(pat) if p.is_file()})
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataError(folder, f"no {kind} file (patterns {list(patterns)})")
    raise DataError(
        folder,
        f"{len(found)} files match the {kind} patterns {list(patterns)}: "
        f"{[p.name for p in found]}; expected one",
    )


class BraTSDataset(NiftiPairsDataset):
    """BraTS case folders (any depth under ``root``) as 2D slices.

    A case folder is one that holds a label map (see :data:`BRATS_FILES`); its name is the
    case id. Every chosen modality must have exactly one file per case.

    Args:
        root: the folder holding the case folders (e.g. ``brats2015``).
        modalities: names (case-insensitive; ``T1c``/``t1gd`` mean ``t1ce``), one channel each,
            in this order. Default: T1ce, as the paper.
        labels: the label rule; default the regions :data:`BRATS_REGIONS` as a multilabel mask
            (C = 3), label values {0..4}.
        brain_mask: z-score inside the case's brain mask (thresholded at 0.5) and zero outside.
        files: extra or replacement glob patterns by kind (keys of :data:`BRATS_FILES`, or a
            new modality name).

    The other arguments (``preprocessing``, ``augment``, ``cases``, ``split``, ``cache_dir``,
    ``cache``) are as :class:`NiftiPairsDataset`'s (the paper uses
    ``Preprocessing(slice_range=(30, 125))``).

    Example:
        >>> ds = BraTSDataset("brats2015", modalities=["T1c", "flair"])  # doctest: +SKIP
        >>> ds.in_channels, ds.classes  # doctest: +SKIP
        (2, 3)
    """

    kind: ClassVar[str] = "brats"

    def __init__(
        self,
        root: str | Path,
        *,
        modalities: Sequence[str] = ("t1ce",),
        labels: LabelRule | None = None,
        brain_mask: bool = False,
        files: Mapping[str, Sequence[str]] | None = None,
        preprocessing: Preprocessing | None = None,
        augment: Augment | None = None,
        cases: Sequence[str] | None = None,
        split: str | None = None,
        cache_dir: str | Path | None = None,
        cache: bool = True,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(self.root, "folder not found")
        patterns = dict(BRATS_FILES)
        for kind, pats in (files or {}).items():
            if isinstance(pats, str) or not pats:
                raise TypeError(f"files[{kind!r}] must be a non-empty list of patterns.")
            patterns[kind.lower()] = tuple(pats)
        if isinstance(modalities, str) or not modalities:
            raise TypeError(f"modalities must be a non-empty list of names, got {modalities!r}.")
        names = [str(m).lower() for m in modalities]
        names = [_ALIASES.get(m, m) for m in names]
        choices = [k for k in patterns if k not in ("label", "brainmask")]
        for m in names:
            look_up_option(m, choices, "BraTS modality")
        self.modalities = names
        self.brain_mask = bool(brain_mask)
        self._files = {k: list(v) for k, v in (files or {}).items()}
        folders = self._case_folders(patterns["label"])
        pairs, rois = [], []
        for folder in folders:
            images = [_one(folder, m, patterns[m]) for m in names]
            pairs.append((images, _one(folder, "label", patterns["label"])))
            if self.brain_mask:
                rois.append(_one(folder, "brain mask", patterns["brainmask"]))
        super().__init__(
            pairs,
            case_ids=[f.name for f in folders],
            roi=rois if self.brain_mask else None,
            labels=labels
            if labels is not None
            else LabelRule.multilabel(BRATS_REGIONS, values=(0, 1, 2, 3, 4)),
            preprocessing=preprocessing,
            augment=augment,
            cases=cases,
            split=split,
            cache_dir=cache_dir,
            cache=cache,
        )

    def _case_folders(self, label_patterns: Sequence[str]) -> list[Path]:
        folders = sorted(
            {p.parent for pat in label_patterns for p in self.root.rglob(pat) if p.is_file()},
            key=lambda f: natural_key(f.name),
        )
        if not folders:
            raise DataError(
                self.root,
                f"no case folder with a label file {list(label_patterns)} (empty dataset)",
            )
        return folders

    def _source_name(self, specs: Sequence[Any]) -> str:
        return str(self.root)

    def _layout_config(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "modalities": list(self.modalities),
            "brain_mask": self.brain_mask,
            "files": self._files or None,
        }
