"""``dsplug train --model monai-dynunet / monai-basicunet``: MONAI nets from the CLI, as 3D
patch models of volumes (modes none and hyb) and in 2D, rebuilt from their checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dsplug.cli import main
from dsplug.train.predict import load_model
from tests.data.conftest import require_data

pytest.importorskip("monai.networks.nets")

QUIET = ["--quiet", "--no-tensorboard", "--no-plots", "--epochs", "1", "--min-epochs", "1"]
SYNTH_3D = ["--data", "synthetic", "--option", "num_cases=10", "--option", "dim=3"]
SYNTH_3D += ["--option", "size=16", *("--patch", "16", "16", "16")]
SYNTH_3D += ["--patches-per-image", "1", "--recipe", "paper"]  # the paper's epoch: 1 patch
# Tiny nets: DynUNet of 3 levels (stride 4); BasicUNet's five levels (stride 16) with batch
# norm, since a 16^3 patch leaves it a one-voxel bottleneck.
TINY = {
    "monai-dynunet": ["--base-channels", "4", "--depth", "3"],
    "monai-basicunet": ["--base-channels", "2", "--norm", "batch"],
}
MONAI_CLASS = {"monai-dynunet": "DynUNet", "monai-basicunet": "BasicUNet"}


def _config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


@pytest.mark.parametrize("mode", ["none", "hyb"])
@pytest.mark.parametrize("model", ["monai-dynunet", "monai-basicunet"])
def test_monai_net_trains_3d_patches(model: str, mode: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    argv = ["train", *SYNTH_3D, "--model", model, *TINY[model], "--mode", mode, *QUIET]
    assert main([*argv, "--out", str(run)]) == 0
    config = _config(run)
    assert config["model_config"]["arch"] == model
    assert config["model_config"]["spatial_dims"] == 3
    assert config["wrapper_config"]["mode"] == mode
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["cases"] == 2 and {"dice", "hd95", "nsd"} <= set(summary["test"])
    net, _ = load_model(run / "best.pt")  # the checkpoint rebuilds the very MONAI net
    assert type(net).__name__ == MONAI_CLASS[model]
    assert net(torch.zeros(1, 1, 16, 16, 16)).shape == (1, 1, 16, 16, 16)


def test_monai_3d_checkpoint_evaluates_by_sliding_windows(tmp_path: Path) -> None:
    run = tmp_path / "run"
    argv = ["train", *SYNTH_3D, "--model", "monai-dynunet", *TINY["monai-dynunet"], *QUIET]
    assert main([*argv, "--out", str(run)]) == 0
    out = tmp_path / "eval"
    assert main(["evaluate", str(run / "best.pt"), "--out", str(out), "--tta"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["patch"] == [16, 16, 16] and summary["tta"] is True
    assert {"hd95", "nsd"} <= set(summary)


@pytest.mark.parametrize(
    ("model", "extra"),
    [("monai-basicunet", []), ("monai-dynunet", ["--patch", "32", "32"])],
)
def test_monai_net_trains_in_2d(model: str, extra: list[str], tmp_path: Path) -> None:
    run = tmp_path / "run"
    data = ["--data", "synthetic", "--option", "num_cases=10", "--option", "size=32"]
    argv = ["train", *data, "--model", model, *TINY[model], "--mode", "hyb", *extra, *QUIET]
    assert main([*argv, "--out", str(run)]) == 0
    assert _config(run)["model_config"]["spatial_dims"] == 2
    net, _ = load_model(run / "best.pt")
    assert net(torch.zeros(2, 1, 32, 32)).shape == (2, 1, 32, 32)


def test_monai_dynunet_trains_task04_3d_patches(tmp_path: Path) -> None:
    """Real volumes (about 35 x 50 x 35, 3 classes): 3D patches, per-volume test scores."""
    root = require_data("Task04_Hippocampus")
    ids = [f"hippocampus_{i:03d}" for i in (1, 3, 6, 11)]
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"train": ids[:2], "val": [ids[2]], "test": [ids[3]]}))
    run = tmp_path / "run"
    argv = ["train", "--data", str(root), "--splits", str(splits), "--no-cache"]
    argv += ["--patch", "16", "16", "16", "--patches-per-image", "2", "--recipe", "paper"]
    argv += ["--mode", "hyb"]
    argv += ["--model", "monai-dynunet", *TINY["monai-dynunet"], *QUIET, "--out", str(run)]
    assert main(argv) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["cases"] == 1  # the volume, not its slices
    assert {"hd95", "nsd"} <= set(summary["test"])
    assert _config(run)["model_config"]["classes"] == 3


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "monai-basicunet", "--depth", "3"], "five levels are fixed"),
        (["--model", "monai-dynunet", "--encoder", "resnet18"], "no encoder to choose"),
        (
            ["--model", "monai-dynunet", "--depth", "3", "--patch", "4", "4", "4"],
            "bottleneck would be one voxel",
        ),
        (["--model", "monai-dynunet", "--depth", "3", "--patch", "6", "8"], "multiple of 4"),
    ],
)
def test_monai_options_that_do_not_apply_are_refused(
    extra: list[str], message: str, tmp_path: Path, capsys
) -> None:
    argv = ["train", "--data", "synthetic", *extra, *QUIET, "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
