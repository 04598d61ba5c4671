"""What a loss term reads: the batch's context, a term as data, and the teacher's pseudo-labels.

A :class:`Term` names its weight field and a function of the :class:`_Context` that the loss
builds once per batch (the dense target, the pixels and images that count, the recipe); the
term functions themselves are in :mod:`dsplug.losses.functions`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from ..labels import to_probabilities
from ..output import DSOutput
from .terms import bce_dice, cross_entropy
from .weights import LossWeights

__all__ = ["CONFIDENCE", "SegLossFn", "Term", "TermFn", "pseudo_label"]

CONFIDENCE = 0.8  # a pseudo-label pixel counts when the teacher's top probability is >= this

SegLossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class _Context:
    """One batch as every term reads it (built once per batch by the loss)."""

    out: DSOutput
    target: torch.Tensor  # dense: float (B, C, *) or int64 (B, *); ignored pixels set to 0
    valid: torch.Tensor | None  # (B, 1, *) 1 where the target counts (ignore_index), or None
    multiclass: bool
    label_mode: str
    weights: LossWeights
    paper: bool
    confident: bool
    seg_loss: SegLossFn | None
    user_target: torch.Tensor  # the target as the user passed it (for seg_loss)
    # (B,) 1.0 for the images whose target has a counted foreground pixel: the G pass of an
    # empty mask is a constant image (a degenerate input: per-image norms divide by their eps),
    # so the terms read from it count only these images (by default; not in the paper's form)
    informative: torch.Tensor
    # a teacher's pseudo-target (an unlabelled batch): every mask term is the cross-entropy on
    # the confident pixels, without soft Dice, whose per-image ratio turns a confidently empty
    # pseudo-mask into a push to predict no foreground anywhere (measured: with it,
    # pseudo-labelling on Task04 collapsed to 0.17 validation Dice)
    pseudo: bool = False
    # the context of the auxiliary branches when they ran at a lower resolution (aux_scale)
    scaled: _Context | None = None

    def bd(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        valid: torch.Tensor | None,
        images: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """L_BD, or L_B alone on a pseudo-target (``images``: the images averaged over)."""
        if self.pseudo:
            return cross_entropy(logits, target, self.multiclass, valid, images)
        return bce_dice(logits, target, self.multiclass, valid, images)

    @property
    def aux(self) -> _Context:
        """This context on the images the auxiliary branches ran on (``out.aux_index``; a few
        index_selects per term when it is set, nothing otherwise); at ``aux_scale`` < 1, on
        their pooled images and targets."""
        if self.scaled is not None:
            return self.scaled
        index = self.out.aux_index
        if index is None:
            return self

        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.index_select(0, index)

        out = replace(
            self.out,
            logits=pick(self.out.logits),
            image=pick(self.out.image),
            features={r: pick(f) for r, f in self.out.features.items()},
            aux_index=None,  # aligned_features and every auxiliary output are already picked
        )
        return replace(
            self,
            out=out,
            target=pick(self.target),
            valid=pick(self.valid),
            user_target=pick(self.user_target),
            informative=pick(self.informative),
        )

    @property
    def g_valid(self) -> torch.Tensor | None:
        """The pixels that count in a term read from the G pass."""
        if self.paper:
            return self.valid
        shape = (-1,) + (1,) * (self.out.logits.dim() - 1)
        return _and(self.valid, self.informative.view(shape))

    @property
    def counted(self) -> torch.Tensor | None:
        """(B,) 1.0 for the images that count in L_image (None: all): an image whose mask is
        ``ignore_index`` everywhere (an unlabelled image in a partly labelled batch) is left
        out of the mean, not counted as 0; of a pseudo-labelled batch, only the images whose
        pseudo-mask has confident foreground count (a confidently empty pseudo-mask, the
        common case early in training, would teach "predict no foreground": measured, it
        collapsed pseudo-labelling on Task04 to 0.23 validation Dice)."""
        if self.pseudo:
            return self.informative
        return None if self.valid is None else (self.valid.flatten(1).amax(1) > 0).float()

    @property
    def g_images(self) -> torch.Tensor | None:
        """The images a term read from the G pass averages over: the informative ones (as L_D
        does), so the share of empty masks in a batch does not scale the term; the paper's
        form: every image."""
        return None if self.paper else self.informative


TermFn = Callable[[_Context], torch.Tensor]


@dataclass(frozen=True)
class Term:
    """One loss term: its name in ``LossBreakdown.terms``, its weight field and how to compute it.

    ``scheduled`` terms are scaled by the deep-supervision schedule (every term but L_image);
    ``label_free`` terms read no mask (L_rei, the VAE's KL): they also train on unlabelled images.
    """

    name: str
    weight: str
    compute: TermFn
    scheduled: bool = True
    label_free: bool = False


def _need(value: object, field_name: str, mode: str) -> object:
    if value is None:
        raise ValueError(
            f"DSOutput.{field_name} is missing, but the {mode!r} loss needs it: pass the output of "
            f"a DeepSupervised model built with mode={mode!r}."
        )
    return value


def pseudo_label(
    logits: torch.Tensor, label_mode: str, confident: bool, threshold: float = CONFIDENCE
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A teacher's detached target and the pixels where it counts.

    ``confident``: hard labels (class indices for multiclass, 0/1 otherwise) where the teacher's
    probability of its choice is >= ``threshold``, the other pixels left out; otherwise the
    soft probabilities everywhere (the paper).
    """
    probs = to_probabilities(logits.detach(), label_mode)
    if not confident:
        return probs, None
    if label_mode == "multiclass":
        top, labels = probs.max(dim=1)
        return labels, (top >= threshold).unsqueeze(1).float()
    hard = (probs >= 0.5).float()
    sure = torch.maximum(probs, 1 - probs) >= threshold
    # multilabel: a pixel counts when every channel is sure
    return hard, sure.all(dim=1, keepdim=True).float()


def _and(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None:
        return b
    return a if b is None else a * b


def _informative_images(
    target: torch.Tensor, valid: torch.Tensor | None, multiclass: bool
) -> torch.Tensor:
    """(B,) 1.0 where an image's target has a counted foreground pixel (no device sync)."""
    foreground = (target > 0).unsqueeze(1) if multiclass else (target > 0.5)
    if valid is not None:
        foreground = foreground & (valid > 0)
    return foreground.flatten(1).any(dim=1).float()


def _has_foreground(c: _Context) -> bool:
    """Whether any image of the batch is informative (one device sync)."""
    return bool(c.informative.any())
