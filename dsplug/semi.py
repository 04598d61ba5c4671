"""Learning from images without masks: an EMA teacher, its pseudo-targets, mean teacher.

dsplug's semi-supervised recipe for any mode (``ds.unlabeled(x, teacher)``): an exponential
moving average of the model (:class:`EMATeacher`, as in mean teacher, Tarvainen & Valpola 2017)
labels an unlabelled batch; its confident pixels (top probability >= ``CONFIDENCE``) become a
pseudo-mask G̃, and the mode's whole loss trains on (X, G̃): L_image on the confident pixels,
and, for the μ-Net modes, the G pass and the tied decoder on G̃, so the feature terms L_D / L_D'
train on unlabelled images too. Without a teacher, the μ-Net modes still train the tied decoder
on X (L_rei, eq. 9).

The baseline, :func:`mean_teacher_loss`: the consistency between the student's and the
teacher's probabilities under noise and flips, weighted by :func:`sigmoid_rampup`.

Example:
    >>> teacher = EMATeacher(ds)
    >>> for (x, y), x_u in zip(labelled, unlabelled):
    ...     loss = ds.loss(ds(x, y), y).total
    ...     loss = loss + sigmoid_rampup(step, 500) * ds.loss(ds.unlabeled(x_u, teacher)).total
    ...     opt.zero_grad(); loss.backward(); opt.step(); teacher.update()
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from .labels import to_probabilities
from .losses.base import CONFIDENCE, pseudo_label
from .modes import mode_spec

__all__ = [
    "CONFIDENCE",
    "RECIPES",
    "EMATeacher",
    "check_recipe",
    "default_recipe",
    "default_weight",
    "flip_noise",
    "mean_teacher_loss",
    "pseudo_target",
    "recipe_loss",
    "sigmoid_rampup",
]


#: The semi-supervised recipes: ``pseudo`` (an EMA teacher's confident pseudo-masks through the
#: mode's whole loss), ``mean-teacher`` (consistency with the EMA teacher under noise and
#: flips), ``rei`` (the tied decoder reconstructs the unlabelled images: seg, rec, hyb, auto,
#: vae) and ``consistency`` (the side outputs agree with the main output, URPC: up, down).
RECIPES = ("pseudo", "mean-teacher", "rei", "consistency")


#: The unlabelled loss's weight after the ramp-up when none is given: mean teacher's 0.1
#: (SSL4MIS), the side outputs' consistency 0.1 (URPC's; measured on Task04 4 labelled cases,
#: benchmarks/semi: 0.7115 vs 0.6965 at weight 1, 3 seeds), 1 otherwise.
RECIPE_WEIGHTS = {"mean-teacher": 0.1, "consistency": 0.1}


def default_recipe(mode: str) -> str:
    """The recipe unlabelled images get when none is named: ``consistency`` for the modes with
    side outputs (up, down; measured on Task04 with 4 labelled cases: +0.062 over ``up`` in
    3 of 3 seeds, without a teacher), else ``mean-teacher`` (the least harmful measured for
    the others: the teacher's pseudo-masks collapsed, the tied decoder's L_rei on unlabelled
    images added nothing to hyb)."""
    return "consistency" if mode_spec(mode).heads is not None else "mean-teacher"


def default_weight(semi: str) -> float:
    """The unlabelled loss's weight of recipe ``semi`` when none is given."""
    return RECIPE_WEIGHTS.get(semi, 1.0)


def check_recipe(semi: str | None, mode: str) -> None:
    """Refuse, in one line, a recipe that ``mode`` cannot use (or an unknown one)."""
    if semi is None:
        return
    if semi not in RECIPES:
        raise ValueError(f"semi must be one of {list(RECIPES)} or None, got {semi!r}.")
    spec = mode_spec(mode)
    if semi == "rei" and spec.reconstruction is None:
        raise ValueError(
            f"semi 'rei' trains the tied decoder on unlabelled images, which mode {mode!r} "
            "has not; use a mode with a reconstruction decoder (seg, rec, hyb, auto, vae), or "
            "'consistency' (up, down), 'pseudo', 'mean-teacher'."
        )
    if semi == "consistency" and spec.heads is None:
        raise ValueError(
            f"semi 'consistency' trains side outputs to agree, which mode {mode!r} has not; "
            "use mode up or down, or 'rei' (seg, rec, hyb), 'pseudo', 'mean-teacher'."
        )


def _bare(model: nn.Module) -> nn.Module:
    """The segmentation model of a DeepSupervised wrapper (or the model itself)."""
    return getattr(model, "model", model) if hasattr(model, "unlabeled") else model


