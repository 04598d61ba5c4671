"""``dsplug train --patch`` (2D and 3D), and evaluate / predict / compare of patch-trained
checkpoints at native resolution: sliding windows, mirror TTA, HD95 and NSD."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import nibabel as nib
import pytest
import torch

from dsplug.cli import main
from dsplug.data import PatchAugment, build_datasets
from dsplug.train import build_model
from dsplug.train.commands.patches import patch_dataset
from dsplug.train.native import score_dataset
from dsplug.train.predict import load_model, predict_file

from .conftest import write_msd

QUIET = ["--quiet", "--no-tensorboard", "--no-plots", "--epochs", "1", "--min-epochs", "1"]
TINY_2D = ["--base-channels", "4", "--depth", "3", *QUIET]
SYNTH_2D = ["--data", "synthetic", "--option", "num_cases=10", "--option", "size=48"]
#: Patches of the paper's recipe, N per image and epoch (the field recipe, the default of
#: patches, takes --iterations steps an epoch instead).
PAPER_2D = ["--patch", "32", "32", "--patches-per-image", "3", "--recipe", "paper"]
PAPER_3D = ["--patch", "16", "16", "16", "--patches-per-image", "1", "--recipe", "paper"]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def run2d(tmp_path_factory) -> Path:
    """One 2D patch run on 48 px phantoms with 32 px patches (shared by the tests below)."""
    out = tmp_path_factory.mktemp("p2d") / "run"
    argv = ["train", *SYNTH_2D, *PAPER_2D, *TINY_2D]
    assert main([*argv, "--out", str(out)]) == 0
    return out


def test_patch_2d_trains_on_patches_and_scores_whole_images(run2d: Path, capsys) -> None:
    config = json.loads((run2d / "config.json").read_text())
    assert config["train_config"]["patch"] == [32, 32]  # evaluate / predict read it here
    assert config["data_config"]["test"]["kind"] == "synthetic"
    summary = json.loads((run2d / "summary.json").read_text())
    for key in ("hd95", "nsd", "hd95_nan", "nsd_nan"):
        assert key in summary["test"], key
    assert "hd95" in summary["best_val"] and "nsd" in summary["best_val"]
    rows = _rows(run2d / "test_cases.csv")
    assert len(rows) == 2 and {"hd95", "nsd"} <= set(rows[0])


def test_patches_per_image_sets_the_epoch(tmp_path: Path, capsys) -> None:
    argv = ["train", *SYNTH_2D, *PAPER_2D, *TINY_2D]
    assert main([*argv, "--out", str(tmp_path / "r")]) == 0
    assert "21 random 2D patches of 32 x 32" in capsys.readouterr().out  # 7 images x 3


def test_patch_dataset_draws_patches_and_augments_with_augment() -> None:
    train = build_datasets("synthetic", options={"num_cases": 10, "size": 48})["train"]
    args = argparse.Namespace(patch=[32, 32], patches_per_image=2, augment=True)
    data = patch_dataset(args, train)
    assert len(data) == 14 and tuple(data[0]["image"].shape) == (1, 32, 32)
    assert isinstance(data.transform, PatchAugment)
    args.augment = False
    assert patch_dataset(args, train).transform is None


class _Recorder(torch.nn.Module):
    """Wraps a model, recording the spatial shape of each input it sees."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.shapes = model, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape[2:]))
        return self.model(x)


def _skewed(in_channels: int = 1, classes: int = 1, dims: int = 2) -> torch.nn.Module:
    """A model whose flipped outputs differ from its outputs of flips (TTA changes scores)."""
    torch.manual_seed(0)
    conv = (torch.nn.Conv2d if dims == 2 else torch.nn.Conv3d)(in_channels, classes, 5, padding=2)
    with torch.no_grad():
        conv.weight.normal_()
        conv.weight[..., :2] *= 4.0  # lopsided: mirrors see another filter
    return conv.eval()


def test_evaluate_a_patch_model_windows_its_patch_and_tta_costs_four_passes() -> None:
    test = build_datasets("synthetic", options={"num_cases": 10, "size": 48})["test"]
    model = _Recorder(_skewed())
    plain = score_dataset(model, test, "binary", torch.device("cpu"), patch=[32, 32])
    assert set(model.shapes) == {(32, 32)}
    calls = len(model.shapes)
    model.shapes.clear()
    mirrored = score_dataset(model, test, "binary", torch.device("cpu"), patch=[32, 32], tta=True)
    assert len(model.shapes) == 4 * calls  # 2^2 mirrors per window
    assert plain.summary()["dice"] != pytest.approx(mirrored.summary()["dice"], abs=1e-6)


def test_nsd_tolerance_changes_nsd_only(run2d: Path, tmp_path: Path) -> None:
    summaries = []
    for tol in ("0", "8"):
        out = tmp_path / f"tol{tol}"
        argv = ["evaluate", str(run2d / "best.pt"), "--out", str(out), "--nsd-tolerance", tol]
        assert main(argv) == 0
        summaries.append(json.loads((out / "summary.json").read_text()))
    low, high = summaries
    assert (low["nsd_tolerance_mm"], high["nsd_tolerance_mm"]) == (0.0, 8.0)
    assert high["nsd"] > low["nsd"] and high["dice"] == low["dice"]
    assert low["patch"] == [32, 32]


