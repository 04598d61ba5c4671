"""The blueprint of a tied decoder: what tracing and transposing an encoder produce.

:func:`build_blueprint` traces the encoder (:mod:`._graph_trace`), transposes its graph
(:mod:`._graph_build`) and freezes the sizes it needs into a shape plan (:mod:`._graph_plan`).
The :class:`Blueprint` holds no tensor of the encoder (lifted constants are copies), so it can be
cached and shared by every decoder built for an encoder of the same structure
(:mod:`._graph_cache`); each decoder binds it to its own encoder's tensors at forward time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sympy
import torch
from torch import fx, nn

from . import _graph_steps as S
from ._graph_build import ConstSpec, Transposer
from ._graph_plan import CompiledPlan, PlanError, ShapePlan
from ._graph_trace import EncoderTrace, trace_encoder
from ._torch_private import is_assert_scalar

__all__ = ["Blueprint", "build_blueprint"]


@dataclass(frozen=True)
class Blueprint:
    """Everything a :class:`~dsplug.tied.graph.GraphTiedDecoder` needs besides its encoder.

    Attributes:
        encoder_name: the encoder's class name.
        plan: the compiled shape plan.
        steps: the transposed graph's runtime steps (shared read-only by every decoder).
        n_slots, bottleneck_slot, input_slot, level_slots: the steps' slots.
        level_shapes: plan indices of each computed level's shape (bottleneck last).
        reductions, channels: each level's stride and channels.
        consts: how each constant is read at forward time.
        constants: copies of the lifted constants, by their index in ``consts``.
        biases: own bias name -> channels.
        norms: own norms, freshly initialised templates (each decoder gets a copy).
        fallback: the warning of a trace that could not be fully symbolic, or "".
    """

    encoder_name: str
    plan: CompiledPlan
    steps: tuple[S.Step, ...]
    n_slots: int
    bottleneck_slot: int
    input_slot: int
    level_slots: tuple[int, ...]
    level_shapes: tuple[tuple[int, ...], ...]
    reductions: tuple[int, ...]
    channels: tuple[int, ...]
    consts: tuple[ConstSpec, ...]
    constants: dict[int, torch.Tensor]
    biases: dict[str, int]
    norms: dict[str, nn.Module]
    fallback: str = ""


def build_blueprint(
    encoder: nn.Module,
    example_input: torch.Tensor,
    encode: Callable[[nn.Module, torch.Tensor], list[torch.Tensor]] | None,
) -> Blueprint:
    """Trace ``encoder`` at ``example_input``'s size and transpose its graph.

    Raises:
        TypeError: the encoder cannot be traced.
        ValueError: levels the decoder cannot key.
        GraphTransposeError: an op without a transposition rule.
    """
    name = type(encoder).__name__
    trace = trace_encoder(encoder, example_input, encode)
    planner = ShapePlan(trace.input_node.meta["val"].shape, trace.range_constraints, name)
    _add_trace_checks(trace, planner)
    levels = _levels(trace, name)
    program = Transposer(trace, planner).build(levels[-1], levels)
    level_shapes = tuple(planner.add_shape(n.meta["val"].shape) for n in levels)
    plan = planner.compile()
    reductions = _reductions(plan, level_shapes, example_input, name)
    if len(set(reductions)) != len(reductions):
        raise ValueError(
            f"Encoder {name} has several computed levels at one reduction: {reductions}; "
            "GraphTiedDecoder keys its levels by reduction and needs them distinct."
        )
    constants = {
        i: trace.constants[spec.source.path].detach().clone()
        for i, spec in enumerate(program.consts)
        if spec.kind == "constant"
    }
    return Blueprint(
        encoder_name=name,
        plan=plan,
        steps=tuple(program.steps),
        n_slots=program.n_slots,
        bottleneck_slot=program.bottleneck_slot,
        input_slot=program.input_slot,
        level_slots=tuple(program.level_slots),
        level_shapes=level_shapes,
        reductions=tuple(reductions),
        channels=tuple(int(n.meta["val"].shape[1]) for n in levels),
        consts=tuple(program.consts),
        constants=constants,
        biases=dict(program.biases),
        norms=dict(program.norms),
        fallback=trace.fallback,
    )


def _add_trace_checks(trace: EncoderTrace, planner: ShapePlan) -> None:
    """The trace's size assumptions (its guards) and runtime asserts become conditions on every
    new input size: a size the trace does not describe is refused, never served with a stale
    plan. Only "this size is not 1" assumptions are waived (see :func:`_not_one`)."""
    for guard in trace.guards:
        if not _not_one(guard):
            planner.add_check(guard, "an assumption of the trace at the reference size")
    for node in trace.graph.nodes:
        if is_assert_scalar(node):
            cond = node.args[0]
            value = cond.meta.get("val") if isinstance(cond, fx.Node) else cond
            if value is not None:
                planner.add_check(value, str(node.args[1]) if len(node.args) > 1 else "")


def _not_one(guard: sympy.Basic) -> bool:
    """``Ne(e, 1)``, ``e > 1``, ``e >= 2``: a size traced as "not 1".

    Export records these for broadcasting and stride decisions that a 1-pixel level leaves
    unchanged in encoders (the size formulas stay valid), so a level that becomes 1 pixel wide
    at a new input size is served rather than refused. Should an encoder really change its
    graph at size 1 (e.g. a bare ``squeeze()``), its bottleneck shape changes and
    :meth:`~dsplug.tied.graph.GraphTiedDecoder.forward` raises a ShapeError.
    """
    if isinstance(guard, sympy.Ne):
        return sympy.Integer(1) in (guard.lhs, guard.rhs)
    if isinstance(guard, sympy.StrictGreaterThan | sympy.StrictLessThan):
        small = guard.rhs if isinstance(guard, sympy.StrictGreaterThan) else guard.lhs
        return small == 1
    if isinstance(guard, sympy.GreaterThan | sympy.LessThan):
        small = guard.rhs if isinstance(guard, sympy.GreaterThan) else guard.lhs
        return small == 2
    return False


def _levels(trace: EncoderTrace, name: str) -> list[fx.Node]:
    """The computed level features: not the input passed through, not 0-channel tensors."""
    levels = []
    for i, node in enumerate(trace.outputs):
        if node is None or not isinstance(node.meta.get("val"), torch.Tensor):
            raise ValueError(
                f"Encoder {name}: output {i} of encode() is not a tensor; expected a list of "
                "level features."
            )
        if node is trace.input_node:
            continue
        shape = node.meta["val"].shape
        if len(shape) < 3:
            raise ValueError(
                f"Encoder {name}: output {i} has shape {tuple(shape)}; expected (B, C, *spatial)."
            )
        if isinstance(shape[1], int) and shape[1] == 0:
            continue
        levels.append(node)
    if not levels:
        raise ValueError(f"Encoder {name}: encode() returned no computed feature.")
    return levels


def _reductions(
    plan: CompiledPlan,
    level_shapes: tuple[tuple[int, ...], ...],
    example: torch.Tensor,
    name: str,
) -> list[int]:
    """Each level's stride: input size / level size at a large input (exact asymptotically),
    or at the reference size for a static trace."""
    ref = tuple(int(s) for s in example.shape)
    try:
        big = (2, ref[1], *(s * 1024 for s in ref[2:]))
        values = plan.evaluate(big)
    except PlanError:
        big, values = (2, *ref[1:]), plan.evaluate((2, *ref[1:]))
    out = []
    for shape_at in level_shapes:
        sizes = [values[i] for i in shape_at[2:]]
        strides = [round(b / s) if s else 0 for b, s in zip(big[2:], sizes)]
        if any(s < 1 for s in strides):
            raise ValueError(
                f"Encoder {name}: a level has spatial sizes {sizes} for input {big[2:]}; "
                "cannot derive its reduction."
            )
        out.append(max(strides))
    return out
