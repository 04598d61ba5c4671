"""Every private or undocumented torch API the tied decoder relies on, one small function each.

The tied decoder reads ``torch.export`` graphs more closely than their public surface allows:
the ATen op handles (``torch._ops.OpOverload``: name, overload, schema, tags), the module a node
came from (``node.meta["nn_module_stack"]``), the symbolic sizes behind a ``SymInt``, the guards
of the trace's shape environment and torch's sympy size functions. Nothing else in
:mod:`dsplug.tied` touches them; ``tests/test_tied_private.py`` names and exercises each one,
so that a torch upgrade that changes one fails there with a message saying which.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import sympy
import torch
from torch import fx

__all__ = [
    "EXPORT_MODULE_PREFIXES",
    "SIZE_FUNCTIONS",
    "int_bounds",
    "is_assert_scalar",
    "is_op",
    "is_pointwise",
    "module_path",
    "op_from_ref",
    "op_name",
    "op_ref",
    "out_of_place",
    "quiet_shape_solver",
    "schema_arguments",
    "shape_guards",
    "size_function",
    "sym_expr",
]

#: How export names the encoder's modules in ``nn_module_stack`` (non-strict, strict/dynamo).
EXPORT_MODULE_PREFIXES = ("encoder.", "L__self___encoder_")

#: torch's sympy functions (``torch.utils._sympy.functions``) that traced sizes are built from
#: and that the shape plan evaluates (matched by class name).
SIZE_FUNCTIONS = frozenset(
    [
        "FloorDiv",
        "CleanDiv",
        "PythonMod",
        "Mod",
        "IntTrueDiv",
        "FloatTrueDiv",
        "PowByNatural",
        "FloatPow",
        "Max",
        "Min",
        "FloorToInt",
        "CeilToInt",
        "TruncToInt",
        "RoundToInt",
        "ToFloat",
        "Identity",
        "CeilDiv",
        "ModularIndexing",
    ]
)

_SYMBOLIC_SHAPES_LOGGER = "torch.fx.experimental.symbolic_shapes"


# --- ATen op handles -----------------------------------------------------------------------------
def is_op(target: object) -> bool:
    """Whether ``target`` is an ATen op overload (``torch.ops.aten.conv2d.default``)."""
    return isinstance(target, torch._ops.OpOverload)


def op_name(target: object) -> str:
    """The op's name without namespace or overload (``aten.conv2d.default`` -> ``conv2d``);
    a plain function's ``__name__`` otherwise."""
    if is_op(target):
        return target._overloadpacket.__name__
    return getattr(target, "__name__", str(target))


def schema_arguments(op: object) -> list[tuple[str, bool, object]]:
    """The op's schema arguments in order: (name, has a default, the default)."""
    return [
        (arg.name, arg.has_default_value(), arg.default_value if arg.has_default_value() else None)
        for arg in op._schema.arguments
    ]


def is_pointwise(target: object) -> bool:
    """Whether ``target`` is an ATen op tagged elementwise (``torch.Tag.pointwise``)."""
    return is_op(target) and torch.Tag.pointwise in target.tags


def out_of_place(op: object, name: str) -> object:
    """The overload of ATen op ``name`` matching ``op``'s overload (its default otherwise):
    the functional form of an in-place op."""
    packet = getattr(torch.ops.aten, name)
    overload = op._overloadname
    return getattr(packet, overload) if overload in packet.overloads() else packet.default


def op_ref(obj: object) -> tuple[str, str, str | None] | None:
    """(namespace, name, overload or None for a packet) of an op handle; None for other
    objects. Op handles do not pickle; this reference does (see :func:`op_from_ref`)."""
    if isinstance(obj, torch._ops.OpOverload):
        namespace, _, name = obj._schema.name.partition("::")
        return namespace, name, obj._overloadname or "default"
    if isinstance(obj, torch._ops.OpOverloadPacket):
        namespace, _, name = obj._qualified_op_name.partition("::")
        return namespace, name, None
    return None


def op_from_ref(namespace: str, name: str, overload: str | None) -> object:
    """The op handle of an :func:`op_ref` reference."""
    packet = getattr(getattr(torch.ops, namespace), name)
    return packet if overload is None else getattr(packet, overload)


def is_assert_scalar(node: fx.Node) -> bool:
    """Whether ``node`` is one of export's runtime size asserts (``aten._assert_scalar``)."""
    return node.op == "call_function" and node.target is torch.ops.aten._assert_scalar.default


# --- graph metadata ------------------------------------------------------------------------------
def module_path(node: fx.Node) -> str:
    """The dotted path, inside the encoder, of the module whose forward produced ``node``
    (export's ``nn_module_stack``); "" when unknown."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    for prefix in EXPORT_MODULE_PREFIXES:
        if path.startswith(prefix):
            return path[len(prefix) :]
    return path


# --- symbolic sizes ------------------------------------------------------------------------------
def sym_expr(value: torch.SymInt | torch.SymBool | torch.SymFloat) -> sympy.Basic:
    """The sympy expression behind a symbolic int, bool or float."""
    return value.node.expr


def shape_guards(fake: object) -> list[sympy.Basic]:
    """Every assumption the trace made about sizes: the guards of the shape environment of a
    fake tensor of the traced graph (sympy booleans of the input's symbols); [] if none."""
    shape_env = getattr(getattr(fake, "fake_mode", None), "shape_env", None)
    return [g.expr for g in shape_env.guards] if shape_env is not None else []


def int_bounds(value_range: object) -> tuple[int | None, int | None]:
    """(lower, upper) of one of export's ``range_constraints`` values; None where unbounded."""
    lower, upper = value_range.lower, value_range.upper
    return (
        int(lower) if lower.is_Integer else None,
        int(upper) if upper.is_Integer else None,
    )


def size_function(name: str) -> type:
    """torch's sympy size function ``name`` (one of :data:`SIZE_FUNCTIONS`)."""
    import torch.utils._sympy.functions as functions

    return getattr(functions, name)


@contextlib.contextmanager
def quiet_shape_solver() -> Iterator[None]:
    """Silence the symbolic-shape solver's warnings ("Failed to reduce inequalities") during
    an export: they are harmless for tracing and would flood the user's log."""
    logger = logging.getLogger(_SYMBOLIC_SHAPES_LOGGER)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
