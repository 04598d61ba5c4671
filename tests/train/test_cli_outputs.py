"""Issue 21, outputs: no command writes a path it reads or a checkpoint (predict, export,
evaluate, compare, demo); evaluate and compare report beside a run, never into it; a bad file
of a predict batch is named and skipped; PNG inputs follow NIfTI's channel rule; 0/1 masks
have a working --option; a comma in a file name is a file name; checkpoints know their data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dsplug.cli import main
from dsplug.train import load_checkpoint, save_checkpoint

from .conftest import TINY_CLI, synthetic_cli, write_msd

ONE_EPOCH = ["--epochs", "1", "--min-epochs", "1", "--no-plots"]


def _err_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"dsplug {command}: error: "), err[0]
    assert "Traceback" not in err[0]
    return err[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def write_pngs(root: Path, n: int = 10, size: int = 32, fg: int = 255) -> Path:
    """``root/images/cK.png`` (gray) and ``root/masks/cK.png`` (0 / ``fg`` squares)."""
    rng = np.random.default_rng(0)
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        mask[4 + i % 5 : 16 + i % 5, 6:20] = fg
        image = np.clip(rng.normal(80, 20, (size, size)) + (mask > 0) * 90, 0, 255)
        Image.fromarray(image.astype(np.uint8)).save(root / "images" / f"c{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"c{i}.png")
    return root


def png_cli(root: Path) -> list[str]:
    return [
        "--data", str(root), "--kind", "folder", "--option", "image=images/{id}.png",
        "--option", "mask=masks/{id}.png", "--no-cache",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def png_run(tmp_path_factory) -> tuple[Path, Path]:
    """A PNG folder data set and a finished 1-epoch run on it: (data root, run folder)."""
    root = write_pngs(tmp_path_factory.mktemp("pngs") / "data")
    run = tmp_path_factory.mktemp("png_run") / "run"
    args = ["train", *png_cli(root), *TINY_CLI, "--mode", "none", *ONE_EPOCH, "--out", str(run)]
    assert main(args) == 0
    return root, run


@pytest.fixture
def scratch(png_run, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the PNG images and of the run (tests may damage them)."""
    root, run = png_run
    shutil.copytree(root / "images", tmp_path / "s")
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "s", tmp_path / "run"


# --------------------------------------------------------------------------- 1. predict
def test_predict_never_writes_over_an_input(scratch, capsys) -> None:
    s, run = scratch
    assert main(["predict", str(run / "best.pt"), str(s / "c0.png"), "--out", str(s)]) == 0
    shutil.copy(s / "c0_mask.png", s / "c1_mask.png")  # a user's own file, also an input
    before = _snapshot(s)
    capsys.readouterr()
    inputs = [str(s / "c0.png"), str(s / "c0_mask.png")]
    status = main(["predict", str(run / "best.pt"), *inputs, "--out", str(s), "--overwrite"])
    assert status == 2
    line = _err_line(capsys, "predict")
    assert "c0_mask.png would be both an input" in line and "the mask of" in line
    assert _snapshot(s) == before and not (s / "c0_mask_mask.png").exists()


def test_predict_never_writes_over_the_checkpoint(scratch, capsys) -> None:
    s, run = scratch
    shutil.copy(s / "c0.png", run / "best.png")  # its mask would be RUN/best_mask.png: fine
    (run / "c0_mask.png").symlink_to(run / "best.pt")
    before = (run / "best.pt").read_bytes()
    status = main(["predict", str(run / "best.pt"), str(s / "c0.png"), "--out", str(run),
                   "--overwrite"])  # fmt: skip
    assert status == 2
    assert "checkpoint" in _err_line(capsys, "predict")
    assert (run / "best.pt").read_bytes() == before


