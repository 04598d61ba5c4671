"""Measure tap points with one small forward pass, so stage metadata matches the real model."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dsplug.hooks import FeatureHooks

__all__ = ["probe_taps"]


@torch.no_grad()
def probe_taps(
    model: nn.Module, taps: Sequence[tuple[str, int | None]], example: torch.Tensor
) -> list[tuple[int, int]]:
    """(channels, reduction) of each tap for ``example``, measured in eval mode.

    The model's train/eval flags are restored and its hooks removed afterwards.
    """
    flags = [(m, m.training) for m in model.modules()]
    hooks = FeatureHooks(model, taps)
    try:
        model.eval()
        with hooks.capture():
            model(example)
        outputs = hooks.pop(example.device)
    finally:
        hooks.remove()
        for m, training in flags:
            m.training = training
    size = example.shape[-1]
    return [(int(t.shape[1]), size // int(t.shape[-1])) for t in outputs]
