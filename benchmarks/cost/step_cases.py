"""The cases of the step-time benchmark: one mode's wrapper, optimiser and batch as a timed
training step (the modes, hyb with ``aux_fraction`` < 1 and issue 28's cheaper designs), and
what one step costs in FLOPs and peak memory. ``cost/step_time.py`` times them; the
convergence study and ``cost/profile_step.py`` run the same step."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks._common import (
    LiveTensorBytes,
    Settings,
    build_model,
    make_batch,
    storage_bytes,
    synchronize,
)
from dsplug import DeepSupervised

__all__ = [
    "AUX_VARIANTS",
    "DESIGNS",
    "LR",
    "ModeCase",
    "balance_due",
    "build_cases",
    "measure_flops",
    "measure_memory",
    "ratio",
]

LR = 3e-4  # the paper's Adam learning rate (§4.3)
#: hyb with ``aux_fraction`` < 1, measured beside the modes: (name, fraction).
AUX_VARIANTS = (("hyb-aux50", 0.5), ("hyb-aux25", 0.25))
#: Issue 28's cheaper designs of hyb, measured beside the modes: (name, DeepSupervised options).
DESIGNS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("hyb@aux_scale=0.5", {"aux_scale": 0.5}),
    ("hyb@aux_every=2", {"aux_every": 2}),
    ("hyb@aux_scale=0.5,aux_every=2", {"aux_scale": 0.5, "aux_every": 2}),
)


@dataclass
class ModeCase:
    """One mode's wrapper, optimiser and the step they run."""

    ds: DeepSupervised
    optimizer: torch.optim.Optimizer
    x: torch.Tensor
    y: torch.Tensor
    #: training steps per call of ``step`` (``aux_every`` = k: one period, so a timed call
    #: holds k steps; every figure is divided by it)
    steps: int = 1

    def step(self) -> None:
        """``steps`` training steps: forward, loss, backward, Adam."""
        for _ in range(self.steps):
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.ds.loss(self.ds(self.x, self.y), self.y)
            loss.total.backward()
            self.optimizer.step()

    def persistent(self) -> list[torch.Tensor]:
        """The tensors that live across steps: parameters, buffers, Adam state, the batch."""
        state = [v for s in self.optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
        return [*self.ds.parameters(), *self.ds.buffers(), *state, self.x, self.y]


def build_cases(settings: Settings, device: torch.device) -> dict[str, ModeCase]:
    """One DeepSupervised per mode, each around its own copy of one seeded model."""
    model = build_model(settings)
    x, y = make_batch(settings, device)
    cases = {}
    for mode in settings.modes:
        torch.manual_seed(settings.seed)
        ds = DeepSupervised(copy.deepcopy(model), mode, aux_every=1).to(device).train()
        cases[mode] = ModeCase(ds, torch.optim.Adam(ds.parameters(), lr=LR), x, y)
    if "hyb" in settings.modes:
        for name, fraction in AUX_VARIANTS:
            torch.manual_seed(settings.seed)
            ds = DeepSupervised(copy.deepcopy(model), "hyb", aux_fraction=fraction, aux_every=1)
            ds = ds.to(device).train()
            cases[name] = ModeCase(ds, torch.optim.Adam(ds.parameters(), lr=LR), x, y)
        for name, options in DESIGNS:
            torch.manual_seed(settings.seed)
            ds = DeepSupervised(copy.deepcopy(model), "hyb", **{"aux_every": 1, **options})
            ds = ds.to(device).train()
            opt = torch.optim.Adam(ds.parameters(), lr=LR)
            cases[name] = ModeCase(ds, opt, x, y, options.get("aux_every", 1))
    return cases


def measure_flops(case: ModeCase) -> int:
    """FLOPs of the forward and backward of one step (FlopCounterMode; the mean over the
    case's ``steps``); no optimiser step."""
    case.optimizer.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as counter:
        for _ in range(case.steps):
            case.ds.loss(case.ds(case.x, case.y), case.y).total.backward()
    case.optimizer.zero_grad(set_to_none=True)
    return int(counter.get_total_flops()) // case.steps


def measure_memory(case: ModeCase, device: torch.device) -> int:
    """Peak bytes during one step, parameters, gradients, Adam state and the batch included."""
    case.optimizer.zero_grad(set_to_none=True)  # gradients are allocated inside the step
    persistent = case.persistent()
    if device.type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        case.step()
        synchronize(device)
        return storage_bytes(persistent) + torch.cuda.max_memory_allocated(device) - before
    with LiveTensorBytes() as tracker:
        tracker.track(persistent)
        del persistent
        case.step()
    return tracker.peak


def ratio(value: float, reference: float) -> float:
    return round(value / reference, 4)


def balance_due(case: ModeCase, due: bool) -> None:
    """Put the gradient balance (``balance="auto"``) on a step that measures, or not."""
    balancer = getattr(case.ds.criterion, "balancer", None)
    if balancer is not None:
        balancer.steps.fill_(2 * balancer.every if due else balancer.every + 1)
