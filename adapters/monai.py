"""Adapters for MONAI's BasicUNet, DynUNet and AttentionUnet (2D and 3D).

MONAI is an optional extra (``dsplug[monai]``): without it this module imports cleanly and
registers nothing. Levels and channels come from each model's configuration, never from a
forward pass; the encoder is an :class:`EncoderView` over the model's own down-path blocks.

Example:
    >>> from monai.networks.nets import BasicUNet
    >>> from dsplug import DeepSupervised
    >>> net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=2)
    >>> ds = DeepSupervised(net, mode="hyb", label_mode="multiclass")
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

from ._probe import example_input
from .base import ALL_MODES, DecoderStage, ModelAdapter, UnsupportedModelError, register_adapter

try:
    from monai.networks.nets import AttentionUnet, BasicUNet, DynUNet
except ModuleNotFoundError as err:  # the optional extra is absent: register nothing
    if err.name is None or err.name.split(".")[0] != "monai":
        raise  # MONAI is installed but broken: say so, do not hide it
    MONAI_AVAILABLE = False
else:
    MONAI_AVAILABLE = True

__all__ = [
    "MONAI_AVAILABLE",
    "AttentionUnetAdapter",
    "BasicUNetAdapter",
    "DynUNetAdapter",
    "EncoderView",
]


class EncoderView(nn.Module):
    """The model's own down-path blocks (the very module objects, not copies), run in a chain.

    ``forward`` returns every block's output, shallowest first, the bottleneck last. A deep
    copy of the view (``auto`` mode) is an independent encoder with the same architecture.

    Args:
        blocks: the down-path blocks in the order the model calls them.
    """

    def __init__(self, blocks: Sequence[nn.Module]) -> None:
        super().__init__()
        if not blocks:
            raise ValueError("EncoderView needs at least one block; got none.")
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features


class _MonaiAdapter(ModelAdapter):
    """What the three MONAI adapters share: instance checks, the encoder view, the tied decoder.

    Subclasses implement :meth:`_problem` (why this instance cannot be wrapped, or None),
    :meth:`_stages` and :meth:`_encoder_paths`.
    """

    family: ClassVar[str] = "monai"

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self._stage_cache: list[DecoderStage] | None = None
        self._encoder_view: EncoderView | None = None

    # --- instance checks -----------------------------------------------------------------------
    def _problem(self) -> str | None:
        """Why this instance cannot be wrapped (with the fix), or None."""
        if self.spatial_dims not in (2, 3):
            return (
                f"it was built with spatial_dims={self.spatial_dims}; dsplug supports 2 and 3. "
                "Build it with spatial_dims=2 or 3."
            )
        return None

    def _check_model(self, mode: str | None = None) -> None:
        problem = self._problem()
        if problem is not None:
            wanted = f" with mode={mode!r}" if mode is not None else ""
            raise UnsupportedModelError(
                f"Cannot wrap {type(self.model).__name__} ({self.family} adapter){wanted}: "
                f"{problem}"
            )

    def check_supported(self, mode: str) -> None:
        self._check_model(mode)
        super().check_supported(mode)

    # --- decoder taps --------------------------------------------------------------------------
    def _stages(self) -> list[DecoderStage]:
        raise NotImplementedError

    def decoder_stages(self) -> list[DecoderStage]:
        if self._stage_cache is None:
            self._check_model()
            self._stage_cache = self._stages()
        return list(self._stage_cache)

    # --- encoder -------------------------------------------------------------------------------
    def _encoder_paths(self) -> list[str]:
        """Module paths of the down-path blocks, shallowest first, the bottleneck last."""
        raise NotImplementedError

    def encoder(self) -> nn.Module:
        if self._encoder_view is None:
            self._check_model()
            paths = self._encoder_paths()
            self._encoder_view = EncoderView([self.model.get_submodule(p) for p in paths])
        return self._encoder_view

    def example_input(self, encoder: nn.Module) -> torch.Tensor:
        """The reference input the tied decoder is traced at: twice the divisor per axis (so
        that instance norms see more than one value at the bottleneck), on the encoder's device
        and dtype."""
        return example_input(encoder, 1, self.in_channels, (2 * self.divisor,) * self.spatial_dims)

    def build_reconstruction_decoder(
        self, encoder: nn.Module, *, mask_classes: int | None, variational: bool
    ) -> nn.Module:
        from dsplug.tied.graph import GraphTiedDecoder  # lands separately; import when needed

        return GraphTiedDecoder(
            encoder,
            self.example_input(encoder),
            encode=self.encode,
            mask_classes=mask_classes,
            variational=variational,
        )


class BasicUNetAdapter(_MonaiAdapter):
    """MONAI ``BasicUNet``: levels ``upcat_1`` .. ``upcat_4`` (strides 1..8) and the bottleneck
    ``down_4`` (stride 16); the encoder is ``conv_0, down_1 .. down_4``. All modes."""

    _DOWN = ("conv_0", "down_1", "down_2", "down_3", "down_4")
    _UP = ("upcat_1", "upcat_2", "upcat_3", "upcat_4")

    @property
    def in_channels(self) -> int:
        return _first_conv(self.model.conv_0).in_channels

    @property
    def classes(self) -> int:
        return self.model.final_conv.out_channels

    @property
    def spatial_dims(self) -> int:
        return self.model.final_conv.weight.dim() - 2

    @property
    def divisor(self) -> int:
        return 2 ** (len(self._DOWN) - 1)  # four 2x max-poolings

    def _stages(self) -> list[DecoderStage]:
        stages = [
            DecoderStage(f"level{k}", path, _out_channels(self.model.get_submodule(path)), 2**k)
            for k, path in enumerate(self._UP)
        ]
        bottleneck = self._DOWN[-1]
        channels = _out_channels(self.model.get_submodule(bottleneck))
        stages.append(DecoderStage("bottleneck", bottleneck, channels, self.divisor))
        return stages

    def _encoder_paths(self) -> list[str]:
        return list(self._DOWN)


class DynUNetAdapter(_MonaiAdapter):
    """MONAI ``DynUNet``: levels ``upsamples.{K-1}`` .. ``upsamples.0`` and the bottleneck
    ``bottleneck``; the encoder is ``input_block, downsamples.*, bottleneck``. All modes.

    Refused at construction: a DynUNet built with its own ``deep_supervision=True`` (its output
    becomes a stacked tensor in training), a first stride other than 1 (its logits would not be
    at the input's resolution), and anisotropic or unit strides below the input block (every
    level must have its own single stride).
    """

    @property
    def in_channels(self) -> int:
        return self.model.in_channels

    @property
    def classes(self) -> int:
        return self.model.out_channels

    @property
    def spatial_dims(self) -> int:
        return self.model.spatial_dims

    @property
    def divisor(self) -> int:
        self._check_model()
        return math.prod(self._strides())

    def _strides(self) -> list[int | None]:
        """One stride per block; None where a block's stride differs between axes."""
        return [_isotropic(s, self.spatial_dims) for s in self.model.strides]

    def _problem(self) -> str | None:
        problem = super()._problem()
        if problem is not None:
            return problem
        if self.model.deep_supervision:
            return (
                "it was built with deep_supervision=True, which makes its training output a "
                "stacked (B, 1 + deep_supr_num, C, ...) tensor instead of the logits. Build it "
                "with deep_supervision=False: dsplug adds the deep supervision (e.g. "
                "mode='up' for side heads like DynUNet's own)."
            )
        strides = self._strides()
        if None in strides:
            return (
                f"it was built with anisotropic strides={list(self.model.strides)}; dsplug needs "
                "one stride per level, the same along every axis."
            )
        if strides[0] != 1:
            return (
                f"its input block has stride {strides[0]} (strides={list(self.model.strides)}), "
                "so its logits are smaller than the input. Build it with strides[0] = 1."
            )
        if any(s < 2 for s in strides[1:]):
            return (
                f"it was built with strides={list(self.model.strides)}; every stride after the "
                "first must be at least 2 (a stride of 1 puts two levels at the same resolution)."
            )
        return None

    def _stages(self) -> list[DecoderStage]:
        strides = self._strides()
        filters = list(self.model.filters)
        depth = len(strides) - 1  # K: the bottleneck's level
        stages = [
            DecoderStage(
                f"level{k}", f"upsamples.{depth - 1 - k}", filters[k], math.prod(strides[: k + 1])
            )
            for k in range(depth)
        ]
        stages.append(DecoderStage("bottleneck", "bottleneck", filters[depth], self.divisor))
        return stages

    def _encoder_paths(self) -> list[str]:
        downs = [f"downsamples.{i}" for i in range(len(self.model.downsamples))]
        return ["input_block", *downs, "bottleneck"]


