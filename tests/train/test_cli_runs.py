"""Nothing a user made is ever lost: run folders are never overwritten, Ctrl-C keeps last.pt
and prints the command that continues, files are written atomically, --resume-from continues
from any checkpoint; the start-up summary, the TensorBoard notice and the demo's Dice line."""

from __future__ import annotations

import json
import re
import shlex
import signal
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from dsplug.cli import main
from dsplug.train import load_checkpoint
from dsplug.train.atomic import atomic_path
from dsplug.train.plots import plot_curves
from dsplug.train.runlog import RunLog

from .conftest import TINY_CLI, start_cli, synthetic_cli, wait_for

ONE_EPOCH = ["--epochs", "1", "--min-epochs", "1", "--no-plots"]
TRAIN = ["train", *synthetic_cli(), *TINY_CLI]


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_train_refuses_an_existing_run_and_overwrite_replaces_it(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main([*TRAIN, *ONE_EPOCH, "--out", str(run)]) == 0
    out = capsys.readouterr().out
    # the start-up summary: data, split sizes, model and parameters, mode, device, folder
    assert "data synthetic (binary" in out and "cases train / val / test 8 / 1 / 3" in out
    assert re.search(r"model unet \(base_channels=8, depth=3.*\), [\d,]+ parameters", out)
    assert "mode hyb" in out and "device cpu" in out and f"new run in {run}" in out
    before = (run / "last.pt").read_bytes()

    assert main([*TRAIN, *ONE_EPOCH, "--seed", "1", "--out", str(run)]) == 2
    line = _err_line(capsys)
    assert line.startswith("dsplug train: error: --out") and "already holds a run" in line
    assert "--resume" in line and "--overwrite" in line
    assert (run / "last.pt").read_bytes() == before

    (run / "notes.txt").write_text("mine")
    assert main([*TRAIN, *ONE_EPOCH, "--seed", "1", "--out", str(run), "--overwrite"]) == 0
    assert load_checkpoint(run / "last.pt")["train_config"]["seed"] == 1
    assert (run / "notes.txt").read_text() == "mine"  # only the run's own files are replaced


def test_default_out_is_a_new_folder_per_run(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    for _ in range(2):  # both within a second or two: never the same folder
        assert main([*TRAIN, *ONE_EPOCH, "--mode", "seg"]) == 0
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2
    for run in runs:
        assert re.fullmatch(r"seg-\d{8}-\d{6}(-\d+)?", run.name)
        assert (run / "last.pt").is_file()
    assert f"run folder: {Path('runs') / runs[1].name}" in capsys.readouterr().out


def test_resume_needs_a_run_folder(capsys) -> None:
    assert main([*TRAIN, "--resume"]) == 2
    assert "--resume continues the run in --out" in _err_line(capsys)


def test_resume_from_best_pt_continues_from_that_epoch(tmp_path: Path, capsys) -> None:
    first = tmp_path / "first"
    epochs = ["--epochs", "3", "--min-epochs", "3", "--no-plots"]
    assert main([*TRAIN, *epochs, "--out", str(first)]) == 0
    best = load_checkpoint(first / "best.pt")
    fork = tmp_path / "fork"
    args = [*TRAIN, *epochs, "--out", str(fork), "--resume-from", str(first / "best.pt")]
    assert main(args) == 0
    last = load_checkpoint(fork / "last.pt")
    assert last["epoch"] == 3
    assert last["history"][: best["epoch"]] == best["history"]
    assert "resuming in" in capsys.readouterr().out
    # without --out: the checkpoint's own folder, whose later epochs it would discard
    before = (first / "last.pt").read_bytes()
    assert main([*TRAIN, *epochs, "--resume-from", str(first / "best.pt")]) == 2
    line = _err_line(capsys)
    assert "its own run folder" in line and "--out NEW_FOLDER" in line
    assert (first / "last.pt").read_bytes() == before


def test_ctrl_c_keeps_last_pt_and_prints_the_command_to_continue(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    args = [*TRAIN, "--epochs", "30", "--min-epochs", "30", "--out", str(run)]
    process = start_cli(*args)
    wait_for(run / "last.pt", process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dsplug train: interrupted;") and "last.pt" in lines[0]
    command = lines[0].split("Continue with: ", 1)[1]
    words = shlex.split(command)
    assert words[0] == "dsplug" and words[-1] == "--resume" and str(run) in words

    kept = load_checkpoint(run / "last.pt")  # complete and loadable
    assert 1 <= kept["epoch"] < 30
    Image.open(run / "curves.png").verify()  # never half a PNG
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporary files

    # the printed command continues the run (to a shorter end, to keep the test quick)
    words = [w if w != "30" else str(kept["epoch"] + 1) for w in words]
    assert main(words[1:]) == 0
    resumed = load_checkpoint(run / "last.pt")
    assert resumed["epoch"] == kept["epoch"] + 1
    assert resumed["history"][: kept["epoch"]] == kept["history"]


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as part:
        part.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_plots_are_written_atomically(tmp_path: Path, monkeypatch) -> None:
    history = [{"epoch": 1, "loss": 0.5, "val_dice": 0.5, "best_epoch": 1}]
    png = plot_curves(history, tmp_path / "curves.png")
    before = png.read_bytes()
    from matplotlib.figure import Figure

    def interrupted_savefig(self, fname, *args, **kwargs) -> None:
        data = before[: len(before) // 2]
        if hasattr(fname, "write"):
            fname.write(data)
        else:
            Path(fname).write_bytes(data)
        raise KeyboardInterrupt  # Ctrl-C in the middle of writing

    monkeypatch.setattr(Figure, "savefig", interrupted_savefig)
    with pytest.raises(KeyboardInterrupt):
        plot_curves(history * 2, tmp_path / "curves.png")
    assert png.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]


def test_missing_tensorboard_is_said_once(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    monkeypatch.setattr(RunLog, "_absence_told", False)
    for _ in range(2):
        log = RunLog(tmp_path, tensorboard=True)
        assert not log.tensorboard_enabled
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "TensorBoard is not installed" in err[0] and "dsplug[tensorboard]" in err[0]
    RunLog(tmp_path, tensorboard=False)
    assert capsys.readouterr().err == ""


def test_demo_refuses_an_existing_out(tmp_path: Path, capsys) -> None:
    (tmp_path / "demo" / "none").mkdir(parents=True)
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 2
    line = _err_line(capsys)
    assert line.startswith("dsplug demo: error:") and "--overwrite" in line


def test_demo_prints_hyb_minus_none_test_dice(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--epochs", "1", "--min-epochs", "1", "--cases", "12", "--size", "32"]
    args += ["--base-channels", "8", "--depth", "3", "--quiet", "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    match = re.search(r"^hyb - none test Dice: ([+-]\d\.\d{3})$", text, re.MULTILINE)
    assert match, text[-2000:]
    dice = {
        m: json.loads((out / m / "summary.json").read_text())["test"]["dice"]
        for m in ("none", "hyb")
    }
    assert float(match.group(1)) == pytest.approx(dice["hyb"] - dice["none"], abs=5e-4)
    assert main([*args, "--overwrite"]) == 0  # --overwrite replaces the earlier demo


def test_export_writes_the_bare_model_and_never_overwrites(tmp_path: Path, capsys) -> None:
    from dsplug.export import load_exported

    run = tmp_path / "run"
    assert (
        main([*TRAIN, "--epochs", "1", "--min-epochs", "1", "--no-plots", "--out", str(run)]) == 0
    )
    assert main(["export", str(run / "best.pt")]) == 0
    model = load_exported(run / "best.safetensors")
    bare = load_checkpoint(run / "best.pt")["model_state"]
    assert model.state_dict().keys() == bare.keys()
    for key, value in model.state_dict().items():
        assert torch.equal(value, bare[key]), key
    capsys.readouterr()
    assert main(["export", str(run / "best.pt")]) == 1  # exists: refused, one line
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0]
    assert main(["export", str(run / "best.pt"), "--overwrite"]) == 0
