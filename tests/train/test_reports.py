"""CSV / JSON logs, PNG plots and the run comparison tables."""

from __future__ import annotations

import csv
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from dsplug.train import efficiency
from dsplug.train.compare import compare_runs
from dsplug.train.plots import OverlaySample, mask_to_labels, plot_curves, plot_overlays
from dsplug.train.runlog import RunLog, write_csv, write_json

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _history(n: int = 3) -> list[dict]:
    return [
        {
            "epoch": e,
            "loss": 1.0 / e,
            "loss/image": 0.5 / e,
            "val_dice": 0.2 * e,
            "val_ppv": 0.2 * e,
            "val_sen": 0.2 * e,
            "val_iou": 0.1 * e,
            "val_avg_m": 0.15 * e,
            "best_epoch": e,
            "train_s": 2.0 * e,
            "wall_s": 3.0 * e * (e + 1) / 2,
        }
        for e in range(1, n + 1)
    ]


def test_csv_has_the_union_of_columns_and_is_rewritten(tmp_path: Path) -> None:
    log = RunLog(tmp_path, tensorboard=False)
    log.log([{"epoch": 1, "loss": 1.0}])
    log.log([{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5, "val_dice": 0.3}])
    log.close()
    with open(tmp_path / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert list(rows[0]) == ["epoch", "loss", "val_dice"]
    assert rows[0]["val_dice"] == "" and rows[1]["val_dice"] == "0.3"


def test_json_writes_non_finite_as_null(tmp_path: Path) -> None:
    write_json(tmp_path / "s.json", {"a": float("nan"), "b": [1.0, float("inf")]})
    assert json.loads((tmp_path / "s.json").read_text()) == {"a": None, "b": [1.0, None]}


def test_plots_are_png_files(tmp_path: Path) -> None:
    curves = plot_curves(_history(), tmp_path / "curves.png")
    assert curves.read_bytes()[:8] == PNG_MAGIC
    rng = np.random.default_rng(0)
    sample = OverlaySample(
        image=rng.normal(size=(1, 20, 24)),
        truth=(rng.random((20, 24)) > 0.5).astype(int),
        prediction=(rng.random((20, 24)) > 0.5).astype(int) * 2,
        title="case / 3",
    )
    overlays = plot_overlays([sample, sample], tmp_path / "overlays.png")
    assert overlays.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="at least one sample"):
        plot_overlays([], tmp_path / "none.png")


def test_mask_to_labels_for_each_label_mode() -> None:
    binary = np.zeros((1, 4, 4))
    binary[0, 1, 1] = 1
    assert mask_to_labels(binary, "binary").sum() == 1
    multilabel = np.zeros((3, 4, 4))
    multilabel[:, 0, 0] = 1  # nested regions: the last channel is drawn on top
    multilabel[0, 2, 2] = 1
    labels = mask_to_labels(multilabel, "multilabel")
    assert labels[0, 0] == 3 and labels[2, 2] == 1 and labels[3, 3] == 0
    multiclass = np.array([[0, 2], [1, 0]])
    assert np.array_equal(mask_to_labels(multiclass, "multiclass"), multiclass)
    with pytest.raises(ValueError, match="multiclass mask must be"):
        mask_to_labels(binary, "multiclass")


def test_efficiency_follows_the_paper() -> None:
    history = _history(4)
    history[-1]["best_epoch"] = 2
    eff = efficiency(history, target_dice=0.5)
    avg_t = np.mean([2.0, 4.0, 6.0, 8.0])
    assert eff["avg_t_s"] == pytest.approx(avg_t)
    assert eff["epoch"] == 2
    assert eff["tot_t_s"] == pytest.approx(2 * avg_t)
    assert eff["epoch_to_target"] == 3  # val_dice 0.6 >= 0.5 first at epoch 3
    assert eff["time_to_target_s"] == pytest.approx(history[2]["wall_s"])
    assert efficiency(history, target_dice=0.99)["time_to_target_s"] is None


def _fake_run(folder: Path, mode: str, dice: dict[str, float], order: list[str]) -> Path:
    folder.mkdir(parents=True)
    write_json(
        folder / "summary.json",
        {"mode": mode, "efficiency": {"avg_t_s": 1.5, "epoch": 4, "tot_t_s": 6.0}},
    )
    rows = [
        {"case": c, "dice": dice[c], "ppv": 0.5, "sen": 0.5, "iou": 0.5, "avg_m": 0.5}
        for c in order
    ]
    write_csv(folder / "test_cases.csv", rows)
    return folder


@pytest.mark.filterwarnings("ignore:only 8 paired test case")
def test_compare_pairs_cases_by_name(tmp_path: Path) -> None:
    cases = [f"case{i}" for i in range(8)]
    rng = np.random.default_rng(1)
    a = {c: float(v) for c, v in zip(cases, rng.uniform(0.5, 0.8, 8))}
    b = {c: float(v) for c, v in zip(cases, rng.uniform(0.6, 0.9, 8))}
    run_a = _fake_run(tmp_path / "none", "none", a, cases)
    run_b = _fake_run(tmp_path / "hyb", "hyb", b, cases[::-1])  # rows in another order
    text = compare_runs([run_a, run_b], tmp_path / "cmp")
    with open(tmp_path / "cmp" / "compare_metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    va, vb = [a[c] for c in cases], [b[c] for c in cases]
    assert float(rows[1]["p_wilcoxon"]) == pytest.approx(stats.wilcoxon(vb, va).pvalue)
    assert float(rows[1]["p_ttest"]) == pytest.approx(stats.ttest_rel(vb, va).pvalue)
    assert float(rows[1]["dice"]) == pytest.approx(np.mean(vb))
    assert rows[0]["p_wilcoxon"] == ""
    assert "Tot.T" in text and (tmp_path / "cmp" / "compare_efficiency.csv").is_file()


def test_compare_refuses_mismatched_cases_and_single_runs(tmp_path: Path) -> None:
    run_a = _fake_run(tmp_path / "a", "none", {"x": 0.5, "y": 0.6}, ["x", "y"])
    run_b = _fake_run(tmp_path / "b", "hyb", {"x": 0.5, "z": 0.6}, ["x", "z"])
    with pytest.raises(ValueError, match="different cases"):
        compare_runs([run_a, run_b])
    with pytest.raises(ValueError, match="two or more"):
        compare_runs([run_a])
    with pytest.raises(ValueError, match="no finished run"):
        compare_runs([run_a, tmp_path])


def test_tensorboard_gets_every_numeric_column_when_installed(tmp_path: Path, monkeypatch) -> None:
    calls: list[tuple] = []

    class FakeWriter:
        def __init__(self, log_dir: str, purge_step: int | None = None) -> None:
            calls.append(("init", log_dir, purge_step))

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            calls.append((tag, value, step))

        def flush(self) -> None:
            pass

        def close(self) -> None:
            calls.append(("close",))

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    log = RunLog(tmp_path, tensorboard=True, first_epoch=3)
    assert log.tensorboard_enabled
    log.log([{"epoch": 3, "loss": 0.5, "val_dice": 0.7, "note": "text"}])
    log.close()
    assert calls == [
        ("init", str(tmp_path / "tb"), 3),
        ("loss", 0.5, 3),
        ("val_dice", 0.7, 3),
        ("close",),
    ]
