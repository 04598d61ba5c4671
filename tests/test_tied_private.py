"""The private torch APIs the tied decoder relies on, one test each (dsplug.tied._torch_private).

A torch upgrade that renames or changes one of them fails here, naming the function of
``_torch_private`` to update, instead of somewhere deep in a decoder's construction.
"""

from __future__ import annotations

import logging
import pickle

import pytest
import sympy
import torch
from torch import fx, nn

from dsplug.tied import _torch_private as P
from dsplug.tied._graph_plan import SUPPORTED
from dsplug.tied._graph_trace import EncoderTrace, trace_encoder

aten = torch.ops.aten


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.relu_(self.conv(x))]


@pytest.fixture(scope="module")
def trace() -> EncoderTrace:
    return trace_encoder(_Tiny(), torch.randn(1, 1, 16, 16))


def _node(trace: EncoderTrace, name: str) -> fx.Node:
    for node in trace.graph.nodes:
        if node.op == "call_function" and P.op_name(node.target) == name:
            return node
    raise AssertionError(f"no {name} node in the traced graph: {trace.graph}")


def _why(function: str) -> str:
    return f"torch changed an internal that dsplug.tied._torch_private.{function} reads"


def test_op_overload_name_and_schema(trace):
    conv = _node(trace, "conv2d")
    assert P.is_op(conv.target) and not P.is_op(len), _why("is_op (torch._ops.OpOverload)")
    assert P.op_name(aten.conv2d.default) == "conv2d", _why("op_name (_overloadpacket)")
    assert P.op_name(len) == "len"
    args = P.schema_arguments(aten.conv2d.default)
    assert [a[0] for a in args[:3]] == ["input", "weight", "bias"], _why("schema_arguments")
    assert dict((n, d) for n, _, d in args)["groups"] == 1, _why("schema_arguments (defaults)")


def test_pointwise_tag_and_out_of_place_overload():
    assert P.is_pointwise(aten.relu.default), _why("is_pointwise (torch.Tag.pointwise)")
    assert not P.is_pointwise(aten.conv2d.default)
    assert P.out_of_place(aten.relu_.default, "relu") is aten.relu.default, _why("out_of_place")
    assert P.out_of_place(aten.add_.Tensor, "add") is aten.add.Tensor, _why("out_of_place")


@pytest.mark.parametrize("op", [aten.conv2d.default, aten.add.Tensor, aten.relu])
def test_op_handles_travel_by_name(op):
    ref = P.op_ref(op)
    assert ref is not None, _why("op_ref (OpOverload/OpOverloadPacket)")
    assert P.op_from_ref(*pickle.loads(pickle.dumps(ref))) is op, _why("op_ref / op_from_ref")
    assert P.op_ref(len) is None


def test_assert_scalar_op_is_recognised():
    graph = fx.Graph()
    x = graph.placeholder("x")
    node = graph.call_function(aten._assert_scalar.default, (x, "message"))
    assert P.is_assert_scalar(node), _why("is_assert_scalar (aten._assert_scalar)")
    assert not P.is_assert_scalar(x)


def test_module_path_from_the_export_metadata(trace):
    assert P.module_path(_node(trace, "conv2d")) == "conv", _why("module_path (nn_module_stack)")
    graph = fx.Graph()
    assert P.module_path(graph.placeholder("x")) == ""


def test_symbolic_sizes_guards_and_ranges(trace):
    shape = trace.input_node.meta["val"].shape
    assert all(isinstance(P.sym_expr(s), sympy.Symbol) for s in (shape[0], shape[2])), _why(
        "sym_expr (SymInt.node.expr)"
    )
    guards = P.shape_guards(trace.input_node.meta["val"])
    assert isinstance(guards, list), _why("shape_guards (fake_mode.shape_env.guards)")
    assert all(isinstance(g, sympy.Basic) for g in guards), _why("shape_guards (guard.expr)")
    assert P.shape_guards(torch.zeros(1)) == []
    bounds = [P.int_bounds(r) for r in trace.range_constraints.values()]
    assert bounds and all(lo is None or isinstance(lo, int) for lo, _ in bounds), _why(
        "int_bounds (ValueRanges.lower/upper)"
    )


@pytest.mark.parametrize("name", sorted(P.SIZE_FUNCTIONS))
def test_torch_sympy_size_functions_exist_and_the_plan_evaluates_them(name):
    try:
        function = P.size_function(name)
    except AttributeError:  # pragma: no cover - only on a torch upgrade
        pytest.fail(f"{_why('size_function')}: torch.utils._sympy.functions.{name} is gone")
    assert function.__name__ == name, _why("size_function")
    assert name in SUPPORTED, f"the shape plan does not evaluate {name}"


def test_the_shape_solver_is_quiet_during_an_export_only():
    logger = logging.getLogger("torch.fx.experimental.symbolic_shapes")
    before = logger.level
    with P.quiet_shape_solver():
        assert logger.level == logging.ERROR, _why("quiet_shape_solver (the logger's name)")
    assert logger.level == before
