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


def load_splits(path: str | Path, cases: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Read splits written by :func:`save_splits` (or by hand) and validate them."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the splits JSON ({exc}).") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object with train/val/test lists.")
    return check_splits({k: v for k, v in data.items() if k in SPLITS}, cases)


def _reuse(
    path: Path, ids: list[str], method: str, seed: int | None, fractions: Sequence[float]
) -> dict[str, list[str]]:
    data = json.loads(path.read_text())
    stored = (data.get("method"), data.get("seed"), data.get("fractions"))
    wanted = (method, seed, [float(f) for f in fractions])
    if stored != wanted:
        raise ValueError(
            f"{path}: the saved splits were made with (method, seed, fractions) = {stored}, "
            f"but {wanted} was asked for; delete the file or use another path."
        )
    splits = load_splits(path)
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
