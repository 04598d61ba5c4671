"""Equal-compute figures of the convergence benchmark (``convergence.analysis.equal_compute``),
on synthetic runs whose answers are known by construction, and their README table."""

from __future__ import annotations

import json

import pytest

from benchmarks.convergence import report
from benchmarks.convergence.analysis import analyse, best_within, upgrade
from tests.test_benchmark_convergence import fake_run

STEP = {"ratios": {"none": {"time": 1.0}, "hyb": {"time": 2.5}, "up": {"time": 1.2}}}
CASE_DICE = [0.70, 0.72, 0.74, 0.76, 0.78, 0.80]


def _run(name: str, seed: int, val: list[float], train_s: list[float], best: int) -> dict:
    """A run record with chosen per-epoch validation Dice, training seconds and best epoch."""
    run = fake_run(name, seed, val, CASE_DICE, 1.0)
    for row, t in zip(run["history"], train_s, strict=True):
        row["train_s"] = t
    run["efficiency"]["epoch"] = best
    return run


def _records() -> dict:
    """Seed 0: none stops by its early stopping (10 epochs >= 2 x best epoch 5) after 10 s;
    hyb (2.5 s an epoch, the step ratio) first reaches none's best 0.8 at epoch 3 (7.5 s) and
    has 0.85 at epoch 4, which ends at exactly 10 s, none's budget.
    Seed 1: none hits the 6-epoch cap (best epoch 6) after 12 s; hyb's measured epochs take
    4 s (not 2.5): 3 epochs fit in 12 s, 2 in 6 none epochs; it reaches 0.7 at epoch 4.
    up: 1 s an epoch, 4 epochs: shorter than none, so none has not ended first."""
    none0 = [0.1, 0.3, 0.5, 0.7, 0.8, 0.78, 0.77, 0.76, 0.75, 0.74]
    hyb0 = [0.5, 0.7, 0.8, 0.85, 0.86, 0.87, 0.88, 0.9, 0.89, 0.88, 0.87, 0.86]
    return {
        ("none", 0): _run("none", 0, none0, [1.0] * 10, 5),
        ("hyb", 0): _run("hyb", 0, hyb0, [2.5] * 12, 8),
        ("up", 0): _run("up", 0, [0.5, 0.6, 0.7, 0.75], [1.0] * 4, 4),
        ("none", 1): _run("none", 1, [0.2, 0.4, 0.5, 0.6, 0.65, 0.7], [2.0] * 6, 6),
        ("hyb", 1): _run("hyb", 1, [0.3, 0.5, 0.6, 0.7, 0.72], [4.0] * 5, 5),
        ("up", 1): _run("up", 1, [0.5, 0.6, 0.7, 0.75], [1.0] * 4, 4),
    }


@pytest.fixture
def result() -> dict:
    return analyse(_records(), STEP)


def test_best_within_a_budget() -> None:
    curve = [{"epoch": e, "val_dice": d, "train_s": 2.0} for e, d in enumerate([0.4, 0.6, 0.5], 1)]
    assert best_within(curve, 1.9) is None  # not even the first epoch fits
    assert best_within(curve, 4.0) == 0.6  # epoch 2 ends exactly at the budget
    assert best_within(curve, 100.0) == 0.6
    assert best_within(curve, 4.0, ratio=2.5) == 0.4  # epoch 2 costs 5 none epochs


