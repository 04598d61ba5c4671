"""PNG figures of a run: learning curves and prediction overlays like the paper's Fig. 2."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.ticker import MaxNLocator

from ..options import LabelMode, choose
from .atomic import atomic_open

__all__ = ["OverlaySample", "mask_to_labels", "plot_curves", "plot_overlays"]

# Label colours: green first (a single organ, as Fig. 2), then BraTS-like yellow / red / white.
_COLOURS = ["#00c000", "#ffd000", "#ff2020", "#ffffff", "#2080ff", "#ff60ff", "#00e0e0"]
_METRICS = ("val_dice", "val_ppv", "val_sen", "val_iou", "val_avg_m")


@dataclass(frozen=True)
class OverlaySample:
    """One row of an overlay figure: a 2D image and label maps (0 background, k class k)."""

    image: np.ndarray
    truth: np.ndarray
    prediction: np.ndarray
    title: str


def mask_to_labels(mask: np.ndarray, label_mode: str) -> np.ndarray:
    """A 2D label map from a mask without batch dim.

    binary (1, H, W) and multilabel (C, H, W) {0, 1}: channel c drawn as label c + 1, later
    channels on top (nested BraTS regions WT, TC, ET stay visible); multiclass (H, W): as is.

    Raises:
        ValueError: unknown ``label_mode`` or a mask of the wrong rank.
    """
    label_mode = choose(label_mode, LabelMode, "label_mode")
    if label_mode is LabelMode.MULTICLASS:
        if mask.ndim != 2:
            raise ValueError(f"multiclass mask must be (H, W), got shape {mask.shape}.")
        return mask.astype(np.int64)
    if mask.ndim != 3:
        raise ValueError(f"{label_mode} mask must be (C, H, W), got shape {mask.shape}.")
    labels = np.zeros(mask.shape[1:], dtype=np.int64)
    for c in range(mask.shape[0]):
        labels[mask[c] > 0.5] = c + 1
    return labels


def _save(fig: Any, path: Path) -> None:
    """Write ``fig`` as a PNG atomically (an interrupted run never leaves half a PNG)."""
    try:
        fig.tight_layout()
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
    finally:
        plt.close(fig)


def plot_curves(history: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Training loss terms and validation metrics per epoch, best epoch marked.

    Args:
        history: one dict per epoch with ``epoch``, ``loss``, ``loss/<term>`` and ``val_*`` keys.
        path: the PNG to write.
    """
    path = Path(path)
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    loss_keys = [k for k in (history[0] if history else {}) if k == "loss" or k.startswith("loss/")]
    for key in loss_keys:
        values = [row.get(key, np.nan) for row in history]
        ax_loss.plot(epochs, values, marker=".", lw=2 if key == "loss" else 1, label=key)
    ax_loss.set(xlabel="epoch", ylabel="training loss (mean per step)", title="Training loss")
    values = [row[k] for row in history for k in loss_keys if k in row]
    if values and min(values) > 0:
        ax_loss.set_yscale("log")
    ax_loss.legend(fontsize=7)
    for key in _METRICS:
        if history and key in history[0]:
            ax_val.plot(epochs, [row[key] for row in history], marker=".", label=key[4:])
    if history and history[-1].get("best_epoch"):
        ax_val.axvline(history[-1]["best_epoch"], color="grey", ls="--", lw=1, label="best")
    ax_val.set(xlabel="epoch", ylabel="per case", title="Validation", ylim=(0, 1))
    ax_val.legend(fontsize=7)
    for ax in (ax_loss, ax_val):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _save(fig, path)
    return path


def _overlay(ax: Any, image: np.ndarray, labels: np.ndarray, n_labels: int) -> None:
    ax.imshow(image, cmap="gray", interpolation="nearest")
    colours = ListedColormap(["none", *(_COLOURS * 4)[:n_labels]])
    shown = np.ma.masked_equal(labels, 0)
    ax.imshow(shown, cmap=colours, vmin=0, vmax=n_labels, alpha=0.6, interpolation="nearest")


def plot_overlays(samples: Sequence[OverlaySample], path: str | Path) -> Path:
    """Rows of (image, truth, prediction), labels coloured over the image (paper's Fig. 2).

    Args:
        samples: the rows; ``image`` is (H, W) or (C, H, W) (the first channel is shown).
        path: the PNG to write.

    Raises:
        ValueError: no samples.
    """
    if not samples:
        raise ValueError("plot_overlays needs at least one sample, got none.")
    path = Path(path)
    n_labels = max(1, *(int(max(s.truth.max(), s.prediction.max())) for s in samples))
    fig, axes = plt.subplots(len(samples), 3, figsize=(9, 3 * len(samples)), squeeze=False)
    for row, sample in zip(axes, samples):
        image = sample.image[0] if sample.image.ndim == 3 else sample.image
        row[0].imshow(image, cmap="gray", interpolation="nearest")
        _overlay(row[1], image, sample.truth, n_labels)
        _overlay(row[2], image, sample.prediction, n_labels)
        row[0].set_ylabel(sample.title, fontsize=8)
        for ax, name in zip(row, ("image", "truth", "prediction")):
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(name, fontsize=9)
    _save(fig, path)
    return path