def test_a_bad_file_in_a_predict_batch_is_named_and_skipped(scratch, tmp_path, capsys) -> None:
    s, run = scratch
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(s / "blank.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8) + 7).save(s / "color.png")
    out = tmp_path / "masks"
    inputs = [str(s / n) for n in ("c0.png", "blank.png", "color.png", "c1.png")]
    assert main(["predict", str(run / "best.pt"), *inputs, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3, err
    assert "blank.png" in err[0] and "skipped" in err[0]
    assert "color.png" in err[1] and "3 channel(s) (RGB)" in err[1] and "1 (gray)" in err[1]
    assert err[2].startswith("dsplug predict: error: 2 of 4 input(s) skipped")
    assert sorted(p.name for p in out.iterdir()) == ["c0_mask.png", "c1_mask.png"]


def test_a_comma_in_a_file_name_is_part_of_the_name(scratch, tmp_path, capsys) -> None:
    s, run = scratch
    shutil.copy(s / "c0.png", s / "scan,2.png")
    out = tmp_path / "masks"
    assert main(["predict", str(run / "best.pt"), str(s / "scan,2.png"), "--out", str(out)]) == 0
    assert (out / "scan,2_mask.png").is_file()


# --------------------------------------------------------------------------- 2. export
def test_export_never_writes_over_a_checkpoint(scratch, capsys) -> None:
    _, run = scratch
    before = _snapshot(run)
    for target in ("last.pt", "best.pt"):
        args = ["export", str(run / "last.pt"), "--out", str(run / target), "--overwrite"]
        assert main(args) == 2
        line = _err_line(capsys, "export")
        assert target in line and ("the checkpoint" in line or "is a checkpoint" in line)
    assert _snapshot(run) == before
    assert load_checkpoint(run / "last.pt")["epoch"] == 1


# --------------------------------------------------------------------------- 3. evaluate, compare
def test_evaluate_never_writes_into_the_run_folder(scratch, capsys) -> None:
    _, run = scratch
    before = _snapshot(run)
    for extra in ([], ["--overwrite"]):
        assert main(["evaluate", str(run / "best.pt"), "--out", str(run), *extra]) == 2
        line = _err_line(capsys, "evaluate")
        assert "training run's folder" in line and "evaluate-best-test" in line
    assert _snapshot(run) == before
    # the default: a subfolder; a second report is refused without --overwrite
    assert main(["evaluate", str(run / "best.pt")]) == 0
    report = run / "evaluate-best-test"
    assert (report / "summary.json").is_file() and (report / "cases.csv").is_file()
    assert {k: v for k, v in _snapshot(run).items() if not k.startswith("evaluate-")} == before
    capsys.readouterr()
    assert main(["evaluate", str(run / "best.pt")]) == 2
    assert "already holds a report" in _err_line(capsys, "evaluate")
    assert main(["evaluate", str(run / "best.pt"), "--overwrite"]) == 0
    assert main(["compare", str(run), str(run), "--out", str(run)]) == 2


def test_compare_reports_beside_the_runs(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    for mode in ("none", "hyb"):
        args = ["train", *synthetic_cli(), *TINY_CLI, "--mode", mode, *ONE_EPOCH]
        assert main([*args, "--out", str(runs / mode)]) == 0
    before = _snapshot(runs)
    capsys.readouterr()
    for extra in ([], ["--overwrite"]):
        assert main(["compare", str(runs / "none"), str(runs / "hyb"), "--out",
                     str(runs / "hyb"), *extra]) == 2  # fmt: skip
        assert "training run's folder" in _err_line(capsys, "compare")
    assert _snapshot(runs) == before
    assert main(["compare", str(runs / "none"), str(runs / "hyb")]) == 0
    assert (runs / "compare" / "compare.md").is_file()
    capsys.readouterr()
    assert main(["compare", str(runs / "none"), str(runs / "hyb")]) == 2
    assert "already holds a report" in _err_line(capsys, "compare")
    assert main(["compare", str(runs / "none"), str(runs / "hyb"), "--overwrite"]) == 0


def test_demo_never_writes_into_a_run_folder(scratch, capsys) -> None:
    _, run = scratch
    before = _snapshot(run)
    assert main(["demo", "--out", str(run), "--overwrite", "--quiet"]) == 2
    assert "training run's folder" in _err_line(capsys, "demo")
    assert _snapshot(run) == before


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--size", "30"], "--size 30 is not a multiple of 8"),
        (["--cases", "5"], "--cases 5"),
    ],
)
def test_demo_messages_name_demo_options(args, expected, tmp_path: Path, capsys) -> None:
    assert main(["demo", "--out", str(tmp_path / "d"), *args, "--quiet"]) == 2
    line = _err_line(capsys, "demo")
    assert expected in line and "--option" not in line and "--resume" not in line


# --------------------------------------------------------------------------- 4. data root
def test_checkpoints_know_their_data(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_msd(tmp_path / "a" / "msd_c")
    write_msd(tmp_path / "b" / "msd_c", affine=np.diag([2.0, 2.0, 2.0, 1.0]))
    shutil.copy(tmp_path / "a" / "msd_c" / "splits.json", tmp_path / "b" / "msd_c")
    monkeypatch.chdir(tmp_path / "a")
    args = ["train", "--data", "msd_c", "--splits", "msd_c/splits.json", *TINY_CLI, *ONE_EPOCH]
    assert main([*args, "--mode", "none", "--no-cache", "--out", "run"]) == 0
    ckpt = load_checkpoint(tmp_path / "a" / "run" / "best.pt")
    test = ckpt["data_config"]["test"]
    assert test["root"] == str(tmp_path / "a" / "msd_c")
    assert sorted(test["fingerprint"]) == ["imagesTr/tiny_003.nii.gz", "labelsTr/tiny_003.nii.gz"]

    monkeypatch.chdir(tmp_path / "b")  # another msd_c here: the run's own data is read
    best = str(tmp_path / "a" / "run" / "best.pt")
    assert main(["evaluate", best, "--no-cache", "--out", "e1"]) == 0
    summary = json.loads((tmp_path / "b" / "e1" / "summary.json").read_text())
    here = json.loads((tmp_path / "a" / "run" / "summary.json").read_text())["test"]
    assert summary["dice"] == pytest.approx(here["dice"])

    # the data changed since training: refused, naming what changed
    shutil.copy(tmp_path / "b/msd_c/labelsTr/tiny_003.nii.gz", tmp_path / "a/msd_c/labelsTr")
    capsys.readouterr()
    assert main(["evaluate", best, "--no-cache", "--out", "e2"]) == 2
    line = _err_line(capsys, "evaluate")
    assert "changed since training" in line and "labelsTr/tiny_003.nii.gz" in line
    assert not (tmp_path / "b" / "e2").exists()

    # a checkpoint of an older dsplug with a relative root: the message says relative to what
    old = load_checkpoint(best)
    for split in old["data_config"].values():
        split["root"] = "msd_c"
        del split["fingerprint"]
    save_checkpoint(old, tmp_path / "old.pt")
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", str(tmp_path / "old.pt"), "--no-cache", "--out", "e3"]) == 2
    assert "relative to the folder training ran in" in _err_line(capsys, "evaluate")


# --------------------------------------------------------------------------- 7. weak spots
def test_masks_stored_as_0_1_have_a_working_option(tmp_path: Path, capsys) -> None:
    root = write_pngs(tmp_path / "d01", fg=1)
    args = ["train", *png_cli(root), *TINY_CLI, *ONE_EPOCH]
    assert main([*args, "--out", str(tmp_path / "r1")]) == 2
    line = _err_line(capsys, "train")
    assert "unexpected label values [1]" in line
    assert """--option 'labels={"binary": [0, 1]}'""" in line
    option = ["--option", 'labels={"binary": [0, 1]}']
    assert main([*args, *option, "--out", str(tmp_path / "r2")]) == 0


def test_a_data_worker_error_is_one_line(png_run, tmp_path: Path, monkeypatch, capsys) -> None:
    from dsplug.data import SliceDataset
    from dsplug.data.errors import DataError

    def broken(self, i):
        raise DataError(self.cases[0], "damaged while training")

    monkeypatch.setattr(SliceDataset, "__getitem__", broken)  # forked workers inherit it
    _, run = png_run
    status = main(["evaluate", str(run / "best.pt"), "--workers", "1", "--split", "val",
                   "--out", str(tmp_path / "e")])  # fmt: skip
    assert status == 2
    line = _err_line(capsys, "evaluate")
    assert line.endswith("in a data worker: c0: damaged while training") or (
        "in a data worker:" in line and "damaged while training" in line
    ), line
    assert "Original Traceback" not in line and 'File "' not in line


def test_a_too_small_size_names_the_cli_option(tmp_path: Path, capsys) -> None:
    root = write_pngs(tmp_path / "d")
    args = ["train", *png_cli(root), *TINY_CLI, *ONE_EPOCH, "--size", "16", "16"]
    assert main([*args, "--out", str(tmp_path / "r")]) == 2
    line = _err_line(capsys, "train")
    assert "--size H W" in line and "exceed the dataset's size (16, 16)" in line


def test_a_cache_that_cannot_be_written_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    import errno
    import tempfile

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", kwargs.get("dir"))

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    root = write_pngs(tmp_path / "d")
    args = ["train", *png_cli(root)[:-1], *TINY_CLI, *ONE_EPOCH, "--out", str(tmp_path / "r")]
    assert main([*args, "--cache-dir", str(tmp_path / "cache")]) == 1
    line = _err_line(capsys, "train")
    assert str(tmp_path / "cache") in line and "Read-only file system" in line
    assert "--no-cache" in line and "DSPLUG_CACHE" in line and "Errno" not in line
