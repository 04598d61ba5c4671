"""The field recipe beside the paper's (issue 29, item 1): warm-up then poly per step, a fixed
number of steps per epoch, a third of patches on foreground, patience, the recipe recorded and
kept on resume, the paper's recipe unchanged, one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from dsplug.data import PatchDataset
from dsplug.data.field_augment import AugmentedDataset
from dsplug.train import TrainConfig, Trainer
from dsplug.train.config import DEFAULT_RECIPE, task_family
from dsplug.train.distributed import DistInfo
from dsplug.train.recipe import field_loader
from dsplug.train.runtime import Runtime
from dsplug.train.schedule import EarlyStopping, make_optimizer, poly_factor
from dsplug.train.trainer import _train_record

from .conftest import TINY_CLI, synthetic_cli, tiny_config, tiny_ds, tiny_sets
from .test_cli_errors import _one_error_line, _run

#: The keys a paper run's checkpoint stored before the field recipe existed.
PAPER_RECORD = {
    "max_epochs", "min_epochs", "batch_size", "lr", "lr_step", "lr_gamma", "seed",
    "num_workers", "amp", "channels_last", "compile", "deterministic", "target_dice",
    "val_batch_size", "progress", "tensorboard", "plots", "overlays", "patch", "nsd_tolerance",
}  # fmt: skip


def _runtime(config: TrainConfig) -> Runtime:
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    return Runtime.resolve(config, info)


# --- the schedule -----------------------------------------------------------------------------


def test_poly_factor_warms_up_linearly_then_decays_as_poly() -> None:
    total, warmup = 100, 10
    assert [poly_factor(s, total, warmup) for s in range(3)] == pytest.approx(
        [(s + 1) / 10 * (1 - s / 100) ** 0.9 for s in range(3)]
    )
    for step in (10, 50, 99):
        assert poly_factor(step, total, warmup) == pytest.approx((1 - step / total) ** 0.9)
    assert poly_factor(total, total, warmup) == 0.0
    assert poly_factor(0, total, 0) == 1.0


def test_field_scheduler_steps_per_optimiser_step() -> None:
    config = TrainConfig(recipe="field", max_epochs=4, min_epochs=1, iterations=5, warmup_epochs=1)
    opt, sched, per_step = make_optimizer([torch.nn.Parameter(torch.zeros(1))], config)
    assert per_step and config.lr == 1e-3
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [1e-3 * poly_factor(s, 20, 5) for s in range(20)]
    assert lrs == pytest.approx(expected)
    assert max(lrs) == pytest.approx(1e-3 * (1 - 4 / 20) ** 0.9)  # the peak: the warm-up's end


def test_a_field_run_steps_iterations_per_epoch_and_decays_per_step(tmp_path: Path) -> None:
    sets = tiny_sets(num_cases=10, size=16)
    ds = tiny_ds("none", sets["train"])
    config = tiny_config(recipe="field", iterations=3, warmup_epochs=1, batch_size=2, plots=False)
    trainer = Trainer(ds, sets["train"], sets["val"], out=tmp_path, config=config)
    trainer.fit()
    assert trainer.global_step == 2 * 3
    lrs = [row["lr"] for row in trainer.history]  # at each epoch's start
    assert lrs == pytest.approx([1e-3 * poly_factor(s, 6, 3) for s in (0, 3)])
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["train_config"]["recipe"] == "field"
    assert saved["train_config"]["iterations"] == 3
    assert saved["recipe"]["name"] == "field" and saved["recipe"]["family"] == "2d-slices"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["recipe"]["augmentation"]["p_rotate"] == 0.2
    assert isinstance(trainer.train_data, AugmentedDataset)


# --- steps per epoch --------------------------------------------------------------------------


@pytest.mark.parametrize("items", [3, 50])
def test_iterations_per_epoch_do_not_depend_on_the_data_size(items: int) -> None:
    config = TrainConfig(recipe="field", iterations=7, batch_size=4)
    data = TensorDataset(torch.arange(items))
    loader = field_loader(data, config, _runtime(config))
    for epoch in (1, 2):
        loader.sampler.set_epoch(epoch)
        batches = [b[0] for b in loader]
        assert len(loader) == 7 and len(batches) == 7
        assert all(len(b) == 4 for b in batches)
    seen = torch.cat(batches)
    assert len(seen.unique()) == min(items, 28)  # permutations: every item before a repeat


# --- foreground oversampling ------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(160, 160), (64, 80, 80)], ids=["2d", "3d"])
def test_a_third_of_patches_are_centred_on_foreground(shape) -> None:
    """One foreground voxel in a large image: a uniform patch almost never holds it, so the
    share holding it measures the oversampling (1/3 as nnU-Net, + ~1% by chance)."""
    mask = np.zeros(shape, dtype=np.int64)
    centre = tuple(n // 2 for n in shape)
    mask[centre] = 1
    patch = (16,) * len(shape)
    data = PatchDataset(
        [np.zeros((1, *shape), np.float32)],
        [mask],
        patch,
        label_mode="binary",
        patches_per_image=1,
        foreground_fraction=1 / 3,
    )
    torch.manual_seed(0)
    draws = 3000
    held = sum(int(data[0]["mask"].sum() > 0) for _ in range(draws))
    by_chance = math.prod(p / (n - p + 1) for p, n in zip(patch, shape))  # uniform holds it
    expected = 1 / 3 + 2 / 3 * by_chance
    assert abs(held / draws - expected) < 0.03, (held / draws, expected)


# --- stopping ---------------------------------------------------------------------------------


def test_patience_stops_that_many_epochs_after_the_best() -> None:
    stop = EarlyStopping(max_epochs=20, min_epochs=3, patience=4)
    scores = [0.1, 0.5, 0.4, 0.4, 0.4, 0.4, 0.4]
    ended = next(e for e, s in enumerate(scores, start=1) if stop.update(e, s))
    assert ended == 6  # best at 2; 4 epochs without better
    assert EarlyStopping.from_state(stop.state()).patience == 4
    paper = EarlyStopping(max_epochs=20, min_epochs=3)
    assert "patience" not in paper.state()  # a paper run's checkpoint as before
    assert next(e for e, s in enumerate(scores, start=1) if paper.update(e, s)) == 4


# --- the paper's recipe stays as it was -------------------------------------------------------


def test_the_paper_recipe_is_the_default_and_unchanged(tmp_path: Path) -> None:
    config = TrainConfig()
    assert config.recipe == "paper" and config == TrainConfig(recipe="paper")
    assert config.lr == 3e-4 and config.iterations is None and config.warmup_epochs is None
    assert set(_train_record(config)) == PAPER_RECORD
    opt, sched, per_step = make_optimizer([torch.nn.Parameter(torch.zeros(1))], config)
    assert isinstance(opt, torch.optim.Adam) and not per_step
    assert isinstance(sched, torch.optim.lr_scheduler.StepLR)
    assert (sched.step_size, sched.gamma, opt.param_groups[0]["lr"]) == (3, 0.9, 3e-4)
    sets = tiny_sets(num_cases=10, size=16)
    ds = tiny_ds("none", sets["train"])
    trainer = Trainer(ds, sets["train"], sets["val"], out=tmp_path, config=tiny_config())
    assert trainer.train_data is sets["train"]  # no augmentation added
    loader = trainer._loader(trainer.train_data, train=True)
    assert len(loader) == math.ceil(len(sets["train"]) / 4)  # one pass over the data


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"recipe": "fast"}, "recipe must be one of ['paper', 'field'], got 'fast'"),
        ({"iterations": 5}, "iterations applies to recipe 'field', got iterations=5"),
        ({"warmup_epochs": 2}, "warmup_epochs applies to recipe 'field'"),
        ({"recipe": "field", "iterations": 0}, "iterations must be an int >= 1, got 0"),
        ({"recipe": "field", "warmup_epochs": -1}, "warmup_epochs must be an int >= 0, got -1"),
        ({"patience": 0}, "patience must be an int >= 1 (epochs) or None, got 0"),
        ({"lr": -1.0}, "lr must be a positive finite number, got -1.0"),
    ],
)
def test_bad_recipe_values_are_one_line(kwargs, message) -> None:
    with pytest.raises(ValueError) as info:
        TrainConfig(**kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


_SHORT = [*synthetic_cli(10, 16), *TINY_CLI, "--epochs", "1", "--min-epochs", "1", "--no-plots"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--iterations", "5"], "--iterations applies to --recipe field, but the recipe is paper"),
        (["--recipe", "field", "--augment"], "--recipe field augments on its own"),
        (["--recipe", "slow"], "argument --recipe: invalid choice: 'slow'"),
        (
            ["--patch", "8", "8", "--augment"],
            "the default recipe of 2D patches, augments on its own",
        ),
        (["--patch", "8", "8", "--patches-per-image", "2"], "drop it, or add --recipe paper"),
        (["--recipe", "field", "--patch", "8", "8", "--patches-per-image", "2"], "--iterations"),
    ],
)
def test_cli_recipe_errors_are_one_line(args, message, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    status, _, err = _run(["train", *_SHORT, *args, "--out", str(out)], capsys)
    assert status == 2
    assert message in _one_error_line(err, "train")


def test_each_task_family_gets_its_measured_recipe_and_the_papers_is_one_switch() -> None:
    assert TrainConfig().recipe == "paper"  # whole slices: not compared yet
    assert TrainConfig(patch=[32, 32]).recipe == "field"  # measured better at equal steps
    assert TrainConfig(patch=[16, 16, 16]).recipe == "paper"  # measured better at equal steps
    assert TrainConfig(patch=[32, 32], recipe="paper").recipe == "paper"
    assert {task_family(None), task_family([8, 8]), task_family([8, 8, 8])} == set(DEFAULT_RECIPE)
    # a record without a recipe is a paper run's (written before the field recipe, or a paper
    # run now: it stores none), whatever its patch
    assert TrainConfig.from_dict({"patch": [32, 32]}).recipe == "paper"


def test_a_new_patch_run_trains_with_the_field_recipe_and_its_resume_keeps_it(
    tmp_path: Path, capsys
) -> None:
    out = tmp_path / "run"
    argv = ["train", *_SHORT, "--patch", "8", "8", "--iterations", "2", "--batch-size", "2"]
    status, said, err = _run([*argv, "--out", str(out)], capsys)
    assert status == 0, err
    assert "recipe field" in said
    saved = json.loads((out / "config.json").read_text())["train_config"]
    assert saved["recipe"] == "field" and saved["iterations"] == 2
    paper = tmp_path / "paper"
    argv = ["train", *_SHORT, "--patch", "8", "8", "--batch-size", "2", "--recipe", "paper"]
    status, said, err = _run([*argv, "--out", str(paper)], capsys)
    assert status == 0, err
    more = [*_SHORT, "--patch", "8", "8", "--epochs", "2", "--batch-size", "2"]
    status, said, err = _run(["train", *more, "--out", str(paper), "--resume"], capsys)
    assert status == 0, err  # resumed as the paper run it is, not as a new patch run
    assert "recipe field" not in said
    assert "recipe" not in json.loads((paper / "config.json").read_text())["train_config"]


def test_cli_resume_keeps_the_runs_recipe(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    field = ["--recipe", "field", "--iterations", "2", "--batch-size", "2"]
    status, said, err = _run(["train", *_SHORT, *field, "--out", str(out)], capsys)
    assert status == 0, err
    assert "recipe field" in said
    more = [*_SHORT, "--epochs", "2", "--batch-size", "2"]  # no --recipe, no --iterations
    status, said, err = _run(["train", *more, "--out", str(out), "--resume"], capsys)
    assert status == 0, err
    saved = json.loads((out / "config.json").read_text())
    assert saved["train_config"]["recipe"] == "field"
    assert len((out / "log.csv").read_text().splitlines()) == 3  # header + 2 epochs
