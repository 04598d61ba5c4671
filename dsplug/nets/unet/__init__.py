"""The own U-Net: model (wiring) and decoder (expansive path)."""

from .decoder import UNetDecoder, UpBlock
from .model import UNet

__all__ = ["UNet", "UNetDecoder", "UpBlock"]
