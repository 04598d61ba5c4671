"""The step-time benchmark's rows for a step on an unlabelled batch (issue 27): the EMA
teacher's pseudo-masks, the tied decoder on X alone, up's side outputs agreeing, mean teacher,
each as a ratio to a labelled ``none`` step."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks._common import Settings, build_model, interleaved, make_batch, median
from benchmarks.cost.step_cases import LR, ModeCase, balance_due, measure_flops, ratio
from dsplug import DeepSupervised

__all__ = ["UNLABELED_ROWS", "WHOLE_ROWS", "unlabeled_ratios"]

#: Steps on an unlabelled batch (issue 27): (row, mode, recipe). ``pseudo``: the EMA teacher's
#: pseudo-masks through ``ds.unlabeled(x, teacher)``; ``rei``: the tied decoder on X alone;
#: ``consistency``: up's side outputs agreeing (``ds.unlabeled(x)``); ``mean-teacher``: mean
#: teacher's consistency. The unlabelled part of a step only: a semi-supervised step is the
#: labelled step (the mode's row) plus this.
UNLABELED_ROWS = (
    ("none+pseudo", "none", "pseudo"),
    ("up+pseudo", "up", "pseudo"),
    ("hyb+pseudo", "hyb", "pseudo"),
    ("hyb+rei", "hyb", "rei"),
    ("mean-teacher", "none", "mean-teacher"),
    ("up+consistency", "up", "consistency"),
    ("up+mean-teacher", "up", "mean-teacher"),
)

#: Whole semi-supervised steps, timed as one step (one backward of the labelled loss plus the
#: weighted unlabelled loss, as the Trainer does): (row, mode, recipe, unlabelled batch share).
WHOLE_ROWS = (
    ("step: up, labelled only", "up", None, 0.0),
    ("step: up + consistency", "up", "consistency", 1.0),
    ("step: up + consistency, ratio 0.5", "up", "consistency", 0.5),
    ("step: up + mean-teacher", "up", "mean-teacher", 1.0),
    ("step: none + mean-teacher", "none", "mean-teacher", 1.0),
)


def _whole_step(ds: DeepSupervised, opt: Any, teacher: Any, x, y, u, recipe: str | None):
    """One whole semi-supervised step: the labelled loss plus 0.1 x the recipe's loss on the
    unlabelled batch ``u`` (none without a recipe), one backward, Adam, the teacher's update."""
    from dsplug.semi import recipe_loss

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = ds.loss(ds(x, y), y).total
        if recipe is not None:
            loss = loss + 0.1 * recipe_loss(ds, teacher, u, recipe)
        loss.backward()
        opt.step()
        if teacher is not None:
            teacher.update()

    return step


def _unlabeled_step(ds: DeepSupervised, opt: Any, teacher: Any, x: torch.Tensor, recipe: str):
    """One optimiser step on an unlabelled batch: the recipe's loss, backward, Adam, and the
    teacher's EMA update."""
    from dsplug.semi import mean_teacher_loss

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        if recipe == "mean-teacher":
            loss = mean_teacher_loss(ds, teacher, x, ds.label_mode)
        else:
            loss = ds.loss(ds.unlabeled(x, teacher if recipe == "pseudo" else None)).total
        loss.backward()
        opt.step()
        if teacher is not None:
            teacher.update()

    return step


def unlabeled_ratios(settings: Settings, device: torch.device) -> dict[str, dict[str, float]]:
    """Time (interleaved with a labelled ``none`` step) and FLOPs of a step on an unlabelled
    batch, per recipe, as ratios to the labelled ``none`` step."""
    from dsplug.semi import EMATeacher

    model = build_model(settings)
    x, y = make_batch(settings, device)
    torch.manual_seed(settings.seed)
    none = DeepSupervised(copy.deepcopy(model), "none").to(device).train()
    reference = ModeCase(none, torch.optim.Adam(none.parameters(), lr=LR), x, y)
    calls, flops = {"none": reference.step}, {"none": measure_flops(reference)}

    def prepared(mode: str, recipe: str | None) -> tuple[DeepSupervised, Any, Any]:
        """A wrapper of ``mode`` whose balance is measured, its Adam and the recipe's teacher."""
        torch.manual_seed(settings.seed)
        ds = DeepSupervised(copy.deepcopy(model), mode, aux_every=1).to(device).train()
        ModeCase(ds, torch.optim.Adam(ds.parameters(), lr=LR), x, y).step()  # measure scales
        balance_due(ModeCase(ds, None, x, y), False)
        teacher = EMATeacher(ds) if recipe in ("pseudo", "mean-teacher") else None
        return ds, torch.optim.Adam(ds.parameters(), lr=LR), teacher

    for row, mode, recipe in UNLABELED_ROWS:
        ds, opt, teacher = prepared(mode, recipe)
        calls[row] = _unlabeled_step(ds, opt, teacher, x, recipe)
    for row, mode, recipe, share in WHOLE_ROWS:
        ds, opt, teacher = prepared(mode, recipe)
        u = x[: max(1, round(share * len(x)))].flip(-1)  # unlabelled images: no mask read
        calls[row] = _whole_step(ds, opt, teacher, x, y, u, recipe)
    for row, call in calls.items():
        if row != "none":
            with FlopCounterMode(display=False) as counter:
                call()
            flops[row] = int(counter.get_total_flops())
    timings = interleaved(calls, settings.repeats, settings.warmup, device, desc="unlabeled")
    ref = median(timings.wall["none"])
    return {
        row: {
            "time": ratio(median(timings.wall[row]), ref),
            "flops": ratio(flops[row], flops["none"]),
        }
        for row in calls
        if row != "none"
    }
