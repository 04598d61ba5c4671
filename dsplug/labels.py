"""Label modes: checking targets, turning them into loss targets and into network inputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import ShapeError, look_up_option
from .options import LabelMode

__all__ = [
    "check_label_mode",
    "check_target",
    "dense_target",
    "mask_as_input",
    "to_probabilities",
]


def _expected(label_mode: str, batch: int, classes: int, spatial: tuple[int, ...]) -> str:
    dims = ", ".join(map(str, spatial))
    if label_mode == "binary":
        return f"({batch}, 1, {dims}) with values in {{0, 1}}"
    if label_mode == "multilabel":
        return f"({batch}, {classes}, {dims}) with values in {{0, 1}}"
    return (
        f"({batch}, {dims}) or ({batch}, 1, {dims}) integer class indices in [0, {classes}), "
        f"or a one-hot ({batch}, {classes}, {dims})"
    )


def _check_one_hot(y: torch.Tensor) -> None:
    if not (bool(((y == 0) | (y == 1)).all()) and bool((y.sum(dim=1) == 1).all())):
        raise ValueError(
            f"A multiclass target of shape {tuple(y.shape)} is read as one-hot (B, C, *), but it "
            "is not: every pixel needs exactly one 1 over the C channels. Pass class indices "
            "(B, *) instead (with ignore_index for pixels to ignore), or use "
            "label_mode='multilabel' for overlapping labels."
        )


def _check_values(y: torch.Tensor, label_mode: str, classes: int, ignore_index: int | None) -> None:
    kept = y if ignore_index is None else y[y != ignore_index]
    note = "" if ignore_index is None else f" (besides ignore_index={ignore_index})"
    if label_mode == "multiclass":
        if y.is_floating_point() and not bool(torch.all(y == y.round())):
            raise ValueError(
                f"Multiclass target must hold integer class indices, got dtype {y.dtype} with "
                "fractional values."
            )
        if kept.numel() == 0:
            return
        low, high = int(kept.min()), int(kept.max())
        if low < 0 or high >= classes:
            raise ValueError(
                f"Multiclass target has class indices in [{low}, {high}]{note}, expected "
                f"[0, {classes}) for a model with {classes} output channels"
                + ("" if ignore_index is not None else "; pass ignore_index=... for a void label")
                + "."
            )
    elif not bool(((kept == 0) | (kept == 1)).all()):
        values = torch.unique(kept.float())
        shown = values[:8].tolist()
        raise ValueError(
            f"{label_mode.capitalize()} target must hold only 0 and 1{note}, got values "
            f"{shown}{'...' if values.numel() > 8 else ''}. Binarise the mask, use "
            "label_mode='multiclass' for class indices, or pass ignore_index for a void label."
        )


def check_target(
    y: torch.Tensor,
    logits_shape: tuple[int, ...],
    label_mode: str,
    *,
    check_values: bool = True,
    ignore_index: int | None = None,
) -> None:
    """Raise a clear error unless ``y`` fits logits of ``logits_shape`` in ``label_mode``.

    A multiclass target may be class indices, (B, *) or (B, 1, *), or one-hot (B, C, *) with
    exactly one 1 per pixel. Values equal to ``ignore_index`` are accepted in every label mode
    (in index and binary layouts).
    """
    look_up_option(label_mode, LabelMode, "label_mode")
    batch, classes, spatial = logits_shape[0], logits_shape[1], tuple(logits_shape[2:])
    expected = _expected(label_mode, batch, classes, spatial)
    shape = tuple(y.shape)
    one_hot_layout = shape == (batch, classes, *spatial) and classes >= 2
    if label_mode == "multiclass":
        ok = shape in ((batch, *spatial), (batch, 1, *spatial)) or one_hot_layout
    elif label_mode == "binary":
        ok = shape == (batch, 1, *spatial)
    else:
        ok = shape == (batch, classes, *spatial)
    if not ok:
        raise ShapeError(
            f"Target shape {shape} does not match the image / logits "
            f"{tuple(logits_shape)} in label_mode={label_mode!r}: expected {expected}.",
            shape,
            expected,
        )
    if not check_values:
        return
    if label_mode == "multiclass" and one_hot_layout:
        _check_one_hot(y)
    else:
        _check_values(y, label_mode, classes, ignore_index)


def check_label_mode(label_mode: str, classes: int, model_name: str = "the model") -> None:
    """Raise unless a model with ``classes`` output channels fits ``label_mode``."""
    look_up_option(label_mode, LabelMode, "label_mode")
    if label_mode == "binary" and classes != 1:
        raise ValueError(
            f"label_mode='binary' needs a model with 1 output channel, but {model_name} has "
            f"{classes}; use label_mode='multilabel' or 'multiclass' for several classes."
        )
    if label_mode == "multiclass" and classes < 2:
        raise ValueError(
            f"label_mode='multiclass' needs at least 2 output channels (background included), "
            f"but {model_name} has {classes}."
        )


def dense_target(y: torch.Tensor, label_mode: str, spatial_dims: int) -> torch.Tensor:
    """The target as the loss functions take it: float (B, C, *) for binary/multilabel,
    int64 (B, *) class indices for multiclass (a (B, 1, *) multiclass target is squeezed, a
    one-hot (B, C, *) one becomes its argmax)."""
    if label_mode == "multiclass":
        if y.dim() == spatial_dims + 2:
            y = y[:, 0] if y.shape[1] == 1 else y.argmax(dim=1)
        return y.long()
    return y.float()


def one_hot(y: torch.Tensor, classes: int) -> torch.Tensor:
    """(B, *) class indices -> float (B, C, *)."""
    return F.one_hot(y.long(), classes).movedim(-1, 1).float()


def to_probabilities(logits: torch.Tensor, label_mode: str) -> torch.Tensor:
    """Sigmoid per channel (binary, multilabel) or softmax over channels (multiclass)."""
    return logits.softmax(dim=1) if label_mode == "multiclass" else logits.sigmoid()


def mask_as_input(
    y: torch.Tensor,
    label_mode: str,
    classes: int,
    in_channels: int,
    spatial_dims: int,
    ignore_index: int | None = None,
) -> torch.Tensor:
    """Map a target G to the model's input space (§3.1: G fed as an input), for the G pass.

    binary: G; multiclass: class index / (C - 1); multilabel: the mean of its channels; then
    replicated across the ``in_channels`` input channels. Pixels equal to ``ignore_index`` are
    fed as background (0). Returns float (B, in_channels, *).
    """
    g = dense_target(y, label_mode, spatial_dims)
    if ignore_index is not None:
        g = g.masked_fill(g == ignore_index, 0)
    if label_mode == "multiclass":
        g = (g.float() / (classes - 1)).unsqueeze(1)
    elif label_mode == "multilabel":
        g = g.mean(dim=1, keepdim=True)
    return g.expand(-1, in_channels, *g.shape[2:]).contiguous()
