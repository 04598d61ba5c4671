"""Issue 26, item 12: what used to reach the user as a library's message (or torch's, or
MONAI's) is one dsplug line in the CLI's own words: damaged run files, option values of the
wrong type, nets that cannot be built or trained as asked, silent padding, library wording."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dsplug.train.models import monai_settings

from .conftest import TINY_CLI, synthetic_cli
from .test_cli_errors import _one_error_line, _run

# 12a: damaged run files name the file and the fix.

_DAMAGES = {
    "cut short": b'{"method": "random", "seed": 0, "tra',
    "not UTF-8": b'\xff\xfe{"train": []}',
    "not an object": b"[1, 2]",
    "not lists": b'{"method": "random", "seed": 0, "fractions": [0.7, 0.1, 0.2], "train": 5}',
}


@pytest.mark.parametrize("damage", list(_DAMAGES))
def test_damaged_saved_splits_json_names_the_file_and_the_fix(
    damage: str, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "splits.json").write_bytes(_DAMAGES[damage])  # a start's file: no run yet
    args = ["train", *synthetic_cli(), *TINY_CLI, "--epochs", "1", "--out", str(out)]
    status, _, err = _run(args, capsys)
    assert status == 2
    line = _one_error_line(err, "train")
    assert f"{out / 'splits.json'}: " in line
    assert "delete it and run again with the same seed" in line
    assert "codec" not in line and "AttributeError" not in line and "iterable" not in line


@pytest.mark.parametrize("damage", ["cut short", "not UTF-8", "not an object"])
def test_damaged_given_splits_file_names_the_file_and_the_fix(
    damage: str, tmp_path: Path, capsys
) -> None:
    given = tmp_path / "s.json"
    given.write_bytes(_DAMAGES[damage])
    args = ["train", *synthetic_cli(), *TINY_CLI, "--splits", str(given)]
    status, _, err = _run([*args, "--out", str(tmp_path / "run")], capsys)
    assert status == 2
    line = _one_error_line(err, "train")
    assert f"{given}: " in line and "give a UTF-8 JSON object of case-id lists" in line
    assert "codec" not in line


def _finished_run(folder: Path) -> Path:
    """The two files compare reads of a finished run (enough for it to load the run)."""
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps({"mode": "hyb"}), encoding="utf-8")
    columns = "case,dice,ppv,sen,iou,avg_m"
    (folder / "test_cases.csv").write_text(f"{columns}\nc0,1,1,1,1,1\n", encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("summary.json", b"\xff\xfe{}"),
        ("summary.json", b'{"mode": "hy'),
        ("test_cases.csv", b"case,dice\n\xff\xfe,1"),
    ],
)
def test_compare_of_a_damaged_run_file_names_the_file_and_the_fix(
    name: str, data: bytes, tmp_path: Path, capsys
) -> None:
    first, second = _finished_run(tmp_path / "a"), _finished_run(tmp_path / "b")
    (second / name).write_bytes(data)
    status, _, err = _run(["compare", str(first), str(second)], capsys)
    assert status == 2
    line = _one_error_line(err, "compare")
    assert f"{second / name}: " in line and "leave this run out of the comparison" in line
    assert "codec" not in line and "Expecting value: line" not in line


# 12b: an --option value of the wrong type names the option, what came and what is expected.


@pytest.mark.parametrize(
    ("option", "expected", "got"),
    [
        ("size=1e9", "expected an integer >= 8", "got a decimal number"),
        ("size=[32,32,32]", "expected 2 sizes for dim=2", "got 3"),
        ("num_cases=abc", "expected a positive integer", "got text"),
        ("seed=1.5", "expected an integer", "got a decimal number"),  # was truncated silently
        ("noise=loud", "expected a number >= 0", "got text"),  # was "'>=' not supported ..."
        ("colour=1", "synthetic data takes no option 'colour'", "it takes num_cases, size"),
    ],
)
def test_a_synthetic_option_of_the_wrong_type_is_one_cli_line(
    option: str, expected: str, got: str, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "run"
    short = [*synthetic_cli(), "--epochs", "1", "--min-epochs", "1", "--no-plots"]  # if taken
    args = ["train", *short, "--option", option, *TINY_CLI, "--out", str(out)]
    status, _, err = _run(args, capsys)
    assert status == 2
    line = _one_error_line(err, "train")
    assert f"--option {option}: " in line and expected in line and got in line
    assert "iterable" not in line and "SyntheticDataset" not in line
    assert not out.exists()


# 12c: a depth MONAI's DynUNet cannot build is refused up front, in dsplug's words.


@pytest.mark.parametrize("depth", ["1", "2"])
def test_dynunet_depth_below_3_is_one_dsplug_line(depth: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["train", *synthetic_cli(), "--model", "monai-dynunet", "--depth", depth]
    status, _, err = _run([*args, "--quiet", "--out", str(out)], capsys)
    assert status == 2
    line = _one_error_line(err, "train")
    assert f"--depth {depth}: monai-dynunet needs --depth 3 or more" in line
    assert "kernel_size" not in line
    assert not out.exists()


def test_monai_settings_refuse_a_dynunet_depth_below_3() -> None:
    with pytest.raises(ValueError, match=r"monai-dynunet needs depth >= 3 .* got depth=2"):
        monai_settings("monai-dynunet", depth=2)


# 12d: the advice for a 3D patch of a 2D-only smp model is a 2D patch, not a 3D one.


@pytest.mark.parametrize("patch", [["20", "20", "20"], ["64", "64", "64"]])
def test_3d_patch_of_an_smp_model_advises_a_2d_patch(
    patch: list[str], tmp_path: Path, capsys
) -> None:
    args = ["train", *synthetic_cli(), "--model", "smp-unet", "--patch", *patch, "--quiet"]
    status, _, err = _run([*args, "--out", str(tmp_path / "run")], capsys)
    assert status == 2
    line = _one_error_line(err, "train")
    side = 32 if patch[0] == "20" else 64
    assert "smp-unet is 2D only" in line and f"--patch {side} {side})" in line
    advice = line.split("2D only", 1)[1]
    assert re.search(r"--patch \d+ \d+ \d+", advice) is None, advice


# 12e: a one-voxel batch-norm bottleneck fails up front, or not at all, never mid-run.


def test_one_voxel_bottleneck_in_batches_of_one_is_refused_up_front(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["train", *synthetic_cli(), *TINY_CLI, "--patch", "4", "4", "--batch-size", "1"]
    status, _, err = _run([*args, "--out", str(out)], capsys)
    assert status == 2
    line = _one_error_line(err, "train")
    assert "--patch 4 4: unet's bottleneck would be one voxel (stride 4)" in line
    assert "--batch-size 2 or more" in line and "Expected more than 1 value" not in line
    assert not out.exists()


def test_a_last_batch_of_one_patch_is_left_out_not_a_crash(tmp_path: Path, capsys) -> None:
    # 8 training images x 1 patch: batches of 7 leave one patch over
    data = synthetic_cli(size=8)  # small images: few sliding windows in validation
    patch = ["--patch", "4", "4", "--patches-per-image", "1", "--recipe", "paper"]
    patch += ["--batch-size", "7"]
    short = ["--mode", "none", "--epochs", "1", "--min-epochs", "1", "--no-plots"]
    args = ["train", *data, *TINY_CLI, *patch]
    status, _, err = _run([*args, *short, "--out", str(tmp_path / "run")], capsys)
    assert status == 0, err
    assert "zero-padded" not in err  # 4 x 4 patches of 8 x 8 images


# 12f: a patch larger than every image is said, in one warning line.


def test_a_patch_larger_than_every_image_is_one_warning_line(tmp_path: Path, capsys) -> None:
    data = synthetic_cli(size=8)
    patch = ["--patch", "12", "12", "--patches-per-image", "1", "--recipe", "paper"]
    short = ["--mode", "none", "--epochs", "1", "--min-epochs", "1", "--no-plots"]
    args = ["train", *data, *TINY_CLI, *patch, *short, "--out", str(tmp_path / "run")]
    status, _, err = _run(args, capsys)
    assert status == 0, err
    said = [line for line in err.splitlines() if "zero-padded" in line]
    assert len(said) == 1, err
    assert said[0].startswith("dsplug train: warning: --patch 12 12 is larger than every")
    assert "the largest is 8 x 8" in said[0]


# 12g: the CLI's errors speak of its flags, not of the library's arguments or argparse's types.

_SHORT = [*synthetic_cli(), *TINY_CLI, "--epochs", "1", "--min-epochs", "1", "--no-plots"]


@pytest.mark.parametrize(
    ("args", "message", "library"),
    [
        (["--epochs", "x"], "argument --epochs: expected an integer >= 1, got 'x'", "invalid"),
        (["--lr-gamma", "2"], "argument --lr-gamma: expected a number in (0, 1]", "gamma must"),
        (["--lr", "inf"], "argument --lr: expected a finite number > 0", "lr must"),
        (["--split-seed", "-1"], "argument --split-seed: expected an integer >= 0", "expected n"),
        (["--workers", "-1"], "argument --workers: expected an integer >= 0", "num_workers"),
        (["--seed", "x"], "argument --seed: expected an integer, got 'x'", "invalid"),
        (["--target-dice", "80"], "argument --target-dice: expected a number in [0, 1]", "invalid"),
    ],
)
def test_bad_values_are_told_in_flags(args, message, library, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    status, _, err = _run(["train", *_SHORT, *args, "--out", str(out)], capsys)
    assert status == 2
    line = _one_error_line(err, "train")
    assert message in line and library not in line
    assert not out.exists()


def test_a_bad_nsd_tolerance_is_told_in_flags(capsys) -> None:
    status, _, err = _run(["evaluate", "x.pt", "--nsd-tolerance", "x"], capsys)
    assert status == 2
    line = _one_error_line(err, "evaluate")
    assert "argument --nsd-tolerance: expected a finite number >= 0, got 'x'" in line
    assert "invalid" not in line


def test_a_folder_of_unknown_layout_is_told_in_flags(tmp_path: Path, capsys) -> None:
    (tmp_path / "data").mkdir()
    args = ["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run")]
    status, _, err = _run(args, capsys)
    assert status == 2
    line = _one_error_line(err, "train")
    assert "cannot tell its layout" in line and "pass --kind msd or brats" in line
    assert "--option image=" in line and "kind=" not in line


def test_an_unknown_folder_option_names_the_layout_not_a_class(tmp_path: Path, capsys) -> None:
    (tmp_path / "data").mkdir()
    templates = ["--option", "image=i/{id}.png", "--option", "mask=m/{id}.png"]
    args = ["train", "--data", str(tmp_path / "data"), *templates, "--option", "colr=rgb"]
    status, _, err = _run([*args, "--out", str(tmp_path / "run")], capsys)
    assert status == 2
    line = _one_error_line(err, "train")
    assert "Unknown folder option 'colr'" in line and "did you mean 'color'?" in line
    assert "ImageFolderDataset" not in line
