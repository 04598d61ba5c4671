"""Images without masks in the Trainer, the CLI and Lightning (issue 27, item 3): the recipe
is recorded, a folder of images is read as the labelled data, a held-out case is refused, the
teacher resumes exactly, and the unlabelled loss reaches the weights."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from dsplug.cli import main
from dsplug.data import Preprocessing, build_datasets
from dsplug.train import Trainer, load_checkpoint
from dsplug.train.loop import TrainingInterrupted
from dsplug.train.unlabeled import read_unlabeled, split_labeled

from .conftest import TINY_CLI, synthetic_cli, tiny_config, tiny_ds, tiny_sets, write_msd
from .test_cli_outputs import png_cli, write_pngs

ONE_EPOCH = ["--epochs", "1", "--min-epochs", "1", "--no-plots", "--batch-size", "4"]


def _cli(capsys, *args: str) -> tuple[int, str]:
    try:
        status = main(list(args))
    except SystemExit as exc:
        status = exc.code
    return status, capsys.readouterr().err


def test_labeled_cases_trains_on_the_rest_and_records_the_recipe(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    args = ["train", *synthetic_cli(12), *TINY_CLI, *ONE_EPOCH, "--mode", "none"]
    assert main([*args, "--labeled-cases", "3", "--out", str(run)]) == 0
    assert "--semi mean-teacher on 5 unlabelled image(s)" in capsys.readouterr().out
    semi = json.loads((run / "summary.json").read_text())["semi"]
    assert semi["recipe"] == "mean-teacher" and semi["labeled_cases"] == 3
    assert semi["unlabeled_cases"] == 5 and semi["unlabeled_source"] == "the other training cases"
    assert (semi["unlabeled_ratio"], semi["rampup"], semi["unlabeled_weight"]) == (1, 0.25, 0.1)
    assert semi["ema_decay"] == 0.99
    config = json.loads((run / "config.json").read_text())
    assert config["train_config"]["semi"] == "mean-teacher"
    assert len(config["data_config"]["train"]["cases"]) == 3
    unlabeled = config["data_config"]["unlabeled"]["cases"]
    assert len(unlabeled) == 5 and not set(unlabeled) & set(config["data_config"]["train"]["cases"])
    with open(run / "log.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert float(row["loss/unlabeled"]) > 0
    assert "teacher_state" in load_checkpoint(run / "last.pt")


def test_unlabeled_folder_is_read_as_the_labelled_images(tmp_path: Path) -> None:
    root = write_pngs(tmp_path / "data")
    extra = tmp_path / "extra"
    rng = np.random.default_rng(1)
    for i in range(3):
        (extra / "sub").mkdir(parents=True, exist_ok=True)
        image = rng.integers(0, 255, (28, 30), dtype=np.uint8)  # padded to the data's 32 px
        Image.fromarray(image).save(extra / "sub" / f"u{i}.png")
    run = tmp_path / "run"
    args = ["train", *png_cli(root), *TINY_CLI, *ONE_EPOCH, "--mode", "none"]
    extra_args = ["--unlabeled", str(extra), "--semi", "mean-teacher"]
    assert main([*args, *extra_args, "--out", str(run)]) == 0
    semi = json.loads((run / "summary.json").read_text())["semi"]
    assert semi["recipe"] == "mean-teacher" and semi["unlabeled_weight"] == 0.1
    assert semi["unlabeled_source"] == str(extra.resolve()) and semi["unlabeled_images"] == 3
    prints = json.loads((run / "config.json").read_text())["data_config"]["unlabeled"]
    assert sorted(Path(f).name for f in prints["fingerprint"]) == ["u0.png", "u1.png", "u2.png"]


@pytest.mark.parametrize("how", ["copy", "same id"])
def test_an_unlabelled_validation_or_test_case_is_refused(tmp_path: Path, capsys, how) -> None:
    root = write_pngs(tmp_path / "data")
    splits = {"train": [f"c{i}" for i in range(7)], "val": ["c7"], "test": ["c8", "c9"]}
    (tmp_path / "splits.json").write_text(json.dumps(splits))
    extra = tmp_path / "extra"
    extra.mkdir()
    other = np.random.default_rng(2).integers(0, 255, (32, 32), dtype=np.uint8)
    Image.fromarray(other).save(extra / "other.png")
    if how == "copy":  # the same contents under another name
        shutil.copy(root / "images" / "c8.png", extra / "scan.png")
    else:  # another file named as the validation case
        Image.fromarray(np.full((32, 32), 9, np.uint8)).save(extra / "c7.png")
    run = tmp_path / "run"
    args = [
        "train",
        *png_cli(root),
        *TINY_CLI,
        *ONE_EPOCH,
        "--splits",
        str(tmp_path / "splits.json"),
    ]
    status, err = _cli(capsys, *args, "--unlabeled", str(extra), "--out", str(run))
    assert status == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    leaked = "scan.png is the test case 'c8'" if how == "copy" else "c7.png is the val case 'c7'"
    assert leaked in err
    assert not run.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--semi", "mean-teacher"], "--semi set(s) how images without masks"),
        (["--labeled-cases", "3", "--semi", "rei", "--mode", "up"], "which mode 'up' has not"),
        (
            ["--labeled-cases", "3", "--semi", "consistency", "--mode", "hyb"],
            "which mode 'hyb' has not",
        ),
        (["--labeled-cases", "8"], "--labeled-cases 8: the training split has 8 cases"),
    ],
)
def test_semi_options_that_cannot_apply_are_refused(extra, message, tmp_path, capsys) -> None:
    args = ["train", *synthetic_cli(12), *TINY_CLI, *ONE_EPOCH, *extra]
    status, err = _cli(capsys, *args, "--out", str(tmp_path / "run"))
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1


def _semi_trainer(out: Path, **overrides) -> Trainer:
    sets = tiny_sets()
    labelled, unlabelled = split_labeled(sets["train"], 3)
    overrides.setdefault("semi", "mean-teacher")
    config = tiny_config(plots=False, tensorboard=False, deterministic=True, **overrides)
    return Trainer(
        tiny_ds("up", labelled), labelled, sets["val"], out=out, config=config,
        unlabeled_data=unlabelled,
    )  # fmt: skip


def test_resume_restores_the_teacher_exactly(tmp_path: Path) -> None:
    straight = _semi_trainer(tmp_path / "straight")
    straight.fit()
    stopped = _semi_trainer(tmp_path / "stopped")
    run_epoch = stopped._run_epoch

    def one_epoch_then_ctrl_c(*args, **kwargs):
        done = run_epoch(*args, **kwargs)
        stopped._sigint.requested = True
        return done

    stopped._run_epoch = one_epoch_then_ctrl_c
    with pytest.raises(TrainingInterrupted):
        stopped.fit()
    assert load_checkpoint(tmp_path / "stopped" / "last.pt")["epoch"] == 1
    resumed = _semi_trainer(tmp_path / "stopped")
    resumed.fit(resume=True)
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "stopped" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    assert a["teacher_state"]["updates"] == 2  # 3 labelled slices, batch 4: a step per epoch
    for state in ("teacher_state", "wrapper_state"):
        assert a[state].keys() == b[state].keys()
        for key in a[state]:
            assert torch.equal(a[state][key], b[state][key]), f"{state}: {key} differs"


def test_the_unlabelled_loss_is_logged_and_moves_the_weights(tmp_path: Path) -> None:
    """Guard: remove the unlabelled path from the Trainer and this fails."""
    runs = {}
    for weight in (0.0, 1.0):
        trainer = _semi_trainer(tmp_path / str(weight), rampup=0.0, unlabeled_weight=weight,
                                max_epochs=1, min_epochs=1)  # fmt: skip
        trainer.fit()
        assert trainer.history[-1]["loss/unlabeled"] > 0
        runs[weight] = {k: v.clone() for k, v in trainer.ds.model.state_dict().items()}
    moved = [k for k in runs[0.0] if not torch.equal(runs[0.0][k], runs[1.0][k])]
    assert any(k.endswith("weight") for k in moved)


def test_the_consistency_recipe_trains_up_on_unlabelled_images_without_a_teacher(
    tmp_path: Path,
) -> None:
    """``semi="consistency"``: up's side outputs learn to agree on the unlabelled images (no
    teacher); the unlabelled loss is logged and moves the weights."""
    runs = {}
    for weight in (0.0, 1.0):
        trainer = _semi_trainer(tmp_path / str(weight), semi="consistency", rampup=0.0,
                                unlabeled_weight=weight, max_epochs=1, min_epochs=1)  # fmt: skip
        assert trainer.teacher is None
        trainer.fit()
        assert trainer.history[-1]["loss/unlabeled"] > 0
        runs[weight] = {k: v.clone() for k, v in trainer.ds.model.state_dict().items()}
    assert any(not torch.equal(runs[0.0][k], runs[1.0][k]) for k in runs[0.0])


def test_semi_none_trains_on_the_labelled_cases_alone(tmp_path, capsys) -> None:
    """``--labeled-cases 3 --semi none``: the supervised baseline of a semi benchmark, three
    training cases and no unlabelled loss; with --unlabeled it is refused in one line."""
    args = ["train", *synthetic_cli(12), *TINY_CLI, *ONE_EPOCH, "--labeled-cases", "3"]
    status, err = _cli(capsys, *args, "--semi", "none", "--out", str(tmp_path / "run"))
    assert status == 0, err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train_config"].get("semi") is None
    assert len(config["data_config"]["train"]["cases"]) == 3
    assert "loss/unlabeled" not in (tmp_path / "run" / "log.csv").read_text()
    status, err = _cli(capsys, *args, "--semi", "none", "--unlabeled", str(tmp_path),
                       "--out", str(tmp_path / "other"))  # fmt: skip
    assert status == 2 and "--semi none" in err and len(err.strip().splitlines()) == 1


def test_up_and_down_default_to_their_side_outputs_consistency(tmp_path: Path, capsys) -> None:
    """The measured default: without --semi, up learns from unlabelled images through its side
    outputs' consistency at weight 0.1 (no teacher); none through mean teacher."""
    from dsplug.semi import default_recipe

    assert [default_recipe(m) for m in ("up", "down", "none", "hyb")] == [
        "consistency", "consistency", "mean-teacher", "mean-teacher"
    ]  # fmt: skip
    run = tmp_path / "run"
    args = ["train", *synthetic_cli(12), *TINY_CLI, *ONE_EPOCH, "--mode", "up"]
    assert main([*args, "--labeled-cases", "3", "--out", str(run)]) == 0
    semi = json.loads((run / "summary.json").read_text())["semi"]
    assert (semi["recipe"], semi["unlabeled_weight"]) == ("consistency", 0.1)
    assert "teacher_state" not in load_checkpoint(run / "last.pt")


