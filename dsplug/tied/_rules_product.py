"""Rules for products and quotients: scaling by a scalar or an encoder tensor is re-applied;
in a product of two image-dependent tensors the gate (broadcast, or from sigmoid/softmax) is
cut and self-gating x * f(x) is re-applied as r * f(r).
"""

from __future__ import annotations

from torch import fx

from . import _graph_ops as O
from . import _graph_steps as S
from ._rule_protocol import TransposeContext
from ._rules import Rule, rule_table

__all__ = ["RULES", "div", "mul"]


def mul(t: TransposeContext, node: fx.Node, name: str, divide: bool = False) -> None:
    """A product (``divide``: a quotient) -> re-applied scaling, or a gate cut (see the module)."""
    x, y = node.args[0], node.args[1]
    src = t.out_slot(node)
    xx, xy = t.xdep.get(x, False), t.xdep.get(y, False)
    if divide and name == "div" and node.kwargs.get("rounding_mode") is not None:
        raise t.error(node, "an integer (rounding) division")
    if xx and xy:
        if divide:  # x / g(x): a normalising gate, cut
            t.add(S.FanOut(src, node.name, targets=((t.slot(x), 1.0, t.reduce_at(x, node)),)))
            return
        _product(t, node, x, y)
        return
    main, other = (x, y) if xx else (y, x)
    if not t.xdep.get(main, False):
        return
    if divide and main is y:  # c / g(x): nothing passes
        return
    reduce_at = t.reduce_at(main, node)
    if isinstance(other, fx.Node) and O.is_tensor_node(other):
        step = S.ScaleT(
            src,
            node.name,
            dst=t.slot(main),
            const=t.weight(other),
            divide=divide,
            reduce_at=reduce_at,
        )
    elif isinstance(other, fx.Node):
        raise t.error(node, "a product with a traced (symbolic) scalar")
    else:
        step = S.ScaleT(
            src,
            node.name,
            dst=t.slot(main),
            scalar=float(other),
            divide=divide,
            reduce_at=reduce_at,
        )
    t.add(step)


def div(t: TransposeContext, node: fx.Node, name: str) -> None:
    """A quotient: see :func:`mul`."""
    mul(t, node, name, divide=True)


def _product(t: TransposeContext, node: fx.Node, x: fx.Node, y: fx.Node) -> None:
    """A product of two image-dependent tensors: self-gating, a gate cut, or both operands."""
    src = t.out_slot(node)
    for main, gate in ((x, y), (y, x)):
        chain = t.unary_chain(gate, main)
        if chain is not None and chain:
            if not t.after_weight(main):
                t.add(S.FanOut(src, node.name, targets=((t.slot(main), 1.0, None),)))
                return
            ops = tuple(
                (
                    O.functional(c.target),
                    _chain_args(t, c),
                    tuple((k, t.template(v)) for k, v in c.kwargs.items()),
                )
                for c in chain
            )
            t.add(S.SelfGateT(src, node.name, dst=t.slot(main), chain=ops))
            return
    out_same_x, out_same_y = t.same_shape(x, node), t.same_shape(y, node)
    if out_same_x != out_same_y:  # the broadcast operand is the gate
        main = x if out_same_x else y
        t.add(S.FanOut(src, node.name, targets=((t.slot(main), 1.0, None),)))
        return
    gx, gy = t.gate_like(x), t.gate_like(y)
    if gx != gy:
        main = y if gx else x
        t.add(S.FanOut(src, node.name, targets=((t.slot(main), 1.0, t.reduce_at(main, node)),)))
        return
    targets = tuple((t.slot(o), 1.0, t.reduce_at(o, node)) for o in (x, y))
    t.add(S.FanOut(src, node.name, targets=targets))


def _chain_args(t: TransposeContext, node: fx.Node) -> tuple:
    """The args of a gate-chain op, its tensor argument the running value."""
    tensor = next(a for a in node.args if O.is_tensor_node(a))
    return t.template(tuple(node.args), tensor)


RULES: dict[str, Rule] = rule_table(
    ({"mul"}, mul),
    ({"div"}, div),
)
