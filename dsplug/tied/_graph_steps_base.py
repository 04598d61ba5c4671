"""The machinery every runtime step of the transposed graph shares (see :mod:`._graph_steps`):
the state a step reads (:class:`RunState`), replayable arguments (:class:`Arg`), the base
:class:`Step`, and :class:`FanOut`, the transpose of add/sub/identity ops."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Arg", "FanOut", "RunState", "Step"]

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
