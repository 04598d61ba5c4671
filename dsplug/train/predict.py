"""Inference from a checkpoint: rebuild the bare model, segment NIfTI volumes or 2D images.

The model is rebuilt with ``build_model`` from the checkpoint's model config (no wrapper, no
deep-supervision modules: eval-mode ``DeepSupervised`` is the bare model anyway). Inputs are
preprocessed exactly as the training data (``dsplug.data.prediction_input``), slices are cropped
back and stacked into a volume of the input's shape. NIfTI masks keep the input's affine and
header (data type set to uint8); 2D masks are PNG. Slices larger than the training size are
segmented with Gaussian-weighted sliding windows of that size overlapping by 50%
(:mod:`dsplug.train.sliding`); smaller ones are zero-padded to it. A model trained on patches
(``--patch``) segments the slices (2D) or the whole volume (3D) at native resolution with
windows of its patch. ``tta`` adds mirror test-time augmentation. Masks are written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from PIL import Image
from torch import nn

from ..data import prediction_input, slices_to_volume
from ..metrics import predict as hard_predict
from ..options import LabelMode, choose
from .atomic import atomic_path
from .checkpoint import load_checkpoint, load_weights
from .models import build_model
from .native import case_logits
from .plots import mask_to_labels
from .sliding import sliding_window_logits

__all__ = [
    "is_nifti",
    "load_model",
    "mask_path",
    "mask_paths",
    "predict_file",
    "predict_slices",
    "predict_volume",
]


def is_nifti(path: str | Path) -> bool:
    """Whether ``path`` names a NIfTI file (``.nii`` or ``.nii.gz``)."""
    name = Path(path).name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def mask_path(image: str | Path, out: str | Path) -> Path:
    """Where the mask of ``image`` goes: ``out/<stem>_mask.nii.gz`` or ``out/<stem>_mask.png``."""
    image = Path(image)
    return Path(out) / f"{_stem(image)}_mask{'.nii.gz' if is_nifti(image) else '.png'}"


def mask_paths(images: Sequence[str | Path], out: str | Path) -> list[Path]:
    """The masks of several inputs: their folders relative to the inputs' common parent are kept
    below ``out``, so ``a/x.nii.gz`` and ``b/x.nii.gz`` give ``out/a/x_mask.nii.gz`` and
    ``out/b/x_mask.nii.gz`` (inputs of one folder: ``out/<stem>_mask...``).

    Raises:
        ValueError: an input is given twice, or two inputs would still share a mask path
            (e.g. ``x.nii`` and ``x.nii.gz`` of one folder).
    """
    paths = [Path(p).resolve() for p in images]
    if not paths:
        return []
    common = Path(os.path.commonpath([p.parent for p in paths]))
    targets: dict[Path, Path] = {}
    result = []
    for given, path in zip(images, paths):
        target = mask_path(path, Path(out) / path.parent.relative_to(common))
        if target in targets:
            other = targets[target]
            what = "is given twice" if other == path else f"and {other} would both write {target}"
            raise ValueError(f"input {given} {what}; give each case once, under its own name.")
        targets[target] = path
        result.append(target)
    return result


def load_model(
    checkpoint: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """The bare model of a checkpoint, in eval mode on ``device``, and the checkpoint itself.

    Raises:
        CheckpointError: the file is missing, damaged or unsafe, or its weights do not fit the
            model its config describes.
    """
    ckpt = load_checkpoint(checkpoint)
    model = build_model(ckpt["model_config"])
    load_weights(model, ckpt["model_state"], checkpoint)
    return model.to(device).eval(), ckpt


def _forward(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``model`` on a batch moved to its parameters' device and dtype."""
    param = next(model.parameters())

    def forward(x: torch.Tensor) -> torch.Tensor:
        return model(x.to(param.device, param.dtype))

    return forward


@torch.no_grad()
def predict_slices(
    model: nn.Module,
    images: torch.Tensor,
    label_mode: str,
    batch_size: int = 16,
    window: Sequence[int] | None = None,
    tta: bool = False,
) -> np.ndarray:
    """Hard predictions of slices ``(S, C, H, W)``: uint8 ``(S, H, W)`` for binary and
    multiclass (class indices), ``(S, C, H, W)`` for multilabel.

    Args:
        model: the bare model in eval mode.
        images: the slices, any float dtype (cast to the model's).
        label_mode: ``binary``, ``multilabel`` or ``multiclass``.
        batch_size: slices per forward pass.
        window: the training size ``(h, w)``: larger slices are tiled with Gaussian-weighted
            windows of it overlapping by 50%, smaller ones zero-padded to it; None: slices as
            they are.
        tta: mirror TTA (the mean logits of all 4 flips of each window).
    """
    window = tuple(window) if window is not None else tuple(images.shape[-2:])
    logits = sliding_window_logits(_forward(model), images, window, batch_size=batch_size, tta=tta)
    pred = hard_predict(logits, label_mode)
    return (pred[:, 0] if label_mode == "binary" else pred).numpy().astype(np.uint8)


