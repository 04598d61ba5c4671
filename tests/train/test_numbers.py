"""Every number a user reads is the number of what they ran: ``predict`` writes what
``evaluate`` scores, ``compare`` pairs only runs of one data set and one NSD tolerance, an
empty prediction is not a perfect PPV, and silent degenerate training is named."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dsplug.cli import main
from dsplug.data import build_datasets
from dsplug.metrics import CaseMetrics
from dsplug.train import Trainer
from dsplug.train.absent import ForegroundTally, unpredicted_classes
from dsplug.train.compare import compare_runs
from dsplug.train.native import score_dataset
from dsplug.train.predict import predict_file
from dsplug.train.runlog import write_csv, write_json

from .conftest import tiny_config, tiny_ds, tiny_sets


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _write_pngs(root: Path, shape: tuple[int, int] = (40, 52), n: int = 4) -> Path:
    """Gray PNGs of a size that is no multiple of the stride, with 0 / 255 masks."""
    rng = np.random.default_rng(0)
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        mask = np.zeros(shape, np.uint8)
        mask[5 + 3 * i : 30, 8 : 36 + i] = 255
        image = (rng.normal(80, 25, shape) + 0.4 * mask).clip(0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"c{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"c{i}.png")
    return root


def _lopsided_conv() -> torch.nn.Module:
    """A 5x5 conv whose output depends on where a window's borders fall (a stand-in for a
    trained patch model: any change of the tiling changes some pixels)."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 1, 5, padding=2)
    with torch.no_grad():
        conv.weight.normal_()
        conv.weight[..., :2] *= 4.0
        conv.bias.fill_(0.3)
    return conv.eval()


def test_predict_writes_the_masks_that_evaluate_scores_for_a_2d_patch_model(
    tmp_path: Path,
) -> None:
    root = _write_pngs(tmp_path / "data")
    options = {"image": "images/{id}.png", "mask": "masks/{id}.png"}
    splits = {"train": ["c0"], "val": ["c1"], "test": ["c2", "c3"]}
    test = build_datasets(root, kind="folder", splits=splits, cache=False, options=options)["test"]
    model = _lopsided_conv()
    ckpt = {
        "wrapper_config": {"label_mode": "binary"},
        "data_config": {"test": test.config()},
        "train_config": {"patch": [32, 32]},
    }
    scored = score_dataset(model, test, "binary", torch.device("cpu"), patch=[32, 32])
    written = CaseMetrics()
    for case in ("c2", "c3"):
        mask = predict_file(model, ckpt, [root / "images" / f"{case}.png"], tmp_path / "p")
        pred = torch.from_numpy(np.asarray(Image.open(mask)) > 0)
        truth = torch.from_numpy(np.asarray(Image.open(root / "masks" / f"{case}.png")) > 0)
        assert pred.shape == (40, 52)
        assert 0 < int(pred.sum()) < pred.numel()  # not a trivial mask
        tp = int((pred & truth).sum())
        counts = torch.tensor([[[tp, int(pred.sum()) - tp, int(truth.sum()) - tp]]])
        written.update(counts, [case], [0])
    assert written.case_counts().keys() == scored.case_counts().keys()
    for case, counts in scored.case_counts().items():
        assert torch.equal(written.case_counts()[case], counts), case
    assert written.summary()["dice"] == scored.summary()["dice"]


def test_an_empty_prediction_of_foreground_scores_ppv_zero_not_one() -> None:
    metrics = CaseMetrics()  # eps = 1, the paper's smoothing
    metrics.update(torch.tensor([[[0, 0, 12]]]), ["missed"], [0])  # nothing predicted
    metrics.update(torch.tensor([[[0, 7, 0]]]), ["invented"], [0])  # nothing to find
    metrics.update(torch.tensor([[[0, 0, 0]]]), ["empty"], [0])  # both empty: right
    cases = metrics.per_case()
    assert cases["missed"]["ppv"] == 0.0 and cases["missed"]["sen"] == pytest.approx(1 / 13)
    assert cases["invented"]["sen"] == 0.0 and cases["invented"]["ppv"] == pytest.approx(1 / 8)
    assert cases["empty"] == dict.fromkeys(cases["empty"], 1.0)
    assert cases["missed"]["avg_m"] < 0.1


