"""Images without masks for the Trainer: read them as the labelled data was, refuse leaks.

``dsplug train --unlabeled PATH`` reads a folder of images (or the images of an MSD task,
without their labels) with the labelled data's own preprocessing (:func:`read_unlabeled`);
``--labeled-cases N`` keeps the masks of the first N training cases and serves the others'
images alone (:func:`split_labeled`). An unlabelled file that is also a validation or test
case is refused (:func:`check_no_leak`): same case id, same file, or same contents.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import ConcatDataset, Dataset, Sampler

from ..data.base import _file_print
from ..data.factory import prediction_input
from ..data.msd import read_msd_json
from ..data.nifti import nifti_case_id

__all__ = [
    "IMAGE_SUFFIXES",
    "EpochSampler",
    "ImagesOnly",
    "UnlabeledImages",
    "check_no_leak",
    "describe_unlabeled",
    "join_unlabeled",
    "read_unlabeled",
    "split_labeled",
    "unlabeled_files",
]

#: The files ``--unlabeled FOLDER`` reads (2D images, and NIfTI volumes).
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".gif", ".bmp", ".jpg", ".jpeg", ".nii", ".nii.gz")


def _case_id(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return nifti_case_id(path)
    return path.stem


class ImagesOnly(Dataset):
    """A labelled dataset's items without their masks (``image``, ``case``, ``slice``)."""

    source = "the other training cases"

    def __init__(self, data: Dataset) -> None:
        self.data = data
        self.cases = list(getattr(data, "cases", []))

    def fingerprint(self) -> dict[str, list[int]]:
        """The files read (none for synthetic data)."""
        prints = getattr(self.data, "fingerprint", None)
        return prints() if callable(prints) else {}

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.data[i]
        return {"image": item["image"], "case": item["case"], "slice": item["slice"]}


class UnlabeledImages(Dataset):
    """Preprocessed slices of image files without masks (in memory).

    Attributes:
        cases: one case id per file; files: the files, in order.
    """

    def __init__(
        self,
        images: torch.Tensor,
        rows: Sequence[tuple[str, int]],
        files: list[str],
        source: str = "",
    ) -> None:
        self.images = images
        self.rows = list(rows)
        self.files = files
        self.cases = [_case_id(Path(f)) for f in files]
        self.source = source

    def fingerprint(self) -> dict[str, list[int]]:
        """``{file: [size, crc32 of the first 64 KiB]}`` of the files read."""
        return {f: _file_print(f) for f in self.files}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        case, s = self.rows[i]
        return {"image": self.images[i], "case": case, "slice": s}


def unlabeled_files(path: str | Path) -> list[Path]:
    """The image files of ``path``: an MSD task's images (``training`` and ``test`` of its
    ``dataset.json``, labels never read), or every image file below a folder (sorted).

    Raises:
        ValueError: no such folder, or no image file in it.
    """
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"--unlabeled {str(path)!r}: no such folder (give a folder of images).")
    if (root / "dataset.json").is_file():
        meta = read_msd_json(root)
        tests = [t if isinstance(t, str) else t.get("image") for t in meta.get("test") or []]
        names = [e["image"] for e in meta["training"]] + [t for t in tests if t]
        files = [root / n for n in names]
        files = [f for f in files if f.is_file()]
    else:
        files = sorted(
            p
            for p in root.rglob("*")
            if p.is_file()
            and not p.name.startswith(".")
            and p.name.lower().endswith(IMAGE_SUFFIXES)
        )
    if not files:
        raise ValueError(
            f"--unlabeled {str(path)!r}: no image file in it (expected "
            f"{', '.join(IMAGE_SUFFIXES)} files, or an MSD task folder)."
        )
    return files


def read_unlabeled(
    path: str | Path, config: Mapping[str, Any], held_out: Mapping[str, Any] | None = None
) -> UnlabeledImages:
    """Read the images of ``path`` (:func:`unlabeled_files`) as the dataset of ``config``
    (the labelled training data's ``config()``) was: same reading, z-score, slice range and
    size; first refuse any that is a case of ``held_out`` (:func:`check_no_leak`).

    Raises:
        ValueError: synthetic or BraTS data (no single image file per case), a held-out case,
            or a file that does not read as the labelled data's images.
    """
    kind = config.get("kind")
    if kind in ("synthetic", "brats"):
        what = "phantoms, no files" if kind == "synthetic" else "several files per case"
        raise ValueError(
            f"--unlabeled does not apply to {kind} data ({what}); use --labeled-cases N to "
            "train on the other training cases' images without their masks."
        )
    files = unlabeled_files(path)
    check_no_leak([str(f) for f in files], [_case_id(f) for f in files], held_out or {})
    images, rows = [], []
    for file in files:
        sliced, _ = prediction_input(config, file)
        images.append(sliced.images)
        rows.extend((_case_id(file), int(s)) for s in sliced.indices)
    files_read = [os.path.abspath(f) for f in files]
    return UnlabeledImages(torch.cat(images), rows, files_read, os.path.abspath(path))


