"""Levels computed off the path to the bottleneck: their side branch replayed forward.

A level feature that the reverse pass does not reach (DPN's relu(cat(dual paths)) is computed
next to the main path, not on it) is obtained by re-running its side branch forward on the
reconstructions of the tensors it reads; norms there get parameters of their own.
"""

from __future__ import annotations

from torch import fx

from . import _graph_ops as O
from . import _graph_steps as S
from ._rule_protocol import TransposeContext
from ._rules_norm import own_norm

__all__ = ["replay_side_level"]


def replay_side_level(t: TransposeContext, level: fx.Node, reached: set[fx.Node]) -> None:
    """A level computed off the path to the bottleneck (e.g. DPN's relu(cat(dual paths))):
    its side branch is replayed forward on the reconstructions of the tensors it reads."""
    side: list[fx.Node] = []
    seen: set[fx.Node] = set()

    def visit(n: object) -> None:
        if not isinstance(n, fx.Node) or n in seen:
            return
        seen.add(n)
        if n in reached or not t.xdep.get(n, False):
            return
        for a in O.walk((n.args, n.kwargs)):
            visit(a)
        side.append(n)

    visit(level)
    local = {n: i for i, n in enumerate(side)}
    ops = []
    read: set[int] = set()

    def arg(value: object) -> object:
        if isinstance(value, fx.Node):
            if value in local:
                return S.Arg("local", local[value])
            if value in reached:
                read.add(t.slots[value])
                return S.Arg("env", t.slots[value])
            if O.is_tensor_node(value):
                return S.Arg("const", t.const(value))
            return t.sym(value)
        if isinstance(value, list | tuple):
            items = [arg(v) for v in value]
            return items if isinstance(value, list) else tuple(items)
        return S.Arg("lit", value)

    for n in side:
        name = O.base_name(O.packet(n))
        if name in O.NORMS:
            key = own_norm(t, n, name)
            ops.append(("norm", key, (arg(O.bind(n)["input"]),), ()))
        else:
            target = O.functional(n.target)
            kwargs = tuple((k, arg(v)) for k, v in n.kwargs.items())
            ops.append(("op", target, arg(tuple(n.args)), kwargs))
    for step in t.steps:  # the tensors read must outlive their own transposition
        if step.src in read:
            step.free = False
        if isinstance(step, S.CatT) and read & set(step.srcs):
            step.free = False
    t.keep |= read
    t.add(S.ReplayT(-1, level.name, dst=t.slots[level], ops=tuple(ops)))