# --------------------------------------------------------------------------- compare
def _fake_run(folder: Path, data: dict, tolerance: float = 1.0, nsd: bool = False) -> Path:
    """A finished run's files: summary, 12 per-case rows (c0..c11) and config.json."""
    folder.mkdir(parents=True)
    write_json(folder / "summary.json", {"mode": "none", "efficiency": {"epoch": 1}})
    rows = []
    for i in range(12):
        row = {"case": f"c{i}", "dice": 0.5 + 0.01 * i, "ppv": 0.5, "sen": 0.5, "iou": 0.5}
        rows.append({**row, "avg_m": 0.5, **({"hd95": 2.0, "nsd": 0.4} if nsd else {})})
    write_csv(folder / "test_cases.csv", rows)
    config = {"data_config": {"test": data}, "train_config": {"nsd_tolerance": tolerance}}
    write_json(folder / "config.json", config)
    return folder


def _folder_data(root: str, contents: int = 7) -> dict:
    prints = {f"images/{i}.png": [100, contents] for i in range(12)}
    labels = {"label_mode": "binary", "values": [0, 255], "foreground": [255]}
    return {"kind": "folder", "root": root, "fingerprint": prints, "labels": labels}


def test_compare_refuses_runs_on_other_data_with_the_same_case_names(
    tmp_path: Path, capsys
) -> None:
    a = _fake_run(tmp_path / "a", _folder_data("/data/A"))
    b = _fake_run(tmp_path / "b", _folder_data("/data/B", contents=8))
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dsplug compare: error: run 'b' was scored on")
    assert "other test data than 'a'" in err[0] and "/data/B and /data/A" in err[0]
    assert "12 have other contents (images/0.png" in err[0]
    assert not (tmp_path / "cmp" / "compare.md").exists()
    relabelled = _folder_data("/data/A")
    relabelled["labels"] = {**relabelled["labels"], "foreground": [0]}
    c = _fake_run(tmp_path / "c", relabelled)
    with pytest.raises(ValueError, match="another label rule"):
        compare_runs([a, c])
    synthetic = {"kind": "synthetic", "num_cases": 60, "size": [32, 32], "seed": 0}
    d = _fake_run(tmp_path / "d", synthetic)
    e = _fake_run(tmp_path / "e", {**synthetic, "seed": 1, "augment": {"flip": True}})
    with pytest.raises(ValueError, match="seed 1 vs 0"):
        compare_runs([d, e])


def test_compare_pairs_the_same_files_read_from_another_folder(tmp_path: Path) -> None:
    a = _fake_run(tmp_path / "a", _folder_data("/data/A"))
    b = _fake_run(tmp_path / "b", {**_folder_data("/moved/A"), "preprocessing": {"size": None}})
    assert "| b | none |" in compare_runs([a, b])


def test_compare_shows_the_nsd_tolerance_and_leaves_a_mix_out(tmp_path: Path) -> None:
    data = _folder_data("/data/A")
    a = _fake_run(tmp_path / "a", data, tolerance=1.0, nsd=True)
    b = _fake_run(tmp_path / "b", data, tolerance=1.0, nsd=True)
    c = _fake_run(tmp_path / "c", data, tolerance=2.0, nsd=True)
    text = compare_runs([a, b], tmp_path / "ab")
    assert "nsd | nsd_tolerance_mm" in text and "| 0.4000 | 1.0000 |" in text
    with pytest.warns(UserWarning, match="NSD is left out") as record:
        text = compare_runs([a, c], tmp_path / "ac")
    assert "'a' at 1 mm, 'c' at 2 mm" in str(record[0].message)
    header = text.splitlines()[2]
    assert "hd95" in header and "nsd" not in header
    assert "Warning: NSD is left out" in text


