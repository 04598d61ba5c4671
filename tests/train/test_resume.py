"""Never lose a run: SIGKILL (sent from outside) after an epoch then --resume equals an
uninterrupted run; damaged checkpoints give clear errors and leave the good ones alone."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from dsplug.train import load_checkpoint

from .conftest import TINY_CLI, run_cli, start_cli, synthetic_cli, wait_for

# 12 phantoms: 8 training slices, batch 4 -> 2 steps per epoch.
BASE = ["train", "--mode", "hyb", *synthetic_cli(12), *TINY_CLI, "--batch-size", "4", "--no-plots"]


def _train(out: Path, epochs: int = 3, *extra: str, env: dict[str, str] | None = None):
    args = ["--epochs", str(epochs), "--min-epochs", str(epochs), "--deterministic"]
    return run_cli(*BASE, *args, "--out", str(out), *extra, env=env)


def _assert_same_tensors(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    for key in a:
        assert torch.equal(a[key], b[key]), f"{what}: {key} differs"


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    straight = _train(tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr

    args = ["--epochs", "3", "--min-epochs", "3", "--deterministic"]
    killed = start_cli(*BASE, *args, "--out", str(tmp_path / "killed"))
    wait_for(tmp_path / "killed" / "last.pt", killed)  # epoch 1 written: kill during epoch 2
    killed.kill()
    killed.communicate()
    assert killed.returncode == -signal.SIGKILL
    assert load_checkpoint(tmp_path / "killed" / "last.pt")["epoch"] < 3
    resumed = _train(tmp_path / "killed", 3, "--resume")
    assert resumed.returncode == 0, resumed.stderr

    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "killed" / "last.pt")
    assert a["epoch"] == b["epoch"] == 3
    _assert_same_tensors(a["wrapper_state"], b["wrapper_state"], "weights")
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        _assert_same_tensors(sa, sb, "optimizer state")
    assert a["scheduler"] == b["scheduler"]
    assert [r["loss"] for r in a["history"]] == [r["loss"] for r in b["history"]]
    assert a["early_stopping"] == b["early_stopping"]
    assert (tmp_path / "killed" / "log.csv").read_text().count("\n") == 4  # header + 3 epochs


@pytest.mark.slow
def test_damaged_checkpoint_gives_a_clear_error_and_the_good_one_still_loads(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    done = _train(out, 1)
    assert done.returncode == 0, done.stderr
    last = out / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 3])

    resumed = _train(out, 1, "--resume")
    assert resumed.returncode == 2
    assert "last.pt" in resumed.stderr and "truncated or corrupted" in resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert last.read_bytes() == data[: len(data) // 3]  # nothing overwrote it

    evaluated = run_cli("evaluate", str(last), "--out", str(tmp_path / "ev"))
    assert evaluated.returncode == 2 and "last.pt" in evaluated.stderr
    good = run_cli(
        "evaluate", str(out / "best.pt"), "--split", "val", "--out", str(tmp_path / "ev")
    )
    assert good.returncode == 0, good.stderr
    assert (tmp_path / "ev" / "cases.csv").is_file()
