"""dsplug: deep supervision (μ-Net and friends) for any U-Net-style segmentation model.

``import dsplug`` loads torch and the core (wrapper, modes, losses, nets, adapters); the trainer,
data, plots and the command line load when first used (``dsplug.Trainer`` included).
"""

from ._version import __version__ as __version__
from .losses import LossBreakdown as LossBreakdown
from .losses import LossWeights as LossWeights
from .modes import MODES as MODES
from .nets import UNet as UNet
from .nets import UNetPlusPlus as UNetPlusPlus
from .options import Mode as Mode
from .output import DSOutput as DSOutput
from .wrapper import DeepSupervised as DeepSupervised

__all__ = [
    "MODES",
    "DSOutput",
    "DeepSupervised",
    "LossBreakdown",
    "LossWeights",
    "Mode",
    "Trainer",
    "UNet",
    "UNetPlusPlus",
]


def __getattr__(name: str) -> object:
    """``dsplug.Trainer`` imports the training stack (tqdm, matplotlib, scipy) on first use."""
    if name == "Trainer":
        from .train import Trainer

        return Trainer
    raise AttributeError(f"module 'dsplug' has no attribute {name!r}")
