"""Measure tap points with one small forward pass, so stage metadata matches the real model."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dsplug.hooks import FeatureHooks

__all__ = ["example_input", "probe_taps"]


def example_input(
    module: nn.Module, batch: int, channels: int, spatial: tuple[int, ...]
) -> torch.Tensor:
    """Zeros (batch, channels, *spatial) on ``module``'s device and in its floating dtype (the
    first floating parameter's; float32 for a module without one), so that probes and traces
    run on a ``.double()``, half or CUDA model as it is."""
    param = next((p for p in module.parameters() if p.is_floating_point()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    return torch.zeros(batch, channels, *spatial, device=device, dtype=dtype)


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
