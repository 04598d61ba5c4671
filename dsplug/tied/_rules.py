"""The registry of transposition rules: ATen op name -> the function that transposes it.

A rule ``rule(transposer, node, name)`` adds the runtime steps that send the reconstruction
reaching ``node`` to its image-dependent inputs. Each ``_rules_*`` module holds the rules of one
family of ops and their table (``RULES``); :class:`~._graph_build.Transposer` looks ops up in
their union.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from torch import fx

if TYPE_CHECKING:
    from ._graph_build import Transposer

__all__ = ["Rule", "rule_table"]

Rule = Callable[["Transposer", fx.Node, str], None]


def rule_table(*entries: tuple[Iterable[str], Rule]) -> dict[str, Rule]:
    """``{name: rule}`` from ``(names, rule)`` pairs; a name given twice is an error."""
    table: dict[str, Rule] = {}
    for names, rule in entries:
        for name in names:
            if name in table:
                raise ValueError(f"two transposition rules for {name!r}")
            table[name] = rule
    return table
