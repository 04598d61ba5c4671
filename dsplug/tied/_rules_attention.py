"""Rules for attention: softmax(QK^T)V (or scaled_dot_product_attention) keeps the value path
with the gate cut; the reconstruction over the query tokens is mapped to the value tokens.
"""

from __future__ import annotations

import sympy
from torch import fx

from . import _graph_ops as O
from . import _graph_steps as S
from ._graph_plan import to_expr
from ._rule_protocol import TransposeContext
from ._rules import Rule, rule_table

__all__ = ["RULES", "sdpa", "token_map"]


def token_map(t: TransposeContext, node: fx.Node, value: fx.Node, token_dim: int) -> None:
    """The value path of attention: the reconstruction over the query tokens mapped to the
    value tokens (identity, pooling between token grids, or the mean)."""
    out_shape, v_shape = O.val(node).shape, O.val(value).shape
    n_expr, m_expr = to_expr(out_shape[token_dim]), to_expr(v_shape[token_dim])
    src_grid = _grid(t, n_expr)
    dst_grid = _grid(t, m_expr)
    if src_grid is None or dst_grid is None or len(src_grid) != len(dst_grid):
        src_grid = dst_grid = None
    td = token_dim % len(out_shape)
    batch_same = len(out_shape) == len(v_shape) and all(
        to_expr(x) == to_expr(y) for i, (x, y) in enumerate(zip(out_shape, v_shape)) if i != td
    )
    t.add(
        S.TokenMapT(
            t.out_slot(node),
            node.name,
            dst=t.slot(value),
            token_dim=token_dim,
            src_grid_at=None if src_grid is None else t.plan.add_shape(src_grid),
            dst_grid_at=None if dst_grid is None else t.plan.add_shape(dst_grid),
            dst_tokens_at=t.plan.add(m_expr),
            reduce_at=None if batch_same else t.shape_at(value),
        )
    )


def _grid(t: TransposeContext, tokens: sympy.Expr) -> list[sympy.Expr] | None:
    """Factor a token count into per-spatial-dim sizes, in the input's dim order."""
    in_shape = O.val(t.trace.input_node).shape
    spatial = [to_expr(s) for s in in_shape[2:]]
    symbols = [next(iter(e.free_symbols)) if e.free_symbols else None for e in spatial]
    if any(s is None for s in symbols):
        return None
    factors = sympy.Mul.make_args(tokens)
    grid: dict[sympy.Symbol, sympy.Expr] = {}
    for f in factors:
        free = f.free_symbols
        if not free:
            if f != 1:
                return None
            continue
        if len(free) != 1:
            return None
        sym = next(iter(free))
        if sym not in symbols or sym in grid:
            return None
        grid[sym] = f
    if set(grid) != set(symbols):
        return None
    return [grid[s] for s in symbols]


def sdpa(t: TransposeContext, node: fx.Node, name: str) -> None:
    """scaled_dot_product_attention -> the value path, tokens mapped."""
    a = O.bind(node)
    value = a["value"]
    if not t.xdep.get(value, False):
        return
    token_map(t, node, value, token_dim=-2)


RULES: dict[str, Rule] = rule_table(
    ({"scaled_dot_product_attention"}, sdpa),
)
