"""predict never writes two results to one path, segments inputs larger than the training size
with sliding windows (smaller ones padded), takes any float input; compare labels runs by their
path and warns about few paired cases."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from dsplug.cli import main
from dsplug.train.compare import compare_runs
from dsplug.train.predict import mask_paths
from dsplug.train.runlog import write_csv, write_json
from dsplug.train.sliding import sliding_window_logits, window_starts

from .conftest import TINY_CLI, write_msd


@pytest.fixture(scope="module")
def msd_run(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny MSD task (20 x 24 x 6 volumes) and a 1-epoch run on it: (data root, best.pt)."""
    root = write_msd(tmp_path_factory.mktemp("data") / "Task99_Tiny")
    run = tmp_path_factory.mktemp("run") / "run"
    args = ["train", "--data", str(root), "--splits", str(root / "splits.json"), *TINY_CLI]
    args += ["--mode", "none", "--epochs", "1", "--min-epochs", "1", "--no-cache", "--no-plots"]
    assert main([*args, "--out", str(run)]) == 0
    return root, run / "best.pt"


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_same_file_names_from_two_folders_keep_their_layout(
    msd_run, tmp_path: Path, capsys
) -> None:
    root, ckpt = msd_run
    source = root / "imagesTr" / "tiny_003.nii.gz"
    for folder in ("a", "b"):
        (tmp_path / "in" / folder).mkdir(parents=True)
        shutil.copy(source, tmp_path / "in" / folder / "scan.nii.gz")
    inputs = [str(tmp_path / "in" / f / "scan.nii.gz") for f in ("a", "b")]
    out = tmp_path / "masks"
    assert main(["predict", str(ckpt), *inputs, "--out", str(out)]) == 0
    for folder in ("a", "b"):
        assert nib.load(out / folder / "scan_mask.nii.gz").shape == (20, 24, 6)

    # a second call would replace them: refused without --overwrite, nothing touched
    stamp = (out / "a" / "scan_mask.nii.gz").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["predict", str(ckpt), *inputs, "--out", str(out)]) == 2
    line = _err_line(capsys)
    assert "scan_mask.nii.gz exists already (and 1 more)" in line and "--overwrite" in line
    assert (out / "a" / "scan_mask.nii.gz").stat().st_mtime_ns == stamp
    assert main(["predict", str(ckpt), *inputs, "--out", str(out), "--overwrite"]) == 0


def test_one_input_twice_is_refused(msd_run, tmp_path: Path, capsys) -> None:
    _, ckpt = msd_run
    image = msd_run[0] / "imagesTr" / "tiny_003.nii.gz"
    out = tmp_path / "masks"
    assert main(["predict", str(ckpt), str(image), str(image), "--out", str(out)]) == 2
    assert "is given twice" in _err_line(capsys)
    assert not out.exists()


def test_mask_paths_layout(tmp_path: Path) -> None:
    paths = mask_paths([tmp_path / "x" / "a.png", tmp_path / "x" / "b.png"], "out")
    assert paths == [Path("out/a_mask.png"), Path("out/b_mask.png")]
    paths = mask_paths([tmp_path / "p" / "q" / "a.nii.gz", tmp_path / "r" / "a.nii"], "out")
    assert paths == [Path("out/p/q/a_mask.nii.gz"), Path("out/r/a_mask.nii.gz")]
    with pytest.raises(ValueError, match="would both write"):
        mask_paths([tmp_path / "a.nii", tmp_path / "a.nii.gz"], "out")


def test_inputs_larger_and_smaller_than_the_training_size(msd_run, tmp_path: Path) -> None:
    root, ckpt = msd_run
    source = nib.load(root / "imagesTr" / "tiny_003.nii.gz")
    rng = np.random.default_rng(0)
    shapes = {"large": (70, 50, 3), "small": (9, 13, 2), "wide": (12, 61, 2)}
    inputs = []
    for name, shape in shapes.items():
        volume = rng.normal(0, 1, shape)  # float64 data: any float input is taken
        nib.save(nib.Nifti1Image(volume, source.affine), tmp_path / f"{name}.nii.gz")
        inputs.append(str(tmp_path / f"{name}.nii.gz"))
    assert main(["predict", str(ckpt), *inputs, "--out", str(tmp_path / "p")]) == 0
    for name, shape in shapes.items():
        mask = nib.load(tmp_path / "p" / f"{name}_mask.nii.gz")
        assert mask.shape == shape
        assert set(np.unique(np.asanyarray(mask.dataobj))) <= {0, 1, 2}


def test_predict_help_says_how_large_inputs_are_handled(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Gaussian-weighted sliding windows of the training size" in text
    assert "overlap by 50%" in text and "zero-padded" in text


def test_sliding_windows_equal_a_pointwise_model_on_the_whole_image() -> None:
    torch.manual_seed(0)
    pointwise = nn.Conv2d(2, 3, kernel_size=1)  # the same output however the image is cut
    images = torch.randn(3, 2, 70, 45)
    with torch.no_grad():
        expected = pointwise(images)
    got = sliding_window_logits(pointwise, images, (32, 16), batch_size=2)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    small = torch.randn(1, 2, 20, 10)  # padded to one window, cropped back
    with torch.no_grad():
        torch.testing.assert_close(
            sliding_window_logits(pointwise, small, (32, 16)), pointwise(small)
        )


def test_window_starts_overlap_by_half_and_end_at_the_border() -> None:
    assert window_starts(64, 64) == [0]
    assert window_starts(128, 64) == [0, 32, 64]
    starts = window_starts(100, 32)
    assert starts[0] == 0 and starts[-1] == 100 - 32
    assert all(b - a <= 16 for a, b in itertools.pairwise(starts))


def _fake_run(folder: Path, mode: str, cases: int) -> Path:
    folder.mkdir(parents=True)
    write_json(folder / "summary.json", {"mode": mode, "efficiency": {"avg_t_s": 1.0, "epoch": 2}})
    rows = [
        {"case": f"c{i}", "dice": 0.5 + 0.01 * i, "ppv": 0.5, "sen": 0.5, "iou": 0.5, "avg_m": 0.5}
        for i in range(cases)
    ]
    write_csv(folder / "test_cases.csv", rows)
    return folder


def test_compare_labels_runs_by_their_path_below_the_common_folder(tmp_path: Path) -> None:
    a = _fake_run(tmp_path / "exp1" / "hyb", "hyb", 12)
    b = _fake_run(tmp_path / "exp2" / "hyb", "hyb", 12)
    text = compare_runs([a, b], tmp_path / "cmp")
    assert "| exp1/hyb | hyb |" in text and "| exp2/hyb | hyb |" in text
    assert "Warning" not in text
    with pytest.raises(ValueError, match="given twice"):
        compare_runs([a, tmp_path / "exp1" / ".." / "exp1" / "hyb"])


def test_compare_warns_when_few_cases_pair_up(tmp_path: Path, capsys) -> None:
    a = _fake_run(tmp_path / "none", "none", 3)
    b = _fake_run(tmp_path / "hyb", "hyb", 3)
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dsplug compare: warning: only 3 paired test")
    assert "unreliable" in captured.out and "| none | none |" in captured.out
    with pytest.warns(UserWarning, match="only 3 paired"):
        compare_runs([a, b])
