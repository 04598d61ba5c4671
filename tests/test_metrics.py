"""Tests for dsplug.metrics: eq. 14, counting per label mode, per-case aggregation, paired tests."""

from __future__ import annotations

import math
import pickle
import warnings
from fractions import Fraction

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.metrics import DiceMetric, compute_dice
from monai.networks.utils import one_hot
from torch.utils.data import DistributedSampler

from dsplug.metrics import (
    CaseMetrics,
    confusion_counts,
    paired_tests,
    predict,
    scores,
)
from dsplug.metrics.paired import compare_seeds
from dsplug.options import LabelMode

LABEL_MODES = [mode.value for mode in LabelMode]


def eq14(tp: int, fp: int, fn: int, eps: Fraction = Fraction(1)) -> dict[str, Fraction]:
    """Eq. 14 written out by hand with exact fractions (the oracle for the small cases); an
    empty prediction of foreground has PPV 0, a prediction of an empty truth SEN 0."""
    t, p = tp + fn, tp + fp
    values = {
        "dice": (2 * tp + eps) / (t + p + eps),
        "ppv": (tp + eps) / (tp + fp + eps) if p or not t else Fraction(0),
        "sen": (tp + eps) / (tp + fn + eps) if t or not p else Fraction(0),
        "iou": (tp + eps) / (t + p - tp + eps),
    }
    values["avg_m"] = sum(values.values()) / 4
    return values


