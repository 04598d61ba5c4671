"""The slice cache checks itself (issue 21): a damaged entry (other bytes, truncated, meta
gone) is rebuilt with a one-line warning instead of serving wrong slices, and a cache that
cannot be written is one line naming the folder and the fix (--no-cache, DSPLUG_CACHE)."""

from __future__ import annotations

import errno
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest

import dsplug.data.cache as cache_module
from dsplug.data import MSDDataset
from dsplug.data.errors import CacheError


def _entries(cache: Path) -> list[Path]:
    return sorted(p.parent for p in cache.rglob("meta.json"))


def _arrays(ds) -> list[np.ndarray]:
    return [ds[i]["mask"].numpy() for i in range(len(ds))] + [
        ds[i]["image"].numpy() for i in range(len(ds))
    ]


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("damage", ["flipped", "truncated", "no_meta", "bad_meta"])
def test_a_damaged_entry_is_rebuilt_with_a_warning(make_msd, tmp_path: Path, damage) -> None:
    root = make_msd(n=3)
    cache = tmp_path / "cache"
    truth = _arrays(MSDDataset(root, cache=False))
    MSDDataset(root, cache_dir=cache)
    entry = _entries(cache)[0]
    mask = entry / "mask.raw"
    data = bytearray(mask.read_bytes())
    if damage == "flipped":  # same size, other bytes: the silent case of the issue
        mask.write_bytes(bytes(b ^ 0x01 for b in data))
    elif damage == "truncated":
        mask.write_bytes(bytes(data[:100]))
    elif damage == "no_meta":
        (entry / "meta.json").unlink()
    else:
        (entry / "meta.json").write_text("{")
    with pytest.warns(UserWarning, match=r"slice cache entry .* is damaged .*rebuilding it") as w:
        ds = MSDDataset(root, cache_dir=cache)
    assert len(w) == 1
    assert _same(_arrays(ds), truth)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt: whole again, no second warning
        assert _same(_arrays(MSDDataset(root, cache_dir=cache)), truth)


def test_an_entry_damaged_after_its_check_is_one_clear_error(make_msd, tmp_path: Path) -> None:
    root = make_msd(n=3)
    ds = MSDDataset(root, cache_dir=tmp_path / "cache")
    entry = _entries(tmp_path / "cache")[0]
    (entry / "image.raw").write_bytes(b"\0" * 100)
    with pytest.raises(CacheError, match=r"image.raw: the entry changed .* --no-cache"):
        for i in range(len(ds)):
            ds[i]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (errno.EROFS, r"cannot write \(Read-only file system\); use another cache folder "
         r"\(--cache-dir DIR or DSPLUG_CACHE=DIR\), or none \(--no-cache"),
        (errno.ENOSPC, r"no space left on the device; free space"),
    ],
)  # fmt: skip
def test_a_cache_that_cannot_be_written_names_the_fix(
    make_msd, tmp_path: Path, monkeypatch, code, expected
) -> None:
    root = make_msd(n=3)

    def refuse(*args, **kwargs):
        raise OSError(code, __import__("os").strerror(code), kwargs.get("dir"))

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    with pytest.raises(CacheError, match=expected) as info:
        MSDDataset(root, cache_dir=tmp_path / "cache")
    assert str(tmp_path / "cache") in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, OSError) and cache_module.CACHE_VERSION == 3