def test_lightning_learns_from_an_unlabelled_batch_and_updates_its_teacher() -> None:
    pl = pytest.importorskip("pytorch_lightning")
    from dsplug import UNet
    from dsplug.lightning import DeepSupervisedModule

    torch.manual_seed(0)
    x, y = torch.randn(4, 1, 32, 32), (torch.rand(4, 1, 32, 32) > 0.5).float()
    batches = [{"image": x, "label": y, "unlabeled": torch.randn(4, 1, 32, 32)}] * 2
    model = UNet(in_channels=1, classes=1, base_channels=8, depth=3)
    module = DeepSupervisedModule(model, mode="up", semi="pseudo", rampup_steps=0)
    before = {k: v.clone() for k, v in module.teacher.state_dict().items()}
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, DataLoader(batches, batch_size=None))  # each dict a batch
    assert int(module.teacher.updates) == 2
    assert "train/unlabeled" in trainer.callback_metrics
    assert not torch.equal(before["module.head.weight"], module.teacher.module.head.weight)


def test_labeled_cases_never_choose_unlabelled_slices_by_their_masks(msd_root: Path) -> None:
    prep = Preprocessing(drop_empty=True)
    sets = build_datasets(
        msd_root, preprocessing=prep, splits=msd_root / "splits.json", cache=False
    )
    labelled, unlabelled = split_labeled(sets["train"], 1)
    assert len(labelled) == 4  # slices 1-4 of the labelled case hold foreground
    assert len(unlabelled) == 6  # every slice of the unlabelled case, empty ones included
    assert set(unlabelled[0]) == {"image", "case", "slice"}