class AttentionUnetAdapter(_MonaiAdapter):
    """MONAI ``AttentionUnet``: level k is the k-th nested ``AttentionLayer`` (its merged output),
    the bottleneck the deepest down-path ``ConvBlock``.

    Its attention gates read the decoder path at every level, so it has no encoder-decoder split
    that the reconstruction-driven modes could share: modes ``none``, ``deep``,
    ``seg``, ``up`` and ``down``. ``seg`` ties its decoder to an :class:`EncoderView` over the
    down-path conv blocks (``model.0`` and every ``...submodule.0``), which is exactly the chain
    the model runs before its bottleneck.
    """

    supported_modes: ClassVar[frozenset[str]] = frozenset({"none", "deep", "seg", "up", "down"})

    @property
    def in_channels(self) -> int:
        return self.model.in_channels

    @property
    def classes(self) -> int:
        return self.model.out_channels

    @property
    def spatial_dims(self) -> int:
        return self.model.dimensions

    @property
    def divisor(self) -> int:
        self._check_model()
        return math.prod(self._strides())

    def _strides(self) -> list[int | None]:
        """The stride of each down step (one fewer than the channels); None if anisotropic."""
        used = list(self.model.strides)[: len(self.model.channels) - 1]
        return [_isotropic(s, self.spatial_dims) for s in used]

    def check_supported(self, mode: str) -> None:
        self._check_model(mode)
        if mode not in self.supported_modes:
            refused = sorted(ALL_MODES - self.supported_modes)
            raise UnsupportedModelError(
                f"{type(self.model).__name__} ({self.family} adapter) does not support "
                f"mode={mode!r}: its attention gates interleave the encoder and decoder paths, "
                f"so dsplug does not offer the reconstruction-driven modes {refused} for it. "
                f"Supported modes are {sorted(self.supported_modes)}; for the others use "
                "BasicUNet or DynUNet."
            )

    def _problem(self) -> str | None:
        problem = super()._problem()
        if problem is not None:
            return problem
        strides = self._strides()
        if None in strides or any(s < 2 for s in strides):
            return (
                f"it was built with strides={list(self.model.strides)}; dsplug needs one stride "
                "of at least 2 per level, the same along every axis."
            )
        return None

    def _layer_path(self, depth: int) -> str:
        """Path of the AttentionLayer at ``depth`` (0: the outermost)."""
        return "model.1" + ".submodule.1" * depth

    def _stages(self) -> list[DecoderStage]:
        channels = list(self.model.channels)
        strides = self._strides()
        stages = [
            DecoderStage(f"level{k}", self._layer_path(k), channels[k], math.prod(strides[:k]))
            for k in range(len(channels) - 1)
        ]
        bottleneck = self._encoder_paths()[-1]
        stages.append(DecoderStage("bottleneck", bottleneck, channels[-1], self.divisor))
        return stages

    def _encoder_paths(self) -> list[str]:
        bottom = len(self.model.channels) - 2  # depth of the innermost AttentionLayer
        downs = [f"{self._layer_path(d)}.submodule.0" for d in range(bottom)]
        return ["model.0", *downs, f"{self._layer_path(bottom)}.submodule"]


def _isotropic(stride: int | Sequence[int], spatial_dims: int) -> int | None:
    """``stride`` as one int, or None when it differs between axes."""
    if isinstance(stride, int):
        return stride
    values = set(stride)
    if len(stride) != spatial_dims or len(values) != 1:
        return None
    return int(values.pop())


def _convs(module: nn.Module) -> list[_ConvNd]:
    """The forward (not transposed) convolutions inside ``module``, in registration order."""
    return [m for m in module.modules() if isinstance(m, _ConvNd) and not m.transposed]


def _first_conv(module: nn.Module) -> _ConvNd:
    return _convs(module)[0]


def _out_channels(module: nn.Module) -> int:
    """Channels of a MONAI block's output: those of its last convolution."""
    return _convs(module)[-1].out_channels


if MONAI_AVAILABLE:
    register_adapter(BasicUNet)(BasicUNetAdapter)
    register_adapter(DynUNet)(DynUNetAdapter)
    register_adapter(AttentionUnet)(AttentionUnetAdapter)