def test_hyb_at_equal_compute(result) -> None:
    ec = result["variants"]["hyb"]["equal_compute"]
    s0, s1 = ec["seeds"]
    assert (s0["none_budget_s"], s0["budget_s"], s1["none_budget_s"], s1["budget_s"]) == (
        10.0,
        30.0,
        12.0,
        20.0,
    )
    assert s0["budget_none_epochs"] == 30.0 and s1["budget_none_epochs"] == 12.5
    # (a) hyb within none's budget: epochs 1-4 of seed 0 (s and none epochs alike); seed 1:
    # 3 epochs in 12 measured s, 2 in 6 none epochs / 2.5
    assert s0["val_dice_at_none_budget_s"] == s0["val_dice_at_none_budget_none_epochs"] == 0.85
    assert s1["val_dice_at_none_budget_s"] == 0.6
    assert s1["val_dice_at_none_budget_none_epochs"] == 0.5
    assert ec["at_none_budget_s"]["per_seed_diff"] == pytest.approx([0.05, -0.1])
    assert ec["at_none_budget_none_epochs"]["per_seed_diff"] == pytest.approx([0.05, -0.2])
    assert ec["at_none_budget_s"]["better_seeds"] == 1 and ec["at_none_budget_s"]["n_seeds"] == 2
    # (b) none within hyb's budget: none had ended first, by early stopping in seed 0 and at
    # the cap in seed 1, so its value is its best
    assert s0["none_val_dice_at_budget_s"] == 0.8 and s1["none_val_dice_at_budget_s"] == 0.7
    assert (s0["none_end"], s1["none_end"]) == ("early_stopping", "epoch_cap")
    assert s0["none_ended_first_s"] and s1["none_ended_first_none_epochs"]
    assert ec["at_budget_s"]["per_seed_diff"] == pytest.approx([0.1, 0.02])
    assert ec["at_budget_s"]["better_seeds"] == 2
    assert ec["none_ended_first_s"] == {"early_stopping": 1, "epoch_cap": 1}
    # compute to none's best over none's compute to it: seed 0 7.5 s / 5 s and 7.5 / 5 none
    # epochs; seed 1 16 s / 12 s and 4 x 2.5 / 6 none epochs
    assert s0["time_to_target_ratio_s"] == pytest.approx(1.5)
    assert s1["time_to_target_ratio_s"] == pytest.approx(16 / 12)
    assert s1["time_to_target_ratio_none_epochs"] == pytest.approx(10 / 6)
    assert s1["measured_epoch_ratio"] == pytest.approx(2.0)
    assert result["variants"]["none"]["equal_compute"] is None


def test_none_that_ran_longer_is_cut_at_the_variant_budget(result) -> None:
    s0 = result["variants"]["up"]["equal_compute"]["seeds"][0]
    assert not s0["none_ended_first_s"] and not s0["none_ended_first_none_epochs"]
    assert s0["none_val_dice_at_budget_s"] == 0.7  # none's epochs 1-4 in up's 4 s
    assert s0["none_val_dice_at_budget_none_epochs"] == 0.7  # 4 x 1.2 none epochs
    assert s0["val_dice_at_none_budget_s"] == 0.75  # all of up fits in none's 10 s


def test_upgrade_adds_the_figures_to_a_stored_result(result) -> None:
    stored = json.loads(json.dumps({"config": {"min_epochs": 2}, **result}))
    for v in stored["variants"].values():
        del v["equal_compute"]
    upgraded = upgrade(stored)
    assert upgraded["variants"]["hyb"]["equal_compute"] == json.loads(
        json.dumps(result["variants"]["hyb"]["equal_compute"])
    )
    assert "equal_compute" in upgraded["config"]
    no_stopping = upgrade({"config": {}, **json.loads(json.dumps(result))})
    seeds = no_stopping["variants"]["hyb"]["equal_compute"]["seeds"]
    assert {s["none_end"] for s in seeds} == {"epoch_cap"}  # fixed epochs: every run capped


def test_report_renders_the_equal_compute_table(result) -> None:
    conv = {
        "config": {"dataset": "Task04_Hippocampus", "epochs": 10, "cases": {"val": ["a", "b"]}},
        **result,
    }
    text = report.render_equal_compute(conv)
    row = next(line for line in text.splitlines() if line.startswith("| `hyb` |"))
    assert "| 2.50 |" in row
    assert "| -0.0250 (1/2, p = " in row  # at none's budget, s: +0.05, -0.1
    assert "| +0.0600 (2/2, p = " in row  # at hyb's budget: +0.1, +0.02
    assert "| 1 / 1 · 1 / 1 |" in row
    assert "at `none`'s budget -0.0750, better in 1 of 2 seeds (+0.0500 (seed 0)" in text
    assert "(1 by its early stopping, 1 at the 10-epoch cap)" in text
    assert "Validation has 2 cases here" in text and "(setting ?, at most 10 epochs)" in text
    short = report.render_equal_compute(conv, full_caption=False)
    assert "Columns as in the first" in short and "*At none's budget*" not in short


def test_each_convergence_section_carries_its_equal_compute_table(result) -> None:
    conv = {"config": {"dataset": "Task04_Hippocampus", "epochs": 10}, **result}
    first = report.render_convergence(conv, with_paper=True)
    later = report.render_convergence(conv, with_paper=False)
    assert "#### Equal compute on Task04_Hippocampus" in first and "*At none's budget*" in first
    assert "Columns as in the first equal-compute table" in later
