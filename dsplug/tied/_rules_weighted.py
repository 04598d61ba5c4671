"""Rules for the weighted ops: conv -> conv_transpose with the same weight (and back),
linear -> linear with the transposed weight, a matmul with a constant -> a matmul with its
transpose. A matmul of two image-dependent tensors is attention: see :mod:`._rules_attention`.
"""

from __future__ import annotations

from torch import fx

from . import _graph_ops as O
from . import _graph_steps as S
from ._graph_plan import to_expr
from ._rule_protocol import TransposeContext
from ._rules import Rule, rule_table
from ._rules_attention import token_map

__all__ = ["RULES", "conv", "linear", "matmul"]


def conv(t: TransposeContext, node: fx.Node, name: str) -> None:
    """conv -> conv_transpose with the same weight (a forward conv_transpose -> conv)."""
    a = O.bind(node)
    x, w = a["input"], a["weight"]
    dst = t.need(node, x, "input")
    if t.xdep.get(w, False):
        raise t.error(node, "its weight is computed from the image (dynamic conv)")
    w_shape = tuple(int(s) for s in O.val(w).shape)
    dims = len(w_shape) - 2
    transposed = name.startswith("conv_transpose") or bool(a.get("transposed", False))
    stride = O.ntuple(a.get("stride", 1), dims)
    dilation = O.ntuple(a.get("dilation", 1), dims)
    groups = int(a.get("groups", 1) or 1)
    padding = a.get("padding", 0)
    crop = None
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0,) * dims
        else:  # "same" (stride 1): pad total d*(k-1), the left half rounded down
            totals = [d * (k - 1) for d, k in zip(dilation, w_shape[2:])]
            crop = tuple(total // 2 for total in totals)
            padding = (0,) * dims
    else:
        padding = O.ntuple(padding, dims)
    if transposed and any(int(p) for p in O.ntuple(a.get("output_padding", 0), dims)):
        raise t.error(node, "a forward conv_transpose with output_padding")
    in_shape = O.val(x).shape
    t.add(
        S.ConvT(
            t.out_slot(node),
            node.name,
            dst=dst,
            weight=t.weight(w),
            bias=t.bias(node, w, int(in_shape[1])),
            dims=dims,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            kernel=w_shape[2:],
            in_at=t.plan.add_shape(in_shape[2:]),
            crop=crop,
            forward_transposed=transposed,
        )
    )


def linear(t: TransposeContext, node: fx.Node, name: str) -> None:
    """linear -> linear with the transposed weight and an own bias."""
    a = O.bind(node)
    x, w = a["input"], a["weight"]
    dst = t.need(node, x, "input")
    if t.xdep.get(w, False):
        raise t.error(node, "its weight is computed from the image")
    channels = int(O.val(w).shape[1])
    t.add(
        S.LinearT(
            t.out_slot(node),
            node.name,
            dst=dst,
            weight=t.weight(w),
            bias=t.bias(node, w, channels),
        )
    )


def matmul(t: TransposeContext, node: fx.Node, name: str) -> None:
    """A matmul with a constant -> with its transpose; with a gate operand -> attention."""
    a, b = node.args[0], node.args[1]
    xa, xb = bool(t.xdep.get(a, False)), bool(t.xdep.get(b, False))
    if xa != xb:  # one image-dependent operand, one constant
        x, const = (a, b) if xa else (b, a)
        t.add(
            S.MatmulConstT(
                t.out_slot(node),
                node.name,
                dst=t.slot(x),
                const=t.weight(const),
                const_on_right=xa,
                reduce_at=_batch_reduce(t, x, node),
            )
        )
    elif t.gate_like(a):  # attention: softmax(QK^T) @ V -> V gets the tokens mapped
        token_map(t, node, b, token_dim=-2)
    elif t.gate_like(b):
        token_map(t, node, a, token_dim=-1)
    else:
        raise t.error(node, "a product of two image-dependent tensors with no gate")


def _batch_reduce(t: TransposeContext, operand: fx.Node, out: fx.Node) -> tuple[int, ...] | None:
    """The operand's shape when the product broadcast its batch dims, else None."""
    so, sn = O.val(operand).shape, O.val(out).shape
    if len(so) == len(sn) and all(to_expr(x) == to_expr(y) for x, y in zip(so[:-2], sn[:-2])):
        return None
    return t.shape_at(operand)


RULES: dict[str, Rule] = rule_table(
    (O.CONV, conv),
    ({"linear"}, linear),
    ({"matmul", "mm", "bmm"}, matmul),
)
