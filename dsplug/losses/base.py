"""The shared machinery of the per-mode losses: weights, balance, schedule, breakdown (what a term
reads is in :mod:`.context`, the term functions in :mod:`.functions`).

Two recipes, chosen by ``balance``:

- ``"auto"`` (default): every auxiliary term is on a scale-free form (eq. 9's intensity BCE for
  L_rei, feature errors relative to the target's magnitude and averaged over levels, pseudo-labels
  only where the teacher is confident), its gradient on the shared encoder is brought to
  L_image's (:class:`~dsplug.losses.balance.GradientBalance`), and the auxiliary terms are
  averaged, so together they never steer the encoder harder than L_image does.
- ``"paper"``: the paper's literal sum (eq. 6, 7, 11-13) with its presets: raw MSE for L_rei
  and L_D, soft pseudo-labels, every term added with its weight.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import ClassVar

import torch
from torch import nn

from ..cost import scaled_output
from ..labels import dense_target
from ..options import Balance, LabelMode, PseudoLabels, Schedule, choose
from ..output import DSOutput
from .balance import FROZEN_MODEL, GradientBalance
from .context import (
    CONFIDENCE,
    SegLossFn,
    Term,
    TermFn,
    _and,
    _Context,
    _has_foreground,
    _informative_images,
    pseudo_label,
)
from .functions import (
    _levels,  # noqa: F401 (the tests read it from here)
    deep_ae_term,
    deep_rec_term,
    deep_term,
    image_term,
    kl_term,
    mask_term,
    rei_term,
    rem_term,
    seg_loss_vs_target,
    seg_loss_vs_teacher,
    seg_rec_term,
    seg_term,
)
from .schedule import schedule_factor
from .weights import LossWeights

# The batch's context, Term and the pseudo-labels (now in .context) and the term functions (now
# in .functions) stay importable from here, where they were first defined.
__all__ = [
    "CONFIDENCE",
    "DeepSupervisionLoss",
    "LossBreakdown",
    "SegLossFn",
    "Term",
    "TermFn",
    "deep_ae_term",
    "deep_rec_term",
    "deep_term",
    "image_term",
    "kl_term",
    "mask_term",
    "pseudo_label",
    "rei_term",
    "rem_term",
    "seg_loss_vs_target",
    "seg_loss_vs_teacher",
    "seg_rec_term",
    "seg_term",
]


@dataclass
class LossBreakdown:
    """The total loss and each term's share of it.

    ``terms`` are the weighted contributions (they add up to ``total``), ``raw`` the terms'
    own values before weights, balance and schedule. Each converts to floats on its first
    access (a device sync per term) and keeps them; ``tensors`` / ``raw_tensors`` keep the
    detached tensors.
    """

    total: torch.Tensor
    tensors: dict[str, torch.Tensor]
    raw_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    _floats: dict[str, float] | None = field(default=None, repr=False)
    _raw_floats: dict[str, float] | None = field(default=None, repr=False)

    @property
    def terms(self) -> dict[str, float]:
        """Each term's weighted contribution to ``total`` by name."""
        if self._floats is None:
            self._floats = {k: float(v) for k, v in self.tensors.items()}
        return self._floats

    @property
    def raw(self) -> dict[str, float]:
        """Each term's unweighted value by name."""
        if self._raw_floats is None:
            self._raw_floats = {k: float(v) for k, v in self.raw_tensors.items()}
        return self._raw_floats


