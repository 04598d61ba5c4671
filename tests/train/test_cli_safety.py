"""Nothing lost and nothing silently wrong (issue 21): run folders are locked, resume needs
only last.pt, --resume-from never forks inside its own folder, no command writes a path it
reads (or any checkpoint), evaluate / compare never write into a run folder, checkpoints know
their data."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from dsplug.cli import main
from dsplug.train import load_checkpoint
from dsplug.train.lock import LOCK_NAME, RunLock, RunLockedError

from .conftest import TINY_CLI, run_cli, start_cli, synthetic_cli, wait_for

ONE_EPOCH = ["--epochs", "1", "--min-epochs", "1", "--no-plots"]
TRAIN = ["train", *synthetic_cli(), *TINY_CLI]


def _err_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"dsplug {command}: error: "), err[0]
    return err[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def run3(tmp_path_factory) -> Path:
    """A finished 3-epoch synthetic run (read only: tests copy it)."""
    run = tmp_path_factory.mktemp("run3") / "run"
    args = [*TRAIN, "--epochs", "3", "--min-epochs", "3", "--no-plots", "--out", str(run)]
    assert main(args) == 0
    return run


# --------------------------------------------------------------------------- the run lock
def test_run_lock_refuses_a_second_holder_and_is_released(tmp_path: Path) -> None:
    with RunLock(tmp_path / "run", "dsplug train --out run") as lock:
        assert lock.held and (tmp_path / "run" / LOCK_NAME).is_file()
        with pytest.raises(RunLockedError, match=rf"pid {os.getpid()}.*dsplug train --out run"):
            RunLock(tmp_path / "run").acquire()
    assert not (tmp_path / "run" / LOCK_NAME).exists()
    with RunLock(tmp_path / "run"):  # free again
        pass


def test_a_lock_file_left_by_a_killed_process_is_stale(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK_NAME).write_text(json.dumps({"pid": 999999999, "command": "dsplug train"}))
    with RunLock(folder) as lock:  # no process holds the OS lock: the file is stale
        assert lock.held
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_second_train_on_a_running_run_folder_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = start_cli(*TRAIN, "--epochs", "200", "--min-epochs", "200", "--out", str(run))
    try:
        wait_for(run / "last.pt", first, timeout=180)
        for how in (["--overwrite"], ["--resume"], []):
            done = run_cli(*TRAIN, *ONE_EPOCH, "--out", str(run), *how)
            lines = done.stderr.strip().splitlines()
            assert done.returncode == 1, done.stderr
            assert len(lines) == 1 and "in use by another dsplug train" in lines[0], lines
            assert f"pid {first.pid}" in lines[0]
        assert first.poll() is None  # the first run goes on, untouched
        (run / "config.json").read_text()
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    # killed: the OS dropped its lock (the file stays, with a dead PID); the run continues
    next_epoch = str(load_checkpoint(run / "last.pt")["epoch"] + 1)
    epochs = ["--epochs", next_epoch, "--min-epochs", "1", "--no-plots"]
    done = run_cli(*TRAIN, *epochs, "--out", str(run), "--resume")
    assert done.returncode == 0, done.stderr
    assert not (run / LOCK_NAME).exists()


# --------------------------------------------------------------------------- resume
def test_resume_needs_only_an_intact_last_pt(run3: Path, tmp_path: Path, capsys) -> None:
    best_epoch = load_checkpoint(run3 / "best.pt")["epoch"]
    last = load_checkpoint(run3 / "last.pt")
    if best_epoch == last["epoch"]:
        pytest.skip("the tiny run improved on its last epoch: nothing to lose")
    for damage in ("missing", "corrupt"):
        run = tmp_path / damage
        run.mkdir()
        for name in ("last.pt", "best.pt", "splits.json", "config.json", "log.csv"):
            (run / name).write_bytes((run3 / name).read_bytes())
        if damage == "missing":
            (run / "best.pt").unlink()
        else:
            (run / "best.pt").write_bytes(b"not a checkpoint")
        epochs = ["--epochs", "4", "--min-epochs", "4", "--no-plots"]
        assert main([*TRAIN, *epochs, "--out", str(run), "--resume"]) == 0
        err = capsys.readouterr().err
        assert "best.pt cannot serve as the best epoch" in err and "counts as the best" in err
        assert load_checkpoint(run / "last.pt")["epoch"] == 4
        assert load_checkpoint(run / "best.pt")["epoch"] >= last["epoch"]


def test_a_corrupt_best_pt_does_not_advise_itself(run3: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "best.pt").write_bytes((run3 / "best.pt").read_bytes()[:300])
    assert main(["evaluate", str(tmp_path / "best.pt"), "--out", str(tmp_path / "e")]) == 2
    line = _err_line(capsys, "evaluate")
    advice = line.split("corrupted", 1)[1]
    assert "last.pt" in advice and "best.pt" not in advice


def test_resume_from_into_its_own_folder_is_refused(run3: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name in ("last.pt", "best.pt", "log.csv", "splits.json", "config.json"):
        (run / name).write_bytes((run3 / name).read_bytes())
    before = _snapshot(run)
    args = [*TRAIN, "--epochs", "3", "--min-epochs", "3", "--no-plots"]
    for out in (["--out", str(run)], []):
        assert main([*args, *out, "--resume-from", str(run / "best.pt")]) == 2
        line = _err_line(capsys, "train")
        assert "its own run folder" in line and "--out NEW_FOLDER" in line
    assert _snapshot(run) == before


def test_a_folder_of_user_files_is_not_a_run(tmp_path: Path, capsys) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main([*TRAIN, *ONE_EPOCH, "--out", str(out)]) == 0
    assert (out / "last.pt").is_file() and (out / "notes.txt").read_text() == "mine"
