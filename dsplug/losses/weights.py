"""LossWeights: the weights of every loss term (the paper's α, β, a, b, γ, ξ, λ, η, ω, σ)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from .._checks import look_up_option

__all__ = ["LEVEL_RULES", "PRESETS", "LevelWeights", "LossWeights", "nnunet_weights"]

LevelWeights = float | tuple[float, ...]

LEVEL_FIELDS = ("omega", "sigma", "aux_levels")
"""The fields with one value per level (or one scalar for every level)."""

LEVEL_RULES = ("nnunet",)
"""Named rules for ``aux_levels`` that give the weights from the number of levels."""


def nnunet_weights(levels: int) -> tuple[float, ...]:
    """nnU-Net's deep-supervision weights for a net of ``levels`` levels (the bottleneck one of
    them): one per decoder output, full resolution first, 1/2^k, the lowest-resolution output
    at 0, normalised to sum 1 (nnunetv2's ``nnUNetTrainer._build_loss``); nnU-Net has no
    output at the bottleneck.

    Example:
        >>> nnunet_weights(4)
        (0.6666666666666666, 0.3333333333333333, 0.0)
    """
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 3:
        raise ValueError(f"nnU-Net's weights need a net of at least 3 levels, got {levels!r}.")
    raw = [0.5**k for k in range(levels - 2)] + [0.0]
    return tuple(w / sum(raw) for w in raw)


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms of eq. 6, 7, 11-13 (``lam`` is λ: ``lambda`` is a keyword).

    ``omega`` and ``sigma`` are one scalar or one value per level (shallowest level first,
    the bottleneck last); their length is checked against the model's levels. ``aux_levels``
    weighs the side outputs of ``up`` and ``down`` (inside ``aux``): one scalar, one value per
    side output (level 1 first, the bottleneck last), or ``"nnunet"``: nnU-Net's 1/2^k relative
    to the full-resolution output (weighted by ``alpha``), its lowest-resolution output and the
    bottleneck at 0 (see :func:`nnunet_weights`).

    Example:
        >>> LossWeights.preset("brats").alpha
        5.0
    """

    alpha: float = 1.0
    beta: float = 1.0
    a: float = 1.0
    b: float = 1.0
    gamma: float = 1.0
    xi: float = 1.0
    lam: float = 1.0
    eta: float = 1.0
    omega: LevelWeights = 1.0
    sigma: LevelWeights = 1.0
    kl: float = 1.0
    aux: float = 1.0
    aux_levels: LevelWeights | str = 1.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "aux_levels" and isinstance(value, str):
                look_up_option(value, LEVEL_RULES, "aux_levels rule")
                continue
            values = value if isinstance(value, tuple | list) else (value,)
            if f.name not in LEVEL_FIELDS and len(values) != 1:
                raise ValueError(f"LossWeights.{f.name} must be one number, got {value!r}.")
            for v in values:
                if isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or v != v:
                    raise ValueError(
                        f"LossWeights.{f.name} must be a non-negative number (or, for "
                        f"{', '.join(LEVEL_FIELDS)}, a sequence of them), got {value!r}."
                    )
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(float(v) for v in value))
            elif isinstance(value, int):
                object.__setattr__(self, f.name, float(value))

    @classmethod
    def field_names(cls) -> list[str]:
        """The valid field names."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def preset(cls, name: str) -> LossWeights:
        """One of the named presets: ``equal`` or the paper's tuned values (§4.8)."""
        return PRESETS[look_up_option(name, PRESETS, "loss-weight preset")]

    @classmethod
    def from_any(cls, weights: str | Mapping[str, object] | LossWeights) -> LossWeights:
        """Accept a preset name, a mapping of fields, or a LossWeights."""
        if isinstance(weights, LossWeights):
            return weights
        if isinstance(weights, str):
            return cls.preset(weights)
        if isinstance(weights, Mapping):
            for key in weights:
                look_up_option(key, cls.field_names(), "LossWeights field")
            return cls(**weights)  # type: ignore[arg-type]
        raise TypeError(
            "weights must be a preset name, a mapping of LossWeights fields or a LossWeights, "
            f"got {type(weights).__name__}."
        )

    def non_default_fields(self) -> list[str]:
        """The fields whose value differs from the default."""
        defaults = LossWeights()
        return [f for f in self.field_names() if getattr(self, f) != getattr(defaults, f)]

    def rule_fields(self) -> list[str]:
        """The fields set by a named rule (``aux_levels="nnunet"``): only modes that read them
        accept them, a preset's too."""
        return [f for f in LEVEL_FIELDS if isinstance(getattr(self, f), str)]

    def to_dict(self) -> dict[str, float | str | list[float]]:
        """Plain types, for configs and checkpoints (``aux_levels`` only when set, so that the
        configs of earlier runs compare equal)."""
        return {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(self).items()
            if not (k == "aux_levels" and v == 1.0)
        }

    def level_weights(self, name: str, levels: int) -> tuple[float, ...]:
        """``omega``, ``sigma`` or ``aux_levels`` expanded to ``levels`` values (a length
        mismatch raises); ``aux_levels="nnunet"`` for ``levels`` side outputs (levels 1 to the
        bottleneck): 1/2^k, the last two at 0 (nnU-Net's weights over the full-resolution
        output's)."""
        value = getattr(self, name)
        if isinstance(value, str):  # "nnunet", the only rule
            return tuple(0.5**k if k < levels - 1 else 0.0 for k in range(1, levels + 1))
        if isinstance(value, tuple):
            if len(value) != levels:
                what = "side outputs" if name == "aux_levels" else "levels"
                raise ValueError(
                    f"LossWeights.{name} has {len(value)} values but the model has {levels} "
                    f"{what} (shallowest first, bottleneck last); give one scalar or {levels} "
                    "values."
                )
            return value
        return (float(value),) * levels


def _paper(alpha: float, beta: float, a: float, b: float, lam: float, eta: float) -> LossWeights:
    return LossWeights(alpha=alpha, beta=beta, a=a, b=b, lam=lam, eta=eta)


PRESETS: dict[str, LossWeights] = {
    "equal": LossWeights(),
    "brats": _paper(5, 1, 1, 1, 9, 6),
    "cardiac": _paper(7, 1, 4, 1, 9, 6),
    "spleen": _paper(3, 5, 2, 2, 8, 6),
    "liver": _paper(6, 1, 3, 1, 9, 6),
    # nnU-Net's deep supervision for `down` (and `up`): side outputs at 1/2^k of the
    # full-resolution output's weight, the lowest-resolution one and the bottleneck's at 0;
    # alpha = aux = nnunet_weights(depth)[0] in addition gives nnU-Net's sum of 1
    "nnunet": LossWeights(aux_levels="nnunet"),
}
