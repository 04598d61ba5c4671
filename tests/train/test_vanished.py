"""A class that vanishes from every validation prediction is one warning line when it happens
(any mode), once per class per run (issue 29)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from dsplug.metrics import CaseMetrics
from dsplug.train import Trainer
from dsplug.train.absent import VanishedClasses

from .conftest import tiny_config, tiny_ds, tiny_sets


def _counts(tp_fp_fn: list[list[int]]) -> CaseMetrics:
    metrics = CaseMetrics()
    metrics.update(torch.tensor([tp_fp_fn]), ["a"], [0])
    return metrics


def test_vanished_classes_are_said_once_each() -> None:
    watch = VanishedClasses("multiclass")
    with pytest.warns(UserWarning, match=r"^validation of epoch 2: class 1 vanished") as record:
        assert watch.check(_counts([[0, 0, 5], [3, 1, 0]]), epoch=2) == [1]
    assert len(record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert watch.check(_counts([[0, 0, 5], [3, 1, 0]]), epoch=3) == []  # said already
        assert watch.check(_counts([[0, 0, 5], [0, 0, 0]]), epoch=3) == []  # nothing to predict
        assert watch.check(_counts([[0, 0, 5], [0, 0, 4]]), epoch=4, warn=False) == [2]
    assert watch.warned == {1, 2}


def test_the_trainer_says_a_vanished_class_once_in_validation(tmp_path: Path) -> None:
    data = tiny_sets(num_cases=10, label_mode="multiclass")  # classes 1 and 2
    ds = tiny_ds("none", data["train"])
    with torch.no_grad():
        ds.model.head.bias[1] = -1e4  # class 1 is never the argmax
    trainer = Trainer(ds, data["train"], data["val"], out=tmp_path, config=tiny_config())
    with pytest.warns(UserWarning) as record:
        trainer.fit()  # two epochs: class 1 vanishes in both, said once
    lines = [str(w.message) for w in record if "vanished" in str(w.message)]
    assert lines == [
        "validation of epoch 1: class 1 vanished from every prediction, though the masks hold "
        "it (a collapse, or not learnt yet); said once per class."
    ]
