"""One entry point for the CLI: build train / val / test datasets from a source, rebuild a
dataset from its config, and prepare a prediction input the way the training data was."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from .._checks import look_up_option
from .brats import BRATS_FILES, BraTSDataset
from .errors import DataError
from .folders import ImageFolderDataset
from .io import Header, read_image, read_nifti
from .label_rules import LabelRule
from .msd import MSDDataset
from .nifti import NiftiPairsDataset
from .preprocess import Augment, Preprocessing, SlicedVolume, volume_to_slices
from .splits import (
    SPLITS,
    check_splits,
    contiguous_splits,
    load_splits,
    make_splits,
    save_splits,
)
from .synthetic import SyntheticDataset

__all__ = ["KINDS", "build_datasets", "dataset_from_config", "detect_kind", "prediction_input"]

DATASETS: dict[str, type] = {
    "msd": MSDDataset,
    "brats": BraTSDataset,
    "folder": ImageFolderDataset,
    "nifti": NiftiPairsDataset,
    "synthetic": SyntheticDataset,
}
KINDS = ("auto", "msd", "brats", "folder", "synthetic")
# Arguments build_datasets sets itself; ``options`` may not repeat them.
_RESERVED = {"self", "root", "preprocessing", "augment", "cases", "split", "cache_dir", "cache"}


def detect_kind(source: str | Path, options: Mapping[str, Any] | None = None) -> str:
    """``"synthetic"`` for the string ``"synthetic"``; ``"msd"`` for a folder with
    ``dataset.json``; ``"folder"`` when ``options`` give ``image``/``mask`` templates;
    ``"brats"`` for a folder with BraTS label files below it."""
    if str(source) == "synthetic":
        return "synthetic"
    root = Path(source)
    if not root.is_dir():
        raise DataError(root, "folder not found (and not the word 'synthetic')")
    if (root / "dataset.json").is_file():
        return "msd"
    if options and ("image" in options or "mask" in options):
        return "folder"
    if any(next(root.rglob(p), None) for p in BRATS_FILES["label"]):
        return "brats"
    raise DataError(
        root,
        "cannot tell the layout: no dataset.json (MSD), no BraTS label files, and no image/mask "
        f"templates in options (folder); pass kind= one of {list(KINDS[1:])}",
    )


def _check_options(cls: type, options: Mapping[str, Any]) -> None:
    params = inspect.signature(cls.__init__).parameters
    valid = sorted(set(params) - _RESERVED)
    for key in options:
        if key not in valid:
            look_up_option(key, valid, f"{getattr(cls, 'kind', '') or cls.__name__} option")


def build_datasets(
    source: str | Path,
    *,
    kind: str = "auto",
    preprocessing: Preprocessing | None = None,
    augment: Augment | None = None,
    splits: Mapping[str, Sequence[str]] | str | Path | None = None,
    seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    splits_path: str | Path | None = None,
    contiguous: bool = False,
    cache_dir: str | Path | None = None,
    cache: bool = True,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Dataset]:
    """Build the train / val / test datasets of a source (the CLI's one call).

    The source is read once; the splits share its loaded slices. Splits are by case: explicit
    (a dict, or a JSON file to read), else contiguous blocks (``contiguous=True``, for the
    consecutive slices of one stack such as ISBI 2012), else seeded random
    (:func:`make_splits`; at least 10 cases). ``splits_path`` saves the splits and reuses them.

    Args:
        source: a folder, or ``"synthetic"``.
        kind: ``"auto"``, ``"msd"``, ``"brats"``, ``"folder"`` or ``"synthetic"``.
        preprocessing: the preprocessing (default :class:`Preprocessing()`; not for synthetic).
        augment: the training split's augmentation, e.g. ``Augment()`` (default None: none,
            as the paper).
        splits: explicit splits, or the path of a splits JSON file.
        seed: the random split's seed.
        fractions: train, val, test fractions.
        splits_path: where the splits are written, and reused from when present.
        contiguous: contiguous blocks instead of a random split.
        cache_dir: the disk cache (default ``$DSPLUG_CACHE`` or ``./.dsplug_cache``).
        cache: False keeps everything in memory.
        options: the layout's own arguments, checked against its constructor, e.g.
            ``{"modalities": ["t1ce", "flair"]}`` (BraTS), ``{"image": "image/{id}.png",
            "mask": "label/{id}.png"}`` (folder), ``{"num_cases": 100, "size": 64}`` (synthetic).

    Returns:
        ``{"train": ..., "val": ..., "test": ...}`` (a split without cases is left out).

    Example:
        >>> sets = build_datasets("synthetic", options={"num_cases": 20, "size": 32})
        >>> sorted(sets), len(sets["train"])
        (['test', 'train', 'val'], 14)
    """
    look_up_option(kind, KINDS, "dataset kind")
    opts = dict(options or {})
    if "labels" in opts:  # a LabelRule, or its JSON form from --option labels=...
        opts["labels"] = LabelRule.parse(opts["labels"])
    kind = detect_kind(source, opts) if kind == "auto" else kind
    cls = DATASETS[kind]
    _check_options(cls, opts)
    if kind == "synthetic":
        if preprocessing is not None:
            raise ValueError("synthetic data takes no preprocessing (its phantoms are ready).")
        full: Any = SyntheticDataset(**opts)
    else:
        full = cls(source, **opts, preprocessing=preprocessing, cache_dir=cache_dir, cache=cache)
    ids = list(full.cases)
    if isinstance(splits, (str, Path)):
        chosen = load_splits(splits, ids)
    elif splits is not None:
        chosen = check_splits(splits, ids)
        if splits_path is not None:
            save_splits({"method": "explicit", **chosen}, splits_path)
    elif contiguous:
        chosen = contiguous_splits(ids, fractions, splits_path)
    else:
        chosen = make_splits(ids, seed, fractions, splits_path)
    return {
        name: full.subset(chosen[name], split=name, augment=augment if name == "train" else None)
        for name in SPLITS
        if chosen[name]
    }


def dataset_from_config(
    config: Mapping[str, Any], *, cache_dir: str | Path | None = None, cache: bool = True
) -> Dataset:
    """Rebuild a dataset from its ``config()`` (e.g. as stored in a checkpoint)."""
    kind = look_up_option(config.get("kind"), DATASETS, "dataset kind")
    cls = DATASETS[kind]
    if kind == "synthetic":
        return cls.from_config(config)
    return cls.from_config(config, cache_dir=cache_dir, cache=cache)


def prediction_input(
    config: Mapping[str, Any],
    images: str | Path | Sequence[str | Path],
    *,
    roi: str | Path | None = None,
) -> tuple[SlicedVolume, Header]:
    """Read a new case and preprocess it exactly as the dataset of ``config`` was.

    Args:
        config: a file dataset's ``config()``.
        images: the image file(s): one NIfTI (3D, or 4D with channels last; the dataset's
            channels are picked), one 3D NIfTI per channel (BraTS modalities, in order), or a
            2D image for a folder dataset.
        roi: the ROI mask (BraTS brain mask) when the dataset used one.

    Returns:
        The slices (``images``, ``sizes``; :func:`slices_to_volume` inverts them) and the
        header of the first image (its affine for writing the predicted mask).
    """
    kind = look_up_option(config.get("kind"), DATASETS, "dataset kind")
    if kind == "synthetic":
        raise ValueError("synthetic datasets have no files to predict on.")
    prep = Preprocessing.from_config(config["preprocessing"])
    info = config.get("info", {})
    paths = [Path(images)] if isinstance(images, (str, Path)) else [Path(p) for p in images]
    if kind == "folder":
        if len(paths) != 1:
            raise ValueError(f"a folder dataset predicts on one 2D image, got {len(paths)}.")
        # the dataset's own colour rule: "auto" converts nothing, so a mismatch is refused
        volume = read_image(paths[0], config.get("color", "auto"))
        want = info.get("in_channels")
        if want is not None and volume.shape[0] != want:
            names = {1: "gray", 3: "RGB"}
            raise DataError(
                paths[0],
                f"has {volume.shape[0]} channel(s) ({names.get(volume.shape[0], '?')}), but the "
                f"model was trained on {want} ({names.get(want, '?')}); convert the image to "
                f"{names.get(want, 'that')} first",
            )
        shape = volume.shape[1:]
        eye = tuple(tuple(float(i == j) for j in range(3)) for i in range(3))
        header = Header(shape, (1.0, 1.0), eye)
        return _sliced(paths[0], volume, prep), header
    uses_roi = bool(config.get("brain_mask")) or config.get("roi") is not None
    if uses_roi and roi is None:
        raise ValueError("this dataset normalised inside an ROI mask; pass roi= for the new case.")
    channels = info.get("channels")
    parts, header = [], None
    for path in paths:
        data, head = read_nifti(path)
        header = header or head
        if data.ndim == 4:
            picks = range(data.shape[3]) if channels is None else channels
            parts.extend(data[..., c] for c in picks)
        else:
            parts.append(data)
    volume = np.stack(parts)
    if volume.shape[0] != info.get("in_channels", volume.shape[0]):
        raise ValueError(
            f"the input has {volume.shape[0]} channel(s); the dataset had "
            f"{info.get('in_channels')}."
        )
    roi_array = None
    if roi is not None:
        roi_array = read_nifti(roi)[0] > 0.5
    if header is None:
        raise ValueError("images is empty: give at least one image file.")
    return _sliced(paths[0], volume, prep, roi_array), header


def _sliced(
    path: Path, volume: np.ndarray, prep: Preprocessing, roi: np.ndarray | None = None
) -> SlicedVolume:
    """:func:`volume_to_slices`, its errors naming the input file."""
    try:
        return volume_to_slices(volume, prep, channel_axis=0, roi=roi)
    except DataError:
        raise
    except ValueError as exc:
        raise DataError(path, f"cannot preprocess it as the training data ({exc})") from exc
