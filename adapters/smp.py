"""Adapters for segmentation-models-pytorch 0.6: Unet, UnetPlusPlus, MAnet, Linknet, FPN with
any encoder. The reconstruction decoder is derived from the encoder's own graph."""

from __future__ import annotations

from typing import ClassVar

import segmentation_models_pytorch as smp
import torch
from torch import nn

from ._probe import example_input, probe_taps
from .base import DecoderStage, ModelAdapter, register_adapter

__all__ = ["SmpAdapter", "SmpFPNAdapter", "SmpUnetPlusPlusAdapter"]


@register_adapter(smp.Unet, smp.MAnet, smp.Linknet)
class SmpAdapter(ModelAdapter):
    """Decoder levels ``decoder.blocks.0..n`` plus the bottleneck ``encoder(x)[-1]``.

    Channels and strides are measured once with a small probe forward at construction; a
    decoder level at the bottleneck's stride (or deeper) is left to the bottleneck.
    """

    family: ClassVar[str] = "smp"

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        taps = [*self._decoder_taps(), ("encoder", -1)]
        measured = probe_taps(model, taps, self._example(model, 1))
        *levels, (bottleneck_channels, bottleneck_reduction) = measured
        stages = {}
        for (path, index), (channels, reduction) in zip(taps, levels):
            if channels and reduction < bottleneck_reduction:
                stages[reduction] = DecoderStage(
                    f"level{reduction.bit_length() - 1}", path, channels, reduction, index
                )
        self._stages = [stages[r] for r in sorted(stages)]
        self._stages.append(
            DecoderStage("bottleneck", "encoder", bottleneck_channels, bottleneck_reduction, -1)
        )

    def _example(self, module: nn.Module, batch: int) -> torch.Tensor:
        """The probe's and the trace's input: twice the divisor per axis, on ``module``'s device
        and dtype."""
        return example_input(module, batch, self.in_channels, (2 * self.divisor,) * 2)

    def _decoder_taps(self) -> list[tuple[str, int | None]]:
        return [(f"decoder.blocks.{i}", None) for i in range(len(self.model.decoder.blocks))]

    @property
    def in_channels(self) -> int:
        return int(self.model.encoder._in_channels)

    @property
    def classes(self) -> int:
        return int(self.model.segmentation_head[0].out_channels)

    @property
    def divisor(self) -> int:
        return int(getattr(self.model.encoder, "output_stride", 32))

    def decoder_stages(self) -> list[DecoderStage]:
        return list(self._stages)

    def encoder(self) -> nn.Module:
        return self.model.encoder

    def build_reconstruction_decoder(
        self, encoder: nn.Module, *, mask_classes: int | None, variational: bool
    ) -> nn.Module:
        from dsplug.tied.graph import GraphTiedDecoder

        return GraphTiedDecoder(
            encoder, self._example(encoder, 2), mask_classes=mask_classes, variational=variational
        )


@register_adapter(smp.UnetPlusPlus)
class SmpUnetPlusPlusAdapter(SmpAdapter):
    """The final expansive path ``decoder.blocks.x_0_0..x_0_n`` (its ``center`` never runs)."""

    def _decoder_taps(self) -> list[tuple[str, int | None]]:
        names = sorted(k for k in self.model.decoder.blocks if k.startswith("x_0_"))
        return [(f"decoder.blocks.{k}", None) for k in names]


@register_adapter(smp.FPN)
class SmpFPNAdapter(SmpAdapter):
    """The pyramid ``decoder.p2..p4`` (``p5`` sits at the bottleneck's stride)."""

    def _decoder_taps(self) -> list[tuple[str, int | None]]:
        return [(f"decoder.p{i}", None) for i in (2, 3, 4)]