class EMATeacher(nn.Module):
    """An exponential moving average of a model's weights (mean teacher's teacher).

    ``teacher.update()`` after each optimiser step sets θ' = d θ' + (1 - d) θ on every floating
    parameter and buffer (timm's ``ModelEmaV2``), with ``d = min(decay, (1 + s) / (10 + s))``
    at update ``s`` so the teacher follows the student closely at first. The teacher runs in
    eval mode, without gradients; ``teacher(x)`` returns the bare model's logits. Its state
    (weights and update count) is saved with ``state_dict()`` for an exact resume.

    Args:
        model: a ``DeepSupervised`` wrapper or a bare model (the copy is of the bare model,
            without the wrapper's hooks).
        decay: d, the EMA decay (0.99: SSL4MIS's mean teacher).
    """

    def __init__(self, model: nn.Module, decay: float = 0.99) -> None:
        super().__init__()
        if isinstance(decay, bool) or not (isinstance(decay, int | float) and 0 <= decay < 1):
            raise ValueError(f"decay must be a number in [0, 1), got {decay!r}.")
        self.decay = float(decay)
        self._student = [_bare(model)]  # a list: not registered as a submodule
        self.module = _copy_without_hooks(model)
        self.module.eval().requires_grad_(False)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def train(self, mode: bool = True) -> EMATeacher:
        """The teacher always predicts in eval mode (its running statistics are averaged too)."""
        super().train(mode)
        self.module.eval()
        return self

    @torch.no_grad()
    def update(self) -> None:
        """θ' <- d θ' + (1 - d) θ after an optimiser step of the student."""
        step = int(self.updates)
        d = min(self.decay, (1 + step) / (10 + step))
        student = self._student[0].state_dict()
        for name, mine in self.module.state_dict().items():
            theirs = student[name].detach()
            if mine.is_floating_point():
                mine.lerp_(theirs.to(mine.dtype), 1 - d)
            else:
                mine.copy_(theirs)
        self.updates += 1

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's logits for ``x`` (no gradient)."""
        return self.module(x)


def _copy_without_hooks(model: nn.Module) -> nn.Module:
    """A deep copy of the bare model with none of the wrapper's forward hooks."""
    bare = _bare(model)
    if bare is model:
        return copy.deepcopy(model)
    training = model.training
    model.eval()  # the wrapper removes its hooks in eval mode
    try:
        return copy.deepcopy(bare)
    finally:
        model.train(training)


def pseudo_target(
    logits: torch.Tensor, label_mode: str, confidence: float = CONFIDENCE
) -> tuple[torch.Tensor, torch.Tensor]:
    """A teacher's pseudo-mask G̃ in the form ``ds.loss`` takes a target (float (B, C, *) 0/1
    for binary / multilabel, int64 (B, *) class indices for multiclass) and (B, 1, *) 1.0
    where every channel is confident (top probability >= ``confidence``)."""
    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence!r}.")
    target, sure = pseudo_label(logits, label_mode, confident=True, threshold=confidence)
    return target, sure


def flip_noise(
    x: torch.Tensor, noise: float = 0.1, flip: bool = True
) -> tuple[torch.Tensor, tuple[int, ...]]:
    """``x`` with Gaussian noise (``noise`` x each image's std, clipped at 2 sd, as SSL4MIS)
    and, with ``flip``, each spatial axis flipped with probability 1/2 for the whole batch.
    Returns the perturbed batch and the flipped dims (flip them back with ``torch.flip``)."""
    out = x
    if noise > 0:
        scale = x.detach().flatten(1).std(dim=1).view(-1, *[1] * (x.dim() - 1)).clamp(min=1e-6)
        out = x + (torch.randn_like(x) * noise).clamp(-2 * noise, 2 * noise) * scale
    dims: tuple[int, ...] = ()
    if flip:
        draws = torch.rand(x.dim() - 2).tolist()
        dims = tuple(2 + i for i, u in enumerate(draws) if u < 0.5)
        if dims:
            out = torch.flip(out, dims)
    return out, dims


def mean_teacher_loss(
    student: nn.Module,
    teacher: EMATeacher,
    x: torch.Tensor,
    label_mode: str,
    noise: float = 0.1,
) -> torch.Tensor:
    """Mean teacher's consistency: the MSE between the student's probabilities on a noisy,
    flipped ``x`` (flipped back) and the teacher's on another noisy ``x`` (Tarvainen &
    Valpola 2017; SSL4MIS's medical form). ``student(x)`` must return the logits (``ds(x)``
    does)."""
    x_student, dims = flip_noise(x, noise)
    x_teacher, _ = flip_noise(x, noise, flip=False)
    logits = student(x_student)
    if dims:
        logits = torch.flip(logits, dims)
    target = to_probabilities(teacher(x_teacher), label_mode)
    return F.mse_loss(to_probabilities(logits, label_mode), target)


def recipe_loss(
    student: nn.Module, teacher: EMATeacher | None, x: torch.Tensor, semi: str
) -> torch.Tensor:
    """The unweighted loss of recipe ``semi`` on the unlabelled batch ``x``: mean teacher's
    consistency, or the mode's loss of ``student.unlabeled(x, teacher)`` (pseudo-masks with a
    teacher; the label-free terms, L_rei or the side outputs' consistency, without one)."""
    if semi == "mean-teacher":
        return mean_teacher_loss(student, teacher, x, student.label_mode)
    return student.loss(student.unlabeled(x, teacher)).total


def sigmoid_rampup(step: int | float, length: int | float) -> float:
    """exp(-5 (1 - t)^2) with t = step / length clipped to [0, 1] (Laine & Aila 2017): the
    weight of the unlabelled loss rises from about 0.007 to 1 over ``length`` steps."""
    if length <= 0:
        return 1.0
    t = min(max(float(step) / float(length), 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)
