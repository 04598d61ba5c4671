"""dsplug's own U-Net++, the backbone of the paper's μ-Net-Hyb++."""

from __future__ import annotations

from ..unet.model import UNet
from .decoder import UNetPlusPlusDecoder

__all__ = ["UNetPlusPlus"]


class UNetPlusPlus(UNet):
    """A U-Net++ with the same encoder, head, arguments and checks as :class:`dsplug.UNet`.

    Example:
        >>> net = UNetPlusPlus(in_channels=1, classes=1, base_channels=8, depth=3)
        >>> net(torch.zeros(1, 1, 32, 32)).shape
        torch.Size([1, 1, 32, 32])
    """

    decoder_type = UNetPlusPlusDecoder
