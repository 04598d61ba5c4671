"""Gradient balancing: every auxiliary term steers the shared weights as strongly as L_image.

Measured at initialisation (issue 7), the auxiliary terms of μ-Net-Hyb sent the encoder 150x
(own U-Net, base 16) to 3,300x (smp Unet, resnet34) the gradient of L_image, and equal loss
values do not mean equal gradients: on smp Unet/resnet34 L_rem (value 0.85) still sent 50x the
gradient of L_image (value 1.45). So the scale of term i is measured where it acts,

    c_i = ||∇_θ L_image|| / ||∇_θ L_i||,   θ = the shared weights (the model's encoder),

every so often during training (more often at the start, when scales move fastest), smoothed
in log space, and held as a buffer (saved, restored and broadcast by DDP like any buffer).

θ is read afresh at each measurement: the encoder's trainable parameters (after
``freeze_encoder()``, ``load_state_dict(..., assign=True)`` or an unfreeze), the whole model's
when the encoder is frozen. A measurement is skipped, and tried again at the next step, when
the batch is degenerate (no foreground in any target: the mask branches then measure
nothing typical) and every term has a scale already, or when a gradient is not finite (one
warning). Under DDP the measured gradients are averaged over ranks first: the scales are those
of the combined batch. Under ``torch.compile`` nothing is measured (``autograd.grad`` would
break the graph): the scales of the eager steps before are used, and a warning says so when
there were none. Without shared weights (a loss used on its own) the values stand in:
c_i = L_image / L_i.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .._compile import at_compile_time

__all__ = ["FROZEN_MODEL", "GradientBalance"]

#: The error of a training step whose L_image sends no gradient (every mode, both balances).
FROZEN_MODEL = (
    "L_image sends no gradient: every parameter of the model is frozen, so training would not "
    "change it (deep supervision would train only its own branches). Unfreeze some of the "
    "model (e.g. the decoder) before training, or compute the loss under torch.no_grad()."
)

SharedParameters = Callable[[], list[nn.Parameter]]


def _due(step: int, every: int) -> bool:
    """Measure at steps 0, 1, 2, 4, ..., then every ``every`` steps."""
    return step % every == 0 if step >= every else step & (step - 1) == 0


def _trainable(params: list[nn.Parameter]) -> list[nn.Parameter]:
    return [p for p in params if p.requires_grad]


def _warn_compiled_unmeasured(ctx: Any = None) -> None:
    warnings.warn(
        "The deep-supervision loss runs under torch.compile before any eager step: the gradient "
        "balance cannot measure inside a compiled graph, so every auxiliary scale stays 1 "
        "(unbalanced). Take the first training step eagerly (or load a trained state dict), "
        "then compile.",
        stacklevel=2,
    )


def _everywhere(flag: bool, device: torch.device) -> bool:
    """``flag`` on any rank (under DDP every rank must take the same measuring path)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        value = torch.tensor(float(flag), device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value > 0)
    return flag