def binary_pair(pred_rows: list[str], true_rows: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """A (1, 1, H, W) logits / target pair drawn as strings: '1' = positive pixel."""
    pred = torch.tensor([[int(c) for c in row] for row in pred_rows], dtype=torch.float32)
    true = torch.tensor([[int(c) for c in row] for row in true_rows])
    logits = torch.where(pred > 0, 2.0, -2.0)
    return logits[None, None], true[None, None]


# --- cross-check against MONAI's Dice (eps = 0, non-empty ground truth) ----------------------


@st.composite
def random_batches(draw: st.DrawFn, label_mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    batch = draw(st.integers(1, 3))
    channels = {"binary": st.just(1), "multilabel": st.integers(1, 4)}.get(
        label_mode, st.integers(2, 5)
    )
    classes = draw(channels)
    ndim = draw(st.sampled_from([2, 3]))
    spatial = tuple(draw(st.lists(st.integers(3, 10), min_size=ndim, max_size=ndim)))
    density = draw(st.floats(0.05, 0.95))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    logits = torch.randn(batch, classes, *spatial, generator=gen)
    # Keep logits away from 0 so sigmoid(x) > 0.5 (MONAI's rule) and x > 0 cannot disagree.
    logits = logits + 0.01 * torch.sign(logits)
    flat = batch, -1
    if label_mode == "multiclass":
        target = torch.randint(0, classes, (batch, *spatial), generator=gen)
        # Every foreground class present in every item: MONAI gives NaN on empty ground truth.
        target.view(flat)[:, 1:classes] = torch.arange(1, classes)
    else:
        target = (torch.rand(batch, classes, *spatial, generator=gen) < density).long()
        target.view(batch, classes, -1)[:, :, 0] = 1
    return logits, target


def monai_dice(logits: torch.Tensor, target: torch.Tensor, label_mode: str) -> torch.Tensor:
    """MONAI's per-item, per-foreground-class Dice, predictions binarised the MONAI way."""
    if label_mode == "multiclass":
        classes = logits.shape[1]
        y_pred = one_hot(torch.softmax(logits, dim=1).argmax(dim=1, keepdim=True), classes)
        y = one_hot(target[:, None], classes)
        metric = DiceMetric(include_background=False, reduction="none", ignore_empty=True)
        return metric(y_pred=y_pred, y=y)
    y_pred = (torch.sigmoid(logits) > 0.5).float()
    return compute_dice(y_pred, target.float(), include_background=True, ignore_empty=True)


@pytest.mark.parametrize("label_mode", LABEL_MODES)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_dice_matches_monai_with_eps_zero(label_mode: str, data: st.DataObject) -> None:
    logits, target = data.draw(random_batches(label_mode))
    ours = scores(confusion_counts(logits, target, label_mode), eps=0.0)["dice"]
    expected = monai_dice(logits, target, label_mode).double()
    assert ours.shape == expected.shape
    torch.testing.assert_close(ours, expected, rtol=1e-6, atol=1e-7)


# --- eq. 14 by hand (eps = 1) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred_rows", "true_rows", "tp", "fp", "fn"),
    [
        (["1100", "1000"], ["1100", "0010"], 2, 1, 1),  # overlap
        (["0000", "0000"], ["0000", "0000"], 0, 0, 0),  # empty prediction, empty truth
        (["0000", "0000"], ["1100", "1100"], 0, 0, 4),  # empty prediction
        (["1110", "0000"], ["0000", "0000"], 0, 3, 0),  # empty truth
        (["1111", "1111"], ["1111", "1111"], 8, 0, 0),  # perfect
    ],
)
def test_binary_counts_and_eq14_by_hand(
    pred_rows: list[str], true_rows: list[str], tp: int, fp: int, fn: int
) -> None:
    logits, target = binary_pair(pred_rows, true_rows)
    counts = confusion_counts(logits, target, "binary")
    assert counts.dtype == torch.int64
    assert counts.tolist() == [[[tp, fp, fn]]]
    got = scores(counts)
    for name, value in eq14(tp, fp, fn).items():
        assert got[name].shape == (1, 1)
        assert got[name].item() == pytest.approx(float(value), abs=1e-12), name


def test_empty_prediction_and_truth_score_one_everywhere() -> None:
    logits, target = binary_pair(["000"], ["000"])
    got = scores(confusion_counts(logits, target, "binary"))
    assert {name: value.item() for name, value in got.items()} == dict.fromkeys(got, 1.0)


def test_eps_zero_leaves_undefined_scores_nan() -> None:
    got = scores(torch.tensor([[0, 0, 0], [0, 2, 0]]), eps=0.0)
    assert torch.isnan(got["dice"][0]) and torch.isnan(got["iou"][0])
    assert got["dice"][1].item() == 0.0 and got["sen"][1].item() == 0.0  # FP only: SEN 0


def test_scores_keeps_leading_shape_and_uses_eps() -> None:
    counts = torch.randint(0, 50, (2, 3, 4, 3))
    got = scores(counts, eps=0.5)
    assert set(got) == {"dice", "ppv", "sen", "iou", "avg_m"}
    tp, fp, fn = (int(v) for v in counts[1, 2, 3])
    for name, value in eq14(tp, fp, fn, Fraction(1, 2)).items():
        assert got[name].shape == (2, 3, 4)
        assert got[name][1, 2, 3].item() == pytest.approx(float(value), abs=1e-12)


def test_multiclass_counts_exclude_background_by_hand() -> None:
    # Predicted classes (argmax) and truth on a 2x3 slice, 3 classes (0 = background).
    pred = torch.tensor([[0, 1, 1], [2, 2, 0]])
    true = torch.tensor([[0, 1, 2], [2, 0, 1]])
    logits = torch.nn.functional.one_hot(pred, 3).permute(2, 0, 1)[None].float() * 5
    # class 1: TP (0,1); FP (0,2); FN (1,2).  class 2: TP (1,0); FP (1,1); FN (0,2).
    expected = [[[1, 1, 1], [1, 1, 1]]]
    assert confusion_counts(logits, true[None], "multiclass").tolist() == expected
    assert confusion_counts(logits, true[None, None], "multiclass").tolist() == expected
    assert predict(logits, "multiclass").tolist() == [pred.tolist()]


def test_multilabel_counts_per_channel() -> None:
    logits_a, target_a = binary_pair(["110"], ["100"])
    logits_b, target_b = binary_pair(["000"], ["011"])
    logits = torch.cat([logits_a, logits_b], dim=1)
    target = torch.cat([target_a, target_b], dim=1)
    assert confusion_counts(logits, target, "multilabel").tolist() == [[[1, 1, 0], [0, 0, 2]]]
    assert confusion_counts(logits, target.bool(), "multilabel").tolist() == [
        [[1, 1, 0], [0, 0, 2]]
    ]


def test_predict_dtypes_and_shapes() -> None:
    logits = torch.randn(2, 3, 4, 5)
    multilabel = predict(logits, "multilabel")
    assert multilabel.dtype == torch.bool and multilabel.shape == (2, 3, 4, 5)
    assert torch.equal(multilabel, torch.sigmoid(logits) > 0.5)
    multiclass = predict(logits, "multiclass")
    assert multiclass.dtype == torch.int64 and multiclass.shape == (2, 4, 5)
    assert torch.equal(multiclass, torch.softmax(logits, dim=1).argmax(dim=1))
    assert predict(logits[:, :1], "binary").shape == (2, 1, 4, 5)
    # A logit of exactly 0 (probability 0.5) is not a positive prediction.
    assert not predict(torch.zeros(1, 2, 3, 3), "multilabel").any()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("label_mode", LABEL_MODES)
def test_counts_on_cuda_match_cpu(label_mode: str) -> None:
    channels = 1 if label_mode == "binary" else 3
    logits = torch.randn(2, channels, 16, 16)
    if label_mode == "multiclass":
        target = torch.randint(0, channels, (2, 16, 16))
    else:
        target = torch.randint(0, 2, (2, channels, 16, 16))
    on_gpu = confusion_counts(logits.cuda(), target.cuda(), label_mode)
    assert on_gpu.device.type == "cuda"
    assert torch.equal(on_gpu.cpu(), confusion_counts(logits, target, label_mode))


# --- input validation ----------------------------------------------------------------------


def test_unknown_label_mode_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"multi_class.*did you mean 'multiclass'.*binary"):
        confusion_counts(torch.randn(1, 2, 4, 4), torch.zeros(1, 4, 4), "multi_class")