@torch.no_grad()
def predict_volume(
    model: nn.Module,
    image: torch.Tensor,
    label_mode: str,
    window: Sequence[int],
    batch_size: int = 4,
    tta: bool = False,
) -> np.ndarray:
    """Hard predictions of one 3D volume ``(C, X, Y, Z)`` by Gaussian-weighted sliding windows
    of ``window`` (a 3D patch-trained model): uint8 ``(X, Y, Z)`` (binary, multiclass) or
    ``(K, X, Y, Z)`` (multilabel); ``tta`` averages all 8 mirrors of each window."""
    logits = case_logits(_forward(model), image, window, batch_size=batch_size, tta=tta)
    pred = hard_predict(logits[None], label_mode)[0]
    return (pred[0] if label_mode == "binary" else pred).numpy().astype(np.uint8)


@torch.no_grad()
def _predict_native_slices(
    model: nn.Module,
    images: torch.Tensor,
    label_mode: str,
    window: Sequence[int],
    batch_size: int,
    tta: bool,
) -> np.ndarray:
    """Slices ``(S, C, H, W)`` at their native size, one by one through :func:`case_logits`
    with a 2D patch: the prediction ``evaluate`` scores (uint8, as :func:`predict_slices`)."""
    forward = _forward(model)
    masks = []
    for image in images:
        logits = case_logits(forward, image, window, batch_size=batch_size, tta=tta)
        pred = hard_predict(logits[None], label_mode)[0]
        masks.append(pred[0] if label_mode == "binary" else pred)
    return torch.stack(masks).numpy().astype(np.uint8)


def _data_config(ckpt: dict[str, Any]) -> dict[str, Any]:
    configs = ckpt.get("data_config") or {}
    for split in ("train", "val", "test"):
        if split in configs:
            return configs[split]
    raise ValueError(
        "The checkpoint holds no data configuration, so the preprocessing of new inputs is "
        "unknown; train with dsplug's datasets (they record it)."
    )


def predict_file(
    model: nn.Module,
    ckpt: dict[str, Any],
    images: Sequence[str | Path],
    out: str | Path,
    *,
    roi: str | Path | None = None,
    batch_size: int = 16,
    target: str | Path | None = None,
    tta: bool = False,
) -> Path:
    """Segment one case (one file, or one file per channel) and write its mask.

    Args:
        model: from :func:`load_model`.
        ckpt: the checkpoint :func:`load_model` returned (label mode and preprocessing).
        images: the case's image file(s): a NIfTI volume (or one per channel), or a 2D image.
        out: the output folder.
        roi: the ROI mask, for data normalised inside one (BraTS brain mask).
        batch_size: slices per forward pass.
        target: the mask file; default :func:`mask_path` of the first image in ``out``.
        tta: mirror test-time augmentation (all axis flips, logits averaged).

    Returns:
        The mask file: NIfTI with the input's shape, affine and header (uint8; multilabel
        masks get the channels as a last axis), or PNG (binary 0/255, multiclass class
        indices, multilabel the last channel present).
    """
    paths = [Path(p) for p in images]
    label_mode = choose(ckpt["wrapper_config"]["label_mode"], LabelMode, "label_mode")
    config = _data_config(ckpt)
    prep = config.get("preprocessing") or {}
    patch = (ckpt.get("train_config") or {}).get("patch")
    window = patch or (prep.get("size") if prep.get("fit", "pad") == "pad" else None)
    if patch is not None:  # native size, no padding: as evaluate scores it (case_logits)
        config = {**config, "preprocessing": {**prep, "size": None, "multiple": 1}}
    elif window is not None:  # slices at their own size (rounded up to the stride), then tiled
        config = {**config, "preprocessing": {**prep, "size": None}}
    sliced, _ = prediction_input(config, paths, roi=roi)
    if patch is not None and len(patch) == 3:  # the whole volume, by 3D windows
        image = torch.from_numpy(slices_to_volume(sliced.images, sliced))
        volume = predict_volume(model, image, label_mode, patch, batch_size, tta=tta)
    elif patch is not None:  # each slice whole, by 2D windows of the patch
        masks = _predict_native_slices(model, sliced.images, label_mode, patch, batch_size, tta)
        volume = slices_to_volume(masks, sliced)
    else:
        masks = predict_slices(model, sliced.images, label_mode, batch_size, window, tta=tta)
        volume = slices_to_volume(masks, sliced)
    target = Path(target) if target is not None else mask_path(paths[0], out)
    if is_nifti(paths[0]):
        source = nib.load(str(paths[0]))
        if label_mode is LabelMode.MULTILABEL:
            volume = np.moveaxis(volume, 0, -1)
        header = source.header.copy()
        header.set_data_dtype(np.uint8)
        image = nib.Nifti1Image(volume.astype(np.uint8), source.affine, header)
        image.header.set_slope_inter(1.0, 0.0)
        with atomic_path(target) as part:
            nib.save(image, str(part))
        return target
    if label_mode is LabelMode.BINARY:
        pixels = volume.astype(np.uint8) * 255
    elif label_mode is LabelMode.MULTICLASS:
        pixels = volume.astype(np.uint8)
    else:
        pixels = mask_to_labels(volume, "multilabel").astype(np.uint8)
    with atomic_path(target) as part:
        Image.fromarray(pixels).save(part, format="PNG")
    return target
