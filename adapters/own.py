"""Adapter for dsplug's own U-Net and U-Net++."""

from __future__ import annotations

from torch import nn

from dsplug.nets import UNet, UNetPlusPlus
from dsplug.nets.unetpp.decoder import UNetPlusPlusDecoder
from dsplug.tied.own import OwnTiedDecoder

from .base import DecoderStage, ModelAdapter, register_adapter

__all__ = ["OwnNetAdapter"]


@register_adapter(UNet, UNetPlusPlus)
class OwnNetAdapter(ModelAdapter):
    """Levels 0..K-1 are the decoder's blocks, level K the encoder's bottleneck.

    For U-Net++ the levels are the nodes of the final expansive path, X^{k, K-k}.
    """

    family = "dsplug"
    model: UNet

    @property
    def in_channels(self) -> int:
        return self.model.in_channels

    @property
    def classes(self) -> int:
        return self.model.classes

    @property
    def spatial_dims(self) -> int:
        return self.model.spatial_dims

    @property
    def divisor(self) -> int:
        return self.model.divisor

    def decoder_stages(self) -> list[DecoderStage]:
        channels = self.model.encoder.channels
        top = len(channels) - 1
        nested = isinstance(self.model.decoder, UNetPlusPlusDecoder)
        stages = []
        for k in range(top):
            path = f"decoder.blocks.x_{k}_{top - k}" if nested else f"decoder.blocks.{top - 1 - k}"
            stages.append(DecoderStage(f"level{k}", path, channels[k], 2**k))
        stages.append(DecoderStage("bottleneck", "encoder", channels[top], 2**top, -1))
        return stages

    def encoder(self) -> nn.Module:
        return self.model.encoder

    def build_reconstruction_decoder(
        self, encoder: nn.Module, *, mask_classes: int | None, variational: bool
    ) -> nn.Module:
        return OwnTiedDecoder(encoder, mask_classes=mask_classes, variational=variational)
