"""Runtime steps of the transposed graph: plain tensor operations in a Python loop.

Each step transposes one forward node. It reads the reconstruction that reached the node
(``env[src]``) and adds its contribution to the node's inputs (``env[dst]``; contributions that
meet at a slot are summed: the transpose of a fan-out). Sizes come from the evaluated shape
plan (a tuple of ints, indexed by the ``*_at`` fields), weights from ``consts`` (the encoder's
tensors, read at forward time), own parameters from the decoder (``owner``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .gain import transpose_gain

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

_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_ADAPTIVE_AVG = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}


@dataclass
class RunState:
    """What a step can read: adjoint slots, plan integers, constants, the owning decoder."""

    env: list[torch.Tensor | None]
    plan: tuple[int, ...]
    consts: list[torch.Tensor | None]
    owner: nn.Module


def _acc(env: list[torch.Tensor | None], slot: int, value: torch.Tensor) -> None:
    current = env[slot]
    env[slot] = value if current is None else current + value


def _sizes(plan: tuple[int, ...], at: Sequence[int]) -> list[int]:
    return [plan[i] for i in at]


@dataclass(frozen=True)
class Arg:
    """One argument of a replayed op: a literal, the running tensor, a constant or a plan int."""

    kind: str  # "lit" | "x" | "const" | "plan" | "env" (a slot) | "local" (a replayed value)
    value: object = None


def _resolve(
    arg: object, x: torch.Tensor | None, st: RunState, local: list | None = None
) -> object:
    if isinstance(arg, Arg):
        if arg.kind == "x":
            return x
        if arg.kind == "local":
            return local[arg.value]
        if arg.kind == "env":
            return st.env[arg.value]
        if arg.kind == "const":
            return st.consts[arg.value]
        if arg.kind == "plan":
            return st.plan[arg.value]
        return arg.value
    if isinstance(arg, list | tuple):
        items = [_resolve(a, x, st, local) for a in arg]
        return items if isinstance(arg, list) else tuple(items)
    return arg


@dataclass
class Step:
    """Base: ``src`` is the slot of the reconstruction reaching the forward node."""

    src: int
    name: str
    free: bool = field(default=True, kw_only=True)

    def take(self, st: RunState) -> torch.Tensor:
        r = st.env[self.src]
        if self.free:
            st.env[self.src] = None
        return r

    def run(self, st: RunState) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class FanOut(Step):
    """Identity to each target (the transpose of add/sub/identity ops), with a scale and a sum
    over broadcast dims where the operand was smaller than the result."""

    targets: tuple[tuple[int, float, tuple[int, ...] | None], ...] = ()

    def run(self, st: RunState) -> None:
        r = self.take(st)
        for slot, scale, reduce_at in self.targets:
            v = r if scale == 1.0 else r * scale
            if reduce_at is not None:
                v = v.sum_to_size(_sizes(st.plan, reduce_at))
            _acc(st.env, slot, v)


@dataclass
class ConvT(Step):
    """conv -> conv_transpose with the same weight (and the reverse for a forward transpose)."""

    dst: int = 0
    weight: int = 0
    bias: str = ""
    dims: int = 2
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1
    kernel: tuple[int, ...] = ()
    in_at: tuple[int, ...] = ()  # forward input spatial sizes
    crop: tuple[int, ...] | None = None  # left crop per dim for asymmetric "same" padding
    forward_transposed: bool = False

    def run(self, st: RunState) -> None:
        _acc(st.env, self.dst, self._transpose(st) * self.gain(st))

    def gain(self, st: RunState) -> float:
        """Unit scale at any width (``transpose_gain``), applied to the output: the op still
        reads the encoder's very tensor and no extra copy of the input is kept. 1 when the
        decoder's ``unit_gain`` is off (the paper's literal transposes)."""
        if not getattr(st.owner, "unit_gain", True):
            return 1.0
        w = st.consts[self.weight]
        return transpose_gain(w, self.groups, transposed=self.forward_transposed)

    def _transpose(self, st: RunState) -> torch.Tensor:
        r = self.take(st)
        w = st.consts[self.weight]
        b = st.owner.biases[self.bias] / self.gain(st)  # g (op + b / g) = g op + b
        n_in = _sizes(st.plan, self.in_at)
        if self.forward_transposed:
            return _CONV[self.dims](r, w, b, self.stride, self.padding, self.dilation, self.groups)
        n_out = r.shape[2:]
        if self.crop is not None:
            y = _CONV_T[self.dims](r, w, b, self.stride, 0, 0, self.groups, self.dilation)
            for d, (left, size) in enumerate(zip(self.crop, n_in)):
                y = y.narrow(2 + d, left, size)
            return y
        out_pad = [
            n - ((o - 1) * s - 2 * p + d * (k - 1) + 1)
            for n, o, s, p, d, k in zip(
                n_in, n_out, self.stride, self.padding, self.dilation, self.kernel
            )
        ]
        return _CONV_T[self.dims](
            r, w, b, self.stride, self.padding, out_pad, self.groups, self.dilation
        )


@dataclass
class LinearT(Step):
    """linear(x, W) -> linear(r, W^T) + own bias."""

    dst: int = 0
    weight: int = 0
    bias: str = ""

    def run(self, st: RunState) -> None:
        w = st.consts[self.weight]
        gain = transpose_gain(w) if getattr(st.owner, "unit_gain", True) else 1.0  # as ConvT
        _acc(
            st.env,
            self.dst,
            F.linear(self.take(st), w.t(), st.owner.biases[self.bias] / gain) * gain,
        )


@dataclass
class MatmulConstT(Step):
    """x @ C -> r @ C^T; C @ x -> C^T @ r (C a constant of the encoder, e.g. a weight)."""

    dst: int = 0
    const: int = 0
    const_on_right: bool = True
    reduce_at: tuple[int, ...] | None = None

    def run(self, st: RunState) -> None:
        r = self.take(st)
        c = st.consts[self.const].transpose(-1, -2)
        v = torch.matmul(r, c) if self.const_on_right else torch.matmul(c, r)
        if self.reduce_at is not None:
            v = v.sum_to_size(_sizes(st.plan, self.reduce_at))
        _acc(st.env, self.dst, v)


@dataclass
class ScaleT(Step):
    """x * c or x / c (c a Python scalar or an encoder constant): the same scaling."""

    dst: int = 0
    scalar: float | None = None
    const: int | None = None
    divide: bool = False
    reduce_at: tuple[int, ...] | None = None

    def run(self, st: RunState) -> None:
        r = self.take(st)
        c = self.scalar if self.const is None else st.consts[self.const]
        v = r / c if self.divide else r * c
        if self.reduce_at is not None:
            v = v.sum_to_size(_sizes(st.plan, self.reduce_at))
        _acc(st.env, self.dst, v)


@dataclass
class NormT(Step):
    """A norm -> a fresh norm of the same kind with the decoder's own parameters."""

    dst: int = 0
    norm: str = ""

    def run(self, st: RunState) -> None:
        _acc(st.env, self.dst, st.owner.norms[self.norm](self.take(st)))


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
class ReshapeT(Step):
    """view/reshape/flatten/squeeze/unsqueeze -> reshape back to the forward input's shape."""

    dst: int = 0
    shape_at: tuple[int, ...] = ()

    def run(self, st: RunState) -> None:
        _acc(st.env, self.dst, self.take(st).reshape(_sizes(st.plan, self.shape_at)))


