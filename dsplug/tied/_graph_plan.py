"""The shape plan: every size the transposed graph needs, as integer expressions of the input's
sizes, compiled once into one plain Python function.

``torch.export`` gives each traced tensor a shape made of sympy expressions of the input's
symbolic sizes (e.g. ``((H - 1) // 2) + 1``). :class:`ShapePlan` collects the expressions the
decoder needs (forward input sizes for output paddings and upsampling, reshape targets, split
sizes, pads), prints them as Python source and compiles it. Evaluating the plan for a new input
size is then integer arithmetic only: no sympy, FX or export at forward time, and
``torch.compile`` can trace it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import sympy
import torch

__all__ = ["CompiledPlan", "PlanError", "ShapePlan", "to_expr"]


class PlanError(ValueError):
    """An input size that the trace cannot serve, or an expression that cannot be compiled."""


def to_expr(value: object) -> sympy.Expr:
    """A sympy expression for an int, a SymInt/SymBool or a sympy expression."""
    if isinstance(value, bool):
        return sympy.true if value else sympy.false
    if isinstance(value, int):
        return sympy.Integer(value)
    if isinstance(value, torch.SymInt | torch.SymBool | torch.SymFloat):
        return value.node.expr
    if isinstance(value, sympy.Basic):
        return value
    raise PlanError(f"Expected an int or a symbolic int, got {type(value).__name__}: {value!r}.")


_BINARY = {
    "FloorDiv": "//",
    "CleanDiv": "//",
    "PythonMod": "%",
    "Mod": "%",
    "IntTrueDiv": "/",
    "FloatTrueDiv": "/",
    "PowByNatural": "**",
    "FloatPow": "**",
    "Pow": "**",
    "Equality": "==",
    "Unequality": "!=",
    "StrictLessThan": "<",
    "LessThan": "<=",
    "StrictGreaterThan": ">",
    "GreaterThan": ">=",
}
_CALLS = {
    "Max": "max",
    "Min": "min",
    "FloorToInt": "_floor",
    "floor": "_floor",
    "CeilToInt": "_ceil",
    "ceiling": "_ceil",
    "TruncToInt": "int",
    "RoundToInt": "round",
    "ToFloat": "float",
    "Abs": "abs",
    "Identity": "",
}


class ShapePlan:
    """Integer expressions of the input sizes, compiled into one function.

    Args:
        input_shape: the traced input's shape (ints and SymInts), (B, C, *spatial).
        range_constraints: symbol -> ValueRanges from the export.
        encoder_name: for error messages.
    """

    def __init__(
        self, input_shape: Sequence[object], range_constraints: dict, encoder_name: str
    ) -> None:
        self._encoder = encoder_name
        self._exprs: list[sympy.Basic] = []
        self._index: dict[sympy.Basic, int] = {}
        self._checks: list[tuple[sympy.Basic, str]] = []
        self._dims = [to_expr(d) for d in input_shape]
        self._names: dict[sympy.Symbol, str] = {}
        self._bindings: list[tuple[int, sympy.Symbol | None, int, int]] = []
        for i, expr in enumerate(self._dims):
            self._bindings.append(self._binding(i, expr))
        self._ranges = {s: r for s, r in range_constraints.items() if isinstance(s, sympy.Symbol)}

    # --- construction ------------------------------------------------------------------------
    def _binding(self, i: int, expr: sympy.Expr) -> tuple[int, sympy.Symbol | None, int, int]:
        """How input dim i determines a symbol: dim = a * symbol + b (a = 0: a fixed size)."""
        if expr.is_Integer:
            return (i, None, 0, int(expr))
        free = list(expr.free_symbols)
        if len(free) == 1:
            sym = free[0]
            poly = sympy.Poly(expr, sym)
            if poly.degree() == 1:
                a, b = (int(c) for c in poly.all_coeffs())
                self._names.setdefault(sym, f"v{len(self._names)}")
                return (i, sym, a, b)
        raise PlanError(
            f"Encoder {self._encoder}: input dim {i} was traced as {expr}, which the tied decoder "
            "cannot invert; expected a plain symbolic or fixed size."
        )

    def add(self, value: object) -> int:
        """Register an integer expression; return its index in the evaluated plan."""
        expr = to_expr(value)
        unknown = expr.free_symbols - set(self._names)
        if unknown:
            raise PlanError(
                f"Encoder {self._encoder}: a traced size depends on {sorted(map(str, unknown))}, "
                "which is not an input size (data-dependent shapes cannot be transposed)."
            )
        if expr not in self._index:
            self._index[expr] = len(self._exprs)
            self._exprs.append(expr)
        return self._index[expr]

    def add_shape(self, shape: Sequence[object]) -> tuple[int, ...]:
        """Register every entry of a shape; return their indices."""
        return tuple(self.add(s) for s in shape)

    def add_check(self, condition: object, message: str) -> None:
        """A condition that must hold for every input size (e.g. a runtime assert of export)."""
        expr = to_expr(condition)
        if expr is sympy.true or any(expr == e for e, _ in self._checks):
            return
        unknown = expr.free_symbols - set(self._names)
        if unknown:
            raise PlanError(
                f"Encoder {self._encoder}: the trace assumes {expr}, which involves "
                f"{sorted(map(str, unknown))}, not input sizes (data-dependent shapes cannot be "
                "transposed)."
            )
        self._checks.append((expr, message))

    def value_at_trace(self, index: int) -> sympy.Basic:
        """The registered expression (for construction-time reasoning)."""
        return self._exprs[index]

    # --- code generation -----------------------------------------------------------------------
    def _py(self, e: sympy.Basic) -> str:
        cls = type(e).__name__
        if e is sympy.true or cls == "BooleanTrue":
            return "True"
        if e is sympy.false or cls == "BooleanFalse":
            return "False"
        if e.is_Integer:
            return str(int(e))
        if e.is_Symbol:
            return self._names[e]
        if e.is_Float:
            return repr(float(e))
        if e.is_Rational:
            return f"({int(e.p)} / {int(e.q)})"
        args = [self._py(a) for a in e.args]
        if cls == "Add":
            return "(" + " + ".join(args) + ")"
        if cls == "Mul":
            return "(" + " * ".join(args) + ")"
        if cls in _BINARY and len(args) == 2:
            return f"({args[0]} {_BINARY[cls]} {args[1]})"
        if cls == "CeilDiv":
            return f"(-((-{args[0]}) // {args[1]}))"
        if cls == "ModularIndexing":
            return f"(({args[0]} // {args[1]}) % {args[2]})"
        if cls in _CALLS:
            return f"{_CALLS[cls]}({', '.join(args)})"
        if cls == "And":
            return "(" + " and ".join(args) + ")"
        if cls == "Or":
            return "(" + " or ".join(args) + ")"
        if cls == "Not":
            return f"(not {args[0]})"
        raise PlanError(f"Encoder {self._encoder}: cannot compile the size expression {e} ({cls}).")

    def compile(self) -> CompiledPlan:
        """Freeze the registered expressions into a :class:`CompiledPlan` (plain Python)."""
        names = list(self._names.values())
        params = ", ".join(names) or "_unused=None"
        values = ", ".join(self._py(e) for e in self._exprs)
        checks = ", ".join(self._py(e) for e, _ in self._checks)
        source = (
            f"def plan({params}):\n    return ({values}{',' if self._exprs else ''})\n"
            f"def checks({params}):\n    return ({checks}{',' if self._checks else ''})\n"
        )
        order = list(self._names)
        bindings = tuple(
            (i, -1 if sym is None else order.index(sym), a, b) for i, sym, a, b in self._bindings
        )
        ranges = []
        for sym in order:
            rng = self._ranges.get(sym)
            lower = upper = None
            if rng is not None:
                lower = int(rng.lower) if rng.lower.is_Integer else None
                upper = int(rng.upper) if rng.upper.is_Integer else None
            ranges.append((str(sym), _unspecialised(lower), upper))
        return CompiledPlan(
            encoder=self._encoder,
            traced=tuple(str(d) for d in self._dims),
            bindings=bindings,
            ranges=tuple(ranges),
            checks=tuple(f"{e}: {m}" for e, m in self._checks),
            source=source,
        )


def _unspecialised(lower: int | None) -> int | None:
    """Export's floor of 2 on a symbolic size (its 0/1 specialisation) lowered to 1.

    A size traced as symbolic is assumed >= 2 only so that 1 can be special-cased; the
    decoder's size formulas stay valid at 1 (batch size 1, a 1-pixel level), as the waived
    "not 1" guards (``graph._not_one``) do. A graph that really changes at 1 (a bare
    ``squeeze()``) changes its bottleneck shape, which the decoder's forward refuses.
    """
    return 1 if lower == 2 else lower


@dataclass(frozen=True)
class CompiledPlan:
    """The plan as plain Python: integer bindings of the input dims and two generated functions
    (``plan`` and ``checks``, compiled from ``source``; pickling keeps the source only).

    ``evaluate`` does integer arithmetic only, so that it runs inside ``torch.compile``.
    """

    encoder: str
    traced: tuple[str, ...]
    bindings: tuple[tuple[int, int, int, int], ...]  # (dim, variable or -1, a, b): dim = a*v + b
    ranges: tuple[tuple[str, int | None, int | None], ...]
    checks: tuple[str, ...]
    source: str
    plan_fn: Callable[..., tuple[int, ...]] = field(init=False, repr=False, compare=False)
    check_fn: Callable[..., tuple[bool, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        scope: dict[str, object] = {"_floor": math.floor, "_ceil": math.ceil}
        exec(compile(self.source, f"<dsplug graph plan: {self.encoder}>", "exec"), scope)
        object.__setattr__(self, "plan_fn", scope["plan"])
        object.__setattr__(self, "check_fn", scope["checks"])

    def __reduce__(self) -> tuple:
        return (
            CompiledPlan,
            (self.encoder, self.traced, self.bindings, self.ranges, self.checks, self.source),
        )

    def evaluate(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The plan's integers for an input of ``shape`` (B, C, *spatial).

        Raises:
            PlanError: when the shape has the wrong rank or channels, or a size outside what
                the trace supports.
        """
        if len(shape) != len(self.traced):
            raise PlanError(
                f"Encoder {self.encoder}: image_shape {shape} has {len(shape)} dims; "
                f"expected {len(self.traced)} (B, C, *spatial)."
            )
        values = [0] * len(self.ranges)
        seen = [False] * len(self.ranges)
        for i, var, a, b in self.bindings:
            size = shape[i]
            if var < 0:
                if size != b:
                    what = "channels" if i == 1 else f"size of dim {i}"
                    raise PlanError(
                        f"Encoder {self.encoder}: image_shape {shape} has {what} {size}, but "
                        f"the traced encoder fixes it to {b} (a trace that is static in this "
                        "dim supports only the reference size)."
                    )
                continue
            v, rem = (size - b) // a, (size - b) % a
            if rem or (seen[var] and values[var] != v):
                raise PlanError(
                    f"Encoder {self.encoder}: image_shape {shape} is incompatible with the "
                    f"traced sizes {self.traced}."
                )
            values[var], seen[var] = v, True
            name, lower, upper = self.ranges[var]
            if (lower is not None and v < lower) or (upper is not None and v > upper):
                raise PlanError(
                    f"Encoder {self.encoder}: image_shape {shape} puts dim {i} outside the "
                    f"range the trace supports ({lower}..{upper} for {name})."
                )
        for ok, message in zip(self.check_fn(*values), self.checks):
            if not ok:
                raise PlanError(
                    f"Encoder {self.encoder}: image_shape {shape} violates a condition of the "
                    f"trace ({message}; traced input sizes {self.traced}). Every level must keep "
                    "the properties it had at the reference size (e.g. stay wider than 1 pixel): "
                    "build the decoder with an example_input closer to the sizes you feed."
                )
        return self.plan_fn(*values)
