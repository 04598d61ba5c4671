"""LabelRule: the stated mapping from raw label values to each label mode's mask."""

from __future__ import annotations

import numpy as np
import pytest

from dsplug.data import DataError, LabelRule


def test_binary_values_and_foreground() -> None:
    raw = np.array([[0, 255], [255, 0]], np.uint8)
    assert LabelRule.binary((0, 255)).apply(raw, "m.png").tolist() == [[0, 1], [1, 0]]
    inverted = LabelRule.binary((0, 255), foreground=(0,))
    assert inverted.apply(raw, "m.png").tolist() == [[1, 0], [0, 1]]
    with pytest.raises(DataError, match=r"m\.png: unexpected label values \[7\]"):
        LabelRule.binary((0, 255)).apply(np.array([0, 7, 255]), "m.png")
    with pytest.raises(ValueError, match="proper subset"):
        LabelRule.binary((0, 1), foreground=(0, 1))


def test_threshold_accepts_any_value() -> None:
    rule = LabelRule.threshold(127)
    assert rule.apply(np.array([0, 127, 128, 300.5]), "x").tolist() == [0, 0, 1, 1]
    assert rule.label_mode == "binary" and rule.classes == 1


def test_multiclass_by_position_of_the_value() -> None:
    rule = LabelRule.multiclass((0, 128, 255), names=("bg", "a", "b"))
    raw = np.array([255, 0, 128, 128], np.int32)
    assert rule.apply(raw, "x").tolist() == [2, 0, 1, 1] and rule.classes == 3
    float_labels = np.array([0.0, 2.0, 1.0], np.float32)
    assert LabelRule.multiclass((0, 1, 2)).apply(float_labels, "x").tolist() == [0, 2, 1]


def test_multilabel_regions_and_large_values() -> None:
    rule = LabelRule.multilabel({"WT": (1, 2, 3, 4), "TC": (1, 3, 4), "ET": (4,)})
    raw = np.array([0, 1, 2, 3, 4])
    out = rule.apply(raw, "seg.nii.gz")
    assert out.shape == (3, 5)
    assert out.tolist() == [[0, 1, 1, 1, 1], [0, 1, 0, 1, 1], [0, 0, 0, 0, 1]]
    big = LabelRule.multiclass((0, 1000, -5))
    assert big.apply(np.array([1000, -5, 0]), "x").tolist() == [1, 2, 0]


@pytest.mark.parametrize(
    "rule",
    [
        LabelRule.binary((0, 255)),
        LabelRule.threshold(0.5),
        LabelRule.multiclass((0, 1, 2), ("bg", "ant", "post")),
        LabelRule.multilabel({"WT": (1, 2), "ET": (2,)}, values=(0, 1, 2, 3)),
    ],
)
def test_config_round_trip(rule) -> None:
    assert LabelRule.from_config(rule.config()) == rule


def test_bad_rules() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        LabelRule.multiclass((0,))
    with pytest.raises(TypeError, match="integers"):
        LabelRule.binary((0, 1.5))
    with pytest.raises(ValueError, match="must all be in values"):
        LabelRule.multilabel({"a": (5,)}, values=(0, 1))
    with pytest.raises(DataError, match="NaN"):
        LabelRule.multiclass((0, 1)).apply(np.array([0.0, np.nan]), "x")
