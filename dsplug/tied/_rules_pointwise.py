"""Rules for elementwise ops of one image-dependent tensor and for sums: activations are
re-applied (skipped before the first weight); add/sub fan the reconstruction out to both
operands (negated where subtracted, summed over broadcast dims); neg negates.
"""

from __future__ import annotations

from torch import fx

from . import _graph_ops as O
from . import _graph_steps as S
from ._rule_protocol import TransposeContext
from ._rules import Rule, rule_table

__all__ = ["RULES", "activation", "add", "neg"]


def activation(t: TransposeContext, node: fx.Node, name: str) -> None:
    """An elementwise op of one image-dependent tensor -> re-applied (skipped before the
    first weight)."""
    tensors = [a for a in node.args if t.xdep.get(a, False)]
    if len(tensors) != 1:
        raise t.error(node, "an elementwise op of several image-dependent tensors")
    x = tensors[0]
    dst = t.slot(x)
    src = t.out_slot(node)
    if not t.after_weight(x):
        t.add(S.FanOut(src, node.name, targets=((dst, 1.0, None),)))
        return
    op = O.functional(node.target)
    t.add(
        S.PointwiseT(
            src,
            node.name,
            dst=dst,
            op=op,
            args=t.template(tuple(node.args), x),
            kwargs=tuple((k, t.template(v, x)) for k, v in node.kwargs.items()),
        )
    )


def add(t: TransposeContext, node: fx.Node, name: str) -> None:
    """add/sub/rsub -> the reconstruction to each image-dependent operand, scaled by its sign."""
    a = O.bind(node)
    x, y = a["self"], a.get("other")
    alpha = a.get("alpha", 1)
    alpha = 1 if alpha is None else alpha
    sx, sy = (1.0, float(alpha)) if name != "rsub" else (-float(alpha), 1.0)
    if name == "sub":
        sy = -sy
    targets = []
    for operand, scale in ((x, sx), (y, sy)):
        slot = t.send(operand)
        if slot is not None:
            targets.append((slot, scale, t.reduce_at(operand, node)))
    t.add(S.FanOut(t.out_slot(node), node.name, targets=tuple(targets)))


def neg(t: TransposeContext, node: fx.Node, name: str) -> None:
    """neg -> negated."""
    x = node.args[0]
    t.add(S.ScaleT(t.out_slot(node), node.name, dst=t.slot(x), scalar=-1.0))


RULES: dict[str, Rule] = rule_table(
    (O.ACTIVATIONS, activation),
    ({"add", "sub", "rsub"}, add),
    ({"neg"}, neg),
)
