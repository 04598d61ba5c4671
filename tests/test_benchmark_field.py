"""benchmarks/field/field.py: its --quick path with the paper's arms on the real data (skipped when
absent; a failure on CI), finished runs read rather than retrained, the paper arm's budget, and
what counts as a collapse."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks.field import field
from benchmarks.field.report import render_field
from tests.data.conftest import require_data


def test_the_paper_arm_takes_about_the_field_recipes_steps() -> None:
    for row, images in (("isbi-patches", 15), ("task04-3d", 150)):
        s = field.BUDGETS[row]
        per_image, epochs = field.paper_epochs(s, images)
        steps = epochs * math.ceil(per_image * images / s["batch_size"])
        budget = s["epochs"] * s["iterations"]
        assert abs(steps - budget) <= 0.05 * budget, (row, steps, budget)
        assert abs(epochs - s["epochs"]) <= 0.5 * s["epochs"], (row, epochs)  # decays as often


def test_paper_arms_name_a_patch_row_and_a_mode() -> None:
    assert field.build_parser().parse_args(["--paper", "task04-3d:hyb"]).paper == [
        ("task04-3d", "hyb")
    ]
    for bad in ("task04-2d:none", "task04-3d", "nowhere:none"):
        with pytest.raises(SystemExit):
            field.build_parser().parse_args(["--paper", bad])


def test_a_class_predicted_nowhere_is_a_collapse() -> None:
    run = {"test": {"dice": 0.45}, "class_dice": {"dice_1": 0.0005, "dice_2": 0.85}}
    assert field.collapsed(run)  # the mean hides it
    assert not field.collapsed({"test": {"dice": 0.45}, "class_dice": {"dice_1": 0.4}})
    assert field.collapsed({"test": {"dice": 0.01}})  # binary: predicts nothing


PAPERS = ["task04-3d:none", "task04-3d:hyb", "isbi-patches:none"]


@pytest.mark.data
@pytest.mark.slow
def test_field_quick_with_the_papers_arms_and_reuse(tmp_path: Path) -> None:
    task04 = require_data("Task04_Hippocampus")
    isbi = require_data("isbi2012_em_membrane", "train")
    out, path = tmp_path / "runs", tmp_path / "field.json"
    argv = ["--quick", "--rows", "isbi-patches", "task04-3d", "--threads", "1", "--paper", *PAPERS]
    argv += ["--task04", str(task04), "--isbi", str(isbi), "--out-dir", str(out)]
    assert field.main([*argv, "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["complete"] and len(result["runs"]) == 7  # 2 rows x (none, hyb) + 3 paper
    assert path.with_suffix(".png").is_file()
    for row in ("isbi-patches", "task04-3d"):
        entry = result["summary"][row]
        assert set(entry) >= {"none", "hyb", "none-paper", "hyb_minus_none"}
        assert "none_minus_none-paper" in entry
        assert result["runs"][f"{row}/none-paper/0"]["recipe"]["name"] == "paper"
        assert result["runs"][f"{row}/hyb/0"]["recipe"]["name"] == "field"
    both = result["summary"]["task04-3d"]
    assert {"hyb-paper", "hyb_minus_hyb-paper", "hyb-paper_minus_none-paper"} <= set(both)
    assert "hyb-paper" not in result["summary"]["isbi-patches"]
    assert set(result["runs"]["task04-3d/none/0"]["class_dice"]) == {"dice_1", "dice_2"}
    assert "paper's recipe" in render_field(result)
    mtime = (out / "task04-3d/hyb/0/summary.json").stat().st_mtime_ns
    again = tmp_path / "again.json"
    assert field.main([*argv, "--json", str(again)]) == 0  # read, not retrained
    assert (out / "task04-3d/hyb/0/summary.json").stat().st_mtime_ns == mtime
    same = json.dumps(json.loads(again.read_text())["summary"]) == json.dumps(result["summary"])
    assert same  # (compared as text: a p of one seed is nan)
    partial = tmp_path / "partial.json"
    more = [*argv, "--paper", *PAPERS, "isbi-patches:hyb", "--no-train", "--json", str(partial)]
    assert field.main(more) == 0  # an arm not trained yet: named, not trained
    assert json.loads(partial.read_text())["missing"] == ["isbi-patches/hyb-paper/0"]
    assert not (out / "isbi-patches/hyb-paper").exists()