class GradientBalance(nn.Module):
    """Per-term scales ``c_i`` that bring each auxiliary term's gradient to L_image's.

    Args:
        names: the auxiliary terms, in order.
        every: measure every ``every`` training steps (after steps 0, 1, 2, 4, ...).
        smoothing: weight of the previous log-scale when a new measurement arrives.
        limit: scales are clipped to [1 / limit, limit].
    """

    def __init__(
        self, names: Iterable[str], every: int = 100, smoothing: float = 0.5, limit: float = 1e4
    ) -> None:
        super().__init__()
        self.names = tuple(names)
        self.every, self.smoothing, self.limit = every, smoothing, limit
        self.register_buffer("log_scales", torch.zeros(len(self.names)))
        self.register_buffer("measured", torch.zeros(len(self.names), dtype=torch.bool))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self._shared: SharedParameters | None = None  # a plain attribute: not registered
        self._eager = False  # a measurement ran eagerly (or was loaded): compiling is fine
        self._warned = False

    def attach(self, shared: SharedParameters | Iterable[nn.Parameter]) -> None:
        """The shared weights whose gradient is balanced: a function returning them, called at
        each measurement (the wrapper passes its encoder's), or a fixed collection."""
        self._shared = shared if callable(shared) else partial(_trainable, list(shared))

    def scales(self) -> dict[str, torch.Tensor]:
        """c_i by term name (detached)."""
        return dict(zip(self.names, self.log_scales.exp()))

    def due(self) -> bool:
        """Whether the next training step measures."""
        return _due(int(self.steps), self.every)

    def _norm(self, value: torch.Tensor, params: list[nn.Parameter]) -> float:
        """||∇_θ value||; under DDP the gradient of the global batch (ranks averaged), so every
        rank measures what one process would on the combined batch."""
        grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        flat = torch.cat([g.flatten() for g in grads if g is not None] or [value.new_zeros(1)])
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(flat)
            flat /= dist.get_world_size()
        return float(flat.norm())

    def _warn_once(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(message, stacklevel=4)

    def update(
        self,
        image: torch.Tensor,
        terms: Mapping[str, torch.Tensor],
        informative: Callable[[], bool] | None = None,
    ) -> None:
        """Measure new scales if one is due (training, eager, with gradients), then count a step.

        A term that sends no gradient to the shared weights (no confident pseudo-label yet,
        a feature level with no target, an independent autoencoder's term) keeps its scale.
        ``informative()`` says whether the batch has a target worth measuring on (the loss
        passes "some foreground"); on a batch without one a due measurement only fills the
        scales not measured yet, and the next step measures again.
        """
        if not (self.training and torch.is_grad_enabled()):
            return
        if not image.requires_grad:
            if self._shared is not None and any(t.requires_grad for t in terms.values()):
                raise RuntimeError(FROZEN_MODEL)
            return
        if torch.compiler.is_compiling():
            if not self._eager:
                at_compile_time(_warn_compiled_unmeasured)
            return
        step = int(self.steps)
        if not _due(step, self.every):
            self.steps += 1
            return
        degenerate = informative is not None and not _everywhere(informative(), image.device)
        if degenerate and bool(self.measured.all()):
            return  # the step is not counted: the next one measures
        if not degenerate:
            self.steps += 1
        self._measure(image, terms, provisional=degenerate)

    def _measure(
        self, image: torch.Tensor, terms: Mapping[str, torch.Tensor], provisional: bool
    ) -> None:
        if self._shared is not None:
            params = self._shared()
            if not params:
                raise RuntimeError(
                    "The gradient balance has no trainable shared weight left to measure on "
                    "(every attached parameter is frozen): attach trainable ones."
                )
            reference = self._norm(image, params)

            def measure(v: torch.Tensor) -> float:
                return self._norm(v, params)
        else:
            reference, measure = float(image.detach()), lambda v: float(v.detach())
        if not math.isfinite(reference):
            self._warn_once(
                f"The gradient of L_image is not finite ({reference}): the gradient balance "
                "skipped this measurement (and will skip others without a further warning)."
            )
            return
        if reference <= 0:
            return
        self._eager = True
        for i, name in enumerate(self.names):
            value = terms[name]
            if provisional and bool(self.measured[i]):
                continue
            size = measure(value) if value.requires_grad else 0.0
            if not math.isfinite(size):
                self._warn_once(
                    f"The gradient of the auxiliary term {name!r} is not finite ({size}): its "
                    "scale keeps its last value (further non-finite gradients are skipped "
                    "without a warning)."
                )
                continue
            if size <= 0:
                continue
            new = math.log(min(max(reference / size, 1 / self.limit), self.limit))
            if bool(self.measured[i]):
                new = self.smoothing * float(self.log_scales[i]) + (1 - self.smoothing) * new
            self.log_scales[i] = new
            # a provisional scale (measured on a degenerate batch) serves this step only: the
            # next measurement replaces it instead of averaging with it
            self.measured[i] = not provisional

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args)
        self._eager = self._eager or bool(self.measured.any())
