"""dsplug: deep supervision (μ-Net and friends) for any U-Net-style segmentation model."""

__version__ = "0.1.0"  # first: submodules read it

from .losses import LossBreakdown as LossBreakdown
from .losses import LossWeights as LossWeights
from .modes import MODES as MODES
from .nets import UNet as UNet
from .nets import UNetPlusPlus as UNetPlusPlus
from .output import DSOutput as DSOutput
from .train import Trainer as Trainer
from .wrapper import DeepSupervised as DeepSupervised

__all__ = [
    "MODES",
    "DSOutput",
    "DeepSupervised",
    "LossBreakdown",
    "LossWeights",
    "Trainer",
    "UNet",
    "UNetPlusPlus",
]