class DeepSupervisionLoss(nn.Module):
    """Base of the per-mode losses: α L_image plus the mode's auxiliary ``terms``.

    Args:
        weights: a preset name (``equal``, ``brats``, ``cardiac``, ``spleen``, ``liver``), a
            mapping of LossWeights fields, or a LossWeights. A field the mode does not use is
            an error when given explicitly.
        label_mode: ``binary``, ``multilabel`` or ``multiclass``.
        schedule: ``constant``, ``linear`` or ``cosine``: scales every term but L_image by
            training progress (set with :meth:`set_progress`). Default: ``cosine`` with
            ``balance="auto"``, ``constant`` with ``"paper"``.
        spatial_dims: 2 or 3 (to read multiclass targets given as (B, 1, *)).
        balance: ``auto`` (scale-free terms, gradient-balanced and averaged) or ``paper``
            (the paper's literal weighted sum); see the module docstring.
        seg_loss: ``f(logits, target) -> scalar`` replacing L_BD wherever an output is compared
            with the true target (L_image, L_mask, L_rem, the side heads of ``up``); ``target``
            is passed as given to the loss. Pseudo-label terms keep L_BD (they need the
            confidence mask).
        ignore_index: a label value left out of every term that reads labels.
        pseudo_labels: ``confident`` (hard labels where the teacher is sure, the rest left
            out) or ``soft`` (probabilities); default ``confident`` with ``balance="auto"``,
            ``soft`` with ``"paper"``.
    """

    mode: ClassVar[str] = ""
    terms: ClassVar[tuple[Term, ...]] = ()
    #: label-free terms computed on unlabelled batches only (``ds.loss(ds.unlabeled(x))``)
    unlabeled_terms: ClassVar[tuple[Term, ...]] = ()

    def __init__(
        self,
        weights: str | Mapping[str, object] | LossWeights = "equal",
        label_mode: str = "binary",
        schedule: str | None = None,
        spatial_dims: int = 2,
        *,
        balance: str = "auto",
        seg_loss: SegLossFn | None = None,
        ignore_index: int | None = None,
        pseudo_labels: str | None = None,
    ) -> None:
        super().__init__()
        self.label_mode = choose(label_mode, LabelMode, "label_mode")
        self.balance = choose(balance, Balance, "balance")
        paper = self.balance == Balance.PAPER
        self.schedule = choose(
            schedule or (Schedule.CONSTANT if paper else Schedule.COSINE), Schedule, "schedule"
        )
        # the progress is a buffer (saved with the model) mirrored by a float (read per step
        # with no device sync, and a constant for torch.compile)
        self.register_buffer("progress", torch.zeros(()))
        self._progress = 0.0
        self.pseudo_labels = choose(
            pseudo_labels or (PseudoLabels.SOFT if paper else PseudoLabels.CONFIDENT),
            PseudoLabels,
            "pseudo_labels",
        )
        if seg_loss is not None and not callable(seg_loss):
            raise TypeError(
                f"seg_loss must be a callable (logits, target) -> scalar tensor, got "
                f"{type(seg_loss).__name__}."
            )
        if ignore_index is not None and (
            isinstance(ignore_index, bool) or not isinstance(ignore_index, int)
        ):
            raise TypeError(f"ignore_index must be an int or None, got {ignore_index!r}.")
        self.seg_loss = seg_loss
        self.ignore_index = ignore_index
        self.spatial_dims = spatial_dims
        self.weights = LossWeights()
        self.set_weights(weights)
        aux = [t.name for t in self.terms if t.scheduled]
        self.balancer = GradientBalance(aux) if aux and not paper else None
        self._attached = False  # attach() was called (by the wrapper): the model is known

    # --- configuration -----------------------------------------------------------------------
    def set_weights(self, weights: str | Mapping[str, object] | LossWeights) -> None:
        """Change the term weights (e.g. between epochs of one's own loop).

        Raises:
            ValueError: an explicitly given field that this mode does not use.
        """
        new = LossWeights.from_any(weights)
        if isinstance(weights, str):  # a preset: its named level rules need a mode reading them
            given, source = new.rule_fields(), f" (preset {weights!r})"
        else:
            given = weights.keys() if isinstance(weights, Mapping) else new.non_default_fields()
            source = ""
        unused = sorted(set(given) - self.used_fields())
        if unused:
            raise ValueError(
                f"Weights {unused}{source} are not used by mode {self.mode!r}, whose terms read "
                f"{sorted(self.used_fields())} ({', '.join(t.name for t in self.terms)})."
            )
        self.weights = new

    def attach(self, shared: Callable[[], list[nn.Parameter]] | Iterable[nn.Parameter]) -> None:
        """The shared weights the auxiliary gradients are balanced on: a function returning
        them at each measurement (the wrapper's: its encoder's trainable parameters), or a
        fixed collection. An attached loss refuses a training step whose L_image sends no
        gradient (every parameter of the model frozen), in every mode and balance."""
        self._attached = True
        if self.balancer is not None:
            self.balancer.attach(shared)

    def set_progress(self, progress: float) -> None:
        """Advance the deep-supervision schedule (0 at the start of training, 1 at the end);
        saved with the loss's state (a buffer). See :func:`~dsplug.losses.epoch_progress`."""
        schedule_factor(self.schedule, progress)  # checks the range
        self._progress = float(progress)
        self.progress.fill_(self._progress)

    @property
    def factor(self) -> float:
        """The schedule's factor on every auxiliary term at the current progress."""
        return schedule_factor(self.schedule, self._progress)

    @property
    def auxiliary_active(self) -> bool:
        """False when the schedule's factor is 0: the auxiliary terms (and the branches that
        feed them) are not computed at all, so a step costs what mode ``none`` costs."""
        return self.factor > 0 or not any(t.scheduled for t in self.terms)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object) -> None:
        # a checkpoint written before the progress was a buffer, or a partial state dict
        # (strict=False): the schedule keeps its progress, and says so
        if prefix + "progress" not in state_dict:
            warnings.warn(
                f"The state dict has no {prefix}progress (a partial state dict or a checkpoint "
                f"from before dsplug saved it): the deep-supervision schedule stays at progress "
                f"{self._progress:g}; set it with set_epoch() / set_progress().",
                stacklevel=5,  # ds.load_state_dict -> load -> load -> here
            )
            state_dict[prefix + "progress"] = self.progress.detach().clone()
        super()._load_from_state_dict(state_dict, prefix, *args)
        self._progress = float(self.progress)

    def used_fields(self) -> set[str]:
        """The LossWeights fields this mode reads."""
        used = {t.weight for t in self.terms}
        if "lam" in used:
            used.add("omega")
        if "eta" in used:
            used.add("sigma")
        if "aux" in used:  # up / down: per side output
            used.add("aux_levels")
        if any(t.compute is deep_ae_term for t in self.terms):
            used.add("omega")
        return used

    def extra_repr(self) -> str:
        return (
            f"weights={self.weights}, label_mode={self.label_mode!r}, "
            f"balance={self.balance!r}, schedule={self.schedule!r}, "
            f"pseudo_labels={self.pseudo_labels!r}"
        )

    # --- the loss ------------------------------------------------------------------------------
    def _frozen_step(self, logits: torch.Tensor) -> bool:
        """A training step of the attached model whose L_image can send no gradient."""
        training = self.training and torch.is_grad_enabled()
        return getattr(self, "_attached", False) and training and not logits.requires_grad

    def _context(
        self, out: DSOutput, y: torch.Tensor, confident: torch.Tensor | None = None
    ) -> _Context:
        if self._frozen_step(out.logits):  # one message in every mode and balance
            raise RuntimeError(FROZEN_MODEL)
        target = dense_target(y, self.label_mode, self.spatial_dims)
        valid = None
        if self.ignore_index is not None:
            keep = target != self.ignore_index
            valid = (keep if self.label_mode == "multiclass" else keep.all(1)).unsqueeze(1).float()
            target = torch.where(keep, target, torch.zeros_like(target))
        if confident is not None:  # a teacher's pseudo-target: its confident pixels only
            valid = _and(valid, confident.float())
        return _Context(
            out=out,
            target=target,
            valid=valid,
            multiclass=self.label_mode == "multiclass",
            label_mode=self.label_mode,
            weights=self.weights,
            paper=self.balance == "paper",
            confident=self.pseudo_labels == "confident",
            # the user's loss cannot leave a teacher's unsure pixels out: L_BD on pseudo-targets
            seg_loss=self.seg_loss if confident is None else None,
            user_target=y,
            informative=_informative_images(target, valid, self.label_mode == "multiclass"),
            pseudo=confident is not None,
        )

    @property
    def label_free_terms(self) -> tuple[str, ...]:
        """The terms that read no mask (they train on unlabelled images without a teacher)."""
        return tuple(t.name for t in (*self.terms, *self.unlabeled_terms) if t.label_free)

    def forward(self, out: DSOutput, y: torch.Tensor | None = None) -> LossBreakdown:
        """The loss of ``out`` against the target ``y`` (see ``dsplug.labels``).

        When the schedule's factor is 0 only L_image is computed (the other terms read 0).
        Without ``y``, ``out`` is an unlabelled batch's (``DeepSupervised.unlabeled``): every
        term against the teacher's pseudo-target on its confident pixels, or, without a
        teacher, the label-free terms alone. An unlabelled batch never measures the gradient
        balance: it uses the scales measured on labelled batches.
        """
        measure, confident = True, None
        if y is None or not out.labeled:
            if y is not None or out.labeled:
                raise ValueError(
                    "ds.loss(out, y) takes the output of ds(x, y) with its mask y, and "
                    "ds.loss(out) (no mask) the output of ds.unlabeled(x): got "
                    f"{'a mask with an unlabelled' if y is not None else 'no mask for a labelled'}"
                    " batch's output."
                )
            if out.target is None:
                return self._label_free(out)
            y, confident, measure = out.target, out.target_valid, False
        if y.shape[0] == 0 or out.logits.shape[0] == 0:
            raise ValueError(
                f"An empty batch has no loss: got images of shape {tuple(out.logits.shape)} and "
                f"targets of shape {tuple(y.shape)}; skip batches with B = 0."
            )
        c = self._context(out, y, confident)
        factor = self.factor * out.aux_weight  # aux_every: 0 on a skipped step, k on a run
        if out.aux_target is not None and factor > 0:  # aux_scale: the branches' own context
            small, small_confident = scaled_output(out, confident)
            c = replace(c, scaled=self._context(small, out.aux_target, small_confident))
        aux = [t for t in self.terms if t.scheduled]
        active = self.terms if factor > 0 else tuple(t for t in self.terms if not t.scheduled)
        raw = {term.name: term.compute(c) for term in active}
        scales: Mapping[str, torch.Tensor | float] = {}
        if self.balancer is not None and factor > 0 and not measure:
            scales = self.balancer.scales()
        elif self.balancer is not None and factor > 0:
            self.balancer.update(
                raw[self.terms[0].name],
                {t.name: raw[t.name] for t in aux},
                informative=partial(_has_foreground, c),
            )
            scales = self.balancer.scales()
        return self._breakdown(out, raw, factor, scales)

    def _breakdown(
        self,
        out: DSOutput,
        raw: dict[str, torch.Tensor],
        factor: float,
        scales: Mapping[str, torch.Tensor | float],
    ) -> LossBreakdown:
        """α L_image + factor · mean_i(w_i c_i L_i) of the computed terms ``raw`` (the others
        read 0); the mean is a plain weighted sum without a balancer."""
        aux = [t for t in self.terms if t.scheduled]
        share = 1.0 / len(aux) if aux and self.balancer is not None else 1.0
        total = out.logits.new_zeros((), dtype=torch.float32)
        parts: dict[str, torch.Tensor] = {}
        extra = [t for t in self.unlabeled_terms if t.name in raw]  # an unlabelled batch's
        for term in (*self.terms, *extra):
            if term.name not in raw:
                raw[term.name] = parts[term.name] = total.new_zeros(())
                continue
            weight = float(getattr(self.weights, term.weight))
            if term.scheduled:
                weight *= factor * share
            part = weight * scales.get(term.name, 1.0) * raw[term.name]
            parts[term.name] = part.detach()
            total = total + part
        return LossBreakdown(
            total=total, tensors=parts, raw_tensors={k: v.detach() for k, v in raw.items()}
        )

    def _label_free(self, out: DSOutput) -> LossBreakdown:
        """The label-free terms of an unlabelled batch without a teacher (L_rei: the tied
        decoder reconstructs X), weighted as in a labelled step; every other term reads 0."""
        if not self.label_free_terms:
            raise ValueError(
                f"Mode {self.mode!r} has no term that learns without a mask: pass a teacher "
                "(ds.unlabeled(x, teacher=EMATeacher(ds))) to train on its pseudo-masks."
            )
        c = _Context(
            out=out if out.aux_image is None else replace(out, image=out.aux_image),
            target=out.logits.new_zeros(()),
            valid=None,
            multiclass=self.label_mode == "multiclass",
            label_mode=self.label_mode,
            weights=self.weights,
            paper=self.balance == "paper",
            confident=self.pseudo_labels == "confident",
            seg_loss=None,
            user_target=out.logits.new_zeros(()),
            informative=out.logits.new_zeros(out.logits.shape[0]),
        )
        factor = self.factor * out.aux_weight
        free = [t for t in (*self.terms, *self.unlabeled_terms) if t.label_free]
        raw = {t.name: t.compute(c) for t in free if factor > 0}
        scales = self.balancer.scales() if self.balancer is not None else {}
        return self._breakdown(out, raw, factor, scales)
