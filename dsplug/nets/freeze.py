"""Freezing a part of a network, as smp's ``SegmentationModel.freeze_encoder`` does.

Frozen: every parameter has ``requires_grad=False`` and every normalisation layer that keeps
running statistics (BatchNorm, InstanceNorm) stays in eval mode, so a training step changes
neither its weights nor its statistics. Unlike smp, unfreezing returns the normalisation layers
to the mode of the network around them (eval stays eval).
"""

from __future__ import annotations

from torch import nn

__all__ = ["NORM_LAYERS", "set_frozen", "set_norms_training"]

NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
)
"""The layers with running statistics (smp's ``_NormBase``, named by public classes)."""


def set_norms_training(module: nn.Module, training: bool) -> None:
    """Put every normalisation layer inside ``module`` in training (or eval) mode."""
    for m in module.modules():
        if isinstance(m, NORM_LAYERS):
            m.train(training)


def set_frozen(module: nn.Module, frozen: bool, training: bool) -> None:
    """Freeze (or unfreeze) ``module``'s parameters and normalisation layers; ``training`` is
    the mode of the network around it, which unfrozen normalisation layers take."""
    for p in module.parameters():
        p.requires_grad_(not frozen)
    set_norms_training(module, training and not frozen)
