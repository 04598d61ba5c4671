"""Classes a run never sees or never predicts: said once, in one line, rather than left to
show only as a low Dice (a label rule that empties the masks, a class the model gave up on)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch

from ..metrics import CaseMetrics
from ..options import LabelMode, choose
from .distributed import DistInfo, all_gather_objects

__all__ = [
    "ForegroundTally",
    "VanishedClasses",
    "class_names",
    "predicted_classes",
    "unpredicted_classes",
    "warn_unpredicted_best",
]


def class_names(classes: Sequence[int], label_mode: str) -> str:
    """``"the foreground"`` (binary) or ``"class 2"`` / ``"classes 1, 3"`` (1-based foreground
    classes, as the per-class columns ``<metric>_<k>``)."""
    if choose(label_mode, LabelMode, "label_mode") is LabelMode.BINARY:
        return "the foreground"
    numbers = ", ".join(str(k) for k in classes)
    return f"class {numbers}" if len(classes) == 1 else f"classes {numbers}"


class ForegroundTally:
    """Which foreground classes occur in the masks passed to :meth:`add` (training batches).

    Example:
        >>> tally = ForegroundTally("multiclass")
        >>> tally.add(torch.tensor([[[0, 2], [2, 0]]]))
        >>> tally.absent(3)
        [1, 3]
    """

    def __init__(self, label_mode: str) -> None:
        self.label_mode = choose(label_mode, LabelMode, "label_mode")
        self.present: set[int] = set()
        self._any: torch.Tensor | None = None  # per channel, binary / multilabel

    def add(self, target: torch.Tensor) -> None:
        """Note the classes with foreground in a batch of masks (dsplug's label conventions)."""
        if self.label_mode is LabelMode.MULTICLASS:
            values = torch.unique(target).tolist()
            self.present.update(int(v) for v in values if v > 0)
            return
        seen = (target.detach().flatten(2) > 0).any(dim=2).any(dim=0)  # (K,), no sync
        self._any = seen if self._any is None else self._any | seen

    def absent(self, classes: int) -> list[int]:
        """The foreground classes ``1..classes`` seen in no mask."""
        present = set(self.present)
        if self._any is not None:
            present.update(k + 1 for k, seen in enumerate(self._any.tolist()) if seen)
        return [k for k in range(1, classes + 1) if k not in present]

    def warn_absent(self, classes: int, epoch: int, info: DistInfo) -> list[int]:
        """One warning (main process) when foreground classes ``1..classes`` occur in no
        training mask of ``epoch`` on any rank; returns them. (Called by the trainer's epoch:
        the warning names the line of ``fit`` that ran it.)"""
        absent = self.absent(classes)
        if info.distributed:  # absent only where no rank saw it
            gathered = all_gather_objects(absent, info)
            absent = sorted(set.intersection(*(set(a) for a in gathered)))
        if absent and info.is_main:
            warnings.warn(
                f"no training mask of epoch {epoch} holds {class_names(absent, self.label_mode)}"
                ": the model learns only background there; check the masks and their label rule "
                "(--option labels=...), and that images and masks are paired right.",
                UserWarning,
                stacklevel=3,
            )
        return absent


def _class_counts(metrics: CaseMetrics) -> tuple[torch.Tensor, ...] | None:
    """(tp, fp, fn) per foreground class summed over the cases, or None without cases."""
    counts = list(metrics.case_counts().values())
    if not counts:
        return None
    return torch.stack(counts).sum(dim=0).unbind(dim=-1)


def predicted_classes(metrics: CaseMetrics) -> list[int]:
    """The foreground classes (1-based) that some case's prediction holds."""
    sums = _class_counts(metrics)
    if sums is None:
        return []
    tp, fp, _ = sums
    return [k + 1 for k in range(len(tp)) if int(tp[k] + fp[k]) > 0]


def unpredicted_classes(metrics: CaseMetrics) -> list[int]:
    """The foreground classes (1-based) that the masks hold but no case's prediction does."""
    sums = _class_counts(metrics)
    if sums is None:
        return []
    tp, fp, fn = sums
    return [k + 1 for k in range(len(tp)) if int(tp[k] + fp[k]) == 0 and int(fn[k]) > 0]


class VanishedClasses:
    """One warning line when a foreground class that an earlier validation of the run predicted
    is predicted in no case (though the masks hold it), once per class per run: a class that
    the model gives up on mid-run (a collapse) is said when it happens, not only as a low Dice
    at the end. A class never predicted yet (the first epochs) is the end-of-run warning's.

    Example:
        >>> watch = VanishedClasses("multiclass")
        >>> both, lost = CaseMetrics(), CaseMetrics()
        >>> both.update(torch.tensor([[[2, 1, 3], [3, 1, 0]]]), ["a"], [0])
        >>> lost.update(torch.tensor([[[0, 0, 5], [3, 1, 0]]]), ["a"], [0])
        >>> watch.check(both, epoch=1)
        []
        >>> watch.check(lost, epoch=2)  # warns: class 1 vanished in epoch 2
        [1]
        >>> watch.check(lost, epoch=3)  # said once
        []
    """

    def __init__(self, label_mode: str) -> None:
        self.label_mode = choose(label_mode, LabelMode, "label_mode")
        self.seen: set[int] = set()  # classes some validation of this run predicted
        self.warned: set[int] = set()

    def check(self, metrics: CaseMetrics, epoch: int, *, warn: bool = True) -> list[int]:
        """The classes that vanish from every prediction of ``metrics`` for the first time this
        run, having been predicted before; one ``UserWarning`` naming them and ``epoch``
        (unless ``warn`` is False: a rank other than the main one keeps count silently)."""
        new = [k for k in unpredicted_classes(metrics) if k in self.seen - self.warned]
        self.seen.update(predicted_classes(metrics))
        self.warned.update(new)
        if new and warn:
            what = class_names(new, self.label_mode)
            warnings.warn(
                f"validation of epoch {epoch}: {what} vanished from every prediction, though "
                "earlier epochs predicted it and the masks hold it (a collapse); said once "
                "per class.",
                UserWarning,
                stacklevel=3,
            )
        return new


def warn_unpredicted_best(missed: Sequence[int], label_mode: str, epoch: Any) -> None:
    """One warning when the best epoch predicted classes (``missed``) in no validation case
    (at the end of ``Trainer.fit``; the warning names the caller of ``fit``)."""
    if missed:
        warnings.warn(
            f"the best epoch ({epoch}) predicted {class_names(missed, label_mode)} in no "
            "validation case, though the masks hold it: its scores are those of an empty "
            "prediction; train longer, or weigh that class up.",
            UserWarning,
            stacklevel=4,
        )
