"""Case-level splits: seeded, disjoint, saved and reused; small datasets need explicit ones."""

from __future__ import annotations

import json

import pytest

from dsplug.data import (
    SyntheticDataset,
    build_datasets,
    check_splits,
    contiguous_splits,
    load_splits,
    make_splits,
)

CASES = [f"case_{i}" for i in range(37)]


def test_same_seed_same_split_other_seed_other_split() -> None:
    a, b = make_splits(CASES, seed=1), make_splits(list(reversed(CASES)), seed=1)
    assert a == b
    assert make_splits(CASES, seed=2) != a


def test_fractions_cover_every_case_once() -> None:
    s = make_splits(CASES, seed=0)
    n = len(CASES)
    assert [len(s[k]) for k in ("train", "val")] == [round(0.7 * n), round(0.1 * n)]
    together = s["train"] + s["val"] + s["test"]
    assert sorted(together) == sorted(CASES) and len(set(together)) == n


def test_written_and_reused(tmp_path) -> None:
    path = tmp_path / "splits.json"
    first = make_splits(CASES, seed=3, path=path)
    saved = json.loads(path.read_text())
    assert saved["seed"] == 3 and saved["train"] == first["train"]
    assert make_splits(CASES, seed=3, path=path) == first
    assert load_splits(path, CASES) == first
    with pytest.raises(ValueError, match="seed"):
        make_splits(CASES, seed=4, path=path)
    with pytest.raises(ValueError, match="other cases"):
        make_splits([*CASES, "case_new"], seed=3, path=path)


def test_small_datasets_need_explicit_splits() -> None:
    with pytest.raises(ValueError, match="explicit splits"):
        make_splits([f"c{i}" for i in range(9)], seed=0)


def test_contiguous_blocks_in_natural_order() -> None:
    ids = [str(i) for i in range(30)]
    s = contiguous_splits(ids)
    assert s["train"] == [str(i) for i in range(21)]
    assert s["val"] == ["21", "22", "23"]
    assert s["test"] == [str(i) for i in range(24, 30)]


def test_explicit_splits_are_checked() -> None:
    with pytest.raises(ValueError, match="both"):
        check_splits({"train": ["a", "b"], "test": ["b"]})
    with pytest.raises(ValueError, match="does not have"):
        check_splits({"train": ["a", "zz"]}, ["a", "b"])
    with pytest.raises(ValueError, match="unknown split"):
        check_splits({"training": ["a"]})


def test_no_case_in_two_split_datasets(make_msd, tmp_path) -> None:
    root = make_msd(n=12)
    sets = build_datasets(root, seed=0, cache_dir=tmp_path / "cache")
    seen: dict[str, str] = {}
    for name, ds in sets.items():
        for i in range(len(ds)):
            case = ds[i]["case"]
            assert seen.setdefault(case, name) == name, f"{case} in {seen[case]} and {name}"
    assert set(seen) == set(sets["train"].cases + sets["val"].cases + sets["test"].cases)
    assert len(seen) == 12
    again = build_datasets(root, seed=0, cache_dir=tmp_path / "cache")
    assert {k: v.cases for k, v in again.items()} == {k: v.cases for k, v in sets.items()}


def test_synthetic_split_by_case() -> None:
    sets = build_datasets("synthetic", seed=0, options={"num_cases": 20, "size": 32})
    ids = [set(ds.cases) for ds in sets.values()]
    assert sum(len(i) for i in ids) == 20 and len(set.union(*ids)) == 20
    assert isinstance(sets["train"], SyntheticDataset) and sets["train"].split == "train"
