"""Atomic checkpoint writes, integrity checks, weights-only loading and RNG round trips."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from dsplug.train.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    CheckpointError,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)


def _state(value: float = 1.0) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "epoch": 3,
        "model_config": {"arch": "unet", "depth": 3},
        "model_state": {"w": torch.full((64, 64), value)},
        "history": [{"epoch": 1, "val_dice": 0.5}],
    }


def test_round_trip_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = save_checkpoint(_state(2.0), tmp_path / "run" / "last.pt")
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model_state"]["w"], torch.full((64, 64), 2.0))
    assert loaded["history"] == [{"epoch": 1, "val_dice": 0.5}]
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]


def test_failed_write_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    path = save_checkpoint(_state(1.0), tmp_path / "last.pt")
    real_save = torch.save

    def crash_half_way(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(100)  # half a file on disk, then the process "dies"
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_half_way)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(_state(5.0), path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model_state"]["w"], torch.full((64, 64), 1.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_truncated_checkpoint_is_named_in_the_error(tmp_path: Path) -> None:
    good = save_checkpoint(_state(), tmp_path / "best.pt")
    data = good.read_bytes()
    bad = tmp_path / "last.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"last\.pt.*truncated or corrupted"):
        load_checkpoint(bad)
    assert load_checkpoint(good)["epoch"] == 3  # the good one is untouched


def test_flipped_bytes_fail_the_crc_check(tmp_path: Path) -> None:
    path = save_checkpoint(_state(), tmp_path / "last.pt")
    data = bytearray(path.read_bytes())
    # Flip bytes inside the tensor payload (torch.load alone would not notice).
    start = data.find(np.full(4, 1.0, dtype=np.float32).tobytes() * 4)
    assert start > 0
    data[start : start + 16] = bytes(16)
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"last\.pt.*CRC"):
        load_checkpoint(path)


def test_missing_and_empty_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pt"):
        load_checkpoint(tmp_path / "empty.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a dsplug checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


class _Payload:
    """Unpickling this would create a file: the code a malicious checkpoint would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_that_would_execute_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    state = _state()
    state["extra"] = _Payload(marker)
    path = tmp_path / "evil.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"Refusing to load.*evil\.pt"):
        load_checkpoint(path)
    assert not marker.exists()


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    state = _state()
    state["version"] = CHECKPOINT_VERSION + 1
    path = save_checkpoint(state, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="upgrade dsplug"):
        load_checkpoint(path)


def test_rng_states_round_trip_through_a_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.standard_normal()  # a cached Gaussian is part of numpy's state
    state = _state()
    state["rng"] = capture_rng()
    path = save_checkpoint(state, tmp_path / "rng.pt")
    expected = (torch.rand(5), np.random.standard_normal(5), [random.random() for _ in range(5)])
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    restore_rng(load_checkpoint(path)["rng"])
    got = (torch.rand(5), np.random.standard_normal(5), [random.random() for _ in range(5)])
    assert torch.equal(expected[0], got[0])
    assert np.array_equal(expected[1], got[1])
    assert expected[2] == got[2]
