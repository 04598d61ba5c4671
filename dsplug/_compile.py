"""Running Python at compile time: the one private torch *function* dsplug calls outside
:mod:`dsplug.tied` (the wrapper also reads two private torch names: the ``_BatchNorm`` base
class, to find every batch-norm layer, and ``nn.Module``'s ``_modules`` dict, to look up the
wrapped model in ``__getattr__`` without recursing, e.g. while unpickling).

``torch._dynamo.comptime`` calls a function once while dynamo traces (also under
``fullgraph=True``, where a warning or any other untraceable call is an error) and does nothing
when the code runs eagerly. The gradient balance uses it to warn, once per compilation, that it
cannot measure inside a compiled graph. ``tests/test_balance_guards.py`` exercises it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["at_compile_time"]


def at_compile_time(fn: Callable[[Any], None]) -> None:
    """Call ``fn(ctx)`` while dynamo traces the caller; a no-op when run eagerly. ``fn`` must
    be a module-level function (no closure)."""
    from torch._dynamo.comptime import comptime

    comptime(fn)
