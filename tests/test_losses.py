"""Loss pieces, weights, presets and schedules."""

import math

import pytest
import torch
import torch.nn.functional as F

from dsplug import DeepSupervised, LossWeights
from dsplug._checks import ShapeError
from dsplug.losses import LOSSES, HybLoss, NoneLoss, bce_dice, feature_mse, schedule_factor
from tests.helpers import make_batch, make_net


def test_presets_hold_the_papers_values():
    brats = LossWeights.preset("brats")
    assert (brats.alpha, brats.beta, brats.a, brats.b, brats.lam, brats.eta) == (5, 1, 1, 1, 9, 6)
    spleen = LossWeights.preset("spleen")
    assert (spleen.alpha, spleen.beta, spleen.a, spleen.b, spleen.lam, spleen.eta) == (
        3,
        5,
        2,
        2,
        8,
        6,
    )
    for name in ("equal", "brats", "cardiac", "spleen", "liver"):
        w = LossWeights.preset(name)
        assert (w.gamma, w.xi, w.omega, w.sigma) == (1, 1, 1, 1)


def test_unknown_preset_and_field_list_the_valid_names():
    with pytest.raises(ValueError, match=r"'brast'.*did you mean 'brats'.*'cardiac'"):
        LossWeights.preset("brast")
    with pytest.raises(ValueError, match=r"'lambda'.*Available options.*'lam'"):
        LossWeights.from_any({"lambda": 2.0})
    with pytest.raises(ValueError, match="non-negative"):
        LossWeights(alpha=-1)


def test_per_level_weights_are_length_checked():
    with pytest.raises(ValueError, match="omega has 2 values but the model has 3 levels"):
        DeepSupervised(make_net("unet", depth=3), "deep", weights={"omega": [1.0, 2.0]})
    ds = DeepSupervised(make_net("unet", depth=3), "deep", weights={"omega": [1.0, 0.0, 2.0]})
    assert ds.criterion.weights.omega == (1.0, 0.0, 2.0)


def test_unused_fields_are_reported_in_repr():
    assert "unused_by_none=['beta']" in repr(NoneLoss(weights={"beta": 3.0}))
    assert "unused" not in repr(HybLoss(weights="brats"))


def test_bce_dice_matches_a_hand_computation():
    logits = torch.tensor([[[[2.0, -1.0], [0.5, -3.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    p = logits.sigmoid()
    dice = (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    expected = F.binary_cross_entropy(p, target) + 1 - dice
    assert torch.allclose(bce_dice(logits, target, multiclass=False), expected, atol=1e-6)


def test_multiclass_dice_excludes_background():
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 0] = 10.0  # confident background everywhere
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    value = bce_dice(logits, target, multiclass=True)
    # Background perfectly predicted; foreground channels empty in both: Dice (0+1)/(~0+1) ~ 1.
    assert value < 0.01


def test_feature_mse_refuses_to_broadcast():
    with pytest.raises(ShapeError, match=r"\(4, 1, 8, 8\).*\(4, 8, 8\)"):
        feature_mse(torch.zeros(4, 1, 8, 8), torch.zeros(4, 8, 8))


def test_total_is_the_weighted_scheduled_sum_of_terms():
    torch.manual_seed(0)
    weights = LossWeights(alpha=2, beta=3, a=0.5, b=0.25, gamma=4, xi=5, lam=6, eta=7)
    ds = DeepSupervised(make_net("unet"), "hyb", weights=weights, schedule="linear")
    x, y = make_batch("binary", 1)
    ds.set_progress(0.25)
    loss = ds.loss(ds(x, y), y)
    t = loss.terms
    ds_part = (
        3 * t["mask"]
        + 0.5 * t["rem"]
        + 0.25 * t["rei"]
        + 4 * t["seg"]
        + 5 * t["seg_rec"]
        + 6 * t["deep"]
        + 7 * t["deep_rec"]
    )
    assert math.isclose(float(loss.total.detach()), 2 * t["image"] + 0.75 * ds_part, rel_tol=1e-5)


def test_schedules():
    assert schedule_factor("constant", 0.7) == 1.0
    assert schedule_factor("linear", 0.25) == 0.75
    assert math.isclose(schedule_factor("cosine", 0.5), 0.5)
    assert schedule_factor("cosine", 1.0) < 1e-12
    with pytest.raises(ValueError, match=r"'exp'.*Available options"):
        schedule_factor("exp", 0.1)
    with pytest.raises(ValueError, match=r"progress must be in \[0, 1\], got 1.5"):
        schedule_factor("linear", 1.5)


def test_each_loss_class_is_usable_alone():
    for mode, cls in LOSSES.items():
        assert cls.mode == mode
        assert cls().terms[0].name == "image"


def test_pseudo_labels_are_detached_probabilities():
    torch.manual_seed(0)
    ds = DeepSupervised(make_net("unet"), "deep")
    x, y = make_batch("binary", 1)
    out = ds(x, y)
    # L_seg's gradient must not reach y^g: only L_seg on, everything else off.
    ds.criterion.weights = LossWeights(alpha=0, beta=0, gamma=1, lam=0)
    grads = torch.autograd.grad(ds.loss(out, y).total, out.mask_logits, allow_unused=True)
    assert grads[0] is None or grads[0].abs().sum() == 0
