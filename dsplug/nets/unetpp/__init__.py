"""The own U-Net++: model (wiring) and nested decoder."""

from .decoder import NestedBlock, UNetPlusPlusDecoder
from .model import UNetPlusPlus

__all__ = ["NestedBlock", "UNetPlusPlus", "UNetPlusPlusDecoder"]