@pytest.mark.parametrize(
    ("label_mode", "logits_shape", "target_shape"),
    [
        ("binary", (2, 1, 8, 8), (2, 1, 8, 4)),
        ("binary", (2, 1, 8, 8), (2, 8, 8)),
        ("multilabel", (2, 3, 8, 8), (2, 2, 8, 8)),
        ("multiclass", (2, 3, 8, 8), (2, 3, 8, 8)),
        ("multiclass", (2, 3, 8, 8), (1, 8, 8)),
    ],
)
def test_shape_mismatch_names_both_shapes(
    label_mode: str, logits_shape: tuple[int, ...], target_shape: tuple[int, ...]
) -> None:
    target = torch.zeros(target_shape, dtype=torch.long)
    with pytest.raises(ValueError) as info:
        confusion_counts(torch.randn(logits_shape), target, label_mode)
    message = str(info.value)
    assert str(tuple(target_shape)) in message and str(tuple(logits_shape)) in message


@pytest.mark.parametrize("label_mode", ["binary", "multilabel"])
def test_non_binary_target_rejected(label_mode: str) -> None:
    target = torch.zeros(1, 1, 4, 4)
    target[0, 0, 0, 0] = 0.5
    with pytest.raises(ValueError, match=r"\{0, 1\}.*0\.5"):
        confusion_counts(torch.randn(1, 1, 4, 4), target, label_mode)


def test_class_index_out_of_range_rejected() -> None:
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 1, 1] = 3
    with pytest.raises(ValueError, match=r"\[0, 2\].*\[0, 3\]"):
        confusion_counts(torch.randn(1, 3, 4, 4), target, "multiclass")
    target[0, 1, 1] = -1
    with pytest.raises(ValueError, match=r"\[-1, 0\]"):
        confusion_counts(torch.randn(1, 3, 4, 4), target, "multiclass")


