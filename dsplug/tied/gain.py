"""Unit-scale tied weights: the gain that keeps a transposed layer at its forward layer's scale."""

from __future__ import annotations

import math

import torch

__all__ = ["transpose_gain"]


def transpose_gain(weight: torch.Tensor, groups: int = 1, *, transposed: bool = False) -> float:
    """The factor sqrt(fan_in(W) / fan_in(W^T)) for using ``weight`` in the transposed direction.

    A conv or linear layer initialised for its fan-in (Kaiming) keeps activations at unit
    scale; run backwards as ``conv_transpose`` its fan-in is the forward fan-out, so each
    transposed layer scales activations by sqrt(C_out / C_in) and a tied decoder's output
    grows with the network's width (issue 7: L_rei ~ 57 on a base-64 U-Net). The decoders
    multiply each transposed layer's input by this constant, so the layer still reads the
    encoder's very weight tensor and stays at the forward layer's scale. Kernel taps cancel:
    both fan-ins count them.

    Args:
        weight: (C_out, C_in / groups, *kernel) for a conv, (out, in) for a linear layer;
            (C_in, C_out / groups, *kernel) when ``transposed`` (a forward ``conv_transpose``).
        groups: the layer's groups.
        transposed: ``weight`` belongs to a forward ``conv_transpose`` (undone by a conv).
    """
    per_group_out = weight.shape[0] / groups
    per_group_in = weight.shape[1]
    if transposed:
        return math.sqrt(per_group_out / per_group_in)
    return math.sqrt(per_group_in / per_group_out)
