"""Pickling of the decoder's program: ATen op handles travel by name.

The replayed steps hold ``torch.ops`` handles (``OpOverload``), which pickle refuses. The
program is stored as bytes written by a pickler that sends each handle by its qualified name
and looks it up again on load; everything else pickles as usual.
"""

from __future__ import annotations

import io
import pickle

from ._torch_private import op_from_ref, op_ref

__all__ = ["dump_program", "load_program"]


class _OpPickler(pickle.Pickler):
    def reducer_override(self, obj: object) -> object:
        ref = op_ref(obj)
        return NotImplemented if ref is None else (op_from_ref, ref)


def dump_program(value: object) -> bytes:
    """``value`` (steps, constant specs) as bytes, op handles by name."""
    buffer = io.BytesIO()
    _OpPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


def load_program(data: bytes) -> object:
    """The inverse of :func:`dump_program`."""
    return pickle.loads(data)
