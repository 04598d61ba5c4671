"""A small LRU cache of traced decoder blueprints, keyed by an encoder's structural signature.

Tracing an encoder with ``torch.export`` and transposing its graph takes seconds; the result
(:class:`dsplug.tied._graph_blueprint.Blueprint`) depends only on the encoder's structure, not
on its weights' values. :func:`signature` describes that structure: every module's class and
plain attributes (hyper-parameters such as strides, eps, activation choices, hooks), parameter
and buffer names, shapes, dtypes, devices and aliasing, the values of tensors stored as plain
attributes (they are traced as constants), the reference input's shape, dtype and device, and
the ``encode`` function. Two encoders with equal signatures trace to the same graph, so a second
model with the same encoder reuses the first one's blueprint. Anything the signature cannot
describe (an object of an unknown kind, a structure too large) makes it None: not cached.

The key holds classes and code objects, never a module or a tensor of the encoder.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import threading
import types
from collections import OrderedDict
from collections.abc import Callable, Hashable

import torch
from torch import nn

__all__ = ["BlueprintCache", "signature"]

_MAX_DEPTH = 6
_MAX_ITEMS = 200_000
_MAX_TENSOR_ELEMENTS = 1 << 20
_SCALARS = (type(None), bool, int, float, complex, str, bytes)
_TORCH_SCALARS = (torch.dtype, torch.device, torch.layout, torch.memory_format, torch.Size)
_SKIPPED_ATTRS = frozenset({"_parameters", "_buffers", "_modules", "training"})


class _Unsignable(Exception):
    """Raised inside :func:`signature` when a value has no structural description."""


class _Signer:
    """Turns values into hashable structural descriptions (see the module docstring)."""

    def __init__(self) -> None:
        self.items = 0
        self.active: set[int] = set()  # ids of objects being described (cycles)

    def value(self, v: object, depth: int = 0) -> Hashable:
        self.items += 1
        if self.items > _MAX_ITEMS or depth > _MAX_DEPTH:
            raise _Unsignable("structure too large")
        if isinstance(v, _SCALARS):
            return (type(v), v)
        if isinstance(v, _TORCH_SCALARS):
            return (type(v), str(v))
        if isinstance(v, enum.Enum):
            return (type(v), v.name)
        if isinstance(v, type | types.BuiltinFunctionType | types.CodeType):
            return v
        if isinstance(v, torch.Tensor):
            return self.tensor(v)
        if id(v) in self.active:
            return ("cycle", type(v))
        self.active.add(id(v))
        try:
            return self._compound(v, depth + 1)
        finally:
            self.active.discard(id(v))

    def _compound(self, v: object, depth: int) -> Hashable:
        if isinstance(v, nn.Module):
            return self.module(v, depth)
        if isinstance(v, list | tuple):
            return (type(v), tuple(self.value(x, depth) for x in v))
        if isinstance(v, set | frozenset):
            return (type(v), frozenset(self.value(x, depth) for x in v))
        if isinstance(v, dict):
            return (
                type(v),
                tuple((self.value(k, depth), self.value(x, depth)) for k, x in v.items()),
            )
        if isinstance(v, types.FunctionType):
            try:
                cells = tuple(c.cell_contents for c in v.__closure__ or ())
            except ValueError as error:  # an empty cell
                raise _Unsignable("a closure with an empty cell") from error
            extra = (v.__defaults__, v.__kwdefaults__, cells)
            return ("function", v.__code__, self.value(extra, depth))
        if isinstance(v, types.MethodType):
            return ("method", self.value(v.__func__, depth), self.value(v.__self__, depth))
        if isinstance(v, functools.partial):
            return ("partial", self.value((v.func, v.args, v.keywords), depth))
        if hasattr(v, "__dict__"):
            return ("object", type(v), self.value(vars(v), depth))
        raise _Unsignable(f"no structural description for a {type(v).__qualname__}")

    def tensor(self, t: torch.Tensor) -> Hashable:
        """A plain tensor attribute: traced as a constant, so its values matter."""
        if t.numel() > _MAX_TENSOR_ELEMENTS or t.is_meta:
            raise _Unsignable("a large tensor attribute")
        data = t.detach().cpu().contiguous()
        digest = hashlib.sha1(data.view(-1).view(torch.uint8).numpy().tobytes()).hexdigest()
        return ("tensor", tuple(t.shape), t.dtype, str(t.device), t.requires_grad, digest)

    def module(self, root: nn.Module, depth: int) -> Hashable:
        """Module tree: classes, plain attributes, aliasing; tensors' names and metadata."""
        first: dict[int, int] = {}
        modules = []
        for name, m in root.named_modules(remove_duplicate=False):
            alias = first.setdefault(id(m), len(first))
            modules.append((name, alias, type(m), self._attrs(m, depth)))
        tensors = []
        for kind, named in (
            ("parameter", root.named_parameters(remove_duplicate=False)),
            ("buffer", root.named_buffers(remove_duplicate=False)),
        ):
            for name, t in named:
                alias = first.setdefault(id(t), len(first))
                meta = (tuple(t.shape), t.dtype, str(t.device), t.requires_grad)
                tensors.append((kind, name, alias, meta))
        return ("module", tuple(modules), tuple(tensors))

    def _attrs(self, m: nn.Module, depth: int) -> Hashable:
        out = []
        for key, v in sorted(vars(m).items()):
            if key in _SKIPPED_ATTRS:
                continue
            if "hooks" in key and isinstance(v, dict):  # keyed by global handle ids
                v = tuple(v.values())
            out.append((key, self.value(v, depth)))
        return tuple(out)


def signature(
    encoder: nn.Module, example_input: torch.Tensor, encode: Callable | None
) -> Hashable | None:
    """The cache key of a decoder built for ``encoder`` at ``example_input``'s shape with
    ``encode``; None when the encoder cannot be described (it is then never cached)."""
    signer = _Signer()
    try:
        return (
            signer.value(encoder),
            tuple(example_input.shape),
            example_input.dtype,
            str(example_input.device),
            signer.value(encode),
        )
    except _Unsignable:
        return None


class BlueprintCache:
    """A thread-safe LRU mapping of signatures to blueprints, with hit/miss counts."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[Hashable, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> object | None:
        """The blueprint stored under ``key`` (now the most recent), or None."""
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self.hits += 1
            self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: object) -> None:
        """Store ``value``; the least recently used entry goes beyond ``maxsize``."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def clear(self) -> None:
        """Forget every blueprint and reset the counts."""
        with self._lock:
            self._items.clear()
            self.hits = self.misses = 0

    def info(self) -> dict[str, int]:
        """hits, misses, size and maxsize."""
        with self._lock:
            return {
                "hits": self.hits,
                "misses": self.misses,
                "size": len(self._items),
                "maxsize": self.maxsize,
            }
