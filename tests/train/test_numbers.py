"""Every number a user reads is the number of what they ran: ``predict`` writes what
``evaluate`` scores, ``compare`` pairs only runs of one data set and one NSD tolerance, an
empty prediction is not a perfect PPV, and silent degenerate training is named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dsplug.data import build_datasets
from dsplug.metrics import CaseMetrics
from dsplug.train.native import score_dataset
from dsplug.train.predict import predict_file


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
