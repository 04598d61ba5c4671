"""Transpose a traced encoder graph node by node into a list of runtime steps.

The reverse pass starts from the bottleneck and walks the ATen graph from its end to its start.
A node is transposed only if a reconstruction reaches it; the rules (see
:mod:`dsplug.tied.graph` for the documented list) say which of its inputs receive a
contribution and how. Constants (the encoder's weights, buffers, tensors computed from them)
are described so that the decoder can read them at forward time, never copied.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field

import sympy
import torch
from torch import fx, nn

from . import _graph_ops as O
from . import _graph_steps as S
from . import _torch_private as P
from ._graph_plan import ShapePlan, to_expr
from ._graph_trace import EncoderTrace, TensorSource

__all__ = ["ConstSpec", "GraphTransposeError", "Program", "Transposer"]

aten = torch.ops.aten


class GraphTransposeError(TypeError):
    """An encoder op that the tied decoder cannot transpose (the message names op and encoder)."""


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
    """Builds a :class:`Program` from a trace (see the module docstring)."""

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

    def _key(self, base: str, table: dict) -> str:
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
        key = self._key(base, self.biases)
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
                self.replay_side_level(node, reached)
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
        if rule is None and P.is_pointwise(node.target):
            rule = Transposer._activation
        if rule is None:
            raise self.error(node, "no transposition rule for this op")
        rule(self, node, name)

    # --- rules -----------------------------------------------------------------------------
    def _identity(self, node: fx.Node, name: str) -> None:
        src = self.out_slot(node)
        x = node.args[0]
        dst = self.need(node, x, "input")
        if self.same_shape(x, node):
            self.add(S.FanOut(src, node.name, targets=((dst, 1.0, None),)))
        else:
            self.add(S.ReshapeT(src, node.name, dst=dst, shape_at=self.shape_at(x)))

    _reshape = _identity

    def _conv(self, node: fx.Node, name: str) -> None:
        a = O.bind(node)
        x, w = a["input"], a["weight"]
        dst = self.need(node, x, "input")
        if self.xdep.get(w, False):
            raise self.error(node, "its weight is computed from the image (dynamic conv)")
        w_shape = tuple(int(s) for s in O.val(w).shape)
        dims = len(w_shape) - 2
        transposed = name.startswith("conv_transpose") or bool(a.get("transposed", False))
        stride = O.ntuple(a.get("stride", 1), dims)
        dilation = O.ntuple(a.get("dilation", 1), dims)
        groups = int(a.get("groups", 1) or 1)
        padding = a.get("padding", 0)
        crop = None
        if isinstance(padding, str):
            if padding == "valid":
                padding = (0,) * dims
            else:  # "same" (stride 1): pad total d*(k-1), the left half rounded down
                totals = [d * (k - 1) for d, k in zip(dilation, w_shape[2:])]
                crop = tuple(t // 2 for t in totals)
                padding = (0,) * dims
        else:
            padding = O.ntuple(padding, dims)
        if transposed and any(int(p) for p in O.ntuple(a.get("output_padding", 0), dims)):
            raise self.error(node, "a forward conv_transpose with output_padding")
        in_shape = O.val(x).shape
        self.add(
            S.ConvT(
                self.out_slot(node),
                node.name,
                dst=dst,
                weight=self.weight(w),
                bias=self.bias(node, w, int(in_shape[1])),
                dims=dims,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=groups,
                kernel=w_shape[2:],
                in_at=self.plan.add_shape(in_shape[2:]),
                crop=crop,
                forward_transposed=transposed,
            )
        )

    def _linear(self, node: fx.Node, name: str) -> None:
        a = O.bind(node)
        x, w = a["input"], a["weight"]
        dst = self.need(node, x, "input")
        if self.xdep.get(w, False):
            raise self.error(node, "its weight is computed from the image")
        channels = int(O.val(w).shape[1])
        self.add(
            S.LinearT(
                self.out_slot(node),
                node.name,
                dst=dst,
                weight=self.weight(w),
                bias=self.bias(node, w, channels),
            )
        )

    def _matmul(self, node: fx.Node, name: str) -> None:
        a, b = node.args[0], node.args[1]
        src = self.out_slot(node)
        xa, xb = self.xdep.get(a, False), self.xdep.get(b, False)
        if xa and not xb:
            self.add(
                S.MatmulConstT(
                    src,
                    node.name,
                    dst=self.slot(a),
                    const=self.weight(b),
                    const_on_right=True,
                    reduce_at=self._batch_reduce(a, node),
                )
            )
        elif xb and not xa:
            self.add(
                S.MatmulConstT(
                    src,
                    node.name,
                    dst=self.slot(b),
                    const=self.weight(a),
                    const_on_right=False,
                    reduce_at=self._batch_reduce(b, node),
                )
            )
        elif self.gate_like(a):  # attention: softmax(QK^T) @ V -> V gets the tokens mapped
            self._token_map(node, b, token_dim=-2)
        elif self.gate_like(b):
            self._token_map(node, a, token_dim=-1)
        else:
            raise self.error(node, "a product of two image-dependent tensors with no gate")

    def _batch_reduce(self, operand: fx.Node, out: fx.Node) -> tuple[int, ...] | None:
        so, sn = O.val(operand).shape, O.val(out).shape
        if len(so) == len(sn) and all(to_expr(x) == to_expr(y) for x, y in zip(so[:-2], sn[:-2])):
            return None
        return self.shape_at(operand)

    def _token_map(self, node: fx.Node, value: fx.Node, token_dim: int) -> None:
        out_shape, v_shape = O.val(node).shape, O.val(value).shape
        n_expr, m_expr = to_expr(out_shape[token_dim]), to_expr(v_shape[token_dim])
        src_grid = self._grid(n_expr)
        dst_grid = self._grid(m_expr)
        if src_grid is None or dst_grid is None or len(src_grid) != len(dst_grid):
            src_grid = dst_grid = None
        td = token_dim % len(out_shape)
        batch_same = len(out_shape) == len(v_shape) and all(
            to_expr(x) == to_expr(y) for i, (x, y) in enumerate(zip(out_shape, v_shape)) if i != td
        )
        self.add(
            S.TokenMapT(
                self.out_slot(node),
                node.name,
                dst=self.slot(value),
                token_dim=token_dim,
                src_grid_at=None if src_grid is None else self.plan.add_shape(src_grid),
                dst_grid_at=None if dst_grid is None else self.plan.add_shape(dst_grid),
                dst_tokens_at=self.plan.add(m_expr),
                reduce_at=None if batch_same else self.shape_at(value),
            )
        )

    def _grid(self, tokens: sympy.Expr) -> list[sympy.Expr] | None:
        """Factor a token count into per-spatial-dim sizes, in the input's dim order."""
        in_shape = O.val(self.trace.input_node).shape
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

    def _sdpa(self, node: fx.Node, name: str) -> None:
        a = O.bind(node)
        value = a["value"]
        if not self.xdep.get(value, False):
            return
        self._token_map(node, value, token_dim=-2)

    def _norm(self, node: fx.Node, name: str) -> None:
        x = O.bind(node)["input"]
        dst = self.need(node, x, "input")
        src = self.out_slot(node)
        if not self.after_weight(x):  # before the encoder's first weight: the output stays raw
            self.add(S.FanOut(src, node.name, targets=((dst, 1.0, None),)))
            return
        self.add(S.NormT(src, node.name, dst=dst, norm=self.own_norm(node, name)))

    def own_norm(self, node: fx.Node, name: str) -> str:
        """A fresh norm of the same kind as ``node`` (the decoder's own parameters); its key."""
        a = O.bind(node)
        shape = O.val(a["input"]).shape
        channels = int(shape[1]) if len(shape) > 1 else 1
        affine = a.get("weight") is not None
        eps = float(a.get("eps", 1e-5) or 1e-5)
        stats = {
            "momentum": float(a.get("momentum") or 0.1),
            "affine": affine,
            "track_running_stats": a.get("running_mean") is not None,
        }
        if name in {"layer_norm", "native_layer_norm", "rms_norm"}:
            normalized = tuple(int(s) for s in a["normalized_shape"])
            if name == "rms_norm":
                module: nn.Module = nn.RMSNorm(
                    normalized, eps=a.get("eps"), elementwise_affine=affine
                )
            else:
                bias = a.get("bias") is not None
                module = nn.LayerNorm(normalized, eps=eps, elementwise_affine=affine, bias=bias)
        elif name in {"group_norm", "native_group_norm"}:
            groups = int(a.get("num_groups") or a.get("group"))
            module = nn.GroupNorm(groups, channels, eps=eps, affine=affine)
        elif name == "instance_norm":
            kind = {3: nn.InstanceNorm1d, 4: nn.InstanceNorm2d, 5: nn.InstanceNorm3d}[len(shape)]
            module = kind(channels, eps=eps, **stats)
        else:
            kind = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}
            module = kind[len(shape)](channels, eps=eps, **stats)
        key = self._key(self.module_path(node) or node.name, self.norms)
        self.norms[key] = module
        return key

    # --- levels off the main path ----------------------------------------------------------------
    def replay_side_level(self, level: fx.Node, reached: set[fx.Node]) -> None:
        """A level computed off the path to the bottleneck (e.g. DPN's relu(cat(dual paths))):
        its side branch is replayed forward on the reconstructions of the tensors it reads."""
        side: list[fx.Node] = []
        seen: set[fx.Node] = set()

        def visit(n: object) -> None:
            if not isinstance(n, fx.Node) or n in seen:
                return
            seen.add(n)
            if n in reached or not self.xdep.get(n, False):
                return
            for a in O.walk((n.args, n.kwargs)):
                visit(a)
            side.append(n)

        visit(level)
        local = {n: i for i, n in enumerate(side)}
        ops = []
        read: set[int] = set()

        def arg(value: object) -> object:
            if isinstance(value, fx.Node):
                if value in local:
                    return S.Arg("local", local[value])
                if value in reached:
                    read.add(self.slots[value])
                    return S.Arg("env", self.slots[value])
                if O.is_tensor_node(value):
                    return S.Arg("const", self.const(value))
                return self.sym(value)
            if isinstance(value, list | tuple):
                items = [arg(v) for v in value]
                return items if isinstance(value, list) else tuple(items)
            return S.Arg("lit", value)

        for n in side:
            name = O.base_name(O.packet(n))
            if name in O.NORMS:
                key = self.own_norm(n, name)
                ops.append(("norm", key, (arg(O.bind(n)["input"]),), ()))
            else:
                target = O.functional(n.target)
                kwargs = tuple((k, arg(v)) for k, v in n.kwargs.items())
                ops.append(("op", target, arg(tuple(n.args)), kwargs))
        for step in self.steps:  # the tensors read must outlive their own transposition
            if step.src in read:
                step.free = False
            if isinstance(step, S.CatT) and read & set(step.srcs):
                step.free = False
        self.keep |= read
        self.add(S.ReplayT(-1, level.name, dst=self.slots[level], ops=tuple(ops)))

    def _activation(self, node: fx.Node, name: str) -> None:
        tensors = [a for a in node.args if self.xdep.get(a, False)]
        if len(tensors) != 1:
            raise self.error(node, "an elementwise op of several image-dependent tensors")
        x = tensors[0]
        dst = self.slot(x)
        src = self.out_slot(node)
        if not self.after_weight(x):
            self.add(S.FanOut(src, node.name, targets=((dst, 1.0, None),)))
            return
        op = O.functional(node.target)
        self.add(
            S.PointwiseT(
                src,
                node.name,
                dst=dst,
                op=op,
                args=self.template(tuple(node.args), x),
                kwargs=tuple((k, self.template(v, x)) for k, v in node.kwargs.items()),
            )
        )

    def _add(self, node: fx.Node, name: str) -> None:
        a = O.bind(node)
        x, y = a["self"], a.get("other")
        alpha = a.get("alpha", 1)
        alpha = 1 if alpha is None else alpha
        sx, sy = (1.0, float(alpha)) if name != "rsub" else (-float(alpha), 1.0)
        if name == "sub":
            sy = -sy
        targets = []
        for operand, scale in ((x, sx), (y, sy)):
            slot = self.send(operand)
            if slot is not None:
                targets.append((slot, scale, self.reduce_at(operand, node)))
        self.add(S.FanOut(self.out_slot(node), node.name, targets=tuple(targets)))

    def _neg(self, node: fx.Node, name: str) -> None:
        x = node.args[0]
        self.add(S.ScaleT(self.out_slot(node), node.name, dst=self.slot(x), scalar=-1.0))

    def _mul(self, node: fx.Node, name: str, divide: bool = False) -> None:
        x, y = node.args[0], node.args[1]
        src = self.out_slot(node)
        xx, xy = self.xdep.get(x, False), self.xdep.get(y, False)
        if divide and name == "div" and node.kwargs.get("rounding_mode") is not None:
            raise self.error(node, "an integer (rounding) division")
        if xx and xy:
            if divide:  # x / g(x): a normalising gate, cut
                self.add(
                    S.FanOut(
                        src, node.name, targets=((self.slot(x), 1.0, self.reduce_at(x, node)),)
                    )
                )
                return
            self._product(node, x, y)
            return
        main, other = (x, y) if xx else (y, x)
        if not self.xdep.get(main, False):
            return
        if divide and main is y:  # c / g(x): nothing passes
            return
        reduce_at = self.reduce_at(main, node)
        if isinstance(other, fx.Node) and O.is_tensor_node(other):
            step = S.ScaleT(
                src,
                node.name,
                dst=self.slot(main),
                const=self.weight(other),
                divide=divide,
                reduce_at=reduce_at,
            )
        elif isinstance(other, fx.Node):
            raise self.error(node, "a product with a traced (symbolic) scalar")
        else:
            step = S.ScaleT(
                src,
                node.name,
                dst=self.slot(main),
                scalar=float(other),
                divide=divide,
                reduce_at=reduce_at,
            )
        self.add(step)

    def _div(self, node: fx.Node, name: str) -> None:
        self._mul(node, name, divide=True)

    def _product(self, node: fx.Node, x: fx.Node, y: fx.Node) -> None:
        src = self.out_slot(node)
        for main, gate in ((x, y), (y, x)):
            chain = self.unary_chain(gate, main)
            if chain is not None and chain:
                if not self.after_weight(main):
                    self.add(S.FanOut(src, node.name, targets=((self.slot(main), 1.0, None),)))
                    return
                ops = tuple(
                    (
                        O.functional(c.target),
                        self._chain_args(c),
                        tuple((k, self.template(v)) for k, v in c.kwargs.items()),
                    )
                    for c in chain
                )
                self.add(S.SelfGateT(src, node.name, dst=self.slot(main), chain=ops))
                return
        out_same_x, out_same_y = self.same_shape(x, node), self.same_shape(y, node)
        if out_same_x != out_same_y:  # the broadcast operand is the gate
            main = x if out_same_x else y
            self.add(S.FanOut(src, node.name, targets=((self.slot(main), 1.0, None),)))
            return
        gx, gy = self.gate_like(x), self.gate_like(y)
        if gx != gy:
            main = y if gx else x
            self.add(
                S.FanOut(
                    src, node.name, targets=((self.slot(main), 1.0, self.reduce_at(main, node)),)
                )
            )
            return
        targets = tuple((self.slot(o), 1.0, self.reduce_at(o, node)) for o in (x, y))
        self.add(S.FanOut(src, node.name, targets=targets))

    def _chain_args(self, node: fx.Node) -> tuple:
        tensor = next(a for a in node.args if O.is_tensor_node(a))
        return self.template(tuple(node.args), tensor)

    def _pool(self, node: fx.Node, name: str) -> None:
        x = node.args[0]
        dims = int(name[name.index("pool") + 4]) if "pool" in name else 2
        shape = O.val(x).shape
        self.add(
            S.ResizeT(
                self.out_slot(node),
                node.name,
                dst=self.need(node, x, "input"),
                mode="nearest",
                dims=dims,
                size_at=self.plan.add_shape(shape[-dims:]),
            )
        )

    def _resize(self, node: fx.Node, name: str) -> None:
        x = node.args[0]
        digits = [c for c in name if c.isdigit()]
        dims = int(digits[-1]) if digits else 2
        shape = O.val(x).shape
        self.add(
            S.ResizeT(
                self.out_slot(node),
                node.name,
                dst=self.need(node, x, "input"),
                mode="area",
                dims=dims,
                size_at=self.plan.add_shape(shape[-dims:]),
            )
        )

    def _reduction(self, node: fx.Node, name: str) -> None:
        a = O.bind(node)
        x = a["self"]
        if O.is_tensor_node(a.get("other")):  # max/min of two tensors: elementwise, not a pool
            raise self.error(node, "an elementwise maximum/minimum of two tensors")
        ndim = len(O.val(x).shape)
        dims = a.get("dim")
        if dims is None or dims == []:
            dims = ()
        elif isinstance(dims, int):
            dims = (dims,)
        dims = tuple(sorted(int(d) % ndim for d in dims))
        keepdim = bool(a.get("keepdim", False))
        self.add(
            S.UnreduceT(
                self.out_slot(node),
                node.name,
                dst=self.need(node, x, "input"),
                dims=dims,
                keepdim=keepdim,
                shape_at=self.shape_at(x),
            )
        )

    def _permute(self, node: fx.Node, name: str) -> None:
        x = node.args[0]
        ndim = len(O.val(x).shape)
        if name == "permute":
            perm = [int(d) % ndim for d in node.args[1]]
        else:  # transpose / t / swapaxes
            d0, d1 = (node.args[1], node.args[2]) if len(node.args) > 2 else (0, 1)
            perm = list(range(ndim))
            perm[int(d0) % ndim], perm[int(d1) % ndim] = perm[int(d1) % ndim], perm[int(d0) % ndim]
        inverse = [0] * ndim
        for i, p in enumerate(perm):
            inverse[p] = i
        self.add(
            S.TransposeT(
                self.out_slot(node), node.name, dst=self.need(node, x, "input"), perm=tuple(inverse)
            )
        )

    def _expand(self, node: fx.Node, name: str) -> None:
        x = node.args[0]
        self.add(
            S.FanOut(
                self.out_slot(node),
                node.name,
                targets=((self.need(node, x, "input"), 1.0, self.reduce_at(x, node)),),
            )
        )

    def _select(self, node: fx.Node, name: str) -> None:
        x, dim, index = node.args[0], int(node.args[1]), node.args[2]
        self.add(
            S.SelectT(
                self.out_slot(node),
                node.name,
                dst=self.need(node, x, "input"),
                dim=dim,
                index=self.sym(index),
                shape_at=self.shape_at(x),
            )
        )

    def _slice(self, node: fx.Node, name: str) -> None:
        a = O.bind(node)
        x = a["self"]
        if name == "narrow":
            start = to_expr(O.val(a["start"]) if isinstance(a["start"], fx.Node) else a["start"])
            length = to_expr(
                O.val(a["length"]) if isinstance(a["length"], fx.Node) else a["length"]
            )
            start_arg = S.Arg("plan", self.plan.add(start))
            end_arg = S.Arg("plan", self.plan.add(start + length))
            step = 1
        else:
            start_arg, end_arg = self.sym(a.get("start")), self.sym(a.get("end"))
            step = int(a.get("step") or 1)
        self.add(
            S.SliceT(
                self.out_slot(node),
                node.name,
                dst=self.need(node, x, "input"),
                dim=int(a.get("dim") or 0),
                start=start_arg,
                end=end_arg,
                step=step,
                shape_at=self.shape_at(x),
            )
        )

    def _cat(self, node: fx.Node, name: str) -> None:
        tensors = node.args[0]
        dim = int(node.args[1]) if len(node.args) > 1 else int(node.kwargs.get("dim", 0))
        stack = name == "stack"
        parts = []
        for t in tensors:
            shape = O.val(t).shape
            ndim = len(shape)
            size_at = 0 if stack else self.plan.add(shape[dim % ndim])
            parts.append((self.send(t), size_at))
        self.add(S.SplitT(self.out_slot(node), node.name, dim=dim, parts=tuple(parts), stack=stack))

    def _split(self, node: fx.Node, name: str) -> None:
        x = node.args[0]
        a = O.bind(node)
        ndim = len(O.val(x).shape)
        dim = int(a.get("dim") or 0) % ndim
        pieces = O.val(node)
        srcs, shapes = [], []
        for i, piece in enumerate(pieces):
            srcs.append(self.out_slot(node, i))
            shapes.append(self.plan.add_shape(piece.shape))
        step = S.CatT(
            -1,
            node.name,
            dst=self.need(node, x, "input"),
            dim=dim,
            srcs=tuple(srcs),
            shapes_at=tuple(shapes),
            stack=name == "unbind",
        )
        self.add(step)
        step.free = not any(s in self.keep for s in srcs if s is not None)

    def _pad(self, node: fx.Node, name: str) -> None:
        x = node.args[0]
        a = O.bind(node)
        pads = a.get("pad") if "pad" in a else a.get("padding")
        self.add(
            S.PadT(
                self.out_slot(node),
                node.name,
                dst=self.need(node, x, "input"),
                pads=tuple(self.sym(p) for p in pads),
            )
        )

    def _roll(self, node: fx.Node, name: str) -> None:
        a = O.bind(node)
        shifts = a["shifts"]
        dims = a.get("dims") or []
        self.add(
            S.RollT(
                self.out_slot(node),
                node.name,
                dst=self.need(node, a["self"], "input"),
                shifts=tuple(self.sym(s) for s in shifts),
                dims=tuple(int(d) for d in dims),
            )
        )

    def _pixel_shuffle(self, node: fx.Node, name: str) -> None:
        self.add(
            S.PixelShuffleT(
                self.out_slot(node),
                node.name,
                dst=self.need(node, node.args[0], "input"),
                factor=int(node.args[1]),
                unshuffle=name == "pixel_shuffle",
            )
        )

    def _flip(self, node: fx.Node, name: str) -> None:
        x = node.args[0]
        self.add(
            S.PointwiseT(
                self.out_slot(node),
                node.name,
                dst=self.need(node, x, "input"),
                op=aten.flip.default,
                args=(S.Arg("x"), S.Arg("lit", list(node.args[1]))),
            )
        )


