"""Pickling of the decoder's program: ATen op handles travel by name.

The replayed steps hold ``torch.ops`` handles (``OpOverload``), which pickle refuses. The
program is stored as bytes written by a pickler that sends each handle by its qualified name
and looks it up again on load; everything else pickles as usual.
"""

from __future__ import annotations

import io
import pickle

import torch

__all__ = ["dump_program", "load_program"]


def _op(namespace: str, name: str, overload: str | None) -> object:
    packet = getattr(getattr(torch.ops, namespace), name)
    return packet if overload is None else getattr(packet, overload)


class _OpPickler(pickle.Pickler):
    def reducer_override(self, obj: object) -> object:
        if isinstance(obj, torch._ops.OpOverload):
            namespace, _, name = obj._schema.name.partition("::")
            return _op, (namespace, name, obj._overloadname or "default")
        if isinstance(obj, torch._ops.OpOverloadPacket):
            namespace, _, name = obj._qualified_op_name.partition("::")
            return _op, (namespace, name, None)
        return NotImplemented


def dump_program(value: object) -> bytes:
    """``value`` (steps, constant specs) as bytes, op handles by name."""
    buffer = io.BytesIO()
    _OpPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


def load_program(data: bytes) -> object:
    """The inverse of :func:`dump_program`."""
    return pickle.loads(data)
