"""Runtime steps that move values without weighing them: reshapes, permutations, resizing,
padding and cropping, slicing, splitting and concatenating, rolls and pixel shuffles (each
undoes the layout change of its forward op)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ._graph_steps_base import _ADAPTIVE_AVG, Arg, RunState, Step, _acc, _resolve, _sizes

__all__ = [
    "CatT",
    "PadT",
    "PixelShuffleT",
    "ReshapeT",
    "ResizeT",
    "RollT",
    "SelectT",
    "SliceT",
    "SplitT",
    "TransposeT",
    "UnreduceT",
]


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
    # Arg is a frozen dataclass, so a shared default is safe (ruff sees that within one module)
    start: Arg = Arg("lit", 0)  # noqa: RUF009
    end: Arg = Arg("lit", None)  # noqa: RUF009
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
    index: Arg = Arg("lit", 0)  # noqa: RUF009 (frozen, as above)
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