class _Joined(ConcatDataset):
    """Unlabelled images of several sources, one after the other."""

    def __init__(self, parts: Sequence[Dataset]) -> None:
        super().__init__(parts)
        self.cases = [c for p in parts for c in getattr(p, "cases", [])]
        self.source = " + ".join(str(getattr(p, "source", "")) for p in parts)

    def fingerprint(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for part in self.datasets:
            prints = getattr(part, "fingerprint", None)
            out.update(prints() if callable(prints) else {})
        return out


def join_unlabeled(parts: Sequence[Dataset]) -> Dataset:
    """Several sources of unlabelled images as one dataset (cases, source, fingerprint)."""
    return _Joined(parts)


def describe_unlabeled(data: Dataset) -> dict[str, Any]:
    """What a run records of its unlabelled images (``config.json``, checkpoints: a resume
    needs the same): their source, case ids, item count and files' fingerprint."""
    prints = getattr(data, "fingerprint", None)
    return {
        "source": str(getattr(data, "source", type(data).__name__)),
        "cases": [str(c) for c in getattr(data, "cases", [])],
        "items": len(data),
        "fingerprint": prints() if callable(prints) else {},
    }


def _held_out_files(data: Dataset) -> dict[str, str]:
    """abs path -> case id of a dataset's image files (none for synthetic data)."""
    out: dict[str, str] = {}
    info = getattr(data, "case_info", None)
    if info is None:
        return out
    for case in data.cases:
        for file in info(case).image_files:
            out[os.path.abspath(file)] = case
    return out


def check_no_leak(files: Sequence[str], ids: Sequence[str], held_out: Mapping[str, Any]) -> None:
    """Refuse an unlabelled file that is a validation or test case: the same case id, the
    same file, or a file with the same contents (size and CRC of its first 64 KiB, as the data
    fingerprint).

    Args:
        files: the unlabelled files; ids: their case ids.
        held_out: ``{"val": dataset, "test": dataset}`` (missing splits left out).

    Raises:
        ValueError: one line naming the file and the case it leaks.
    """
    for split, data in held_out.items():
        if data is None:
            continue
        paths = _held_out_files(data)
        cases = set(getattr(data, "cases", []))
        prints: dict[tuple[int, ...], str] | None = None
        for file, case in zip(files, ids):
            full = os.path.abspath(file)
            hit = case if case in cases else paths.get(full)
            if hit is None:
                if prints is None:
                    prints = {tuple(_file_print(p)): c for p, c in paths.items()}
                hit = prints.get(tuple(_file_print(full)))
            if hit is not None:
                raise ValueError(
                    f"--unlabeled: {file} is the {split} case {hit!r} (same case id, file or "
                    f"contents); training on it would leak the {split} split. Remove it from "
                    "the unlabelled images (or rename it if it is another image)."
                )


def split_labeled(train: Any, n: int) -> tuple[Any, ImagesOnly]:
    """``--labeled-cases N``: the first ``n`` training cases with their masks, and the other
    training cases' images without them.

    Raises:
        ValueError: ``n`` leaves no labelled or no unlabelled case.
    """
    cases = list(train.cases)
    if not 1 <= n < len(cases):
        raise ValueError(
            f"--labeled-cases {n}: the training split has {len(cases)} cases; give 1 to "
            f"{len(cases) - 1} (the rest are used without their masks)."
        )
    labelled = train.subset(cases[:n], split="train", augment=train.augment)
    # split None: no slice is chosen by its mask (--drop-empty acts on "train" only)
    return labelled, ImagesOnly(train.subset(cases[n:], split=None))


class EpochSampler(Sampler[int]):
    """``count`` indices of a dataset of ``size`` items per epoch: seeded permutations of it,
    repeated as needed (a fresh order each epoch, the same order on resume), this rank's share
    (every ``world``-th from ``rank``)."""

    def __init__(self, size: int, count: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.size, self.count, self.seed = size, count, seed
        self.rank, self.world = rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch's order."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        total = self.count * self.world
        rounds = -(-total // self.size)
        order = torch.cat([torch.randperm(self.size, generator=g) for _ in range(rounds)])
        return iter(order[:total][self.rank :: self.world].tolist())
