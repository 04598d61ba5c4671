"""Gradient balancing: every auxiliary term steers the shared weights as strongly as L_image.

Measured at initialisation (issue 7), the auxiliary terms of μ-Net-Hyb sent the encoder 150x
(own U-Net, base 16) to 3,300x (smp Unet, resnet34) the gradient of L_image, and equal loss
values do not mean equal gradients: on smp Unet/resnet34 L_rem (value 0.85) still sent 50x the
gradient of L_image (value 1.45). So the scale of term i is measured where it acts,

    c_i = ||∇_θ L_image|| / ||∇_θ L_i||,   θ = the shared encoder's weights,

every so often during training (more often at the start, when scales move fastest), smoothed
in log space, and held as a buffer (saved, restored and broadcast by DDP like any buffer).
Under DDP the measured gradients are averaged over ranks first: the scales are those of the
combined batch. Under ``torch.compile`` nothing is measured (``autograd.grad`` would break the
graph): the scales of the eager steps before are used, so take the first step eagerly.
Without shared weights (a loss used on its own) the values stand in: c_i = L_image / L_i.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["GradientBalance"]


def _due(step: int, every: int) -> bool:
    """Measure at steps 0, 1, 2, 4, ..., then every ``every`` steps."""
    return step % every == 0 if step >= every else step & (step - 1) == 0


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
        self._params: list[nn.Parameter] = []  # a plain list: not registered, not copied

    def attach(self, params: Iterable[nn.Parameter]) -> None:
        """The shared weights whose gradient is balanced (the wrapper passes the encoder's)."""
        self._params = [p for p in params if p.requires_grad]

    def scales(self) -> dict[str, torch.Tensor]:
        """c_i by term name (detached)."""
        return dict(zip(self.names, self.log_scales.exp()))

    def _norm(self, value: torch.Tensor) -> float:
        """||∇_θ value||; under DDP the gradient of the global batch (ranks averaged), so every
        rank measures what one process would on the combined batch."""
        grads = torch.autograd.grad(value, self._params, retain_graph=True, allow_unused=True)
        flat = torch.cat([g.flatten() for g in grads if g is not None] or [value.new_zeros(1)])
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(flat)
            flat /= dist.get_world_size()
        return float(flat.norm())

    def update(self, image: torch.Tensor, terms: Mapping[str, torch.Tensor]) -> None:
        """Measure new scales if one is due (training, eager, with gradients), then count a step.

        A term that sends no gradient to the shared weights (no confident pseudo-label yet,
        an independent autoencoder's term) keeps its scale.
        """
        if not (self.training and torch.is_grad_enabled() and image.requires_grad):
            return
        if torch.compiler.is_compiling():
            return
        step = int(self.steps)
        self.steps += 1
        if not _due(step, self.every):
            return
        if self._params:
            reference, measure = self._norm(image), self._norm
        else:
            reference, measure = float(image.detach()), lambda v: float(v.detach())
        if reference <= 0:
            return
        for i, name in enumerate(self.names):
            value = terms[name]
            size = measure(value) if value.requires_grad else 0.0
            if size <= 0 or not math.isfinite(size):
                continue
            new = math.log(min(max(reference / size, 1 / self.limit), self.limit))
            if bool(self.measured[i]):
                new = self.smoothing * float(self.log_scales[i]) + (1 - self.smoothing) * new
            self.log_scales[i] = new
            self.measured[i] = True
