"""How raw label values (a NIfTI label map, a mask image) become the mask of one label mode."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._checks import look_up_option
from ..options import LabelMode
from .errors import DataError

__all__ = ["LabelRule"]


def _int_tuple(values: Sequence[int], what: str) -> tuple[int, ...]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{what} must be integers, got {v!r} in {list(values)!r}.")
        out.append(int(v))
    if len(set(out)) != len(out):
        raise ValueError(f"{what} must not repeat values, got {out}.")
    return tuple(out)


@dataclass(frozen=True)
class LabelRule:
    """The stated rule that maps raw label values to a mask; build it with a classmethod.

    - :meth:`binary`: raw values must be in ``values``; those in ``foreground`` become 1.
    - :meth:`threshold`: raw value ``> threshold`` becomes 1; any value is accepted.
    - :meth:`multiclass`: raw values must be in ``values``; class index = position in ``values``.
    - :meth:`multilabel`: one channel per named region, 1 where the raw value is in the region.

    Any raw value the rule does not allow raises a :class:`DataError` naming the file.

    Example:
        >>> rule = LabelRule.multilabel({"WT": (1, 2, 3, 4), "TC": (1, 3, 4), "ET": (4,)})
        >>> rule.label_mode, rule.classes
        ('multilabel', 3)
    """

    label_mode: str
    values: tuple[int, ...] | None
    foreground: tuple[int, ...] = ()
    threshold_value: float | None = None
    regions: tuple[tuple[str, tuple[int, ...]], ...] = ()
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        look_up_option(self.label_mode, LabelMode, "label_mode")

    # ----------------------------------------------------------------- constructors
    @classmethod
    def binary(
        cls, values: Sequence[int] = (0, 1), foreground: Sequence[int] | None = None
    ) -> LabelRule:
        """Binary mask: raw values must be in ``values``; ``foreground`` (default: the non-zero
        ones) become 1."""
        vals = _int_tuple(values, "values")
        fg = (
            tuple(v for v in vals if v != 0)
            if foreground is None
            else _int_tuple(foreground, "foreground")
        )
        if not fg or not set(fg) <= set(vals) or set(fg) == set(vals):
            raise ValueError(
                f"foreground must be a non-empty proper subset of values {list(vals)}, got "
                f"{list(fg)}."
            )
        return cls("binary", vals, foreground=fg)

    @classmethod
    def threshold(cls, threshold: float) -> LabelRule:
        """Binary mask: raw value ``> threshold`` is foreground; every raw value is accepted."""
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise TypeError(f"threshold must be a number, got {threshold!r}.")
        return cls("binary", None, threshold_value=float(threshold))

    @classmethod
    def multiclass(cls, values: Sequence[int], names: Sequence[str] | None = None) -> LabelRule:
        """Class indices: raw value ``values[i]`` becomes class ``i`` (``values[0]`` is the
        background); at least two values."""
        vals = _int_tuple(values, "values")
        if len(vals) < 2:
            raise ValueError(f"multiclass needs at least 2 values (background first), got {vals}.")
        if len(vals) > 255:
            raise ValueError(f"at most 255 classes are supported, got {len(vals)}.")
        nms = tuple(names) if names is not None else ()
        if names is not None and len(nms) != len(vals):
            raise ValueError(f"names must have one entry per value ({len(vals)}), got {nms}.")
        return cls("multiclass", vals, names=nms)

    @classmethod
    def multilabel(
        cls, regions: Mapping[str, Sequence[int]], values: Sequence[int] | None = None
    ) -> LabelRule:
        """One channel per region (in the mapping's order), 1 where the raw value is in it.

        ``values`` are the allowed raw values (default: 0 and every value of a region).
        """
        if not isinstance(regions, Mapping) or not regions:
            raise ValueError(
                f"regions must be a non-empty mapping name -> values, got {regions!r}."
            )
        regs = tuple((str(k), _int_tuple(v, f"region {k!r}")) for k, v in regions.items())
        union = sorted({v for _, vs in regs for v in vs})
        vals = _int_tuple(values, "values") if values is not None else tuple([0, *union])
        if not set(union) <= set(vals):
            raise ValueError(f"region values {union} must all be in values {list(vals)}.")
        return cls("multilabel", vals, regions=regs, names=tuple(k for k, _ in regs))

    @classmethod
    def parse(cls, value: Any) -> LabelRule:
        """A rule from a :class:`LabelRule`, its :meth:`config`, or a one-key dict (what
        ``--option labels=JSON`` gives): ``{"binary": [0, 1]}``, ``{"binary": {"values":
        [0, 1, 2], "foreground": [2]}}``, ``{"threshold": 127}``, ``{"multiclass": [0, 1, 2]}``
        or ``{"multilabel": {"WT": [1, 2, 4], "ET": [4]}}``.

        Raises:
            ValueError: any other value, naming the accepted forms.

        Example:
            >>> LabelRule.parse({"binary": [0, 1]}).values
            (0, 1)
        """
        if isinstance(value, LabelRule):
            return value
        if isinstance(value, Mapping) and "label_mode" in value:
            return cls.from_config(value)
        forms = (
            'a LabelRule, or one of {"binary": [0, 1]}, {"binary": {"values": [0, 1, 2], '
            '"foreground": [2]}}, {"threshold": 127}, {"multiclass": [0, 1, 2]}, '
            '{"multilabel": {"WT": [1, 2, 4], "ET": [4]}}'
        )
        if not isinstance(value, Mapping) or len(value) != 1:
            raise ValueError(f"labels must be {forms}; got {value!r}.")
        ((kind, arg),) = value.items()
        kind = look_up_option(kind, ("binary", "threshold", "multiclass", "multilabel"), "labels")
        try:
            if kind == "threshold":
                return cls.threshold(arg)
            if kind == "multilabel":
                return cls.multilabel(arg)
            if isinstance(arg, Mapping):
                return getattr(cls, kind)(**arg)
            return getattr(cls, kind)(arg)
        except TypeError as exc:
            raise ValueError(f"labels {value!r}: {exc} (accepted: {forms}).") from exc

    # ----------------------------------------------------------------- properties
    @property
    def classes(self) -> int:
        """Channels of the model's logits: binary 1, multilabel the regions, multiclass all."""
        if self.label_mode == "binary":
            return 1
        if self.label_mode == "multilabel":
            return len(self.regions)
        return len(self.values or ())

    def config(self) -> dict[str, Any]:
        """Plain-type description; :meth:`from_config` rebuilds the rule."""
        return {
            "label_mode": self.label_mode,
            "values": list(self.values) if self.values is not None else None,
            "foreground": list(self.foreground),
            "threshold": self.threshold_value,
            "regions": {k: list(v) for k, v in self.regions},
            "names": list(self.names),
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LabelRule:
        """Rebuild a rule from :meth:`config`."""
        mode = look_up_option(config["label_mode"], LabelMode, "label_mode")
        if mode == "binary" and config.get("threshold") is not None:
            return cls.threshold(config["threshold"])
        if mode == "binary":
            return cls.binary(config["values"], config["foreground"])
        if mode == "multiclass":
            return cls.multiclass(config["values"], config.get("names") or None)
        return cls.multilabel(config["regions"], config["values"])

    # ----------------------------------------------------------------- applying
    def apply(self, label: np.ndarray, path: str | Path) -> np.ndarray:
        """Turn a raw label array into a uint8 mask: ``(*spatial)`` for binary / multiclass,
        ``(regions, *spatial)`` for multilabel.

        Raises:
            DataError: a value the rule does not allow, or a non-integer value (naming ``path``).
        """
        if self.threshold_value is not None:
            return (label > self.threshold_value).astype(np.uint8)
        allowed = self.values or ()
        ints = _as_integers(label, path)
        if not _all_allowed(ints, allowed):
            present = _present_values(ints)
            unexpected = sorted(set(present) - set(allowed))
            more = "..." if len(unexpected) > 10 else ""
            raise DataError(
                path,
                f"unexpected label values {unexpected[:10]}{more} (values present: "
                f"{present[:12]}); the label rule allows only {list(allowed)}. "
                f"{_rule_hint(present)}",
            )
        if self.label_mode == "multilabel":
            out = np.empty((len(self.regions), *ints.shape), dtype=np.uint8)
            for i, (_, region) in enumerate(self.regions):
                out[i] = _lookup(ints, {v: 1 for v in region})
            return out
        if self.label_mode == "binary":
            return _lookup(ints, {v: 1 for v in self.foreground})
        return _lookup(ints, {v: i for i, v in enumerate(allowed)})


def _rule_hint(present: Sequence[int]) -> str:
    """How to state a rule that fits the values present (Python and command line)."""
    if len(present) == 2 and present[0] == 0:
        rule, option = f"LabelRule.binary((0, {present[1]}))", f'{{"binary": [0, {present[1]}]}}'
    else:
        values = ", ".join(str(v) for v in present[:12])
        rule, option = f"LabelRule.multiclass(({values}))", f'{{"multiclass": [{values}]}}'
    return f"If that is how the masks are stored, pass labels={rule} (--option 'labels={option}')."


def _as_integers(label: np.ndarray, path: str | Path) -> np.ndarray:
    """The label as uint8 when its values fit, else int64 (float labels must be integers)."""
    if label.dtype == np.bool_:
        return label.astype(np.uint8)
    if not (np.issubdtype(label.dtype, np.integer) or np.issubdtype(label.dtype, np.floating)):
        raise DataError(path, f"label dtype {label.dtype} is not numeric.")
    if label.size == 0:
        return label.astype(np.uint8)
    low, high = label.min(), label.max()
    if np.issubdtype(label.dtype, np.floating) and not (np.isfinite(low) and np.isfinite(high)):
        raise DataError(path, "label map contains NaN or Inf values.")
    small = low >= 0 and high <= 255
    ints = label.astype(np.uint8 if small else np.int64)
    if np.issubdtype(label.dtype, np.floating) and not np.array_equal(ints, label):
        bad = np.unique(label[ints != label])[:5].tolist()
        raise DataError(
            path, f"label map has non-integer values {bad} (dtype {label.dtype}); expected labels."
        )
    return ints


def _all_allowed(ints: np.ndarray, allowed: Sequence[int]) -> bool:
    if ints.dtype == np.uint8:
        table = np.zeros(256, dtype=np.uint8)
        table[[v for v in allowed if 0 <= v <= 255]] = 1
        return bool(np.take(table, ints).all())
    return bool(np.isin(ints, allowed).all())


def _present_values(ints: np.ndarray) -> list[int]:
    if ints.size == 0:
        return []
    low, high = int(ints.min()), int(ints.max())
    if low >= 0 and high < 1 << 16:
        return np.flatnonzero(np.bincount(ints.ravel(), minlength=high + 1)).tolist()
    return np.unique(ints).tolist()


def _lookup(ints: np.ndarray, mapping: Mapping[int, int]) -> np.ndarray:
    """Map raw values (all known to be allowed) to uint8 outputs; unmapped values give 0."""
    if ints.dtype == np.uint8:
        table = np.zeros(256, dtype=np.uint8)
        for raw, out in mapping.items():
            table[raw] = out
        return np.take(table, ints)
    low = min(0, int(ints.min()) if ints.size else 0)
    high = max([0, *mapping], default=0)
    high = max(high, int(ints.max()) if ints.size else 0)
    table = np.zeros(high - low + 1, dtype=np.uint8)
    for raw, out in mapping.items():
        table[raw - low] = out
    return np.take(table, ints - low)
