"""The registry of transposition rules: ATen op name -> the function that transposes it.

A rule ``rule(context, node, name)`` adds the runtime steps that send the reconstruction
reaching ``node`` to its image-dependent inputs; it sees the builder through
:class:`~._rule_protocol.TransposeContext` only. Each ``_rules_*`` module holds the rules of one
family of ops and their table (``RULES``); :mod:`~._graph_build` looks ops up in their union.
The imports run one way: ``_graph_build`` -> ``_rules_*`` -> this module and
``_rule_protocol``, never back.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._rule_protocol import Rule

__all__ = ["Rule", "rule_table"]


def rule_table(*entries: tuple[Iterable[str], Rule]) -> dict[str, Rule]:
    """``{name: rule}`` from ``(names, rule)`` pairs; a name given twice is an error."""
    table: dict[str, Rule] = {}
    for names, rule in entries:
        for name in names:
            if name in table:
                raise ValueError(f"two transposition rules for {name!r}")
            table[name] = rule
    return table