def test_other_bad_inputs_rejected() -> None:
    with pytest.raises(TypeError, match="integer target"):
        confusion_counts(torch.randn(1, 3, 4, 4), torch.zeros(1, 4, 4), "multiclass")
    with pytest.raises(ValueError, match="exactly 1 channel"):
        confusion_counts(torch.randn(1, 2, 4, 4), torch.zeros(1, 2, 4, 4), "binary")
    with pytest.raises(ValueError, match="at least 2 channels"):
        predict(torch.randn(1, 1, 4, 4), "multiclass")
    with pytest.raises(TypeError, match="floating-point"):
        predict(torch.zeros(1, 1, 4, 4, dtype=torch.long), "binary")
    with pytest.raises(ValueError, match="NaN"):
        predict(torch.full((1, 1, 4, 4), float("nan")), "binary")
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        scores(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="non-negative"):
        scores(torch.tensor([1, -1, 0]))
    with pytest.raises(ValueError, match="eps"):
        scores(torch.tensor([1, 1, 0]), eps=-1.0)


# --- per-case aggregation ------------------------------------------------------------------


def test_case_counts_are_summed_over_slices_before_scoring() -> None:
    metrics = CaseMetrics()
    # Slice 0: perfect (TP 4); slice 1: no truth, 2 false positives.
    metrics.update(torch.tensor([[[4, 0, 0]], [[0, 2, 0]]]), ["a", "a"], [0, 1])
    expected = eq14(4, 2, 0)
    per_slice_mean = (eq14(4, 0, 0)["dice"] + eq14(0, 2, 0)["dice"]) / 2
    assert metrics.per_case()["a"]["dice"] == pytest.approx(float(expected["dice"]))
    assert metrics.per_case()["a"]["dice"] != pytest.approx(float(per_slice_mean))
    assert metrics.case_counts()["a"].tolist() == [[4, 2, 0]]


def test_per_case_equals_scoring_the_stacked_volume() -> None:
    """Slices fed in shuffled batches score like each case's whole volume scored at once."""
    gen = torch.Generator().manual_seed(0)
    classes, eps = 3, 1.0
    depths = {"case_b": 5, "case_a": 3, "case_c": 4}
    volumes = {
        case: (
            torch.randn(1, classes, 8, 8, depth, generator=gen),
            torch.randint(0, classes, (1, 8, 8, depth), generator=gen),
        )
        for case, depth in depths.items()
    }
    items = [(case, z) for case, depth in depths.items() for z in range(depth)]
    order = torch.randperm(len(items), generator=gen).tolist()
    metrics = CaseMetrics(eps=eps)
    for start in range(0, len(order), 4):
        chunk = [items[i] for i in order[start : start + 4]]
        logits = torch.cat([volumes[c][0][..., z] for c, z in chunk])
        target = torch.cat([volumes[c][1][..., z] for c, z in chunk])
        counts = confusion_counts(logits, target, "multiclass")
        metrics.update(counts, [c for c, _ in chunk], [z for _, z in chunk])

    per_case, per_case_class = metrics.per_case(), metrics.per_case_class()
    assert list(per_case) == sorted(depths)
    for case, (logits, target) in volumes.items():
        whole = scores(confusion_counts(logits, target, "multiclass")[0], eps=eps)
        assert len(per_case_class[case]) == classes - 1
        for name, values in whole.items():
            assert per_case[case][name] == pytest.approx(values.mean().item(), abs=1e-12)
            for k in range(classes - 1):
                assert per_case_class[case][k][name] == pytest.approx(values[k].item(), abs=1e-12)
    summary = metrics.summary()
    assert summary["cases"] == len(depths)
    for name in ("dice", "ppv", "sen", "iou", "avg_m"):
        expected = np.mean([per_case[case][name] for case in depths])
        assert summary[name] == pytest.approx(expected, abs=1e-12)
    mean_of_four = np.mean([summary[n] for n in ("dice", "ppv", "sen", "iou")])
    assert summary["avg_m"] == pytest.approx(mean_of_four, abs=1e-12)


def test_same_key_replaces_rather_than_adds() -> None:
    metrics = CaseMetrics()
    metrics.update(torch.tensor([[[3, 1, 0]]]), ["a"], [7])
    metrics.update(torch.tensor([[[3, 1, 0]]]), ["a"], [7])
    assert len(metrics) == 1
    assert metrics.case_counts()["a"].tolist() == [[3, 1, 0]]


