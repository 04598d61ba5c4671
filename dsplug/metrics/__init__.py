"""Segmentation metrics of the paper's eq. 14 (DICE, PPV, SEN, IoU, avg.m) and paired tests.

Counts come first: :func:`confusion_counts` turns logits and a target into TP/FP/FN per slice
(batch item) and foreground class; :func:`scores` turns any counts into eq. 14. Headline figures
are per case: :class:`CaseMetrics` sums the counts of a case's slices, scores them, averages over
foreground classes and then over cases. :func:`paired_tests` compares two runs over cases.
Boundary metrics (HD95, normalised surface Dice; :mod:`dsplug.metrics.surface`) are scored per
case from masks, in :class:`CaseMetrics` with ``surface=True``.

Label conventions (the same across dsplug):

- ``label_mode`` is ``"binary"``, ``"multilabel"`` or ``"multiclass"``; logits are
  ``(B, C, *spatial)``.
- Targets: binary ``(B, 1, *spatial)`` in {0, 1}; multilabel ``(B, C, *spatial)`` in {0, 1};
  multiclass ``(B, *spatial)`` (or ``(B, 1, *spatial)``) integer class indices in ``[0, C)``.
- Predictions: binary / multilabel ``logits > 0`` per channel; multiclass ``argmax`` over C.
- Foreground classes: binary the one channel; multilabel all C channels; multiclass classes
  ``1..C-1`` (background 0 excluded).
"""

from .accumulator import CaseMetrics as CaseMetrics
from .paired import paired_tests as paired_tests
from .prediction import predict as predict
from .stats import METRIC_NAMES as METRIC_NAMES
from .stats import confusion_counts as confusion_counts
from .stats import scores as scores
from .surface import SURFACE_METRIC_NAMES as SURFACE_METRIC_NAMES
from .surface import foreground_masks as foreground_masks
from .surface import hd95 as hd95
from .surface import surface_dice as surface_dice
from .surface import surface_scores as surface_scores

__all__ = [
    "METRIC_NAMES",
    "SURFACE_METRIC_NAMES",
    "CaseMetrics",
    "confusion_counts",
    "foreground_masks",
    "hd95",
    "paired_tests",
    "predict",
    "scores",
    "surface_dice",
    "surface_scores",
]