def test_evaluate_tta_flag_reaches_the_scoring(run2d: Path, tmp_path: Path) -> None:
    out = tmp_path / "tta"
    assert main(["evaluate", str(run2d / "best.pt"), "--out", str(out), "--tta"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tta"] is True and {"hd95", "nsd"} <= set(summary)


def test_evaluate_of_a_slice_model_reports_surface_metrics(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", *SYNTH_2D, *TINY_2D, "--out", str(run)]) == 0
    assert "hd95" not in json.loads((run / "summary.json").read_text())["test"]  # unchanged
    out = tmp_path / "eval"
    assert main(["evaluate", str(run / "best.pt"), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["patch"] is None and {"hd95", "nsd", "hd95_nan"} <= set(summary)


def test_compare_reports_hd95_and_nsd_of_patch_runs(run2d: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    argv = ["train", *SYNTH_2D, "--patch", "32", "32", "--mode", "none", *TINY_2D]
    argv += ["--iterations", "2"]  # the field recipe, the default of patches: 2 steps an epoch
    assert main([*argv, "--out", str(other)]) == 0
    out = tmp_path / "cmp"
    with pytest.warns(UserWarning, match="paired"):
        assert main(["compare", str(run2d), str(other), "--out", str(out), "--debug"]) == 0
    rows = _rows(out / "compare_metrics.csv")
    assert {"hd95", "nsd"} <= set(rows[0])


def test_patch_3d_volumes_train_evaluate_per_case_and_predict(tmp_path: Path) -> None:
    data = write_msd(tmp_path / "Task99_Tiny")  # 20 x 24 x 6 volumes, spacing 0.8 x 0.9 x 2.5
    run = tmp_path / "run"
    argv = ["train", "--data", str(data), "--splits", str(data / "splits.json"), "--no-cache"]
    argv += ["--patch", "8", "8", "4", "--base-channels", "4", "--depth", "2", *QUIET]
    assert main([*argv, "--augment", "--recipe", "paper", "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["model_config"]["spatial_dims"] == 3 and config["train_config"]["patch"]
    out = tmp_path / "eval"
    assert main(["evaluate", str(run / "best.pt"), "--out", str(out), "--no-cache"]) == 0
    rows = _rows(out / "cases.csv")
    assert [r["case"] for r in rows] == ["tiny_003"]  # one row: the volume, not its slices
    assert {"hd95_1", "hd95_2", "nsd_1", "nsd_2"} <= set(rows[0])  # per class
    image = data / "imagesTr" / "tiny_000.nii.gz"
    model, ckpt = load_model(run / "best.pt")
    recorder = _Recorder(model)
    mask = predict_file(recorder, ckpt, [image], tmp_path / "pred", tta=True)
    assert nib.load(str(mask)).shape == (20, 24, 6)
    assert set(recorder.shapes) == {(8, 8, 4)} and len(recorder.shapes) % 8 == 0


def test_patch_3d_synthetic_volumes_build_a_3d_net(tmp_path: Path) -> None:
    argv = ["train", "--data", "synthetic", "--option", "num_cases=10", "--option", "dim=3"]
    argv += ["--option", "size=16", *PAPER_3D]
    argv += ["--base-channels", "4", "--depth", "2", *QUIET, "--out", str(tmp_path / "r")]
    assert main(argv) == 0
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["model_config"]["spatial_dims"] == 3
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["test"]["cases"] == 2 and "nsd" in summary["test"]


def test_predict_tta_averages_mirrors(tmp_path: Path, run2d: Path) -> None:
    model, ckpt = load_model(run2d / "best.pt")
    msd = write_msd(tmp_path / "Task99_Tiny")
    ckpt = {**ckpt, "data_config": {"test": _msd_config(msd)}}
    model = build_model({**ckpt["model_config"]}).eval()
    calls = []
    for tta in (False, True):
        recorder = _Recorder(model)
        image = msd / "imagesTr" / "tiny_000.nii.gz"
        predict_file(recorder, ckpt, [image], tmp_path / f"p{tta}", tta=tta)
        calls.append(len(recorder.shapes))
    assert calls[1] == 4 * calls[0]


def _msd_config(root: Path) -> dict:
    sets = build_datasets(root, splits=str(root / "splits.json"), cache=False)
    return sets["test"].config()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--patches-per-image", "2"], "add --patch"),
        (["--patch", "30", "30"], "multiple of 4"),
        (["--patch", "32"], "2 sizes"),
        (["--patch", "32", "32", "--size", "64", "64"], "--size does not apply with --patch"),
        (["--patch", "32", "32", "--fit", "resize"], "--fit does not apply with --patch"),
        (["--patch", "32", "32", "32", "--slice-range", "1", "3"], "take whole volumes"),
        (["--patch", "64", "64", "64", "--model", "smp-unet"], "2D only"),
    ],
)
def test_patch_options_that_do_not_fit_are_refused(
    extra: list[str], message: str, msd_root: Path, capsys
) -> None:
    own = [] if "smp-unet" in extra else ["--base-channels", "4", "--depth", "3"]
    argv = ["train", "--data", str(msd_root), *own, *extra, "--out", str(msd_root / "run")]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_help_groups_the_new_options(capsys) -> None:
    for command, titles in (
        ("train", ["patches at native resolution:", "--patch", "--patches-per-image"]),
        ("evaluate", ["scoring:", "--tta", "--nsd-tolerance"]),
        ("predict", ["inference:", "--tta"]),
    ):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = capsys.readouterr().out
        for title in titles:
            assert title in out, (command, title)
