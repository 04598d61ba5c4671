"""No file lost or stranded (issue 26, items 7-11): export never replaces a run's files,
a resume with nothing left to train leaves a resumable folder, a moved data set can be resumed
and scored, a refused resume writes nothing, and another --epochs on resume is said."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dsplug.cli import main
from dsplug.train import load_checkpoint

from .conftest import TINY_CLI, synthetic_cli, write_msd

TRAIN = ["train", *synthetic_cli(), *TINY_CLI, "--no-plots"]


def _epochs(n: int) -> list[str]:
    return ["--epochs", str(n), "--min-epochs", str(n)]


def _err_lines(capsys, command: str) -> list[str]:
    err = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith(f"dsplug {command}: ") for line in err), err
    return err


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _copy_run(run: Path, to: Path) -> Path:
    to.mkdir()
    for name in ("last.pt", "best.pt", "splits.json", "config.json", "log.csv", "summary.json"):
        if (run / name).is_file():  # a run with --splits FILE writes no splits.json
            shutil.copyfile(run / name, to / name)
    return to


@pytest.fixture(scope="module")
def run2(tmp_path_factory) -> Path:
    """A finished 2-epoch synthetic run (read only: tests copy it)."""
    run = tmp_path_factory.mktemp("run2") / "run"
    assert main([*TRAIN, *_epochs(2), "--out", str(run)]) == 0
    return run


# --------------------------------------------------------------------------- 7. export
def test_export_never_replaces_a_run_file(run2: Path, capsys) -> None:
    before = _snapshot(run2)
    for name in ("splits.json", "summary.json", "log.csv", "config.json"):
        for extra in ([], ["--overwrite"]):
            args = ["export", str(run2 / "best.pt"), "--out", str(run2 / name), *extra]
            assert main(args) == 2
            (line,) = _err_lines(capsys, "export")
            assert name in line and "never replaces" in line and "best.safetensors" in line
    assert _snapshot(run2) == before


def test_export_to_a_folder_writes_inside_it(run2: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    for overwrite in ([], ["--overwrite"]):
        assert main(["export", str(run2 / "best.pt"), "--out", str(folder), *overwrite]) == 0
        assert (folder / "best.safetensors").is_file()
    capsys.readouterr()
    assert main(["export", str(run2 / "best.pt"), "--out", str(folder)]) == 1  # exists
    (line,) = _err_lines(capsys, "export")
    assert "best.safetensors exists" in line


# --------------------------------------------------------------------------- 8. nothing left
def test_resume_from_with_nothing_left_says_so_and_leaves_a_resumable_folder(
    run2: Path, tmp_path: Path, capsys
) -> None:
    fork = tmp_path / "fork"
    assert (
        main([*TRAIN, *_epochs(2), "--out", str(fork), "--resume-from", str(run2 / "last.pt")]) == 0
    )
    err = _err_lines(capsys, "train")
    assert any("nothing left to train" in line and "--epochs above 2" in line for line in err)
    assert load_checkpoint(fork / "last.pt")["epoch"] == 2
    assert main([*TRAIN, *_epochs(3), "--out", str(fork), "--resume"]) == 0
    assert load_checkpoint(fork / "last.pt")["epoch"] == 3


# --------------------------------------------------------------------------- 10. refused resume
def test_a_refused_resume_writes_nothing(run2: Path, tmp_path: Path, capsys) -> None:
    new = tmp_path / "new"
    new.mkdir()
    (new / "notes.txt").write_text("mine")
    other_split = [*TRAIN, *_epochs(3), "--split-seed", "5", "--out", str(new)]
    assert main([*other_split, "--resume-from", str(run2 / "last.pt")]) == 2
    (line,) = _err_lines(capsys, "train")
    assert "Cannot resume" in line
    assert main([*TRAIN, *_epochs(3), "--out", str(new), "--resume"]) == 2  # no last.pt
    (line,) = _err_lines(capsys, "train")
    assert "last.pt" in line
    assert sorted(p.name for p in new.iterdir()) == ["notes.txt"]


# --------------------------------------------------------------------------- 11. other --epochs
def test_resume_with_other_epochs_says_the_schedule_changes(
    run2: Path, tmp_path: Path, capsys
) -> None:
    run = _copy_run(run2, tmp_path / "run")
    assert main([*TRAIN, *_epochs(4), "--out", str(run), "--resume"]) == 0
    err = [line for line in _err_lines(capsys, "train") if "schedule" in line]
    assert len(err) == 1, err
    assert "(--epochs) 4 differs from the checkpoint's 2" in err[0]
    assert "to end at epoch 4 instead of 2 (progress 1.00 at epoch 2, 0.67 at epoch 3)" in err[0]


# --------------------------------------------------------------------------- 9. moved data
def _msd(root: Path) -> list[str]:
    return ["--data", str(root), "--splits", str(root / "splits.json")]


@pytest.fixture(scope="module")
def msd_run(tmp_path_factory) -> tuple[Path, Path]:
    """A 1-epoch run on a tiny MSD task (4 cases, its own splits): (data root, run folder)."""
    base = tmp_path_factory.mktemp("msd")
    root = write_msd(base / "Task99_Tiny")
    run = base / "run"
    args = ["train", *_msd(root), *TINY_CLI, "--no-plots", "--no-cache", *_epochs(1)]
    assert main([*args, "--out", str(run)]) == 0
    return root, run


def test_a_moved_data_set_is_resumed_and_scored_by_its_files(
    msd_run: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    root, run = msd_run
    moved = tmp_path / "elsewhere" / root.name
    shutil.copytree(root, moved)
    hidden = root.with_name("hidden")
    root.rename(hidden)  # the run's own folder is gone
    try:
        run = _copy_run(run, tmp_path / "run")
        capsys.readouterr()
        evaluate = ["evaluate", str(run / "best.pt"), "--no-cache"]
        assert main([*evaluate, "--out", str(tmp_path / "e0")]) == 2
        (line,) = _err_lines(capsys, "evaluate")
        assert "no longer exists" in line and "--split test --data NEW_FOLDER" in line
        out = tmp_path / "e1"
        assert main([*evaluate, "--split", "test", "--data", str(moved), "--out", str(out)]) == 0
        summary = json.loads((out / "summary.json").read_text())
        test_cases = load_checkpoint(run / "best.pt")["data_config"]["test"]["cases"]
        assert summary["split"] == "test" and summary["cases"] == len(test_cases)
        train = ["train", *_msd(moved), *TINY_CLI, "--no-plots", "--no-cache"]
        assert main([*train, *_epochs(1), "--out", str(run), "--resume"]) == 0  # accepted
        assert any("nothing left to train" in line for line in _err_lines(capsys, "train"))
        # other files at the new place: refused, in one line, nothing written
        label = moved / "labelsTr" / f"{test_cases[0]}.nii.gz"
        label.write_bytes((moved / "labelsTr" / "tiny_000.nii.gz").read_bytes() + b"\0")
        capsys.readouterr()
        out = tmp_path / "e2"
        assert main([*evaluate, "--split", "test", "--data", str(moved), "--out", str(out)]) == 2
        (line,) = _err_lines(capsys, "evaluate")
        assert "is not the run's test data" in line and "have other contents" in line
        assert not out.exists()
        before = _snapshot(run)
        assert main([*train, *_epochs(3), "--out", str(run), "--resume"]) == 2
        (line,) = _err_lines(capsys, "train")
        assert "the test data files changed" in line
        assert _snapshot(run) == before
    finally:
        hidden.rename(root)
