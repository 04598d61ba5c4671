"""Cheaper auxiliary branches: at a lower resolution (``aux_scale``), or every k-th step
(``aux_every``). Options of :class:`~dsplug.DeepSupervised`; the loss reads what they did from
the :class:`~dsplug.output.DSOutput` (``aux_image``, ``aux_target``, ``aux_weight``).

Pooling rules (one per kind of tensor, so targets and inputs stay consistent):

- images (X, G fed as input): area (average) pooling;
- binary / multilabel targets: max pooling of each channel (a thin foreground survives, as in
  the ``down`` baseline's maxpool_k(G));
- multiclass class indices: the most frequent foreground class of the window, background only
  where the window has no foreground (max pooling's rule, per class);
- ``ignore_index``: a pooled pixel is void only where every pixel of its window is void;
- student logits and features: area pooling; confidence masks: a pooled pixel counts only
  where every pixel of its window counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import torch
import torch.nn.functional as F

from .labels import dense_target
from .modes import ModeSpec
from .options import LabelMode, Mode
from .output import DSOutput

__all__ = [
    "AuxEvery",
    "aux_every_of",
    "check_aux_every",
    "check_aux_scale",
    "default_aux_every",
    "pool_mean",
    "pool_min",
    "pool_target",
    "scaled_batch",
    "scaled_output",
]

#: The scales ``aux_scale`` accepts: the auxiliary branches run on X and G pooled 1x, 2x or 4x.
AUX_SCALES = (1.0, 0.5, 0.25)


def _nothing_to_cheapen(name: str, spec: ModeSpec) -> ValueError:
    return ValueError(
        f"{name} makes the auxiliary branches cheaper, but mode {spec.name.value!r} has none "
        "to make cheaper (aux_scale: the G pass and the tied decoder of deep, auto, seg, rec, "
        "hyb, vae; aux_every: any mode but none)."
    )


def check_aux_scale(value: object, spec: ModeSpec) -> int:
    """The pooling factor (1, 2 or 4) of ``aux_scale`` for mode ``spec``; one clear error for
    anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value not in AUX_SCALES:
        raise ValueError(f"aux_scale must be one of {AUX_SCALES}, got {value!r}.")
    if value != 1 and not (spec.mask_pass or spec.reconstruction):
        raise _nothing_to_cheapen("aux_scale", spec)
    return round(1 / value)


#: The modes whose ``aux_every`` default is not 1, and their default.
_AUX_EVERY_DEFAULTS = {Mode.HYB: 2}


def default_aux_every(mode: Mode | str) -> int:
    """The ``aux_every`` that mode ``mode`` runs with when none is given: 2 for ``hyb``, 1
    (the branches on every call) for every other mode.

    hyb's branches every other step keep nearly all of its gain at two thirds of its cost
    (3 seeds each; step cost in multiples of a ``none`` step): Task04 hippocampus, 6
    training cases, test Dice 0.7473 with ``aux_every=1`` vs 0.7438 with 2 (-0.0035) at
    2.83x vs 1.89x; ISBI 2012, 15 slices, up to 100 epochs, 0.6695 vs 0.6663 (-0.003) at
    2.98x vs 2.01x. ``aux_every=1`` is the paper's hyb.
    """
    return _AUX_EVERY_DEFAULTS.get(Mode(mode), 1)


def aux_every_of(config: Mapping[str, object]) -> int:
    """The ``aux_every`` a wrapper config (:meth:`DeepSupervised.config`) was trained with.

    A config records it only when it is not 1, so a config without the key ran the
    branches on every call, whatever its mode (hyb's runs from before its default became 2
    included): rebuild it with this, never with :func:`default_aux_every`.
    """
    value = config.get("aux_every", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"a wrapper config's aux_every must be an int >= 1, got {value!r}.")
    return value


def check_aux_every(value: object, spec: ModeSpec) -> int:
    """``aux_every`` as an int >= 1 for mode ``spec`` (None: the mode's default,
    :func:`default_aux_every`); one clear error for anything else."""
    if value is None:
        return default_aux_every(spec.name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"aux_every must be an int >= 1, got {value!r}.")
    if value != 1 and spec.name == Mode.NONE:
        raise _nothing_to_cheapen("aux_every", spec)
    return value


def _pool(x: torch.Tensor, factor: int, kind: str) -> torch.Tensor:
    fn = {
        ("avg", 4): F.avg_pool2d,
        ("avg", 5): F.avg_pool3d,
        ("max", 4): F.max_pool2d,
        ("max", 5): F.max_pool3d,
    }[(kind, x.dim())]
    return fn(x, factor)


