"""The dsplug CLI: predict on NIfTI keeps shape and affine, bad options fail cleanly, every
option is documented, and the demo path runs end to end."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from dsplug.cli import build_parser, main

from .conftest import TINY_CLI, run_cli


def test_every_option_has_help_text_and_a_default() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands = {"train", "evaluate", "predict", "demo", "compare", "export"}
    assert set(subparsers.choices) == commands
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"dsplug {name} {action.option_strings or action.dest}: no help"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--mode", "hybrid"], "invalid choice: 'hybrid'"),
        (["train", "--data", "/no/such/folder"], "no such folder"),
        (["train", "--model", "smp-unet", "--encoder", "resnet35"], "Unknown encoder 'resnet35'"),
        (["train", "--weights", "brain"], "invalid choice: 'brain'"),
        (["evaluate", "/no/such/best.pt"], "best.pt' does not exist"),
        (["compare", "/no/such/run"], "two or more run folders"),
    ],
)
def test_bad_options_fail_with_a_clear_message(args, message, capsys, tmp_path: Path) -> None:
    try:
        status = main([*args, "--out", str(tmp_path / "out")])
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_bad_option_through_python_m_dsplug_has_no_traceback() -> None:
    done = run_cli("train", "--model", "smp-fpn", "--encoder", "not_an_encoder")
    assert done.returncode == 2
    assert done.stderr.startswith("dsplug train: error: Unknown encoder 'not_an_encoder'")
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_train_then_predict_on_nifti_keeps_shape_and_affine(msd_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    status = main(
        [
            "train",
            "--data",
            str(msd_root),
            "--splits",
            str(msd_root / "splits.json"),
            "--mode",
            "seg",
            *TINY_CLI,
            "--epochs",
            "1",
            "--min-epochs",
            "1",
            "--no-cache",
            "--no-plots",
            "--out",
            str(run),
        ]
    )
    assert status == 0
    volume = msd_root / "imagesTr" / "tiny_003.nii.gz"
    assert main(["predict", str(run / "best.pt"), str(volume), "--out", str(tmp_path / "p")]) == 0
    source, mask = nib.load(volume), nib.load(tmp_path / "p" / "tiny_003_mask.nii.gz")
    assert mask.shape == source.shape == (20, 24, 6)
    np.testing.assert_array_equal(mask.affine, source.affine)
    assert np.allclose(mask.header.get_zooms(), source.header.get_zooms())
    values = np.asanyarray(mask.dataobj)
    assert values.dtype == np.uint8 and set(np.unique(values)) <= {0, 1, 2}

    status = main(
        [
            "evaluate",
            str(run / "best.pt"),
            "--data",
            str(msd_root),
            "--no-cache",
            "--out",
            str(tmp_path / "ev"),
        ]
    )
    assert status == 0
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["cases"] == 4 and summary["split"] == "folder"


@pytest.mark.slow
def test_demo_path_trains_two_modes_and_compares(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = run_cli(
        "demo",
        "--epochs",
        "1",
        "--min-epochs",
        "1",
        "--cases",
        "12",
        "--size",
        "32",
        "--base-channels",
        "8",
        "--depth",
        "3",
        "--quiet",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for mode in ("none", "hyb"):
        assert (out / mode / "summary.json").is_file()
        assert (out / mode / "curves.png").is_file()
    table = (out / "compare.md").read_text()
    assert "| none | none |" in table and "| hyb | hyb |" in table
    assert "Tot.T" in done.stdout


@pytest.mark.slow
def test_predict_on_a_2d_image_writes_a_png_mask_of_its_size(tmp_path: Path) -> None:
    root = tmp_path / "folder"
    rng = np.random.default_rng(0)
    for i in range(4):
        mask = np.zeros((40, 52), np.uint8)  # non-square, not a multiple of the stride
        mask[5 + 3 * i : 25, 10 : 30 + i] = 255
        image = (rng.normal(80, 10, mask.shape) + 0.5 * mask).clip(0, 255).astype(np.uint8)
        for name, array in (("images", image), ("masks", mask)):
            (root / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / name / f"case{i}.png")
    splits = {"train": ["case0", "case1"], "val": ["case2"], "test": ["case3"]}
    (root / "splits.json").write_text(json.dumps(splits))
    run = tmp_path / "run"
    args = ["train", "--data", str(root), "--kind", "folder", "--splits", str(root / "splits.json")]
    args += ["--option", "image=images/{id}.png", "--option", "mask=masks/{id}.png", *TINY_CLI]
    args += ["--mode", "none", "--epochs", "1", "--min-epochs", "1", "--no-cache", "--no-plots"]
    assert main([*args, "--out", str(run)]) == 0
    image = root / "images" / "case3.png"
    assert main(["predict", str(run / "best.pt"), str(image), "--out", str(tmp_path / "p")]) == 0
    mask = np.asarray(Image.open(tmp_path / "p" / "case3_mask.png"))
    assert mask.shape == (40, 52)
    assert set(np.unique(mask)) <= {0, 255}
