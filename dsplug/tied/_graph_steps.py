"""Runtime steps of the transposed graph: plain tensor operations in a Python loop.

Each step transposes one forward node. It reads the reconstruction that reached the node
(``env[src]``) and adds its contribution to the node's inputs (``env[dst]``; contributions that
meet at a slot are summed: the transpose of a fan-out). Sizes come from the evaluated shape
plan (a tuple of ints, indexed by the ``*_at`` fields), weights from ``consts`` (the encoder's
tensors, read at forward time), own parameters from the decoder (``owner``).

This module is the index of every step (import them from here) and holds the steps that re-run
an op forward: activations, self-gates, the attention's value path and side-branch replays. The
shared machinery is in :mod:`._graph_steps_base`, the steps that read weights in
:mod:`._graph_steps_weighted`, those that only move values in :mod:`._graph_steps_layout`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._graph_steps_base import _ADAPTIVE_AVG, Arg, FanOut, RunState, Step, _acc, _resolve, _sizes
from ._graph_steps_layout import (
    CatT,
    PadT,
    PixelShuffleT,
    ReshapeT,
    ResizeT,
    RollT,
    SelectT,
    SliceT,
    SplitT,
    TransposeT,
    UnreduceT,
)
from ._graph_steps_weighted import ConvT, LinearT, MatmulConstT, NormT, ScaleT

__all__ = [
    "Arg",
    "CatT",
    "ConvT",
    "FanOut",
    "LinearT",
    "MatmulConstT",
    "NormT",
    "PadT",
    "PixelShuffleT",
    "PointwiseT",
    "ReplayT",
    "ReshapeT",
    "ResizeT",
    "RollT",
    "RunState",
    "ScaleT",
    "SelectT",
    "SelfGateT",
    "SliceT",
    "SplitT",
    "Step",
    "TokenMapT",
    "TransposeT",
    "UnreduceT",
]


@dataclass
class PointwiseT(Step):
    """An activation (or another elementwise op of one tensor) is re-applied."""

    dst: int = 0
    op: object = None
    args: tuple = ()
    kwargs: tuple[tuple[str, object], ...] = ()

    def run(self, st: RunState) -> None:
        r = self.take(st)
        args = _resolve(self.args, r, st)
        kwargs = {k: _resolve(v, r, st) for k, v in self.kwargs}
        _acc(st.env, self.dst, self.op(*args, **kwargs))


@dataclass
class SelfGateT(Step):
    """x * f(x) (swish, hard-swish, ...): re-applied as r * f(r)."""

    dst: int = 0
    chain: tuple[tuple[object, tuple, tuple[tuple[str, object], ...]], ...] = ()

    def run(self, st: RunState) -> None:
        r = self.take(st)
        g = r
        for op, args, kwargs in self.chain:
            g = op(*_resolve(args, g, st), **{k: _resolve(v, g, st) for k, v in kwargs})
        _acc(st.env, self.dst, r * g)


@dataclass
class TokenMapT(Step):
    """attention: the value path with the softmax gate cut.

    The reconstruction over N query tokens is mapped to the M value tokens: identity when
    N == M; when both factor into spatial grids (tokens of a flattened (D,) H, W map), adaptive
    average pooling between the grids; otherwise the mean over tokens, broadcast.
    """

    dst: int = 0
    token_dim: int = -2
    src_grid_at: tuple[int, ...] | None = None
    dst_grid_at: tuple[int, ...] | None = None
    dst_tokens_at: int = 0
    reduce_at: tuple[int, ...] | None = None

    def run(self, st: RunState) -> None:
        r = self.take(st)
        dim = self.token_dim % r.ndim
        n, m = r.shape[dim], st.plan[self.dst_tokens_at]
        if n != m:
            if self.src_grid_at is not None and self.dst_grid_at is not None:
                src = _sizes(st.plan, self.src_grid_at)
                dst = _sizes(st.plan, self.dst_grid_at)
                moved = r.movedim(dim, -1)
                lead = list(moved.shape[:-1])
                grid = moved.reshape([-1, 1, *src])
                grid = _ADAPTIVE_AVG[len(src)](grid, dst)
                r = grid.reshape([*lead, m]).movedim(-1, dim)
            else:
                shape = list(r.shape)
                shape[dim] = m
                r = r.mean(dim, keepdim=True).expand(shape)
        if self.reduce_at is not None:
            r = r.sum_to_size(_sizes(st.plan, self.reduce_at))
        _acc(st.env, self.dst, r)


@dataclass
class ReplayT(Step):
    """A level computed off the main path: its side branch re-run forward on the
    reconstructions of the tensors it reads (norms with the decoder's own parameters)."""

    dst: int = 0
    ops: tuple[tuple[str, object, tuple, tuple], ...] = ()

    def run(self, st: RunState) -> None:
        local: list[object] = []
        for kind, target, args, kwargs in self.ops:
            values = _resolve(args, None, st, local)
            if kind == "norm":
                local.append(st.owner.norms[target](*values))
            else:
                extra = {k: _resolve(v, None, st, local) for k, v in kwargs}
                local.append(target(*values, **extra))
        _acc(st.env, self.dst, local[-1])
