"""benchmarks/native/native_3d.py and benchmarks/native/isbi_patches.py: their --quick paths on
the real data (skipped when absent; a failure on CI), --reuse, and the direction of "better" for
HD95."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks.native import isbi_patches, native_3d
from tests.data.conftest import require_data

pytestmark = [pytest.mark.data, pytest.mark.slow]


def _run(metrics: dict[str, float], case: str = "c1") -> dict:
    return {"cases": {case: metrics, "c2": metrics}}


def test_hd95_counts_lower_as_better() -> None:
    runs = {}
    for seed in (0, 1, 2):
        runs[f"unet/none/{seed}"] = _run({"dice": 0.5, "hd95": 5.0, "nsd": 0.5})
        runs[f"unet/hyb/{seed}"] = _run({"dice": 0.6 + seed / 100, "hd95": 4.0, "nsd": math.nan})
    cmp = native_3d._compare(runs, "unet", "none", "hyb", [0, 1, 2])
    assert cmp["dice"]["better_in"] == "3 of 3 seeds" and cmp["dice"]["p"] < 0.01
    assert cmp["hd95"]["better_in"] == "3 of 3 seeds"  # lower HD95 is better
    assert cmp["hd95"]["per_seed_diff"] == [-1.0, -1.0, -1.0]
    assert cmp["nsd"]["nan_values_skipped"] == 6 and cmp["nsd"]["n_seeds"] == 0  # no crash
    a = [{"cases": {"s": {"dice": 0.7, "hd95": 9.0, "nsd": 0.4}}}] * 2
    b = [{"cases": {"s": {"dice": 0.6, "hd95": 3.0, "nsd": 0.5}}}] * 2
    isbi = isbi_patches._compare(a, b)
    assert isbi["dice"]["better_seeds"] == 2 and isbi["hd95"]["better_seeds"] == 0


def test_native_3d_quick_and_reuse(tmp_path: Path, capsys) -> None:
    data = require_data("Task04_Hippocampus")
    out, path = tmp_path / "runs", tmp_path / "n3.json"
    argv = ["--quick", "--data", str(data), "--out-dir", str(out), "--json", str(path)]
    assert native_3d.main(argv) == 0
    result = json.loads(path.read_text())
    assert result["complete"] and result["settings"]["quick"] and len(result["runs"]) == 4
    for net in ("unet", "monai-dynunet"):
        entry = result["summary"][net]
        assert set(entry["hyb_minus_none"]) == {"dice", "hd95", "nsd"}
        assert entry["hyb_minus_none"]["dice"]["better_in"].endswith("of 1 seeds")
        assert 0.0 <= entry["none"]["dice"] <= 1.0
    run = result["runs"]["monai-dynunet/hyb/0"]
    assert run["test"]["cases"] == 2 and run["epochs_run"] == 1 and not run["reused"]
    assert native_3d.main([*argv, "--reuse"]) == 0  # rebuilt from the folders, no training
    again = json.loads(path.read_text())
    assert again["runs_reused"] == 4 and again["summary"] == result["summary"]


def test_isbi_patches_quick_takes_the_same_steps(tmp_path: Path) -> None:
    data = require_data("isbi2012_em_membrane", "train")
    path = tmp_path / "isbi.json"
    assert isbi_patches.main(["--quick", "--data", str(data), "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["complete"] and len(result["runs"]) == 4
    assert [len(result["split"][n]) for n in ("train", "val", "test")] == [15, 3, 12]
    steps = {k: (r["steps_per_epoch"], r["epochs_run"]) for k, r in result["runs"].items()}
    assert len(set(steps.values())) == 1, steps  # both paths: the same optimiser steps
    assert all(r["test"]["cases"] == 12 for r in result["runs"].values())
    summary = result["summary"]
    assert set(summary["patch_minus_resize"]) == {"none", "hyb"}
    assert set(summary["train_time_ratio_patch_over_resize"]) == {"none", "hyb"}