def pool_mean(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Area pooling of a (B, C, *) tensor (images, logits, features) by ``factor``."""
    return x if factor == 1 else _pool(x, factor, "avg")


def pool_min(valid: torch.Tensor, factor: int) -> torch.Tensor:
    """A (B, 1, *) 0/1 mask pooled so that a pixel counts only where its whole window does."""
    return valid if factor == 1 else -_pool(-valid.float(), factor, "max")


def pool_target(
    y: torch.Tensor,
    label_mode: LabelMode | str,
    spatial_dims: int,
    factor: int,
    classes: int,
    ignore_index: int | None = None,
) -> torch.Tensor:
    """A target (in any form ``ds(x, y)`` takes) pooled by ``factor``, in the dense form the
    loss takes (float (B, C, *), or int64 (B, *) class indices); see the module docstring."""
    target = dense_target(y, label_mode, spatial_dims)
    if factor == 1:
        return target
    multiclass = label_mode == LabelMode.MULTICLASS
    void = None if ignore_index is None else target == ignore_index
    if multiclass:
        labels = target.masked_fill(void, 0) if void is not None else target
        onehot = F.one_hot(labels, classes).movedim(-1, 1).float()
        if void is not None:
            onehot = onehot * (~void).unsqueeze(1)
        counts = _pool(onehot, factor, "avg")
        counted = counts.sum(1) > 0
        foreground = counts[:, 1:].sum(1) > 0
        counts[:, 0] = torch.where(foreground, -1.0, counts[:, 0])
        pooled = counts.argmax(1)
        if void is not None:
            pooled = torch.where(counted, pooled, torch.full_like(pooled, ignore_index))
        return pooled
    if void is None:
        return _pool(target.float(), factor, "max").to(target.dtype)
    counted = _pool((~void).float(), factor, "max") > 0
    pooled = _pool(target.masked_fill(void, 0).float(), factor, "max")
    return torch.where(counted, pooled, torch.full_like(pooled, float(ignore_index)))


class AuxEvery:
    """Which training calls run the auxiliary branches: the 1st, (k+1)-th, ... of each kind
    (labelled ``ds(x, y)`` and unlabelled ``ds.unlabeled(x)`` counted apart), their weight
    scaled by k so the average over k steps is unchanged; the others run mode ``none``'s step.

    The count is not saved with the state dict (a state dict loads into a wrapper with any
    ``aux_every``): after a resume the first step runs the branches again, a phase shift that
    leaves the average unchanged.
    """

    def __init__(self, every: int) -> None:
        self.every = every
        self.calls: dict[str, int] = {}

    def weight(self, kind: str, counting: bool) -> float:
        """The factor on this call's auxiliary terms: k on a call that runs them, 0 on one
        that skips them, 1 when not ``counting`` (eval, no grad) or ``aux_every=1``."""
        if self.every == 1 or not counting:
            return 1.0
        # the phase, not a running count: torch.compile guards on it, so a few graphs in all
        # instead of a recompilation per call (and eager past its recompile limit)
        n = self.calls.get(kind, 0)
        self.calls[kind] = (n + 1) % self.every
        return float(self.every) if n == 0 else 0.0


def scaled_batch(
    x: torch.Tensor,
    y: torch.Tensor,
    factor: int,
    label_mode: LabelMode | str,
    classes: int,
    ignore_index: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """X area-pooled and its target pooled by the target rules, by ``factor``."""
    spatial_dims = x.dim() - 2
    return pool_mean(x, factor), pool_target(
        y, label_mode, spatial_dims, factor, classes, ignore_index
    )


def scaled_output(
    out: DSOutput, confident: torch.Tensor | None
) -> tuple[DSOutput, torch.Tensor | None]:
    """``out`` as its auxiliary branches saw it at ``aux_scale`` < 1 (the rows of
    ``aux_index``, pooled: the seg logits and features by area, X is ``aux_image``), and a
    teacher's confidence mask pooled alike (a pixel counts where its whole window does)."""
    factor = out.logits.shape[-1] // out.aux_image.shape[-1]

    def small(t: torch.Tensor) -> torch.Tensor:
        t = t if out.aux_index is None else t.index_select(0, out.aux_index)
        return pool_mean(t, factor)

    if confident is not None:
        confident = confident if out.aux_index is None else confident[out.aux_index]
        confident = pool_min(confident, factor)
    scaled = replace(
        out,
        logits=small(out.logits),
        image=out.aux_image,
        features={r: small(f) for r, f in out.features.items()},
        aux_index=None,  # aligned_features and every auxiliary output are already picked
        aux_image=None,
        aux_target=None,
    )
    return scaled, confident