def test_compare_names_the_recipe_beside_the_mode() -> None:
    from dsplug.train.compare import RunRecord, _efficiency_rows

    runs = [
        RunRecord("a", {"mode": "up", "semi": {"recipe": "pseudo"}}, {}, "test"),
        RunRecord("b", {"mode": "up"}, {}, "test"),
    ]
    assert [row["mode"] for row in _efficiency_rows(runs)] == ["up + pseudo", "up"]


def test_an_msd_root_is_read_without_its_labels_and_its_held_out_cases_refused(
    msd_root: Path, tmp_path: Path
) -> None:
    sets = build_datasets(msd_root, splits=msd_root / "splits.json", cache=False)
    held_out = {"val": sets["val"], "test": sets["test"]}
    other = write_msd(tmp_path / "Task98_More", n=2)  # tiny_000, tiny_001: training ids only
    shutil.rmtree(other / "labelsTr")  # the labels are never read
    images = read_unlabeled(other, sets["train"].config(), held_out)
    assert images.cases == ["tiny_000", "tiny_001"] and len(images) == 12  # 6 slices each
    assert images[0]["image"].shape == sets["train"][0]["image"].shape
    with pytest.raises(ValueError, match=r"tiny_002\.nii\.gz is the val case 'tiny_002'"):
        read_unlabeled(msd_root, sets["train"].config(), held_out)


def test_a_supervised_runs_record_keeps_its_earlier_form() -> None:
    """Checkpoints written before the semi fields existed still resume (same train_config)."""
    from dsplug.train.trainer import _train_record

    assert "semi" not in _train_record(tiny_config()) and "ema_decay" not in _train_record(
        tiny_config()
    )
    assert _train_record(tiny_config(semi="rei"))["semi"] == "rei"
