"""LossWeights: the weights of every loss term (the paper's α, β, a, b, γ, ξ, λ, η, ω, σ)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from .._checks import look_up_option

__all__ = ["PRESETS", "LevelWeights", "LossWeights"]

LevelWeights = float | tuple[float, ...]


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms of eq. 6, 7, 11-13 (``lam`` is λ: ``lambda`` is a keyword).

    ``omega`` and ``sigma`` are one scalar or one value per level (shallowest level first,
    the bottleneck last); their length is checked against the model's levels.

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

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            values = value if isinstance(value, tuple | list) else (value,)
            if f.name not in ("omega", "sigma") and len(values) != 1:
                raise ValueError(f"LossWeights.{f.name} must be one number, got {value!r}.")
            for v in values:
                if isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or v != v:
                    raise ValueError(
                        f"LossWeights.{f.name} must be a non-negative number (or, for omega and "
                        f"sigma, a sequence of them), got {value!r}."
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

    def to_dict(self) -> dict[str, float | list[float]]:
        """Plain types, for configs and checkpoints."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    def level_weights(self, name: str, levels: int) -> tuple[float, ...]:
        """``omega`` or ``sigma`` expanded to ``levels`` values (a length mismatch raises)."""
        value = getattr(self, name)
        if isinstance(value, tuple):
            if len(value) != levels:
                raise ValueError(
                    f"LossWeights.{name} has {len(value)} values but the model has {levels} "
                    f"levels (shallowest first, bottleneck last); give one scalar or {levels} "
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
}
