"""Runtime steps that read weights: the encoder's tensors (tied convs, linears, constant
matmuls and scales, at unit gain) or the decoder's own parameters (biases, norms)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ._graph_steps_base import RunState, Step, _acc, _sizes
from .gain import transpose_gain

__all__ = ["ConvT", "LinearT", "MatmulConstT", "NormT", "ScaleT"]

_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


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
