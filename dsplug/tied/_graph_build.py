"""Transpose a traced encoder graph node by node into a list of runtime steps.

The reverse pass starts from the bottleneck and walks the ATen graph from its end to its start.
A node is transposed only if a reconstruction reaches it; its rule, looked up by op name in the
registry assembled from the ``_rules_*`` modules (weighted ops, attention, norms, pointwise ops,
products, resampling, shape ops; see :mod:`dsplug.tied.graph` for the documented list), says
which of its inputs receive a contribution and how. :class:`Transposer` holds the analysis and
the helpers the rules share; the rules see it as :class:`~._rule_protocol.TransposeContext` and
never import this module (the imports run one way: this module -> the rules -> the protocol).
Constants (the encoder's weights, buffers, tensors computed from them) are described so that the
decoder can read them at forward time, never copied.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
from torch import fx, nn

from . import _graph_ops as O
from . import _graph_steps as S
from . import (
    _rules_attention,
    _rules_norm,
    _rules_pointwise,
    _rules_product,
    _rules_resample,
    _rules_shape,
    _rules_weighted,
)
from . import _torch_private as P
from ._graph_plan import ShapePlan, to_expr
from ._graph_replay import replay_side_level
from ._graph_trace import EncoderTrace, TensorSource
from ._rule_protocol import GraphTransposeError, Rule
from ._rules import rule_table
from ._rules_pointwise import activation

__all__ = ["ConstSpec", "GraphTransposeError", "Program", "Transposer"]

aten = torch.ops.aten


@dataclass(frozen=True)
class ConstSpec:
    """How to get one constant at forward time.

    ``kind``: "parameter" / "buffer" / "constant" (``source`` says where), or "op" (``op`` applied
    to ``args``/``kwargs`` made of :class:`Arg` references to other constants and plan ints).
    """

    kind: str
    source: TensorSource | None = None
    op: object = None
    args: tuple = ()
    kwargs: tuple[tuple[str, object], ...] = ()


@dataclass
class Program:
    """The transposed graph, ready to run."""

    steps: list[S.Step]
    n_slots: int
    bottleneck_slot: int
    input_slot: int
    level_slots: list[int]
    consts: list[ConstSpec]
    weight_consts: list[int]
    biases: dict[str, int]
    norms: dict[str, nn.Module]


@dataclass
class Transposer:
    """Builds a :class:`Program` from a trace (see the module docstring).

    Implements :class:`~._rule_protocol.TransposeContext`, the view of it the rules take.
    """

    trace: EncoderTrace
    plan: ShapePlan
    xdep: dict[fx.Node, bool] = field(default_factory=dict)
    weighted_before: dict[fx.Node, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.name = self.trace.encoder_name
        self.slots: dict[fx.Node, int] = {}
        self.steps: list[S.Step] = []
        self.consts: list[ConstSpec] = []
        self.const_index: dict[object, int] = {}
        self.biases: dict[str, int] = {}
        self.norms: dict[str, nn.Module] = {}
        self.keep: set[int] = set()
        self.produced: set[int] = set()  # slots that receive a reconstruction
        self._gate_memo: dict[fx.Node, bool] = {}
        self._analyse()

    # --- analysis ------------------------------------------------------------------------------
    def _analyse(self) -> None:
        for n in self.trace.graph.nodes:
            if n.op == "placeholder":
                self.xdep[n] = n is self.trace.input_node
                self.weighted_before[n] = False
                continue
            if n.op != "call_function":
                continue
            inputs = [a for a in O.walk((n.args, n.kwargs)) if self.xdep.get(a, False)]
            val = O.val(n)
            tensorish = isinstance(val, torch.Tensor) or (
                isinstance(val, list | tuple) and any(isinstance(v, torch.Tensor) for v in val)
            )
            self.xdep[n] = bool(inputs) and tensorish
            self.weighted_before[n] = any(
                self.weighted_before.get(a, False) or self._is_weighted(a) for a in inputs
            )

    def after_weight(self, node: fx.Node) -> bool:
        """Whether a weighted op (conv, linear, matmul with a weight) produced ``node`` or
        precedes it on a path from the input."""
        return self.weighted_before.get(node, False) or self._is_weighted(node)

    def _is_weighted(self, n: fx.Node) -> bool:
        if n.op != "call_function":
            return False
        name = O.base_name(O.packet(n))
        if name in O.CONV or name == "linear":
            return True
        if name in {"matmul", "mm", "bmm"}:
            return any(O.is_tensor_node(a) and not self.xdep.get(a, False) for a in n.args[:2])
        return False

    # --- helpers ---------------------------------------------------------------------------------
    def error(self, node: fx.Node, reason: str) -> GraphTransposeError:
        return GraphTransposeError(
            f"GraphTiedDecoder cannot transpose {node.target} (node {node.name!r}, module "
            f"{self.module_path(node) or '?'}) of encoder {self.name}: {reason}. Supported: "
            "conv/linear (and matmul with a weight), norms, activations, pooling, resizing, "
            "residual add/sub, gates (sigmoid/softmax products), attention (value path), "
            "reshape/permute/slice/select/cat/split/pad/roll/pixel-shuffle."
        )

    @staticmethod
    def module_path(node: fx.Node) -> str:
        return P.module_path(node)

    def unique_key(self, base: str, table: dict) -> str:
        """``base`` made an identifier, with a suffix that makes it new in ``table``."""
        key = "".join(c if c.isalnum() else "_" for c in base).strip("_") or "op"
        if key not in table:
            return key
        i = 2
        while f"{key}_{i}" in table:
            i += 1
        return f"{key}_{i}"

    def slot(self, node: fx.Node) -> int:
        if node not in self.slots:
            self.slots[node] = len(self.slots)
        return self.slots[node]

    def send(self, node: object) -> int | None:
        """The slot that receives a contribution for ``node`` (None: not traced from x)."""
        if isinstance(node, fx.Node) and self.xdep.get(node, False):
            return self.slot(node)
        return None

    def need(self, node: fx.Node, arg: object, what: str) -> int:
        slot = self.send(arg)
        if slot is None:
            raise self.error(node, f"its {what} is not computed from the image")
        return slot

    def shape_at(self, node: fx.Node) -> tuple[int, ...]:
        return self.plan.add_shape(O.val(node).shape)

    def same_shape(self, a: fx.Node, b: fx.Node) -> bool:
        sa, sb = O.val(a).shape, O.val(b).shape
        return len(sa) == len(sb) and all(to_expr(x) == to_expr(y) for x, y in zip(sa, sb))

    def reduce_at(self, operand: fx.Node, out: fx.Node) -> tuple[int, ...] | None:
        return None if self.same_shape(operand, out) else self.shape_at(operand)

    def sym(self, value: object) -> S.Arg:
        """A scalar argument: a literal, or a plan int when it is a traced size."""
        if isinstance(value, fx.Node):
            return S.Arg("plan", self.plan.add(O.val(value)))
        if isinstance(value, torch.SymInt):
            return S.Arg("plan", self.plan.add(value))
        return S.Arg("lit", value)

    def template(self, value: object, x_node: fx.Node | None = None) -> object:
        """Turn node arguments into replayable :class:`Arg`s."""
        if isinstance(value, fx.Node):
            if value is x_node:
                return S.Arg("x")
            if O.is_tensor_node(value):
                return S.Arg("const", self.const(value))
            return self.sym(value)
        if isinstance(value, list | tuple):
            items = [self.template(v, x_node) for v in value]
            return items if isinstance(value, list) else tuple(items)  # no FX immutable_list
        return S.Arg("lit", value)

    def const(self, node: fx.Node) -> int:
        """Index of a constant (a tensor not computed from the image), read at forward time."""
        if node in self.const_index:
            return self.const_index[node]
        if self.xdep.get(node, False):
            raise self.error(node, "a tensor computed from the image was used as a constant")
        if node.op == "placeholder":
            source = self.trace.sources.get(node.name)
            if source is None:
                raise self.error(node, "unknown graph input")
            spec = ConstSpec(kind=source.kind, source=source)
        elif node.op == "call_function" and node.target is operator.getitem:
            parent = self.const(node.args[0])
            spec = ConstSpec(
                kind="op", op=operator.getitem, args=(S.Arg("const", parent), node.args[1])
            )
        elif node.op == "call_function":
            args = self.template(tuple(node.args))
            kwargs = tuple((k, self.template(v)) for k, v in node.kwargs.items())
            spec = ConstSpec(kind="op", op=O.functional(node.target), args=args, kwargs=kwargs)
        else:
            raise self.error(node, f"unsupported constant of kind {node.op}")
        self.consts.append(spec)
        self.const_index[node] = len(self.consts) - 1
        return len(self.consts) - 1

    def weight(self, node: fx.Node) -> int:
        return self.const(node)

    def bias(self, node: fx.Node, weight: fx.Node, channels: int) -> str:
        source = self.trace.sources.get(weight.name)
        base = source.path.rsplit(".", 1)[0] if source else self.module_path(node) or node.name
        key = self.unique_key(base, self.biases)
        self.biases[key] = int(channels)
        return key

    def add(self, step: S.Step) -> None:
        if step.src in self.keep:
            step.free = False
        self.steps.append(step)
        self.produced.update(_dsts(step))

    def out_slot(self, node: fx.Node, index: int = 0) -> int | None:
        """The reconstruction slot of ``node`` (of its ``index``-th output for a tuple)."""
        if not isinstance(O.val(node), list | tuple):
            return self.slots.get(node)
        for user in node.users:
            if user.target is operator.getitem and user.args[1] == index:
                return self.slots.get(user)
        return None

    def gate_like(self, node: object) -> bool:
        """Produced by sigmoid/softmax (possibly through shape ops or a scalar scaling)."""
        if not isinstance(node, fx.Node) or node.op != "call_function":
            return False
        if node in self._gate_memo:
            return self._gate_memo[node]
        self._gate_memo[node] = False
        name = O.base_name(O.packet(node))
        result = False
        if name in O.GATE_PRODUCERS:
            result = True
        elif (
            name in O.GATE_PASS
            or (name in {"mul", "div"} and not any(O.is_tensor_node(a) for a in node.args[1:2]))
            or node.target is operator.getitem
        ):
            result = self.gate_like(node.args[0])
        self._gate_memo[node] = result
        return result

    def unary_chain(self, gate: fx.Node, source: fx.Node) -> list[fx.Node] | None:
        """Ops from ``source`` to ``gate`` when each is elementwise on one traced tensor."""
        chain: list[fx.Node] = []
        node = gate
        for _ in range(8):
            if node is source:
                return chain[::-1]
            if not isinstance(node, fx.Node) or node.op != "call_function":
                return None
            if not P.is_op(node.target):
                return None
            tensors = [a for a in O.walk((node.args, node.kwargs)) if O.is_tensor_node(a)]
            name = O.base_name(O.packet(node))
            pointwise = name in O.ACTIVATIONS or P.is_pointwise(node.target)
            if not pointwise or len(tensors) != 1:
                return None
            chain.append(node)
            node = tensors[0]
        return None

    # --- the reverse pass ------------------------------------------------------------------------
    def build(self, bottleneck: fx.Node, levels: list[fx.Node]) -> Program:
        b_slot = self.slot(bottleneck)
        for node in levels:
            self.keep.add(self.slot(node))
        self.keep.add(b_slot)
        self.produced.add(b_slot)
        for node in reversed(list(self.trace.graph.nodes)):
            if node.op != "call_function" or node.target is operator.getitem:
                continue
            live = self.slots.get(node) in self.produced or any(
                u.target is operator.getitem and self.slots.get(u) in self.produced
                for u in node.users
            )
            if not live:
                continue
            if not self.xdep.get(node, False):
                continue
            self.transpose(node)
        input_slot = self.slots.get(self.trace.input_node)
        if input_slot not in self.produced:
            raise GraphTransposeError(
                f"GraphTiedDecoder: no path from the bottleneck of encoder {self.name} back to "
                "its input was found (every path was cut by a gate)."
            )
        reached = {n for n, slot in self.slots.items() if slot in self.produced}
        for node in levels:
            if self.slots[node] not in self.produced:
                replay_side_level(self, node, reached)
        return Program(
            steps=self.steps,
            n_slots=len(self.slots),
            bottleneck_slot=b_slot,
            input_slot=input_slot,
            level_slots=[self.slots[n] for n in levels],
            consts=self.consts,
            weight_consts=[i for i, c in enumerate(self.consts) if c.kind == "parameter"],
            biases=self.biases,
            norms=self.norms,
        )

    def transpose(self, node: fx.Node) -> None:
        name = O.base_name(O.packet(node))
        rule = _RULES.get(name)
        if rule is None and P.is_pointwise(node.target):  # any other elementwise op
            rule = activation
        if rule is None:
            raise self.error(node, "no transposition rule for this op")
        rule(self, node, name)


def _dsts(step: S.Step) -> list[int]:
    """The slots a step contributes to."""
    out = [step.dst] if hasattr(step, "dst") else []
    if isinstance(step, S.FanOut):
        out.extend(t[0] for t in step.targets)
    if isinstance(step, S.SplitT):
        out.extend(p[0] for p in step.parts if p[0] is not None)
    return out


_RULES: dict[str, Rule] = rule_table(
    *(
        ((name,), rule)
        for module in (
            _rules_weighted,
            _rules_attention,
            _rules_norm,
            _rules_pointwise,
            _rules_product,
            _rules_resample,
            _rules_shape,
        )
        for name, rule in module.RULES.items()
    )
)
