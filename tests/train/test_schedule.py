"""The paper's learning-rate schedule (§4.3) and its early-stopping rule."""

from __future__ import annotations

import math

import pytest
import torch

from dsplug.train.schedule import EarlyStopping, ds_progress, paper_optimizer, paper_scheduler


def _stop_epoch_oracle(scores: list[float], min_epochs: int, max_epochs: int) -> tuple[int, int]:
    """Direct reading of the rule: returns (stop epoch, best epoch)."""
    best_epoch, best = 0, -math.inf
    for e in range(1, max_epochs + 1):
        if scores[e - 1] > best:
            best_epoch, best = e, scores[e - 1]
        if e == max_epochs or e >= max(min_epochs, 2 * best_epoch):
            return e, best_epoch
    raise AssertionError("unreachable")


def _run(stop: EarlyStopping, scores: list[float]) -> int:
    for e, s in enumerate(scores, start=1):
        if stop.update(e, s):
            return e
    raise AssertionError("never stopped")


@pytest.mark.parametrize(
    ("scores", "min_epochs", "max_epochs"),
    [
        ([0.1, 0.3, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2], 3, 8),  # best 2 -> stop at 4
        ([0.1, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3], 1, 8),  # ties do not improve
        ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], 1, 8),  # always improving: max_epochs
        ([0.5, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1], 6, 8),  # min_epochs dominates
        ([0.5, 0.4, 0.3, 0.2, 0.1, 0.0, 0.0, 0.0], 1, 8),  # best at 1: stop at 2
    ],
)
def test_early_stopping_matches_the_rule(scores, min_epochs, max_epochs) -> None:
    expected_stop, expected_best = _stop_epoch_oracle(scores, min_epochs, max_epochs)
    stop = EarlyStopping(max_epochs=max_epochs, min_epochs=min_epochs)
    assert _run(stop, scores) == expected_stop
    assert stop.best_epoch == expected_best


def test_tie_does_not_improve_and_nan_never_improves() -> None:
    stop = EarlyStopping(max_epochs=10)
    assert stop.improved(1, 0.5)
    assert not stop.improved(2, 0.5)
    assert not stop.improved(3, float("nan"))
    assert (stop.best_epoch, stop.best_score) == (1, 0.5)


def test_state_round_trip() -> None:
    stop = EarlyStopping(max_epochs=20, min_epochs=4)
    stop.update(1, 0.2)
    stop.update(2, 0.7)
    again = EarlyStopping.from_state(stop.state())
    assert again == stop
    assert again.should_stop(4) and not again.should_stop(3)


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="min_epochs"):
        EarlyStopping(max_epochs=3, min_epochs=4)
    with pytest.raises(ValueError, match="max_epochs"):
        EarlyStopping(max_epochs=0)
    with pytest.raises(ValueError, match="lr"):
        paper_optimizer([torch.nn.Parameter(torch.zeros(1))], lr=-1.0)


def test_learning_rate_decays_by_0_9_every_3_epochs() -> None:
    opt = paper_optimizer([torch.nn.Parameter(torch.zeros(1))])
    sched = paper_scheduler(opt)
    seen = []
    for _ in range(10):  # the lr used during epochs 1..10
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [3e-4 * 0.9 ** ((e - 1) // 3) for e in range(1, 11)]
    assert seen == pytest.approx(expected, rel=1e-12)
    assert isinstance(opt, torch.optim.Adam)


def test_ds_progress_runs_from_0_to_1() -> None:
    assert ds_progress(1, 10) == 0.0
    assert ds_progress(10, 10) == 1.0
    assert ds_progress(4, 7) == pytest.approx(0.5)
    assert ds_progress(1, 1) == 0.0
