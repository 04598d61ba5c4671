"""Case-level splits (never by slice): seeded 70/10/20, contiguous blocks, saved and reused."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError
from .io import read_json

__all__ = [
    "MIN_CASES",
    "SPLITS",
    "check_splits",
    "contiguous_splits",
    "load_splits",
    "make_splits",
    "natural_key",
    "save_splits",
]

SPLITS = ("train", "val", "test")
MIN_CASES = 10


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key that orders ``"2"`` before ``"10"`` (digit runs compare as numbers)."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"(\d+)", text)
        if part
    )


def _counts(n: int, fractions: Sequence[float]) -> list[int]:
    fr = [float(f) for f in fractions]
    if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(
            f"fractions must be three non-negative numbers (train, val, test) summing to 1, got "
            f"{tuple(fractions)}."
        )
    n_train, n_val = round(n * fr[0]), round(n * fr[1])
    counts = [n_train, n_val, n - n_train - n_val]
    for name, f, c in zip(SPLITS, fr, counts):
        if f > 0 and c < 1:
            raise ValueError(
                f"{n} cases give an empty {name!r} split with fractions {tuple(fr)}; give explicit "
                "splits."
            )
    return counts


def _unique_cases(cases: Sequence[str]) -> list[str]:
    ids = [str(c) for c in cases]
    dupes = sorted(c for c, k in Counter(ids).items() if k > 1)
    if dupes:
        raise ValueError(f"case ids must be unique, got duplicates {dupes[:10]}.")
    return ids


def check_splits(
    splits: Mapping[str, Sequence[str]], cases: Sequence[str] | None = None
) -> dict[str, list[str]]:
    """Validate explicit splits: keys ``train``/``val``/``test``, disjoint, known case ids.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}`` (a missing key becomes empty).

    Raises:
        ValueError: an unknown key, a case in two splits, or a case not in ``cases``.
    """
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise ValueError(f"unknown split names {unknown}; expected {list(SPLITS)}.")
    out = {name: [str(c) for c in splits.get(name, [])] for name in SPLITS}
    seen: dict[str, str] = {}
    for name, ids in out.items():
        for c in ids:
            if c in seen:
                raise ValueError(
                    f"case {c!r} is in both the {seen[c]!r} and {name!r} splits; a case belongs to "
                    "one split."
                )
            seen[c] = name
    if cases is not None:
        missing = sorted(set(seen) - {str(c) for c in cases}, key=natural_key)
        if missing:
            raise ValueError(
                f"splits name {len(missing)} case(s) the dataset does not have: {missing[:10]}."
            )
    return out


def save_splits(splits: Mapping[str, Any], path: str | Path) -> None:
    """Write splits (and any extra keys such as the seed) to JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(dict(splits), f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


#: What to do about a splits file given by the user that cannot be used.
_GIVEN_FIX = (
    "give a UTF-8 JSON object of case-id lists under train, val and test, e.g. "
    '{"train": ["a", "b"], "val": ["c"], "test": ["d"]}'
)
#: What to do about a saved (seeded or contiguous) splits file that cannot be used: it is
#: remade, the same, from its seed and the cases.
_SAVED_FIX = (
    "delete it and run again with the same seed: the split is remade from the seed and the "
    "cases, as before"
)


def _read_splits_json(path: Path, fix: str) -> dict[str, Any]:
    """The file's JSON object with lists under train/val/test; a fault names the file and
    ``fix``."""
    data = read_json(path, fix)
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise DataError(path, f"expected a JSON object of train/val/test lists, got {kind}; {fix}")
    wrong = [k for k in SPLITS if not isinstance(data.get(k, []), list)]
    if wrong:
        what = "a list" if len(wrong) == 1 else "lists"
        raise DataError(path, f"{', '.join(wrong)}: expected {what} of case ids; {fix}")
    return data


def _checked(
    path: Path, data: dict[str, Any], cases: Sequence[str] | None, fix: str
) -> dict[str, list[str]]:
    try:
        return check_splits({k: v for k, v in data.items() if k in SPLITS}, cases)
    except ValueError as exc:
        raise DataError(path, f"{str(exc).rstrip('.')}{fix}") from None


def load_splits(path: str | Path, cases: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Read splits written by :func:`save_splits` (or by hand) and validate them.

    Raises:
        DataError: the file cannot be read, is not UTF-8 JSON, holds no JSON object of
            lists, or its splits are invalid (see :func:`check_splits`).
    """
    path = Path(path)
    return _checked(path, _read_splits_json(path, _GIVEN_FIX), cases, ".")


def _reuse(
    path: Path, ids: list[str], method: str, seed: int | None, fractions: Sequence[float]
) -> dict[str, list[str]]:
    data = _read_splits_json(path, _SAVED_FIX)
    splits = _checked(path, data, None, f"; {_SAVED_FIX}")
    stored = (data.get("method"), data.get("seed"), data.get("fractions"))
    wanted = (method, seed, [float(f) for f in fractions])
    if stored != wanted:
        raise ValueError(
            f"{path}: the saved splits were made with (method, seed, fractions) = {stored}, "
            f"but {wanted} was asked for; delete the file or use another path."
        )
    saved = sorted((c for v in splits.values() for c in v), key=natural_key)
    if saved != sorted(ids, key=natural_key):
        extra = sorted(set(saved) - set(ids))[:5]
        lacking = sorted(set(ids) - set(saved))[:5]
        raise ValueError(
            f"{path}: the saved splits cover other cases than the dataset (only saved: {extra}, "
            f"only in the dataset: {lacking}); delete the file or use another path."
        )
    return splits


def make_splits(
    cases: Sequence[str],
    seed: int,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    path: str | Path | None = None,
) -> dict[str, list[str]]:
    """Seeded case-level split; written to ``path`` and reused when it exists.

    Cases are sorted naturally, shuffled with ``numpy.random.default_rng(seed)`` and cut into
    ``round(n * train)``, ``round(n * val)`` and the rest; each split keeps the natural order.

    Args:
        cases: case ids (at least 10; smaller datasets need explicit splits).
        seed: the shuffle seed.
        fractions: train, val, test.
        path: a JSON file to reuse if present (it must match the seed, fractions and cases),
            else to write.

    Example:
        >>> s = make_splits([f"c{i}" for i in range(10)], seed=0)
        >>> [len(s[k]) for k in ("train", "val", "test")]
        [7, 1, 2]
    """
    ids = sorted(_unique_cases(cases), key=natural_key)
    if path is not None and Path(path).exists():
        return _reuse(Path(path), ids, "random", int(seed), fractions)
    if len(ids) < MIN_CASES:
        raise ValueError(
            f"{len(ids)} cases are too few for a random {tuple(fractions)} split (at least "
            f"{MIN_CASES}); give explicit splits (a dict or a JSON file), or contiguous_splits() "
            "for consecutive slices of one stack."
        )
    counts = _counts(len(ids), fractions)
    order = np.random.default_rng(int(seed)).permutation(len(ids))
    bounds = np.cumsum([0, *counts])
    splits = {
        name: sorted((ids[i] for i in order[bounds[k] : bounds[k + 1]]), key=natural_key)
        for k, name in enumerate(SPLITS)
    }
    if path is not None:
        extra = {"method": "random", "seed": int(seed), "fractions": [float(f) for f in fractions]}
        save_splits({**extra, **splits}, path)
    return splits


def contiguous_splits(
    cases: Sequence[str],
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    path: str | Path | None = None,
) -> dict[str, list[str]]:
    """Contiguous blocks in natural order (consecutive slices of one stack, e.g. ISBI 2012:
    slices 0-20 train, 21-23 val, 24-29 test), so neighbours rarely straddle two splits.

    ``path`` is written, or reused when it exists (it must match the fractions and cases).
    """
    ids = sorted(_unique_cases(cases), key=natural_key)
    if path is not None and Path(path).exists():
        return _reuse(Path(path), ids, "contiguous", None, fractions)
    counts = _counts(len(ids), fractions)
    bounds = np.cumsum([0, *counts])
    splits = {name: ids[bounds[k] : bounds[k + 1]] for k, name in enumerate(SPLITS)}
    if path is not None:
        extra = {"method": "contiguous", "seed": None, "fractions": [float(f) for f in fractions]}
        save_splits({**extra, **splits}, path)
    return splits
