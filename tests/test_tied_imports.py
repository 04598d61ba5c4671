"""The imports inside dsplug.tied run one way (STYLE.md habit 11).

Every module of the package is parsed (``ast``, nothing is imported) and each import of a
sibling module becomes an arrow, those under ``if TYPE_CHECKING:`` included: a type-only import
is still a dependency a reader has to follow. A circle among the arrows fails the test and is
printed; the fix is a small module of shared types that both sides import (as the transposition
rules take :class:`~dsplug.tied._rule_protocol.TransposeContext`, never the builder's class).
"""

from __future__ import annotations

import ast
from pathlib import Path

import dsplug.tied

PACKAGE = Path(dsplug.tied.__file__).parent
PREFIX = "dsplug.tied"


def _siblings() -> set[str]:
    return {p.stem for p in PACKAGE.glob("*.py")}


def _imports(path: Path, siblings: set[str]) -> set[str]:
    """The sibling modules ``path`` imports (relative or absolute, at any depth in the file)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                base = node.module
            elif node.level == 0 and node.module and node.module.startswith(PREFIX + "."):
                base = node.module[len(PREFIX) + 1 :]
            elif node.level == 0 and node.module == PREFIX:
                base = None
            else:
                continue
            if base is None:  # from . import a, b
                found.update(a.name for a in node.names if a.name in siblings)
            else:
                found.add(base.split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PREFIX + "."):
                    found.add(alias.name[len(PREFIX) + 1 :].split(".")[0])
    found.discard(path.stem)
    return found & siblings


def import_graph() -> dict[str, set[str]]:
    """``{module: the sibling modules it imports}`` for every module of dsplug.tied."""
    siblings = _siblings()
    return {name: _imports(PACKAGE / f"{name}.py", siblings) for name in sorted(siblings)}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph as ``[a, b, ..., a]``, or None when the arrows run one way."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_find_cycle_sees_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_type_checking_imports_are_arrows(tmp_path: Path) -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import x, not_a_module\n"
        "from .y import Y\n"
        "import dsplug.tied.w\n"
        "if TYPE_CHECKING:\n"
        "    from .z import Z\n"
    )
    path = tmp_path / "m.py"
    path.write_text(source)
    assert _imports(path, {"m", "w", "x", "y", "z"}) == {"w", "x", "y", "z"}


def _in_circles(graph: dict[str, set[str]]) -> list[str]:
    """Every module that can reach itself through the arrows (the union of all circles)."""

    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        todo = list(graph.get(start, ()))
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(graph.get(node, ()))
        return seen

    return sorted(m for m in graph if m in reach(m))


def test_tied_imports_have_no_cycle() -> None:
    graph = import_graph()
    assert graph.get("_graph_build"), "the package was not parsed"
    cycle = find_cycle(graph)
    assert cycle is None, (
        "dsplug.tied imports itself in a circle: "
        + " -> ".join(cycle)
        + f" (modules on a circle: {', '.join(_in_circles(graph))}). Move the shared types "
        "into a module that imports neither side (STYLE.md habit 11)."
    )


def test_rules_do_not_import_the_builder() -> None:
    """The rules and the side-level replay see the builder through the protocol module only."""
    graph = import_graph()
    users = sorted(m for m, deps in graph.items() if "_graph_build" in deps)
    assert not [m for m in users if m.startswith("_rules") or m == "_graph_replay"], users
    assert graph["_rule_protocol"] <= {"_graph_steps", "_graph_plan", "_graph_trace"}


def _context_uses(path: Path) -> set[str]:
    """The attributes read on a parameter annotated ``TransposeContext`` in ``path``."""
    used: set[str] = set()
    for fn in ast.walk(ast.parse(path.read_text())):
        if not isinstance(fn, ast.FunctionDef):
            continue
        names = {
            a.arg
            for a in fn.args.args
            if isinstance(a.annotation, ast.Name) and a.annotation.id == "TransposeContext"
        }
        for node in ast.walk(fn):
            value = getattr(node, "value", None)
            if isinstance(node, ast.Attribute) and getattr(value, "id", None) in names:
                used.add(node.attr)
    return used


def test_protocol_covers_what_the_rules_use() -> None:
    """Each attribute a rule reads is declared by the protocol, and the builder has them all."""
    from dsplug.tied._graph_build import Transposer
    from dsplug.tied._rule_protocol import TransposeContext

    declared = set(TransposeContext.__annotations__) | {
        k for k, v in vars(TransposeContext).items() if callable(v) and not k.startswith("_")
    }
    used: set[str] = set()
    for path in [*PACKAGE.glob("_rules*.py"), PACKAGE / "_graph_replay.py"]:
        used |= _context_uses(path)
    assert used, "no rule takes a TransposeContext"
    assert used <= declared, f"used by rules but not in TransposeContext: {used - declared}"
    methods = {k for k in declared if k not in TransposeContext.__annotations__}
    missing = {k for k in methods if not callable(getattr(Transposer, k, None))}
    missing |= {k for k in TransposeContext.__annotations__ if k not in _transposer_fields()}
    assert not missing, f"Transposer lacks {missing}"


def _transposer_fields() -> set[str]:
    """Attributes a Transposer instance sets (dataclass fields and ``self.x =`` in its code)."""
    import dsplug.tied._graph_build as build

    found = set(build.Transposer.__dataclass_fields__)
    for node in ast.walk(ast.parse(Path(build.__file__).read_text())):
        stored = isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
        if stored and isinstance(node.value, ast.Name) and node.value.id == "self":
            found.add(node.attr)
    return found
