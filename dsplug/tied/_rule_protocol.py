"""What a transposition rule sees of the builder: the :class:`TransposeContext` protocol.

The rules (``_rules_*``) and the side-level replay take the builder through this protocol only,
so the imports run one way (STYLE.md habit 11): rules -> this module, and
:mod:`~._graph_build` (whose :class:`~._graph_build.Transposer` implements the protocol) ->
the rules' registry. ``tests/test_tied_imports.py`` fails on a circle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from torch import fx, nn

from . import _graph_steps as S
from ._graph_plan import ShapePlan
from ._graph_trace import EncoderTrace

__all__ = ["GraphTransposeError", "Rule", "TransposeContext"]


class GraphTransposeError(TypeError):
    """An encoder op that the tied decoder cannot transpose (the message names op and encoder)."""


class TransposeContext(Protocol):
    """The state and helpers of one reverse pass that the rules share.

    Slots are the indices of the runtime buffers: ``slot(node)`` is where the reconstruction
    reaching ``node`` accumulates. A rule reads ``out_slot(node)`` and adds steps (``add``) that
    send it to the slots of the node's image-dependent inputs.
    """

    trace: EncoderTrace
    plan: ShapePlan
    xdep: dict[fx.Node, bool]  # computed from the image (traced from x)
    slots: dict[fx.Node, int]
    steps: list[S.Step]
    norms: dict[str, nn.Module]  # norms the decoder owns, by key
    keep: set[int]  # slots that must not be freed after use

    def error(self, node: fx.Node, reason: str) -> GraphTransposeError:
        """The error to raise for ``node`` (names op, module and encoder, lists what works)."""
        ...

    def module_path(self, node: fx.Node) -> str:
        """The encoder module that produced ``node`` ("" when unknown)."""
        ...

    def unique_key(self, base: str, table: dict) -> str:
        """``base`` made an identifier, with a suffix that makes it new in ``table``."""
        ...

    def after_weight(self, node: fx.Node) -> bool:
        """Whether a weighted op produced ``node`` or precedes it on a path from the input."""
        ...

    def slot(self, node: fx.Node) -> int:
        """The slot of ``node`` (allocated on first use)."""
        ...

    def send(self, node: object) -> int | None:
        """The slot that receives a contribution for ``node`` (None: not traced from x)."""
        ...

    def need(self, node: fx.Node, arg: object, what: str) -> int:
        """``send(arg)``, or the error that ``node``'s ``what`` is not computed from the image."""
        ...

    def out_slot(self, node: fx.Node, index: int = 0) -> int | None:
        """The reconstruction slot of ``node`` (of its ``index``-th output for a tuple)."""
        ...

    def shape_at(self, node: fx.Node) -> tuple[int, ...]:
        """Plan indices of ``node``'s shape."""
        ...

    def same_shape(self, a: fx.Node, b: fx.Node) -> bool: ...

    def reduce_at(self, operand: fx.Node, out: fx.Node) -> tuple[int, ...] | None:
        """Plan indices of ``operand``'s shape when broadcasting made ``out`` larger, else None."""
        ...

    def sym(self, value: object) -> S.Arg:
        """A scalar argument: a literal, or a plan int when it is a traced size."""
        ...

    def template(self, value: object, x_node: fx.Node | None = None) -> object:
        """Node arguments turned into replayable :class:`~._graph_steps.Arg`s."""
        ...

    def const(self, node: fx.Node) -> int:
        """Index of a constant (a tensor not computed from the image), read at forward time."""
        ...

    def weight(self, node: fx.Node) -> int:
        """Index of a weight constant."""
        ...

    def bias(self, node: fx.Node, weight: fx.Node, channels: int) -> str:
        """Key of a new decoder-owned bias of ``channels`` entries."""
        ...

    def add(self, step: S.Step) -> None:
        """Append a runtime step."""
        ...

    def gate_like(self, node: object) -> bool:
        """Produced by sigmoid/softmax (possibly through shape ops or a scalar scaling)."""
        ...

    def unary_chain(self, gate: fx.Node, source: fx.Node) -> list[fx.Node] | None:
        """Ops from ``source`` to ``gate`` when each is elementwise on one traced tensor."""
        ...


Rule = Callable[[TransposeContext, fx.Node, str], None]
"""``rule(context, node, op_name)``: adds the steps that transpose ``node``."""
