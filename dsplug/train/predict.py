"""Inference from a checkpoint: rebuild the bare model, segment NIfTI volumes or 2D images.

The model is rebuilt with ``build_model`` from the checkpoint's model config (no wrapper, no
deep-supervision modules: eval-mode ``DeepSupervised`` is the bare model anyway). Inputs are
preprocessed exactly as the training data (``dsplug.data.prediction_input``), slices are cropped
back and stacked into a volume of the input's shape. NIfTI masks keep the input's affine and
header (data type set to uint8); 2D masks are PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from PIL import Image
from torch import nn

from ..data import prediction_input, slices_to_volume
from ..metrics import predict as hard_predict
from .checkpoint import load_checkpoint
from .models import build_model
from .plots import mask_to_labels

__all__ = ["is_nifti", "load_model", "mask_path", "predict_file", "predict_slices"]


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


def load_model(
    checkpoint: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """The bare model of a checkpoint, in eval mode on ``device``, and the checkpoint itself.

    Raises:
        CheckpointError: the file is missing, damaged or unsafe.
    """
    ckpt = load_checkpoint(checkpoint)
    model = build_model(ckpt["model_config"])
    model.load_state_dict(ckpt["model_state"])
    return model.to(device).eval(), ckpt


@torch.no_grad()
def predict_slices(
    model: nn.Module, images: torch.Tensor, label_mode: str, batch_size: int = 16
) -> np.ndarray:
    """Hard predictions of slices ``(S, C, H, W)``: uint8 ``(S, H, W)`` for binary and
    multiclass (class indices), ``(S, C, H, W)`` for multilabel."""
    device = next(model.parameters()).device
    parts = []
    for start in range(0, images.shape[0], batch_size):
        logits = model(images[start : start + batch_size].to(device)).float()
        pred = hard_predict(logits, label_mode).cpu()
        parts.append(pred[:, 0] if label_mode == "binary" else pred)
    return torch.cat(parts).numpy().astype(np.uint8)


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
) -> Path:
    """Segment one case (one file, or one file per channel) and write its mask.

    Args:
        model: from :func:`load_model`.
        ckpt: the checkpoint :func:`load_model` returned (label mode and preprocessing).
        images: the case's image file(s): a NIfTI volume (or one per channel), or a 2D image.
        out: the output folder.
        roi: the ROI mask, for data normalised inside one (BraTS brain mask).
        batch_size: slices per forward pass.

    Returns:
        The mask file: NIfTI with the input's shape, affine and header (uint8; multilabel
        masks get the channels as a last axis), or PNG (binary 0/255, multiclass class
        indices, multilabel the last channel present).
    """
    paths = [Path(p) for p in images]
    label_mode = ckpt["wrapper_config"]["label_mode"]
    sliced, _ = prediction_input(_data_config(ckpt), paths, roi=roi)
    masks = predict_slices(model, sliced.images, label_mode, batch_size)
    volume = slices_to_volume(masks, sliced)
    target = mask_path(paths[0], out)
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_nifti(paths[0]):
        source = nib.load(str(paths[0]))
        if label_mode == "multilabel":
            volume = np.moveaxis(volume, 0, -1)
        header = source.header.copy()
        header.set_data_dtype(np.uint8)
        image = nib.Nifti1Image(volume.astype(np.uint8), source.affine, header)
        image.header.set_slope_inter(1.0, 0.0)
        nib.save(image, str(target))
        return target
    if label_mode == "binary":
        pixels = volume.astype(np.uint8) * 255
    elif label_mode == "multiclass":
        pixels = volume.astype(np.uint8)
    else:
        pixels = mask_to_labels(volume, "multilabel").astype(np.uint8)
    Image.fromarray(pixels).save(target)
    return target
