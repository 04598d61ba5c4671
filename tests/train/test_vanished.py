"""A class that vanishes from every validation prediction is one warning line when it happens
(any mode), once per class per run (issue 29)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from dsplug.metrics import CaseMetrics
from dsplug.train import Trainer
from dsplug.train.absent import VanishedClasses, predicted_classes

from .conftest import tiny_config, tiny_ds, tiny_sets

BOTH = [[2, 1, 3], [3, 1, 0]]  # (tp, fp, fn) of classes 1 and 2: both predicted
LOST_1 = [[0, 0, 5], [3, 1, 0]]  # class 1 in the masks, in no prediction
LOST_2 = [[2, 0, 1], [0, 0, 4]]


def _counts(tp_fp_fn: list[list[int]]) -> CaseMetrics:
    metrics = CaseMetrics()
    metrics.update(torch.tensor([tp_fp_fn]), ["a"], [0])
    return metrics


def test_vanished_classes_are_said_once_each() -> None:
    watch = VanishedClasses("multiclass")
    assert predicted_classes(_counts(LOST_1)) == [2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert watch.check(_counts(LOST_1), epoch=1) == []  # class 1 never predicted yet
        assert watch.check(_counts(BOTH), epoch=2) == []
    with pytest.warns(UserWarning, match=r"^validation of epoch 3: class 1 vanished") as record:
        assert watch.check(_counts(LOST_1), epoch=3) == [1]
    assert len(record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert watch.check(_counts(LOST_1), epoch=4) == []  # said already
        assert watch.check(_counts(LOST_2), epoch=5, warn=False) == [2]  # another rank
    assert watch.warned == {1, 2}


def test_the_trainer_says_a_vanished_class_once_in_validation(tmp_path: Path) -> None:
    data = tiny_sets(num_cases=10, label_mode="multiclass")  # classes 1 and 2
    ds = tiny_ds("none", data["train"])
    trainer = Trainer(
        ds, data["train"], data["val"], out=tmp_path, config=tiny_config(max_epochs=3)
    )
    validate, epochs = trainer._validate, []

    def collapsing(data, desc: str) -> CaseMetrics:  # class 1 everywhere, then nowhere
        if desc.startswith("validate"):
            epochs.append(desc)
            with torch.no_grad():
                ds.model.head.bias[1] = 1e4 if len(epochs) == 1 else -1e4
        return validate(data, desc)

    trainer._validate = collapsing
    with pytest.warns(UserWarning) as record:
        trainer.fit()  # class 1 vanishes in epochs 2 and 3: said once
    lines = [str(w.message) for w in record if "vanished" in str(w.message)]
    assert lines == [
        "validation of epoch 2: class 1 vanished from every prediction, though earlier epochs "
        "predicted it and the masks hold it (a collapse); said once per class."
    ]