def _dsts(step: S.Step) -> list[int]:
    """The slots a step contributes to."""
    out = [step.dst] if hasattr(step, "dst") else []
    if isinstance(step, S.FanOut):
        out.extend(t[0] for t in step.targets)
    if isinstance(step, S.SplitT):
        out.extend(p[0] for p in step.parts if p[0] is not None)
    return out


_RULES: dict[str, Callable[[Transposer, fx.Node, str], None]] = {}
for _names, _rule in (
    (O.CONV, Transposer._conv),
    ({"linear"}, Transposer._linear),
    ({"matmul", "mm", "bmm"}, Transposer._matmul),
    ({"scaled_dot_product_attention"}, Transposer._sdpa),
    (O.NORMS, Transposer._norm),
    (O.ACTIVATIONS, Transposer._activation),
    (O.IDENTITY, Transposer._identity),
    (O.RESHAPES, Transposer._reshape),
    ({"add", "sub", "rsub"}, Transposer._add),
    ({"neg"}, Transposer._neg),
    ({"mul"}, Transposer._mul),
    ({"div"}, Transposer._div),
    (O.POOLS, Transposer._pool),
    (O.RESIZES, Transposer._resize),
    (O.REDUCTIONS, Transposer._reduction),
    ({"permute", "transpose", "t", "swapaxes", "swapdims"}, Transposer._permute),
    ({"expand", "expand_as"}, Transposer._expand),
    ({"select"}, Transposer._select),
    ({"slice", "narrow"}, Transposer._slice),
    ({"cat", "concat", "concatenate", "stack"}, Transposer._cat),
    (O.SPLITS, Transposer._split),
    (O.PADS, Transposer._pad),
    ({"roll"}, Transposer._roll),
    ({"pixel_shuffle", "pixel_unshuffle"}, Transposer._pixel_shuffle),
    ({"flip"}, Transposer._flip),
):
    for _name in _names:
        _RULES[_name] = _rule
