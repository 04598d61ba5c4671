"""Label modes: checking targets, turning them into loss targets and into network inputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import ShapeError, look_up_option

__all__ = [
    "LABEL_MODES",
    "check_label_mode",
    "check_target",
    "dense_target",
    "mask_as_input",
    "to_probabilities",
]

LABEL_MODES = ("binary", "multilabel", "multiclass")


def _expected(label_mode: str, batch: int, classes: int, spatial: tuple[int, ...]) -> str:
    dims = ", ".join(map(str, spatial))
    if label_mode == "binary":
        return f"({batch}, 1, {dims}) with values in {{0, 1}}"
    if label_mode == "multilabel":
        return f"({batch}, {classes}, {dims}) with values in {{0, 1}}"
    return f"({batch}, {dims}) or ({batch}, 1, {dims}) integer class indices in [0, {classes})"


def check_target(
    y: torch.Tensor, logits_shape: tuple[int, ...], label_mode: str, *, check_values: bool = True
) -> None:
    """Raise a clear error unless ``y`` fits logits of ``logits_shape`` in ``label_mode``."""
    look_up_option(label_mode, LABEL_MODES, "label_mode")
    batch, classes, spatial = logits_shape[0], logits_shape[1], tuple(logits_shape[2:])
    expected = _expected(label_mode, batch, classes, spatial)
    shape = tuple(y.shape)
    if label_mode == "multiclass":
        ok = shape in ((batch, *spatial), (batch, 1, *spatial))
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
    if label_mode == "multiclass":
        if y.is_floating_point() and not bool(torch.all(y == y.round())):
            raise ValueError(
                f"Multiclass target must hold integer class indices, got dtype {y.dtype} with "
                "fractional values."
            )
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= classes:
            raise ValueError(
                f"Multiclass target has class indices in [{low}, {high}], expected [0, {classes})"
                f" for a model with {classes} output channels."
            )
    else:
        if not bool(((y == 0) | (y == 1)).all()):
            values = torch.unique(y.float())[:8].tolist()
            raise ValueError(
                f"{label_mode.capitalize()} target must hold only 0 and 1, got values "
                f"{values}{'...' if torch.unique(y).numel() > 8 else ''}. Binarise the mask, or "
                "use label_mode='multiclass' for class indices."
            )


def check_label_mode(label_mode: str, classes: int, model_name: str = "the model") -> None:
    """Raise unless a model with ``classes`` output channels fits ``label_mode``."""
    look_up_option(label_mode, LABEL_MODES, "label_mode")
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
    int64 (B, *) class indices for multiclass (a (B, 1, *) multiclass target is squeezed)."""
    if label_mode == "multiclass":
        if y.dim() == spatial_dims + 2:
            y = y[:, 0]
        return y.long()
    return y.float()


def one_hot(y: torch.Tensor, classes: int) -> torch.Tensor:
    """(B, *) class indices -> float (B, C, *)."""
    return F.one_hot(y.long(), classes).movedim(-1, 1).float()


def to_probabilities(logits: torch.Tensor, label_mode: str) -> torch.Tensor:
    """Sigmoid per channel (binary, multilabel) or softmax over channels (multiclass)."""
    return logits.softmax(dim=1) if label_mode == "multiclass" else logits.sigmoid()


def mask_as_input(
    y: torch.Tensor, label_mode: str, classes: int, in_channels: int, spatial_dims: int
) -> torch.Tensor:
    """Map a target G to the model's input space (SPEC §2), for the G pass.

    binary: G; multiclass: class index / (C - 1); multilabel: the mean of its channels; then
    replicated across the ``in_channels`` input channels. Returns float (B, in_channels, *).
    """
    if label_mode == "multiclass":
        g = (dense_target(y, label_mode, spatial_dims).float() / (classes - 1)).unsqueeze(1)
    elif label_mode == "multilabel":
        g = y.float().mean(dim=1, keepdim=True)
    else:
        g = y.float()
    return g.expand(-1, in_channels, *g.shape[2:]).contiguous()
