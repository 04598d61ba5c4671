"""The shape plan: every size the transposed graph needs, as integer expressions of the input's
sizes, lowered once into a list of plain Python instructions.

``torch.export`` gives each traced tensor a shape made of sympy expressions of the input's
symbolic sizes (e.g. ``((H - 1) // 2) + 1``). :class:`ShapePlan` collects the expressions the
decoder needs (forward input sizes for output paddings and upsampling, reshape targets, split
sizes, pads) and lowers them, shared subexpressions once, into instructions ``(function,
argument registers)`` whose functions are Python's own integer operations (no generated source,
no ``exec``). Evaluating the plan for a new input size is then integer arithmetic only: no sympy,
FX or export at forward time, and ``torch.compile`` can trace it.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sympy
import torch

from ._torch_private import int_bounds, sym_expr

__all__ = ["SUPPORTED", "CompiledPlan", "PlanError", "ShapePlan", "to_expr"]


class PlanError(ValueError):
    """An input size that the trace cannot serve, or an expression that cannot be compiled."""


def to_expr(value: object) -> sympy.Expr:
    """A sympy expression for an int, a SymInt/SymBool or a sympy expression."""
    if isinstance(value, bool):
        return sympy.true if value else sympy.false
    if isinstance(value, int):
        return sympy.Integer(value)
    if isinstance(value, torch.SymInt | torch.SymBool | torch.SymFloat):
        return sym_expr(value)
    if isinstance(value, sympy.Basic):
        return value
    raise PlanError(f"Expected an int or a symbolic int, got {type(value).__name__}: {value!r}.")


# Every instruction is binary, ``fn(registers[x], registers[y])``: sympy's n-ary sums, products,
# maxima and conjunctions become chains, and unary functions ignore their second operand.
def _and(a: object, b: object) -> object:
    return a and b


def _or(a: object, b: object) -> object:
    return a or b


def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


def _floor(a: object, _: object) -> int:
    return math.floor(a)


def _ceil(a: object, _: object) -> int:
    return math.ceil(a)


def _trunc(a: object, _: object) -> int:
    return int(a)


def _round(a: object, _: object) -> int:
    return round(a)


def _float(a: object, _: object) -> float:
    return float(a)


def _abs(a: object, _: object) -> object:
    return abs(a)


def _identity(a: object, _: object) -> object:
    return a


def _not(a: object, _: object) -> bool:
    return not a


Binary = Callable[[object, object], object]

_CHAINS: dict[str, Binary] = {
    "Add": operator.add,
    "Mul": operator.mul,
    "Max": max,
    "Min": min,
    "And": _and,
    "Or": _or,
}
_BINARY: dict[str, Binary] = {
    "FloorDiv": operator.floordiv,
    "CleanDiv": operator.floordiv,
    "PythonMod": operator.mod,
    "Mod": operator.mod,
    "IntTrueDiv": operator.truediv,
    "FloatTrueDiv": operator.truediv,
    "PowByNatural": operator.pow,
    "FloatPow": operator.pow,
    "Pow": operator.pow,
    "Equality": operator.eq,
    "Unequality": operator.ne,
    "StrictLessThan": operator.lt,
    "LessThan": operator.le,
    "StrictGreaterThan": operator.gt,
    "GreaterThan": operator.ge,
    "CeilDiv": _ceil_div,
}
_UNARY: dict[str, Binary] = {
    "FloorToInt": _floor,
    "floor": _floor,
    "CeilToInt": _ceil,
    "ceiling": _ceil,
    "TruncToInt": _trunc,
    "RoundToInt": _round,
    "ToFloat": _float,
    "Abs": _abs,
    "Identity": _identity,
    "Not": _not,
}
#: every sympy class name (sympy's own and torch's size functions) the plan can evaluate
SUPPORTED = frozenset({*_CHAINS, *_BINARY, *_UNARY, "ModularIndexing"})


class ShapePlan:
    """Integer expressions of the input sizes, lowered into plain Python instructions.

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

    # --- compilation -------------------------------------------------------------------------
    def _literal(self, e: sympy.Basic) -> tuple[bool, object]:
        """(True, its Python value) for a leaf that is a number or a truth value."""
        cls = type(e).__name__
        if e is sympy.true or cls == "BooleanTrue":
            return True, True
        if e is sympy.false or cls == "BooleanFalse":
            return True, False
        if e.is_Integer:
            return True, int(e)
        if e.is_Float:
            return True, float(e)
        if e.is_Rational:
            return True, int(e.p) / int(e.q)
        return False, None

    def _lower(self, e: sympy.Basic, registers: _Registers) -> int:
        """The register that holds ``e``'s value (its subexpressions first, each once)."""
        if e in registers.index:
            return registers.index[e]
        cls = type(e).__name__
        args = [self._lower(a, registers) for a in e.args]
        if cls in _CHAINS and args:
            reg = args[0]
            for arg in args[1:]:
                reg = registers.instruction(_CHAINS[cls], reg, arg)
        elif cls in _BINARY and len(args) == 2:
            reg = registers.instruction(_BINARY[cls], *args)
        elif cls in _UNARY and len(args) == 1:
            reg = registers.instruction(_UNARY[cls], args[0], args[0])
        elif cls == "ModularIndexing" and len(args) == 3:  # (a // b) % c
            quotient = registers.instruction(operator.floordiv, args[0], args[1])
            reg = registers.instruction(operator.mod, quotient, args[2])
        else:
            raise PlanError(
                f"Encoder {self._encoder}: cannot compile the size expression {e} ({cls})."
            )
        registers.index[e] = reg
        return reg

    def compile(self) -> CompiledPlan:
        """Freeze the registered expressions into a :class:`CompiledPlan`: plain Python
        instructions over registers (the checks' first), no generated source."""
        order = list(self._names)
        registers = _Registers(order)
        roots = [e for e, _ in self._checks] + self._exprs
        for root in roots:
            for e in sympy.preorder_traversal(root):
                is_literal, value = self._literal(e)
                if is_literal:
                    registers.literal(e, value)
        check_regs = tuple(self._lower(e, registers) for e, _ in self._checks)
        n_check = len(registers.instructions)
        value_regs = tuple(self._lower(e, registers) for e in self._exprs)
        bindings = tuple(
            (i, -1 if sym is None else order.index(sym), a, b) for i, sym, a, b in self._bindings
        )
        ranges = []
        for sym in order:
            rng = self._ranges.get(sym)
            lower, upper = int_bounds(rng) if rng is not None else (None, None)
            ranges.append((str(sym), _unspecialised(lower), upper))
        return CompiledPlan(
            encoder=self._encoder,
            traced=tuple(str(d) for d in self._dims),
            bindings=bindings,
            ranges=tuple(ranges),
            checks=tuple(f"{e}: {m}" for e, m in self._checks),
            literals=tuple(registers.literals),
            instructions=tuple(registers.instructions),
            n_check_instructions=n_check,
            check_registers=check_regs,
            value_registers=value_regs,
        )


