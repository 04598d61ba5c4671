"""The hook collector: taps declared modules while capturing, nothing otherwise."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = ["FeatureHooks"]


class FeatureHooks:
    """Registers one forward hook per tap point and owns the handles (as timm's FeatureHooks).

    Hooks are registered once, at construction (so ``torch.compile`` traces them), but they
    record only inside :meth:`capture`; outside it they return at once and store nothing.
    Results are per call and keyed by device, so data-parallel replicas do not mix.

    Args:
        model: the model to tap.
        taps: ``(module_path, output_index)`` pairs; ``""`` is the model itself.
    """

    def __init__(self, model: nn.Module, taps: Sequence[tuple[str, int | None]]) -> None:
        self._taps = list(taps)
        self._handles: list[RemovableHandle] = []
        self._capturing = False
        self._outputs: dict[torch.device, dict[int, torch.Tensor]] = {}
        for i, (path, _) in enumerate(self._taps):
            module = model.get_submodule(path)
            self._handles.append(module.register_forward_hook(partial(self._hook, i)))

    def _hook(self, tap_id: int, module: nn.Module, args: Any, output: Any) -> None:
        if not self._capturing:
            return
        index = self._taps[tap_id][1]
        tensor = output if index is None else output[index]
        # Gradient-checkpoint recompute fires hooks again: the last value wins, per tap.
        self._outputs.setdefault(tensor.device, {})[tap_id] = tensor

    def start(self) -> None:
        """Start recording (prefer :meth:`capture`; this form is for compiled code)."""
        self._capturing = True

    def stop(self) -> None:
        """Stop recording."""
        self._capturing = False

    @contextmanager
    def capture(self) -> Iterator[None]:
        """Record tap outputs for the forward passes run inside the block."""
        self.start()
        try:
            yield
        finally:
            self.stop()

    def pop(self, device: torch.device) -> list[torch.Tensor]:
        """The tensors recorded on ``device`` in tap order; clears them."""
        stored = self._outputs.pop(device, {})
        missing = [self._taps[i][0] or "<model>" for i in range(len(self._taps)) if i not in stored]
        if missing:
            raise RuntimeError(
                f"Hooks on {missing} did not fire during the forward pass: the adapter's "
                "module paths do not match the modules this model calls."
            )
        return [stored[i] for i in range(len(self._taps))]

    def remove(self) -> None:
        """Remove every hook; the model is left as it was."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._outputs.clear()

    def __enter__(self) -> FeatureHooks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