def test_distributed_padding_is_not_double_counted() -> None:
    """Two ranks of a DistributedSampler pad 5 slices to 6; merged, each slice counts once."""
    gen = torch.Generator().manual_seed(1)
    keys = [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1)]
    counts = torch.randint(0, 20, (len(keys), 2, 3), generator=gen)
    reference = CaseMetrics()
    reference.update(counts, [c for c, _ in keys], [s for _, s in keys])

    per_rank = []
    for rank in range(2):
        sampler = DistributedSampler(range(len(keys)), num_replicas=2, rank=rank, shuffle=False)
        indices = list(sampler)
        rank_metrics = CaseMetrics()
        rank_metrics.update(
            counts[indices],
            [keys[i][0] for i in indices],
            torch.tensor([keys[i][1] for i in indices]),
        )
        per_rank.append(rank_metrics)
    assert sum(len(m) for m in per_rank) == 6  # one slice seen twice

    # What all_gather_object would carry: plain state, through pickle.
    merged = CaseMetrics.from_state(pickle.loads(pickle.dumps(per_rank[0].state())))
    merged.merge(CaseMetrics.from_state(pickle.loads(pickle.dumps(per_rank[1].state()))))
    assert len(merged) == len(keys)
    assert merged.state() == reference.state()
    assert merged.summary() == reference.summary()
    naive = sum(int(m.case_counts()["a"][0, 0]) for m in per_rank)
    assert naive > int(merged.case_counts()["a"][0, 0])  # what summing would have given


def test_state_is_plain_python() -> None:
    metrics = CaseMetrics(eps=0.5)
    metrics.update(torch.tensor([[[1, 2, 3]]]), ["x"], [np.int64(4)])
    state = metrics.state()
    assert state == {
        "eps": 0.5,
        "num_classes": 1,
        "cases": ["x"],
        "slices": [4],
        "counts": [[[1, 2, 3]]],
    }
    assert type(state["slices"][0]) is int and type(state["counts"][0][0][0]) is int
    assert CaseMetrics.from_state(state).state() == state


def test_case_metrics_validation() -> None:
    metrics = CaseMetrics()
    with pytest.raises(ValueError, match=r"3 rows.*2 case ids and 3 slice"):
        metrics.update(torch.zeros(3, 1, 3, dtype=torch.long), ["a", "b"], [0, 1, 2])
    with pytest.raises(TypeError, match="integer tensor"):
        metrics.update(torch.zeros(1, 1, 3), ["a"], [0])
    with pytest.raises(TypeError, match="single string"):
        metrics.update(torch.zeros(1, 1, 3, dtype=torch.long), "a", [0])
    with pytest.raises(TypeError, match="slice indices"):
        metrics.update(torch.zeros(1, 1, 3, dtype=torch.long), ["a"], [0.5])
    with pytest.raises(ValueError, match="none were added"):
        metrics.summary()
    metrics.update(torch.zeros(1, 2, 3, dtype=torch.long), ["a"], [0])
    with pytest.raises(ValueError, match=r"3 foreground classes.*2"):
        metrics.update(torch.zeros(1, 3, 3, dtype=torch.long), ["a"], [1])
    with pytest.raises(ValueError, match="eps"):
        metrics.merge(CaseMetrics(eps=0.0))
    with pytest.raises(ValueError, match="keys"):
        CaseMetrics.from_state({"eps": 1.0})


# --- paired tests --------------------------------------------------------------------------


def paired_samples(n: int, zeros: int, ties: bool, seed: int) -> tuple[list[float], list[float]]:
    """Two runs' per-case scores: ``zeros`` equal pairs, optionally tied absolute differences."""
    gen = np.random.default_rng(seed)
    b = gen.uniform(0.4, 0.9, size=n)
    a = b + gen.normal(0.02, 0.05, size=n)
    a[:zeros] = b[:zeros]
    if ties:
        a[zeros : zeros + 3] = b[zeros : zeros + 3] + 0.25
    return a.tolist(), b.tolist()