class _Registers:
    """Register allocation while lowering: the input variables, then every literal, then one
    register per instruction in the order they run; ``index`` maps each lowered expression to
    its register."""

    def __init__(self, variables: list[sympy.Basic]) -> None:
        self.index: dict[sympy.Basic, int] = {v: i for i, v in enumerate(variables)}
        self.count = len(variables)
        self.literals: list[object] = []
        self.instructions: list[tuple[Binary, int, int]] = []

    def literal(self, e: sympy.Basic, value: object) -> None:
        """Give the literal ``e`` a register (all literals come before any instruction)."""
        if e not in self.index:
            if self.instructions:  # pragma: no cover - compile() collects literals first
                raise PlanError("a literal registered after an instruction")
            self.index[e] = self.count
            self.count += 1
            self.literals.append(value)

    def instruction(self, fn: Binary, x: int, y: int) -> int:
        """Append ``fn(registers[x], registers[y])``; its result's register."""
        self.instructions.append((fn, x, y))
        self.count += 1
        return self.count - 1


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
    """The plan as plain data: integer bindings of the input dims and a list of instructions
    ``(function, x, y)`` over registers that start as the input variables and the literals; each
    instruction appends ``function(registers[x], registers[y])``. The checks' run first.

    ``evaluate`` does integer arithmetic only, so that it runs inside ``torch.compile``; the
    plan pickles as it is (its functions are builtins and module-level functions).
    """

    encoder: str
    traced: tuple[str, ...]
    bindings: tuple[tuple[int, int, int, int], ...]  # (dim, variable or -1, a, b): dim = a*v + b
    ranges: tuple[tuple[str, int | None, int | None], ...]
    checks: tuple[str, ...]
    literals: tuple[object, ...]
    instructions: tuple[tuple[Binary, int, int], ...]
    n_check_instructions: int
    check_registers: tuple[int, ...]
    value_registers: tuple[int, ...]

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
        registers: list[object] = [*values, *self.literals]
        for fn, x, y in self.instructions[: self.n_check_instructions]:
            registers.append(fn(registers[x], registers[y]))
        for reg, message in zip(self.check_registers, self.checks):
            if not registers[reg]:
                raise PlanError(
                    f"Encoder {self.encoder}: image_shape {shape} violates a condition of the "
                    f"trace ({message}; traced input sizes {self.traced}). Every level must keep "
                    "the properties it had at the reference size (e.g. stay wider than 1 pixel): "
                    "build the decoder with an example_input closer to the sizes you feed."
                )
        for fn, x, y in self.instructions[self.n_check_instructions :]:
            registers.append(fn(registers[x], registers[y]))
        return tuple(registers[i] for i in self.value_registers)
