"""Building blocks shared by the own networks; 2D and 3D through op types (as nnU-Net's conv_op)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from .._checks import look_up_option

__all__ = ["NORMS", "ConvBlock", "ConvNormAct", "Ops", "resolve_ops"]

NORMS = ("batch", "instance")


@dataclass(frozen=True)
class Ops:
    """The layer types one network uses, resolved once from ``spatial_dims`` and ``norm``."""

    spatial_dims: int
    conv: type[nn.Module]
    conv_transpose: type[nn.Module]
    pool: type[nn.Module]
    norm: type[nn.Module]
    norm_name: str

    def make_norm(self, channels: int) -> nn.Module:
        """A norm layer for ``channels`` features (instance norm with affine parameters)."""
        if self.norm_name == "instance":
            return self.norm(channels, affine=True)
        return self.norm(channels)


def resolve_ops(spatial_dims: int, norm: str) -> Ops:
    """Resolve the 2D or 3D op types and the norm by name; unknown values raise."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}.")
    look_up_option(norm, NORMS, "norm")
    conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
    conv_t = nn.ConvTranspose2d if spatial_dims == 2 else nn.ConvTranspose3d
    pool = nn.MaxPool2d if spatial_dims == 2 else nn.MaxPool3d
    if norm == "batch":
        norm_t = nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d
    else:
        norm_t = nn.InstanceNorm2d if spatial_dims == 2 else nn.InstanceNorm3d
    return Ops(spatial_dims, conv, conv_t, pool, norm_t, norm)


class ConvNormAct(nn.Sequential):
    """3x3 convolution (no bias: the norm follows), norm, ReLU."""

    # Python-side only: TorchScript would compile the property and fail on its annotation
    __jit_unused_properties__: ClassVar[tuple[str, ...]] = ("conv",)

    def __init__(self, ops: Ops, in_channels: int, out_channels: int) -> None:
        super().__init__(
            ops.conv(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            ops.make_norm(out_channels),
            nn.ReLU(inplace=True),
        )

    @property
    def conv(self) -> nn.Module:
        return self[0]


class ConvBlock(nn.Sequential):
    """Two ConvNormAct layers: the unit of every U-Net level."""

    def __init__(self, ops: Ops, in_channels: int, out_channels: int) -> None:
        super().__init__(
            ConvNormAct(ops, in_channels, out_channels),
            ConvNormAct(ops, out_channels, out_channels),
        )
        self.in_channels = in_channels
        self.out_channels = out_channels

    def convs(self) -> list[nn.Module]:
        """The block's convolutions in forward order."""
        return [layer.conv for layer in self]


def level_channels(base_channels: int, depth: int) -> list[int]:
    """Channels per level, k = base * 2^i (the paper's 64 * 2^i)."""
    return [base_channels * 2**i for i in range(depth)]


def check_net_args(in_channels: int, classes: int, base_channels: int, depth: int) -> None:
    """Validate the integer arguments shared by the own networks."""
    for name, value, low in (
        ("in_channels", in_channels, 1),
        ("classes", classes, 1),
        ("base_channels", base_channels, 1),
        ("depth", depth, 2),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal initialisation of convolutions, as nnU-Net's InitWeights_He."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Conv3d | nn.ConvTranspose2d | nn.ConvTranspose3d):
            nn.init.kaiming_normal_(m.weight, a=1e-2)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
