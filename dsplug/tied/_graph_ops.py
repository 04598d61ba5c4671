"""ATen op families the transposer knows, and small helpers to read FX nodes."""

from __future__ import annotations

import torch
from torch import fx

from . import _torch_private as P

__all__ = [
    "ACTIVATIONS",
    "CONV",
    "GATE_PASS",
    "GATE_PRODUCERS",
    "IDENTITY",
    "NORMS",
    "PADS",
    "POOLS",
    "REDUCTIONS",
    "RESHAPES",
    "RESIZES",
    "SPLITS",
    "base_name",
    "bind",
    "functional",
    "is_tensor_node",
    "ntuple",
    "packet",
    "val",
    "walk",
]

aten = torch.ops.aten


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


CONV = _names(
    "conv1d conv2d conv3d convolution _convolution conv_transpose1d conv_transpose2d "
    "conv_transpose3d"
)
NORMS = _names(
    "batch_norm native_batch_norm _native_batch_norm_legit _native_batch_norm_legit_no_training "
    "layer_norm native_layer_norm group_norm native_group_norm instance_norm rms_norm"
)
ACTIVATIONS = _names(
    "relu relu6 gelu silu hardswish hardsigmoid sigmoid tanh leaky_relu elu selu celu mish "
    "softplus hardtanh clamp clamp_min clamp_max softsign threshold prelu _prelu_kernel "
    "log_sigmoid"
)
POOLS = _names(
    "max_pool1d max_pool2d max_pool3d max_pool1d_with_indices max_pool2d_with_indices "
    "max_pool3d_with_indices avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d "
    "adaptive_avg_pool2d adaptive_avg_pool3d _adaptive_avg_pool2d _adaptive_avg_pool3d "
    "adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d"
)
RESIZES = _names(
    "upsample_nearest1d upsample_nearest2d upsample_nearest3d _upsample_nearest_exact1d "
    "_upsample_nearest_exact2d _upsample_nearest_exact3d upsample_linear1d upsample_bilinear2d "
    "upsample_bicubic2d upsample_trilinear3d _upsample_bilinear2d_aa _upsample_bicubic2d_aa"
)
IDENTITY = _names(
    "alias contiguous clone detach lift_fresh_copy _to_copy to type_as dropout feature_dropout "
    "alpha_dropout feature_alpha_dropout native_dropout"
)
RESHAPES = _names(
    "view reshape _unsafe_view flatten unflatten squeeze unsqueeze view_as reshape_as"
)
REDUCTIONS = _names("mean sum amax amin max min")
SPLITS = _names(
    "split split_with_sizes unsafe_split unsafe_split_with_sizes chunk unbind tensor_split"
)
PADS = _names(
    "pad constant_pad_nd reflection_pad1d reflection_pad2d reflection_pad3d replication_pad1d "
    "replication_pad2d replication_pad3d"
)
GATE_PRODUCERS = _names(
    "sigmoid hardsigmoid softmax _softmax _safe_softmax log_softmax _log_softmax"
)
GATE_PASS = IDENTITY | RESHAPES | _names("permute transpose t expand select slice")


def packet(node: fx.Node) -> str:
    """The op's name without overload (``aten.conv2d.default`` -> ``conv2d``)."""
    return P.op_name(node.target)


def base_name(name: str) -> str:
    """``relu_`` -> ``relu`` (in-place variants transpose like their functional forms)."""
    if name.endswith("_") and not name.endswith("__") and not name.startswith("__"):
        return name[:-1]
    return name


def functional(op: object) -> object:
    """The out-of-place overload of an in-place ATen op (the op itself otherwise)."""
    if not P.is_op(op):
        return op
    name = P.op_name(op)
    base = base_name(name)
    return op if base == name else P.out_of_place(op, base)


def bind(node: fx.Node) -> dict[str, object]:
    """The node's arguments by schema name, defaults filled in."""
    out: dict[str, object] = {}
    for i, (name, _, default) in enumerate(P.schema_arguments(node.target)):
        if i < len(node.args):
            out[name] = node.args[i]
        else:
            out[name] = node.kwargs.get(name, default)
    return out


def val(node: object) -> object:
    """The traced value (a FakeTensor, a tuple of them, or a SymInt) of a node."""
    return node.meta.get("val") if isinstance(node, fx.Node) else None


def is_tensor_node(node: object) -> bool:
    return isinstance(node, fx.Node) and isinstance(val(node), torch.Tensor)


def ntuple(value: object, n: int) -> tuple[int, ...]:
    """An int or a list of ints as an n-tuple."""
    if isinstance(value, int):
        return (value,) * n
    value = tuple(int(v) for v in value)
    return value * n if len(value) == 1 else value


def walk(args: object) -> list[fx.Node]:
    """The FX nodes inside nested arguments."""
    found: list[fx.Node] = []
    fx.node.map_arg(args, lambda a: found.append(a) or a)
    return found