# One case per branch of scipy's wilcoxon "auto" method: exact (n <= 50, no ties or zeros),
# exact permutation (small n with ties / zeros: 2^n sign flips, so kept small here) and the
# normal approximation (n > 50, or ties / zeros at larger n).
@pytest.mark.parametrize(
    ("n", "zeros", "ties"),
    [
        (2, 0, False),
        (5, 0, False),
        (20, 0, False),
        (7, 2, True),
        (8, 0, True),
        (30, 3, True),
        (60, 0, False),
        (60, 10, True),
    ],
)
def test_paired_tests_agree_with_scipy(n: int, zeros: int, ties: bool) -> None:
    a, b = paired_samples(n, zeros, ties, seed=n + zeros)
    with warnings.catch_warnings():  # scipy may warn on ties / zeros / tiny samples
        warnings.simplefilter("ignore")
        got = paired_tests(a, b)
        wilcoxon = scipy.stats.wilcoxon(a, b).pvalue
        ttest = scipy.stats.ttest_rel(a, b).pvalue
    assert got["n"] == n
    assert got["mean_diff"] == pytest.approx(np.mean(np.subtract(a, b)), abs=1e-12)
    assert 0.0 <= got["wilcoxon_p"] <= 1.0 and 0.0 <= got["ttest_p"] <= 1.0
    np.testing.assert_equal(got["wilcoxon_p"], wilcoxon)
    np.testing.assert_equal(got["ttest_p"], ttest)


def test_paired_tests_on_a_clear_difference() -> None:
    gen = np.random.default_rng(0)
    b = gen.uniform(0.5, 0.8, size=20)
    a = b + gen.uniform(0.05, 0.1, size=20)
    got = paired_tests(a.tolist(), b.tolist())
    assert got["wilcoxon_p"] < 0.001 and got["ttest_p"] < 0.001
    assert got["mean_diff"] == pytest.approx(float(np.mean(a - b)))


def test_paired_tests_identical_inputs_give_one() -> None:
    values = [0.7, 0.8, 0.8, 0.9]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no scipy warning leaks out either
        got = paired_tests(values, list(values))
    assert got == {"wilcoxon_p": 1.0, "ttest_p": 1.0, "mean_diff": 0.0, "n": 4}


def test_paired_tests_validation() -> None:
    with pytest.raises(ValueError, match="3 values in a and 2 in b"):
        paired_tests([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(ValueError, match="at least 2 pairs"):
        paired_tests([0.1], [0.2])
    with pytest.raises(ValueError, match="finite"):
        paired_tests([0.1, float("nan")], [0.2, 0.3])


def test_compare_seeds_t_test_bootstrap_and_validation() -> None:
    """Two variants over the same seeds: the seed is the unit (t-test of the per-seed
    differences), with a seeds x cases bootstrap for per-case values."""
    a = [[0.8, 0.7, 0.9], [0.82, 0.71, 0.93], [0.81, 0.69, 0.92]]
    b = [[0.7, 0.6, 0.85], [0.7, 0.62, 0.8], [0.75, 0.6, 0.82]]
    r = compare_seeds(a, b, n_boot=2000, rng_seed=3)
    per_seed = np.mean(np.subtract(a, b), axis=1)
    assert r["p"] == pytest.approx(scipy.stats.ttest_1samp(per_seed, 0.0).pvalue)
    assert r["ci95"][0] > 0.0 and r["better_seeds"] == 3
    assert r["bootstrap"]["ci95"][0] > 0.0 and r["bootstrap"]["p"] == pytest.approx(2 / 2001)
    assert compare_seeds(a, b, n_boot=2000, rng_seed=3) == r  # deterministic
    means = compare_seeds(np.mean(a, axis=1), np.mean(b, axis=1))
    assert means["bootstrap"] is None and means["p"] == pytest.approx(r["p"])
    assert compare_seeds([0.7], [0.6])["p"] is None  # one seed: no test
    assert compare_seeds([0.7, 0.8], [0.7, 0.8])["p"] == 1.0
    with pytest.raises(ValueError, match="same seeds"):
        compare_seeds([0.7, 0.8], [0.7])
    with pytest.raises(ValueError, match="non-finite"):
        compare_seeds([0.7, math.nan], [0.7, 0.8])
