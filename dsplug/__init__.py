"""dsplug: deep supervision (μ-Net and friends) for any U-Net-style segmentation model."""

from .nets import UNet as UNet
from .nets import UNetPlusPlus as UNetPlusPlus

__all__ = ["UNet", "UNetPlusPlus"]
__version__ = "0.1.0"