def test_evaluate_scores_nsd_at_the_runs_own_tolerance(tmp_path: Path) -> None:
    run = tmp_path / "run"
    argv = ["train", "--data", "synthetic", "--option", "num_cases=10", "--option", "size=32"]
    argv += [
        "--patch",
        "32",
        "32",
        "--nsd-tolerance",
        "3",
        "--iterations",  # the field recipe (the default of patches) at 2 steps an epoch
        "2",
        "--mode",
        "none",
        "--base-channels",
        "4",
    ]
    argv += ["--depth", "3", "--quiet", "--no-tensorboard", "--no-plots", "--epochs", "1"]
    assert main([*argv, "--min-epochs", "1", "--out", str(run)]) == 0
    out = tmp_path / "eval"
    assert main(["evaluate", str(run / "best.pt"), "--out", str(out), "--no-cache"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["nsd_tolerance_mm"] == 3.0
    trained = json.loads((run / "summary.json").read_text())["test"]
    assert summary["nsd"] == pytest.approx(trained["nsd"], abs=1e-12)  # one number, twice


def test_the_runs_test_cases_are_the_rows_evaluate_writes_per_class_too(tmp_path: Path) -> None:
    run = tmp_path / "run"
    argv = ["train", "--data", "synthetic", "--option", "num_cases=10", "--option", "size=32"]
    argv += ["--option", "label_mode=multiclass", "--mode", "none", "--base-channels", "4"]
    argv += ["--depth", "3", "--quiet", "--no-tensorboard", "--no-plots", "--epochs", "1"]
    assert main([*argv, "--min-epochs", "1", "--out", str(run)]) == 0
    out = tmp_path / "eval"
    assert main(["evaluate", str(run / "best.pt"), "--out", str(out), "--no-cache"]) == 0
    trained, evaluated = (_rows(path) for path in (run / "test_cases.csv", out / "cases.csv"))
    # evaluate's columns in its order (it also scores HD95 and NSD of slices; training does not)
    assert list(trained[0]) == [k for k in evaluated[0] if k in trained[0]]
    assert {"dice_1", "dice_2"} <= set(trained[0])  # each foreground class's Dice
    for a, b in zip(trained, evaluated, strict=True):
        assert a["case"] == b["case"]
        for key in set(a) - {"case"}:
            assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-9, nan_ok=True), key


# --------------------------------------------------------------------------- silent training
class _Relabelled(torch.utils.data.Dataset):
    """A dataset whose masks lose class ``drop`` (set to background), as a label rule may."""

    def __init__(self, data, drop: int) -> None:
        self.data, self.drop = data, drop

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.data[i])
        item["mask"] = torch.where(item["mask"] == self.drop, 0, item["mask"])
        return item


def test_a_class_in_no_mask_and_a_class_never_predicted_each_get_one_warning(
    tmp_path: Path,
) -> None:
    data = tiny_sets(num_cases=10, label_mode="multiclass")  # classes 1 and 2
    ds = tiny_ds("none", data["train"])
    with torch.no_grad():
        ds.model.head.bias[1] = -1e4  # class 1 is never the argmax
    trainer = Trainer(
        ds, _Relabelled(data["train"], drop=2), data["val"], out=tmp_path, config=tiny_config()
    )
    with pytest.warns(UserWarning) as record:
        trainer.fit()
    lines = [str(w.message) for w in record if w.category is UserWarning]
    empty = [m for m in lines if "no training mask" in m]
    missed = [m for m in lines if "in no validation case" in m]
    assert empty == [
        "no training mask of epoch 1 holds class 2: the model learns only background there; "
        "check the masks and their label rule (--option labels=...), and that images and "
        "masks are paired right."
    ]
    assert len(missed) == 1 and missed[0].startswith("the best epoch (")
    assert "predicted class 1 in no validation case" in missed[0]


def test_foreground_tally_and_unpredicted_classes() -> None:
    tally = ForegroundTally("multilabel")
    tally.add(torch.tensor([[[[0, 1]], [[0, 0]], [[1, 0]]]]))
    assert tally.absent(3) == [2]
    metrics = CaseMetrics()
    metrics.update(torch.tensor([[[0, 0, 5], [3, 1, 0], [0, 0, 0]]]), ["a"], [0])
    assert unpredicted_classes(metrics) == [1]  # class 3: nothing to predict, no warning
