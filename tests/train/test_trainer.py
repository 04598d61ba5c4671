"""The Trainer end to end on tiny synthetic data: losses, logs, checkpoints, plots, the
schedule, early stopping, NaN handling and resume checks."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from dsplug.train import NonFiniteLossError, Trainer, build_model, load_checkpoint
from dsplug.train.schedule import ds_progress

from .conftest import tiny_config, tiny_ds, tiny_sets

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def sets() -> dict:
    return tiny_sets(num_cases=20)  # 14 train, 2 val, 4 test phantoms of 32 px


@pytest.mark.parametrize("mode", ["none", "hyb"])
def test_two_epochs_lower_the_loss_and_write_the_run(mode: str, sets: dict, tmp_path: Path) -> None:
    ds = tiny_ds(mode, sets["train"])
    progress: list[float] = []
    set_progress = ds.set_progress
    ds.set_progress = lambda p: (progress.append(p), set_progress(p))[1]
    out = tmp_path / mode
    trainer = Trainer(
        ds, sets["train"], sets["val"], out=out, test_data=sets["test"], config=tiny_config()
    )
    summary = trainer.fit()

    rows = _rows(out / "log.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["loss"]) < float(rows[0]["loss"])
    x, y = sets["train"][0]["image"][None], sets["train"][0]["mask"][None]
    ds.train()
    term_names = ds.loss(ds(x, y), y).terms  # every term of the mode is logged
    assert {f"loss/{name}" for name in term_names} <= set(rows[0])
    for name in ("dice", "ppv", "sen", "iou", "avg_m"):
        assert 0 <= float(rows[1][f"val_{name}"]) <= 1
    assert [float(r["lr"]) for r in rows] == [3e-4, 3e-4]
    assert progress == [ds_progress(1, 2), ds_progress(2, 2)] == [0.0, 1.0]

    for name in ("curves.png", "overlays.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    assert {r["case"] for r in _rows(out / "test_cases.csv")} == set(sets["test"].cases)
    assert len(_rows(out / "val_cases.csv")) == len(sets["val"].cases)
    written = json.loads((out / "summary.json").read_text())
    assert written["efficiency"]["epoch"] == summary["efficiency"]["epoch"] >= 1
    assert written["test"]["cases"] == len(sets["test"].cases)

    last, best = load_checkpoint(out / "last.pt"), load_checkpoint(out / "best.pt")
    assert last["epoch"] == 2 and best["epoch"] == summary["efficiency"]["epoch"]
    assert last["wrapper_config"]["mode"] == mode
    assert len(last["history"]) == 2
    # evaluate / predict rebuild the bare model from the checkpoint alone.
    bare = build_model(last["model_config"])
    bare.load_state_dict(last["model_state"])
    assert all(torch.equal(last["model_state"][k], v) for k, v in bare.state_dict().items())


def test_early_stopping_stops_where_the_rule_says(sets: dict, tmp_path: Path) -> None:
    config = tiny_config(max_epochs=5, min_epochs=1, lr=3e-3)
    trainer = Trainer(
        tiny_ds("none", sets["train"]), sets["train"], sets["val"], out=tmp_path, config=config
    )
    trainer.fit()
    scores = [row["val_avg_m"] for row in trainer.history]
    best_epoch, best, stop = 0, float("-inf"), None
    for e, score in enumerate(scores, start=1):  # the rule, applied to the logged scores
        if score > best:
            best_epoch, best = e, score
        if e >= max(1, 2 * best_epoch) or e == 5:
            stop = e
            break
    assert len(trainer.history) == stop
    assert trainer.history[-1]["best_epoch"] == best_epoch
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == best_epoch
    # After fit, the model holds the best epoch's weights.
    best_state = load_checkpoint(tmp_path / "best.pt")["model_state"]
    assert all(torch.equal(v, trainer.ds.model.state_dict()[k]) for k, v in best_state.items())


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    sets: dict, tmp_path: Path
) -> None:
    ds = tiny_ds("hyb", sets["train"])
    real_loss, calls = ds.loss, []

    def poisoned(out, y):
        breakdown = real_loss(out, y)
        calls.append(1)
        if len(calls) == 6:  # epoch 2 (4 steps per epoch), second step
            breakdown.total = breakdown.total * float("nan")
        return breakdown

    ds.loss = poisoned
    trainer = Trainer(ds, sets["train"], sets["val"], out=tmp_path, config=tiny_config())
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 2.*last\.pt.*epoch 1.*intact"):
        trainer.fit()
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["epoch"] == 1
    assert all(
        torch.isfinite(v).all() for v in ckpt["model_state"].values() if v.is_floating_point()
    )
    assert len(_rows(tmp_path / "log.csv")) == 1


def test_resume_refuses_other_settings(sets: dict, tmp_path: Path) -> None:
    Trainer(
        tiny_ds("none", sets["train"]),
        sets["train"],
        sets["val"],
        out=tmp_path,
        config=tiny_config(max_epochs=1, min_epochs=1),
    ).fit()
    other = Trainer(
        tiny_ds("none", sets["train"]),
        sets["train"],
        sets["val"],
        out=tmp_path,
        config=tiny_config(max_epochs=2, min_epochs=1, lr=1e-3),
    )
    with pytest.raises(ValueError, match=r"Cannot resume.*lr: checkpoint 0\.0003, now 0\.001"):
        other.fit(resume=True)
    with pytest.raises(Exception, match=r"nothing[/\\]last\.pt.*does not exist"):
        Trainer(
            tiny_ds("none", sets["train"]),
            sets["train"],
            sets["val"],
            out=tmp_path / "nothing",
            config=tiny_config(),
        ).fit(resume=True)


def test_amp_on_cpu_is_refused(sets: dict, tmp_path: Path) -> None:
    trainer = None
    with pytest.raises(ValueError, match="amp='fp16' needs CUDA"):
        trainer = Trainer(
            tiny_ds("none", sets["train"]),
            sets["train"],
            sets["val"],
            out=tmp_path,
            config=tiny_config(amp="fp16"),
            device="cpu",
        )
    assert trainer is None


def test_resume_heals_a_best_checkpoint_lost_in_a_crash(sets: dict, tmp_path: Path) -> None:
    def trainer(epochs: int) -> Trainer:
        config = tiny_config(max_epochs=epochs, min_epochs=epochs)
        return Trainer(
            tiny_ds("none", sets["train"]), sets["train"], sets["val"], out=tmp_path, config=config
        )

    trainer(1).fit()  # epoch 1 is the best so far
    (tmp_path / "best.pt").unlink()  # as if the process died between last.pt and best.pt
    resumed = trainer(2)
    resumed.fit(resume=True)
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == resumed.history[-1]["best_epoch"]
    assert [row["epoch"] for row in resumed.history] == [1, 2]
