"""dsplug's own networks: U-Net and U-Net++, 2D and 3D."""

from .blocks import ConvBlock, ConvNormAct, Ops, resolve_ops
from .encoder import UNetEncoder
from .unet import UNet
from .unetpp import UNetPlusPlus

__all__ = ["ConvBlock", "ConvNormAct", "Ops", "UNet", "UNetEncoder", "UNetPlusPlus", "resolve_ops"]