@dataclass
class TransposeT(Step):
    """permute -> the inverse permutation."""

    dst: int = 0
    perm: tuple[int, ...] = ()

    def run(self, st: RunState) -> None:
        _acc(st.env, self.dst, self.take(st).permute(self.perm))


@dataclass
class UnreduceT(Step):
    """expand back over reduced dims (mean/sum/amax: pooling -> upsampling by broadcast)."""

    dst: int = 0
    dims: tuple[int, ...] = ()  # non-negative, sorted; () means all
    keepdim: bool = True
    shape_at: tuple[int, ...] = ()

    def run(self, st: RunState) -> None:
        r = self.take(st)
        shape = _sizes(st.plan, self.shape_at)
        if not self.keepdim:
            r = r.reshape(
                [1 if (not self.dims or i in self.dims) else n for i, n in enumerate(shape)]
            )
        _acc(st.env, self.dst, r.expand(shape))


@dataclass
class ResizeT(Step):
    """pooling -> nearest upsampling; upsampling -> area downsampling (to the input's size)."""

    dst: int = 0
    mode: str = "nearest"
    dims: int = 2
    size_at: tuple[int, ...] = ()

    def run(self, st: RunState) -> None:
        r = self.take(st)
        size = _sizes(st.plan, self.size_at)
        if list(r.shape[-self.dims :]) != size:
            if self.mode == "area":
                r = _ADAPTIVE_AVG[self.dims](r, size)
            else:
                r = F.interpolate(r, size=size, mode=self.mode)
        _acc(st.env, self.dst, r)


