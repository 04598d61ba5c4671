"""The shared machinery of the per-mode losses: terms as data, weights, schedule, breakdown."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from .._checks import look_up_option
from ..labels import LABEL_MODES, dense_target, to_probabilities
from ..output import DSOutput
from .schedule import schedule_factor
from .terms import bce_dice, cross_entropy, feature_mse
from .weights import LossWeights

__all__ = ["DeepSupervisionLoss", "LossBreakdown", "Term"]


@dataclass
class LossBreakdown:
    """The total loss and each term's (unweighted) value.

    ``terms`` converts to floats on first access (one device sync); ``tensors`` keeps the
    detached tensors.
    """

    total: torch.Tensor
    tensors: dict[str, torch.Tensor]
    _floats: dict[str, float] | None = field(default=None, repr=False)

    @property
    def terms(self) -> dict[str, float]:
        """Each term's value by name (unweighted, before the schedule)."""
        if self._floats is None:
            self._floats = {k: float(v) for k, v in self.tensors.items()}
        return self._floats


@dataclass(frozen=True)
class _Context:
    out: DSOutput
    target: torch.Tensor  # dense: float (B, C, *) or int64 (B, *)
    multiclass: bool
    label_mode: str
    weights: LossWeights


TermFn = Callable[[_Context], torch.Tensor]


@dataclass(frozen=True)
class Term:
    """One loss term: its name in ``LossBreakdown.terms``, its weight field and how to compute it.

    ``scheduled`` terms are scaled by the deep-supervision schedule (every term but L_image).
    """

    name: str
    weight: str
    compute: TermFn
    scheduled: bool = True


def _need(value: object, field_name: str, mode: str) -> object:
    if value is None:
        raise ValueError(
            f"DSOutput.{field_name} is missing, but the {mode!r} loss needs it: pass the output of "
            f"a DeepSupervised model built with mode={mode!r}."
        )
    return value


def _pseudo_label(logits: torch.Tensor, label_mode: str) -> torch.Tensor:
    """Detached probabilities, never thresholded."""
    return to_probabilities(logits, label_mode).detach()


def _levels_mse(
    students: Mapping[int, torch.Tensor],
    targets: Mapping[int, torch.Tensor],
    level_weights: tuple[float, ...],
    all_levels: list[int],
) -> torch.Tensor:
    """Σ_k w_k MSE(student_k, target_k.detach()) over the levels where a target exists."""
    total = students[all_levels[0]].new_zeros(())
    for w, level in zip(level_weights, all_levels):
        if level in targets and level in students and w != 0:
            total = total + w * feature_mse(students[level], targets[level].detach())
    return total


# --- term functions ---------------------------------------------------------------------------
def image_term(c: _Context) -> torch.Tensor:
    """L_image = L_BD(y, G)."""
    return bce_dice(c.out.logits, c.target, c.multiclass)


def mask_term(c: _Context) -> torch.Tensor:
    """L_mask = L_BD(y^g, G)."""
    return bce_dice(_need(c.out.mask_logits, "mask_logits", "deep"), c.target, c.multiclass)


def seg_term(c: _Context) -> torch.Tensor:
    """L_seg = L_BD(y, target y^g)."""
    mask = _need(c.out.mask_logits, "mask_logits", "deep")
    return bce_dice(c.out.logits, _pseudo_label(mask, c.label_mode), c.multiclass)


def seg_rec_term(c: _Context) -> torch.Tensor:
    """L_seg' = L_BD(y, target rec_mask(G))."""
    rec_mask = _need(c.out.rec_mask, "rec_mask", "rec")
    return bce_dice(c.out.logits, _pseudo_label(rec_mask, c.label_mode), c.multiclass)


def deep_term(c: _Context) -> torch.Tensor:
    """L_D = Σ_k ω_k MSE(y_k, target y^g_k)."""
    targets = _need(c.out.mask_features, "mask_features", "deep")
    levels = sorted(c.out.features)
    return _levels_mse(
        c.out.features, targets, c.weights.level_weights("omega", len(levels)), levels
    )


