"""``MSDDataset``: a Medical Segmentation Decathlon task folder (``dataset.json``,
``imagesTr/``, ``labelsTr/``); covers the paper's Cardiac, Spleen and Liver tasks."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from .errors import DataError
from .label_rules import LabelRule
from .nifti import NiftiPairsDataset, nifti_case_id
from .preprocess import Augment, Preprocessing

__all__ = ["MSDDataset", "read_msd_json"]


def read_msd_json(root: str | Path) -> dict[str, Any]:
    """Read and check ``root/dataset.json`` (``training`` pairs, ``labels``, ``modality``)."""
    path = Path(root) / "dataset.json"
    if not path.is_file():
        raise DataError(path, "file not found (an MSD task folder needs dataset.json)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"cannot read as JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise DataError(path, "expected a JSON object")
    for key, kind in (("training", list), ("labels", dict), ("modality", dict)):
        if not isinstance(meta.get(key), kind):
            raise DataError(path, f"missing or malformed {key!r} (expected a {kind.__name__})")
    for i, entry in enumerate(meta["training"]):
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("image"), str)
            and isinstance(entry.get("label"), str)
        ):
            raise DataError(path, f"training[{i}] must be {{'image': str, 'label': str}}")
    for key in ("labels", "modality"):
        bad = [k for k in meta[key] if not str(k).lstrip("-").isdigit()]
        if bad:
            raise DataError(path, f"{key!r} keys must be integers, got {bad}")
    return meta


def msd_label_rule(meta: dict[str, Any]) -> LabelRule:
    """Binary for labels {0, 1}, else multiclass over the listed values (in value order)."""
    values = sorted(int(k) for k in meta["labels"])
    names = [str(meta["labels"][str(v)]) for v in values]
    if values == [0, 1]:
        return LabelRule.binary((0, 1))
    return LabelRule.multiclass(values, names)


class MSDDataset(NiftiPairsDataset):
    """A Decathlon task folder as 2D slices, read with nibabel.

    The cases are the ``training`` pairs of ``dataset.json`` (its paths relative to ``root``);
    a listed file that is missing, or a NIfTI file in ``imagesTr/``/``labelsTr/`` that is not
    listed, is an error. Labels follow ``dataset.json``'s ``labels``:
    ``{0, 1}`` gives ``label_mode="binary"``, more values ``"multiclass"`` (class index = rank
    of the value); other values in a label file are an error. Multi-modality 4D images give one
    channel per modality, or the ones chosen by name or index.

    Args:
        root: the task folder (e.g. ``Task04_Hippocampus``).
        modalities: names (as in ``dataset.json``'s ``modality``, case-insensitive) or indices.
        labels: override the rule derived from ``dataset.json``.

    The other arguments (``preprocessing``, ``augment``, ``cases``, ``split``, ``cache_dir``,
    ``cache``) are as :class:`NiftiPairsDataset`'s.

    Example:
        >>> ds = MSDDataset("../shared/data/Task04_Hippocampus")  # doctest: +SKIP
        >>> ds.label_mode, ds.classes, ds[0]["mask"].dtype  # doctest: +SKIP
        ('multiclass', 3, torch.int64)
    """

    kind: ClassVar[str] = "msd"

    def __init__(
        self,
        root: str | Path,
        *,
        modalities: Sequence[str | int] | None = None,
        labels: LabelRule | None = None,
        preprocessing: Preprocessing | None = None,
        augment: Augment | None = None,
        cases: Sequence[str] | None = None,
        split: str | None = None,
        cache_dir: str | Path | None = None,
        cache: bool = True,
    ) -> None:
        self.root = Path(root)
        meta = read_msd_json(self.root)
        json_path = self.root / "dataset.json"
        pairs = []
        for entry in meta["training"]:
            image, label = self.root / entry["image"], self.root / entry["label"]
            for path, what in ((image, "image"), (label, "label")):
                if not path.is_file():
                    raise DataError(
                        path, f"file not found (listed as a training {what} in {json_path})"
                    )
            pairs.append((image, label))
        if not pairs:
            raise DataError(json_path, "lists no training cases (empty dataset)")
        self._check_unlisted(pairs, json_path)
        self.modality_names = [str(meta["modality"][k]) for k in sorted(meta["modality"], key=int)]
        self._modalities = None if modalities is None else list(modalities)
        channels = self._resolve_modalities(modalities)
        super().__init__(
            pairs,
            case_ids=[nifti_case_id(image) for image, _ in pairs],
            channels=channels,
            labels=labels if labels is not None else msd_label_rule(meta),
            preprocessing=preprocessing,
            augment=augment,
            cases=cases,
            split=split,
            cache_dir=cache_dir,
            cache=cache,
        )

    def _source_name(self, specs: Sequence[Any]) -> str:
        return str(self.root)

    def _check_unlisted(self, pairs: Sequence[tuple[Path, Path]], json_path: Path) -> None:
        """NIfTI files in imagesTr/ or labelsTr/ that dataset.json does not list are an error
        (nothing is silently left out); hidden files such as macOS ``._*`` are ignored."""
        listed = {os.path.normpath(p) for pair in pairs for p in pair}
        unlisted = [
            str(path.relative_to(self.root))
            for folder in ("imagesTr", "labelsTr")
            for path in sorted((self.root / folder).glob("*.nii*"))
            if not path.name.startswith(".") and os.path.normpath(path) not in listed
        ]
        if unlisted:
            raise DataError(
                json_path,
                f"{len(unlisted)} NIfTI file(s) in imagesTr/labelsTr are not listed as training "
                f"pairs: {unlisted[:10]}{'...' if len(unlisted) > 10 else ''} (list them with "
                "their partner, or move them out)",
            )

    def _resolve_modalities(self, modalities: Sequence[str | int] | None) -> list[int] | None:
        if modalities is None:
            return None
        if isinstance(modalities, str) or not modalities:
            raise TypeError(f"modalities must be a non-empty list, got {modalities!r}.")
        lower = [n.lower() for n in self.modality_names]
        out = []
        for m in modalities:
            if isinstance(m, int) and not isinstance(m, bool) and 0 <= m < len(lower):
                out.append(m)
            elif isinstance(m, str) and m.lower() in lower:
                out.append(lower.index(m.lower()))
            else:
                raise ValueError(
                    f"unknown modality {m!r}; {self.root / 'dataset.json'} lists "
                    f"{dict(enumerate(self.modality_names))} (give names or indices)."
                )
        return out

    def _layout_config(self) -> dict[str, Any]:
        return {"root": str(self.root), "modalities": self._modalities}
