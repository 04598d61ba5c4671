"""The imports of ``dsplug`` run down its layers, never up (STYLE.md habits 11 and 12).

Every module of the package is parsed (``ast``, nothing is imported) and each import of another
dsplug module is an arrow: those at the top of a file, inside functions (lazy imports) and under
``if TYPE_CHECKING:`` alike (each is a dependency a reader has to follow). A module may import
its own layer and the layers below; an arrow to a higher layer fails the test and is printed.

The layers, from the bottom:

1. ``base``: the vocabulary everything shares: ``_version``, ``_checks``, ``_compile``,
   ``options``, ``output``, ``modes``, ``labels``.
2. ``parts``: the building blocks, each on the base only: ``hooks``, ``cost`` (the cheaper
   auxiliary step: ``aux_scale``, ``aux_every``), ``nets``, ``tied``
   (tied decoders over the nets), ``losses``, ``metrics``, ``data``.
3. ``plugins``: what the wrapper plugs in: ``adapters`` (one per model family; they install as
   ``dsplug.adapters`` from the top-level ``adapters/``) and ``semi`` (the semi-supervised
   recipe on the losses).
4. ``wrapper``: ``DeepSupervised``, which wires the parts and plugins together, and
   ``_branches``, the mixin that builds and runs its branches.
5. ``stacks``: the ways to train: ``train`` (the library and its ``commands``) and
   ``lightning``. Model code never imports them.
6. ``export``: a trained model without the wrapper; it rebuilds checkpoints through
   ``train.models`` and writes through ``train.atomic``, so it sits above ``train``; its
   command (``export.command``) hands its writer to ``train.commands.export``.
7. ``front``: the package's front door ``dsplug/__init__.py`` (it loads ``train`` lazily)
   and the command line ``cli``.
8. ``main``: ``python -m dsplug``.

A new top-level module must be given a layer here (the test fails until it is). Known
exceptions are listed with the reason and the work that removes them; one that is no longer
found fails too, so the list only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Where each package's files are (as pyproject's ``package-dir``).
SOURCES = {"dsplug": ROOT / "dsplug", "dsplug.adapters": ROOT / "adapters"}

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "base",
        (
            "dsplug._version",
            "dsplug._checks",
            "dsplug._compile",
            "dsplug.options",
            "dsplug.output",
            "dsplug.modes",
            "dsplug.labels",
        ),
    ),
    (
        "parts",
        (
            "dsplug.hooks",
            "dsplug.cost",
            "dsplug.nets",
            "dsplug.tied",
            "dsplug.losses",
            "dsplug.metrics",
            "dsplug.data",
        ),
    ),
    ("plugins", ("dsplug.adapters", "dsplug.semi")),
    ("wrapper", ("dsplug.wrapper", "dsplug._branches")),
    ("stacks", ("dsplug.train", "dsplug.lightning")),
    ("export", ("dsplug.export",)),
    ("front", ("dsplug", "dsplug.cli")),  # "dsplug": the package's __init__ only
    ("main", ("dsplug.__main__",)),
]

#: (importer, imported): why the arrow runs up, and what removes it.
KNOWN_UPWARD: dict[tuple[str, str], str] = {}


def modules(sources: dict[str, Path]) -> dict[str, Path]:
    """``{dotted module name: file}`` for every module of the packages in ``sources``."""
    found: dict[str, Path] = {}
    for package, folder in sources.items():
        nested = {p.split(".", 1)[1] for p in sources if p.startswith(package + ".")}
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[0] in nested:  # a package installed from elsewhere (a link here)
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def _known(name: str, known: set[str]) -> str | None:
    """The longest known module that ``name`` is or lies in."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(name: str, path: Path, known: set[str]) -> set[tuple[str, int]]:
    """``{(imported dsplug module, line)}`` for every import in ``path``, at any depth."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:  # "from . import losses" imports the module losses
                sub = f"{target}.{alias.name}"
                hit = sub if sub in known else _known(target, known)
                if hit:
                    found.add((hit, node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                hit = _known(alias.name, known)
                if hit:
                    found.add((hit, node.lineno))
    return found


def _shown(path: Path, sources: dict[str, Path]) -> str:
    """``path`` from the folder that holds its package (``dsplug/wrapper.py``)."""
    for folder in sources.values():
        if path.is_relative_to(folder):
            return path.relative_to(folder.parent).as_posix()
    return str(path)


def layer_of(module: str, layers: list[tuple[str, tuple[str, ...]]] = LAYERS) -> int | None:
    """The index of ``module``'s layer: the longest listed prefix ("dsplug" is the root only)."""
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(layers):
        for prefix in prefixes:
            inside = module == prefix or (prefix != "dsplug" and module.startswith(prefix + "."))
            if inside and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    return best


def upward_imports(
    sources: dict[str, Path], layers: list[tuple[str, tuple[str, ...]]] = LAYERS
) -> tuple[list[tuple[str, str, str]], list[str]]:
    """The arrows to a higher layer as ``(importer, imported, "file:line (low -> high)")``,
    and the modules no layer covers."""
    found = modules(sources)
    known = set(found)
    unassigned = sorted(m for m in found if layer_of(m, layers) is None)
    arrows = []
    for name, path in sorted(found.items()):
        here = layer_of(name, layers)
        for target, line in sorted(imports(name, path, known)):
            there = layer_of(target, layers)
            if here is not None and there is not None and there > here:
                where = f"{_shown(path, sources)}:{line}"
                arrows.append((name, target, f"{where} ({layers[here][0]} -> {layers[there][0]})"))
    return arrows, unassigned


def test_every_module_has_a_layer() -> None:
    found = modules(SOURCES)
    assert "dsplug.wrapper" in found and "dsplug.adapters.base" in found, "nothing was parsed"
    _, unassigned = upward_imports(SOURCES)
    assert not unassigned, f"give these modules a layer in {__file__}: {unassigned}"


def test_no_import_runs_up_a_layer() -> None:
    arrows, _ = upward_imports(SOURCES)
    new = [f"{a} -> {b}  [{where}]" for a, b, where in arrows if (a, b) not in KNOWN_UPWARD]
    assert not new, (
        "imports from a lower layer to a higher one (see the layers in this test's docstring; "
        "move the shared piece down, or the importer up):\n  " + "\n  ".join(new)
    )


def test_known_exceptions_still_exist() -> None:
    """A fixed exception must leave the list (so it cannot come back unnoticed)."""
    arrows = {(a, b) for a, b, _ in upward_imports(SOURCES)[0]}
    stale = [pair for pair in KNOWN_UPWARD if pair not in arrows]
    assert not stale, f"no longer imported upward; remove from KNOWN_UPWARD: {stale}"


def test_the_walker_sees_lazy_relative_and_type_only_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "dsplug"
    (pkg / "nets").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .wrapper import W\n")
    (pkg / "wrapper.py").write_text("from .options import O\nW = 1\n")
    (pkg / "cli.py").write_text("")
    (pkg / "options.py").write_text("def lazy():\n    from . import wrapper\n")
    (pkg / "nets" / "__init__.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from ..wrapper import W\n"
        "import dsplug.cli\n"
    )
    arrows, unassigned = upward_imports({"dsplug": pkg})
    assert unassigned == []
    assert sorted((a, b) for a, b, _ in arrows) == [
        ("dsplug.nets", "dsplug.cli"),
        ("dsplug.nets", "dsplug.wrapper"),
        ("dsplug.options", "dsplug.wrapper"),
    ]
    assert any(where == "dsplug/options.py:2 (base -> wrapper)" for *_, where in arrows)
