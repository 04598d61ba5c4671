"""Losses: the pieces (L_BD, L_B, MSE), the weights, and one class per mode."""

from .base import DeepSupervisionLoss, LossBreakdown, Term
from .modes import (
    LOSSES,
    AutoLoss,
    DeepLoss,
    DownLoss,
    HybLoss,
    NoneLoss,
    RecLoss,
    SegLoss,
    UpLoss,
    VAELoss,
)
from .schedule import epoch_progress, schedule_factor
from .terms import bce_dice, cross_entropy, feature_mse, soft_dice
from .weights import PRESETS, LossWeights

__all__ = [
    "LOSSES",
    "PRESETS",
    "AutoLoss",
    "DeepLoss",
    "DeepSupervisionLoss",
    "DownLoss",
    "HybLoss",
    "LossBreakdown",
    "LossWeights",
    "NoneLoss",
    "RecLoss",
    "SegLoss",
    "Term",
    "UpLoss",
    "VAELoss",
    "bce_dice",
    "cross_entropy",
    "epoch_progress",
    "feature_mse",
    "schedule_factor",
    "soft_dice",
]