def deep_rec_term(c: _Context, weight_field: str = "sigma") -> torch.Tensor:
    """L_D' = Σ_k σ_k MSE(y_k (projected where channels differ), target r_k(G))."""
    targets = _need(c.out.rec_features, "rec_features", "rec")
    levels = sorted(c.out.features)
    students = {**c.out.features, **(c.out.aligned_features or {})}
    return _levels_mse(
        students, targets, c.weights.level_weights(weight_field, len(levels)), levels
    )


def deep_ae_term(c: _Context) -> torch.Tensor:
    """U-Net-Auto's L_D: vs the autoencoder's r_k(G), weighted by ω."""
    return deep_rec_term(c, "omega")


def rem_term(c: _Context) -> torch.Tensor:
    """L_rem = L_B(rec_mask(G), G)."""
    return cross_entropy(_need(c.out.rec_mask, "rec_mask", "rec"), c.target, c.multiclass)


def rei_term(c: _Context) -> torch.Tensor:
    """L_rei = MSE(rec_image(X), X) (X is z-scored, so MSE rather than BCE)."""
    return feature_mse(_need(c.out.rec_image, "rec_image", "rec"), c.out.image)


def kl_term(c: _Context) -> torch.Tensor:
    """The VAE bottleneck's KL divergence."""
    return _need(c.out.kl, "kl", "vae")


class DeepSupervisionLoss(nn.Module):
    """Base of the per-mode losses: the weighted sum of the mode's ``terms``.

    Args:
        weights: a preset name (``equal``, ``brats``, ``cardiac``, ``spleen``, ``liver``), a
            mapping of LossWeights fields, or a LossWeights.
        label_mode: ``binary``, ``multilabel`` or ``multiclass``.
        schedule: ``constant``, ``linear`` or ``cosine``: scales every term but L_image by
            training progress (set with :meth:`set_progress`).
        spatial_dims: 2 or 3 (to read multiclass targets given as (B, 1, *)).
    """

    mode: ClassVar[str] = ""
    terms: ClassVar[tuple[Term, ...]] = ()

    def __init__(
        self,
        weights: str | Mapping[str, object] | LossWeights = "equal",
        label_mode: str = "binary",
        schedule: str = "constant",
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        self.weights = LossWeights.from_any(weights)
        self.label_mode = look_up_option(label_mode, LABEL_MODES, "label_mode")
        self.schedule = schedule
        self.spatial_dims = spatial_dims
        self.factor = schedule_factor(schedule, 0.0)

    def set_progress(self, progress: float) -> None:
        """Advance the deep-supervision schedule (0 at the start of training, 1 at the end)."""
        self.factor = schedule_factor(self.schedule, progress)

    def used_fields(self) -> set[str]:
        """The LossWeights fields this mode reads."""
        used = {t.weight for t in self.terms}
        if "lam" in used:
            used.add("omega")
        if "eta" in used:
            used.add("sigma")
        if any(t.compute is deep_ae_term for t in self.terms):
            used.add("omega")
        return used

    def extra_repr(self) -> str:
        defaults = LossWeights()
        unused = [
            f
            for f in LossWeights.field_names()
            if f not in self.used_fields() and getattr(self.weights, f) != getattr(defaults, f)
        ]
        text = f"weights={self.weights}, label_mode={self.label_mode!r}, schedule={self.schedule!r}"
        if unused:
            text += f", unused_by_{self.mode}={unused}"
        return text

    def forward(self, out: DSOutput, y: torch.Tensor) -> LossBreakdown:
        """The weighted loss of ``out`` against the target ``y`` (see ``dsplug.labels``)."""
        c = _Context(
            out=out,
            target=dense_target(y, self.label_mode, self.spatial_dims),
            multiclass=self.label_mode == "multiclass",
            label_mode=self.label_mode,
            weights=self.weights,
        )
        total = out.logits.new_zeros((), dtype=torch.float32)
        values: dict[str, torch.Tensor] = {}
        for term in self.terms:
            value = term.compute(c)
            values[term.name] = value.detach()
            weight = float(getattr(self.weights, term.weight))
            if term.scheduled:
                weight *= self.factor
            total = total + weight * value
        return LossBreakdown(total=total, tensors=values)
