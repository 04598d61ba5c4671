"""Rules for ops that change the spatial size: pooling -> nearest upsampling, resizing -> area
resizing back, reductions (mean/sum/amax) -> broadcast back over the reduced dims.
"""

from __future__ import annotations

from torch import fx

from . import _graph_ops as O
from . import _graph_steps as S
from ._rule_protocol import TransposeContext
from ._rules import Rule, rule_table

__all__ = ["RULES", "pool", "reduction", "resize"]


def _resize_back(t: TransposeContext, node: fx.Node, mode: str, dims: int) -> None:
    """A resize of the node's output back to its input's last ``dims`` sizes."""
    x = node.args[0]
    t.add(
        S.ResizeT(
            t.out_slot(node),
            node.name,
            dst=t.need(node, x, "input"),
            mode=mode,
            dims=dims,
            size_at=t.plan.add_shape(O.val(x).shape[-dims:]),
        )
    )


def pool(t: TransposeContext, node: fx.Node, name: str) -> None:
    """Pooling -> nearest upsampling to the input's size."""
    _resize_back(t, node, "nearest", int(name[name.index("pool") + 4]) if "pool" in name else 2)


def resize(t: TransposeContext, node: fx.Node, name: str) -> None:
    """Resizing -> area resizing back to the input's size."""
    digits = [c for c in name if c.isdigit()]
    _resize_back(t, node, "area", int(digits[-1]) if digits else 2)


def reduction(t: TransposeContext, node: fx.Node, name: str) -> None:
    """mean/sum/amax/... over dims -> broadcast back over them."""
    a = O.bind(node)
    x = a["self"]
    if O.is_tensor_node(a.get("other")):  # max/min of two tensors: elementwise, not a pool
        raise t.error(node, "an elementwise maximum/minimum of two tensors")
    ndim = len(O.val(x).shape)
    dims = a.get("dim")
    if dims is None or dims == []:
        dims = ()
    elif isinstance(dims, int):
        dims = (dims,)
    dims = tuple(sorted(int(d) % ndim for d in dims))
    keepdim = bool(a.get("keepdim", False))
    t.add(
        S.UnreduceT(
            t.out_slot(node),
            node.name,
            dst=t.need(node, x, "input"),
            dims=dims,
            keepdim=keepdim,
            shape_at=t.shape_at(x),
        )
    )


RULES: dict[str, Rule] = rule_table(
    (O.POOLS, pool),
    (O.RESIZES, resize),
    (O.REDUCTIONS, reduction),
)