@dataclass
class PadT(Step):
    """pad -> the crop that undoes it (and a crop -> zero padding)."""

    dst: int = 0
    pads: tuple[Arg, ...] = ()

    def run(self, st: RunState) -> None:
        r = self.take(st)
        pads = [-int(_resolve(p, r, st)) for p in self.pads]
        _acc(st.env, self.dst, F.pad(r, pads))


@dataclass
class SliceT(Step):
    """slice -> scatter into zeros of the input's shape."""

    dst: int = 0
    dim: int = 0
    start: Arg = Arg("lit", 0)
    end: Arg = Arg("lit", None)
    step: int = 1
    shape_at: tuple[int, ...] = ()

    def run(self, st: RunState) -> None:
        r = self.take(st)
        zeros = r.new_zeros(_sizes(st.plan, self.shape_at))
        start, end = _resolve(self.start, r, st), _resolve(self.end, r, st)
        _acc(st.env, self.dst, torch.slice_scatter(zeros, r, self.dim, start, end, self.step))


@dataclass
class SelectT(Step):
    """select -> scatter into zeros of the input's shape."""

    dst: int = 0
    dim: int = 0
    index: Arg = Arg("lit", 0)
    shape_at: tuple[int, ...] = ()

    def run(self, st: RunState) -> None:
        r = self.take(st)
        zeros = r.new_zeros(_sizes(st.plan, self.shape_at))
        index = _resolve(self.index, r, st)
        _acc(st.env, self.dst, torch.select_scatter(zeros, r, self.dim, index))


@dataclass
class SplitT(Step):
    """cat -> split; each traced operand gets its piece (constant operands get nothing)."""

    dim: int = 0
    parts: tuple[tuple[int | None, int], ...] = ()  # (dst slot or None, size plan index)
    stack: bool = False

    def run(self, st: RunState) -> None:
        r = self.take(st)
        if self.stack:
            pieces = r.unbind(self.dim)
        else:
            pieces = r.split([st.plan[at] for _, at in self.parts], self.dim)
        for (slot, _), piece in zip(self.parts, pieces):
            if slot is not None:
                _acc(st.env, slot, piece)


@dataclass
class CatT(Step):
    """split/chunk/unbind -> cat (stack) of the pieces' reconstructions, zeros where none."""

    dst: int = 0
    dim: int = 0
    srcs: tuple[int | None, ...] = ()
    shapes_at: tuple[tuple[int, ...], ...] = ()
    stack: bool = False

    def take(self, st: RunState) -> torch.Tensor:  # several sources: see run
        raise NotImplementedError

    def run(self, st: RunState) -> None:
        ref = next(st.env[s] for s in self.srcs if s is not None and st.env[s] is not None)
        pieces = []
        for slot, shape_at in zip(self.srcs, self.shapes_at):
            if slot is None or st.env[slot] is None:
                pieces.append(ref.new_zeros(_sizes(st.plan, shape_at)))
            else:
                pieces.append(st.env[slot])
        for slot in self.srcs:
            if slot is not None and self.free:
                st.env[slot] = None
        out = torch.stack(pieces, self.dim) if self.stack else torch.cat(pieces, self.dim)
        _acc(st.env, self.dst, out)


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
class RollT(Step):
    """roll -> roll back."""

    dst: int = 0
    shifts: tuple[Arg, ...] = ()
    dims: tuple[int, ...] = ()

    def run(self, st: RunState) -> None:
        r = self.take(st)
        shifts = [-int(_resolve(s, r, st)) for s in self.shifts]
        _acc(st.env, self.dst, torch.roll(r, shifts, self.dims))


@dataclass
class PixelShuffleT(Step):
    """pixel_shuffle <-> pixel_unshuffle."""

    dst: int = 0
    factor: int = 2
    unshuffle: bool = True

    def run(self, st: RunState) -> None:
        r = self.take(st)
        fn = F.pixel_unshuffle if self.unshuffle else F.pixel_shuffle
        _acc(st.env, self.dst, fn(r, self.factor))


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
