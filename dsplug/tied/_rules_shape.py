"""Rules for ops that move values without computing: identity-like ops pass through, reshapes
reshape back, permutes invert, expand sums, select/slice scatter into zeros, cat/stack split,
split/chunk/unbind concatenate, pad crops, roll rolls back, pixel (un)shuffle inverts, flip
flips back.
"""

from __future__ import annotations

import torch
from torch import fx

from . import _graph_ops as O
from . import _graph_steps as S
from ._graph_plan import to_expr
from ._rule_protocol import TransposeContext
from ._rules import Rule, rule_table

aten = torch.ops.aten

__all__ = [
    "RULES",
    "cat",
    "expand",
    "flip",
    "identity",
    "pad",
    "permute",
    "pixel_shuffle",
    "roll",
    "select",
    "slice_",
    "split",
]


def identity(t: TransposeContext, node: fx.Node, name: str) -> None:
    """Identity-like ops pass the reconstruction through; reshapes reshape it back."""
    src = t.out_slot(node)
    x = node.args[0]
    dst = t.need(node, x, "input")
    if t.same_shape(x, node):
        t.add(S.FanOut(src, node.name, targets=((dst, 1.0, None),)))
    else:
        t.add(S.ReshapeT(src, node.name, dst=dst, shape_at=t.shape_at(x)))


def permute(t: TransposeContext, node: fx.Node, name: str) -> None:
    """permute/transpose -> the inverse permutation."""
    x = node.args[0]
    ndim = len(O.val(x).shape)
    if name == "permute":
        perm = [int(d) % ndim for d in node.args[1]]
    else:  # transpose / t / swapaxes
        d0, d1 = (node.args[1], node.args[2]) if len(node.args) > 2 else (0, 1)
        perm = list(range(ndim))
        perm[int(d0) % ndim], perm[int(d1) % ndim] = perm[int(d1) % ndim], perm[int(d0) % ndim]
    inverse = [0] * ndim
    for i, p in enumerate(perm):
        inverse[p] = i
    t.add(
        S.TransposeT(t.out_slot(node), node.name, dst=t.need(node, x, "input"), perm=tuple(inverse))
    )


def expand(t: TransposeContext, node: fx.Node, name: str) -> None:
    """expand -> a sum over the expanded dims."""
    x = node.args[0]
    t.add(
        S.FanOut(
            t.out_slot(node),
            node.name,
            targets=((t.need(node, x, "input"), 1.0, t.reduce_at(x, node)),),
        )
    )


def select(t: TransposeContext, node: fx.Node, name: str) -> None:
    """select -> scatter into zeros of the input's shape."""
    x, dim, index = node.args[0], int(node.args[1]), node.args[2]
    t.add(
        S.SelectT(
            t.out_slot(node),
            node.name,
            dst=t.need(node, x, "input"),
            dim=dim,
            index=t.sym(index),
            shape_at=t.shape_at(x),
        )
    )


def slice_(t: TransposeContext, node: fx.Node, name: str) -> None:
    """slice/narrow -> scatter into zeros of the input's shape."""
    a = O.bind(node)
    x = a["self"]
    if name == "narrow":
        start = to_expr(O.val(a["start"]) if isinstance(a["start"], fx.Node) else a["start"])
        length = to_expr(O.val(a["length"]) if isinstance(a["length"], fx.Node) else a["length"])
        start_arg = S.Arg("plan", t.plan.add(start))
        end_arg = S.Arg("plan", t.plan.add(start + length))
        step = 1
    else:
        start_arg, end_arg = t.sym(a.get("start")), t.sym(a.get("end"))
        step = int(a.get("step") or 1)
    t.add(
        S.SliceT(
            t.out_slot(node),
            node.name,
            dst=t.need(node, x, "input"),
            dim=int(a.get("dim") or 0),
            start=start_arg,
            end=end_arg,
            step=step,
            shape_at=t.shape_at(x),
        )
    )


def cat(t: TransposeContext, node: fx.Node, name: str) -> None:
    """cat/stack -> split/unbind, each image-dependent operand its piece."""
    tensors = node.args[0]
    dim = int(node.args[1]) if len(node.args) > 1 else int(node.kwargs.get("dim", 0))
    stack = name == "stack"
    parts = []
    for operand in tensors:
        shape = O.val(operand).shape
        ndim = len(shape)
        size_at = 0 if stack else t.plan.add(shape[dim % ndim])
        parts.append((t.send(operand), size_at))
    t.add(S.SplitT(t.out_slot(node), node.name, dim=dim, parts=tuple(parts), stack=stack))


def split(t: TransposeContext, node: fx.Node, name: str) -> None:
    """split/chunk/unbind -> cat of the pieces' reconstructions (zeros where none)."""
    x = node.args[0]
    a = O.bind(node)
    ndim = len(O.val(x).shape)
    dim = int(a.get("dim") or 0) % ndim
    pieces = O.val(node)
    srcs, shapes = [], []
    for i, piece in enumerate(pieces):
        srcs.append(t.out_slot(node, i))
        shapes.append(t.plan.add_shape(piece.shape))
    step = S.CatT(
        -1,
        node.name,
        dst=t.need(node, x, "input"),
        dim=dim,
        srcs=tuple(srcs),
        shapes_at=tuple(shapes),
        stack=name == "unbind",
    )
    t.add(step)
    step.free = not any(s in t.keep for s in srcs if s is not None)


def pad(t: TransposeContext, node: fx.Node, name: str) -> None:
    """pad -> the crop that undoes it."""
    x = node.args[0]
    a = O.bind(node)
    pads = a.get("pad") if "pad" in a else a.get("padding")
    t.add(
        S.PadT(
            t.out_slot(node),
            node.name,
            dst=t.need(node, x, "input"),
            pads=tuple(t.sym(p) for p in pads),
        )
    )


def roll(t: TransposeContext, node: fx.Node, name: str) -> None:
    """roll -> roll back."""
    a = O.bind(node)
    shifts = a["shifts"]
    dims = a.get("dims") or []
    t.add(
        S.RollT(
            t.out_slot(node),
            node.name,
            dst=t.need(node, a["self"], "input"),
            shifts=tuple(t.sym(s) for s in shifts),
            dims=tuple(int(d) for d in dims),
        )
    )


def pixel_shuffle(t: TransposeContext, node: fx.Node, name: str) -> None:
    """pixel_shuffle <-> pixel_unshuffle."""
    t.add(
        S.PixelShuffleT(
            t.out_slot(node),
            node.name,
            dst=t.need(node, node.args[0], "input"),
            factor=int(node.args[1]),
            unshuffle=name == "pixel_shuffle",
        )
    )


def flip(t: TransposeContext, node: fx.Node, name: str) -> None:
    """flip -> flip back."""
    x = node.args[0]
    t.add(
        S.PointwiseT(
            t.out_slot(node),
            node.name,
            dst=t.need(node, x, "input"),
            op=aten.flip.default,
            args=(S.Arg("x"), S.Arg("lit", list(node.args[1]))),
        )
    )


RULES: dict[str, Rule] = rule_table(
    (O.IDENTITY | O.RESHAPES, identity),
    ({"permute", "transpose", "t", "swapaxes", "swapdims"}, permute),
    ({"expand", "expand_as"}, expand),
    ({"select"}, select),
    ({"slice", "narrow"}, slice_),
    ({"cat", "concat", "concatenate", "stack"}, cat),
    (O.SPLITS, split),
    (O.PADS, pad),
    ({"roll"}, roll),
    ({"pixel_shuffle", "pixel_unshuffle"}, pixel_shuffle),
    ({"flip"}, flip),
)
