"""Loss pieces, weights, presets and schedules."""

import math

import pytest
import torch
import torch.nn.functional as F

from dsplug import DeepSupervised, DSOutput, LossWeights
from dsplug._checks import ShapeError
from dsplug.losses import LOSSES, HybLoss, NoneLoss, bce_dice, feature_mse, schedule_factor
from dsplug.losses.base import _levels
from dsplug.losses.terms import intensity_bce, relative_mse
from dsplug.options import Mode
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


def test_weights_for_unused_terms_are_an_error_naming_the_modes_terms():
    with pytest.raises(ValueError, match=r"\['beta'\] are not used by mode 'none'.*image"):
        NoneLoss(weights={"beta": 3.0})
    with pytest.raises(ValueError, match=r"\['eta'\] are not used by mode 'deep'"):
        DeepSupervised(make_net("unet"), "deep", weights=LossWeights(eta=2.0))
    HybLoss(weights="brats")  # a preset names every field: not an error
    loss = HybLoss()
    loss.set_weights({"lam": 3.0})
    assert loss.weights.lam == 3.0


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
    # A hand computation where the background's Dice differs from the foreground's.
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, generator=gen)
    target = torch.randint(0, 3, (2, 4, 4), generator=gen)
    p = logits.softmax(1)
    onehot = F.one_hot(target, 3).permute(0, 3, 1, 2).float()
    dice = (2 * (p * onehot).sum((2, 3)) + 1) / (p.sum((2, 3)) + onehot.sum((2, 3)) + 1)
    ce = F.cross_entropy(logits, target)
    value = bce_dice(logits, target, multiclass=True)
    assert torch.allclose(value, ce + 1 - dice[:, 1:].mean(), atol=1e-6)
    assert not torch.allclose(value, ce + 1 - dice.mean(), atol=1e-3)


def test_feature_mse_refuses_to_broadcast():
    with pytest.raises(ShapeError, match=r"\(4, 1, 8, 8\).*\(4, 8, 8\)"):
        feature_mse(torch.zeros(4, 1, 8, 8), torch.zeros(4, 8, 8))


def test_paper_total_is_the_weighted_scheduled_sum_of_raw_terms():
    torch.manual_seed(0)
    weights = LossWeights(alpha=2, beta=3, a=0.5, b=0.25, gamma=4, xi=5, lam=6, eta=7)
    ds = DeepSupervised(  # the paper's step: the branches on every call
        make_net("unet"), "hyb", weights=weights, schedule="linear", balance="paper", aux_every=1
    )
    x, y = make_batch("binary", 1)
    ds.set_progress(0.25)
    loss = ds.loss(ds(x, y), y)
    t = loss.raw
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
    assert math.isclose(sum(loss.terms.values()), float(loss.total.detach()), rel_tol=1e-5)
    assert loss.terms["deep"] == pytest.approx(6 * 0.75 * t["deep"], rel=1e-5)


@pytest.mark.parametrize("mode", ["deep", "hyb", "up", "vae"])
def test_auto_terms_add_up_to_total(mode):
    torch.manual_seed(0)
    ds = DeepSupervised(make_net("unet"), mode, weights={"alpha": 2.0}).train()
    x, y = make_batch("binary", 1)
    loss = ds.loss(ds(x, y), y)
    assert math.isclose(sum(loss.terms.values()), float(loss.total.detach()), rel_tol=1e-5)
    assert loss.terms["image"] == pytest.approx(2 * loss.raw["image"], rel=1e-6)
    assert set(loss.raw) == set(loss.terms) == {t.name for t in ds.criterion.terms}


def test_balance_measures_scales_on_the_encoder_and_keeps_them_in_the_state_dict():
    torch.manual_seed(0)
    ds = DeepSupervised(make_net("unet"), "hyb").train()
    x, y = make_batch("binary", 1)
    ds.loss(ds(x, y), y)
    balancer = ds.criterion.balancer
    assert int(balancer.steps) == 1
    scales = {k: float(v) for k, v in balancer.scales().items()}
    assert scales["rei"] != 1.0 and scales["mask"] != 1.0  # measured at the first step
    state = ds.state_dict()
    assert "criterion.balancer.log_scales" in state
    with torch.no_grad():  # validation: no measurement, no step counted
        ds.loss(ds(x, y), y)
    assert int(balancer.steps) == 1


def test_intensity_bce_is_eq9_on_images_mapped_to_unit_range():
    image = torch.tensor([[[[-2.0, 0.0], [2.0, 6.0]]]])
    target = torch.tensor([[[[0.0, 0.25], [0.5, 1.0]]]])
    logits = torch.randn(1, 1, 2, 2)
    expected = F.binary_cross_entropy_with_logits(logits, target)
    assert torch.allclose(intensity_bce(logits, image), expected)
    assert torch.allclose(intensity_bce(logits, 10 * image + 3), expected)  # scale-free


def test_relative_mse_is_scale_free():
    a, b = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    assert torch.allclose(relative_mse(100 * a, 100 * b), relative_mse(a, b))
    assert float(relative_mse(torch.zeros_like(b), b)) == pytest.approx(1.0, rel=1e-5)


def test_relative_mse_floors_a_near_empty_image_at_a_tenth_of_the_batch_scale():
    target = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    target[1] *= 1e-6  # a near-empty target beside a normal one
    pred = target.clone()
    pred[1] += 0.1  # error 0.01 on the near-empty image, none on the other
    power = target.pow(2).mean((1, 2, 3))
    floor = 0.1 * power.mean()
    assert float(power[1]) < float(floor)  # the floor is what the near-empty image divides by
    expected = (0.0 + 0.01 / float(floor)) / 2
    assert float(relative_mse(pred, target)) == pytest.approx(expected, rel=1e-4)  # not ~1e8


def test_a_feature_level_without_signal_is_left_out_of_the_level_mean():
    """A level whose target is zero across the batch (the G pass of empty masks) counts
    neither in the sum nor in the weights: the term is the other level's alone."""
    g = torch.Generator().manual_seed(0)
    students = {1: torch.randn(2, 4, 8, 8, generator=g), 2: torch.randn(2, 8, 4, 4, generator=g)}
    targets = {1: torch.randn(2, 4, 8, 8, generator=g), 2: torch.zeros(2, 8, 4, 4)}
    value = _levels(students, targets, (1.0, 1.0), [1, 2], paper=False)
    assert float(value) == pytest.approx(float(relative_mse(students[1], targets[1])), rel=1e-6)
    none = _levels(students, {2: targets[2]}, (1.0, 1.0), [1, 2], paper=False)
    assert float(none) == 0.0  # no level left: 0


def test_ignore_index_leaves_pixels_out_of_every_label_term():
    torch.manual_seed(0)
    x, y = make_batch("multiclass", 3, batch=2)
    ds = DeepSupervised(make_net("unet", classes=3), "hyb", ignore_index=255).train()
    out = ds(x, y)
    y_void = y.clone()
    y_void[:, :8] = 255
    loss = ds.loss(out, y_void)
    assert all(math.isfinite(v) for v in loss.raw.values())
    logits = out.logits.detach().clone().requires_grad_(True)
    cross = DeepSupervised(make_net("unet", classes=3), "none", ignore_index=255)
    cross.criterion(type(out)(logits=logits, image=x), y_void).total.backward()
    assert float(logits.grad[:, :, :8].abs().sum()) == 0.0
    assert float(logits.grad[:, :, 8:].abs().sum()) > 0.0


def test_seg_loss_replaces_l_bd_against_the_target():
    calls = []

    def my_loss(logits, target):
        calls.append((tuple(logits.shape), tuple(target.shape)))
        return (logits.sigmoid() - target).abs().mean()

    torch.manual_seed(0)
    x, y = make_batch("binary", 1)
    ds = DeepSupervised(make_net("unet"), "hyb", seg_loss=my_loss).train()
    out = ds(x, y)
    loss = ds.loss(out, y)
    expected = float((out.logits.detach().sigmoid() - y).abs().mean())
    assert loss.raw["image"] == pytest.approx(expected, rel=1e-5)
    assert len(calls) == 3  # L_image, L_mask and L_rem; pseudo-label terms keep L_BD
    with pytest.raises(TypeError, match="seg_loss must be a callable"):
        HybLoss(seg_loss="dice")


def test_schedules():
    assert schedule_factor("constant", 0.7) == 1.0
    assert schedule_factor("linear", 0.25) == 0.75
    assert math.isclose(schedule_factor("cosine", 0.5), 0.5)
    assert schedule_factor("cosine", 1.0) < 1e-12
    with pytest.raises(ValueError, match=r"'exp'.*Available options"):
        schedule_factor("exp", 0.1)
    with pytest.raises(ValueError, match=r"progress must be in \[0, 1\], got 1.5"):
        schedule_factor("linear", 1.5)


@pytest.mark.parametrize("mode", list(Mode))
def test_each_loss_class_is_usable_alone(mode):
    """Each mode's loss class, built on its own (not by DeepSupervised), runs on that mode's
    outputs: a finite total made of the mode's terms that trains the model."""
    assert set(LOSSES) == set(Mode)
    cls = LOSSES[mode]
    assert cls.mode == mode
    criterion = cls().train()
    assert criterion.terms[0].name == "image"
    torch.manual_seed(0)
    ds = DeepSupervised(make_net("unet"), mode).train()
    x, y = make_batch("binary", 1)
    loss = criterion(ds(x, y), y)
    assert torch.isfinite(loss.total) and loss.total.dim() == 0
    assert list(loss.terms) == [t.name for t in criterion.terms]
    assert all(math.isfinite(v) for v in loss.raw.values()), loss.raw
    assert loss.raw["image"] > 0
    assert math.isclose(sum(loss.terms.values()), float(loss.total.detach()), rel_tol=1e-5)
    loss.total.backward()
    first = ds.model.encoder.blocks[0].convs()[0].weight
    assert first.grad is not None and first.grad.abs().sum() > 0


def test_pseudo_labels_are_detached_probabilities():
    torch.manual_seed(0)
    ds = DeepSupervised(make_net("unet"), "deep")
    x, y = make_batch("binary", 1)
    out = ds(x, y)
    # L_seg's gradient must not reach y^g: only L_seg on, everything else off.
    ds.criterion.weights = LossWeights(alpha=0, beta=0, gamma=1, lam=0)
    loss = ds.loss(out, y)
    assert loss.raw["seg"] > 0 and loss.terms["seg"] > 0, loss.terms  # L_seg is in the total
    assert all(v == 0 for k, v in loss.terms.items() if k != "seg"), loss.terms
    to_logits, to_teacher = torch.autograd.grad(
        loss.total, (out.logits, out.mask_logits), allow_unused=True
    )
    assert to_logits is not None and to_logits.abs().sum() > 0  # the student learns
    assert to_teacher is None or to_teacher.abs().sum() == 0  # the teacher y^g does not


def test_a_loss_used_alone_balances_by_value():
    """Without shared weights to measure on, c_i = L_image / L_i: each term gets 1/n of L_image."""
    torch.manual_seed(0)
    ds = DeepSupervised(make_net("unet"), "hyb", aux_every=1).train()  # terms weighted 1
    x, y = make_batch("binary", 1)
    loss = HybLoss().train()(ds(x, y), y)
    aux = [v for k, v in loss.terms.items() if k != "image"]
    assert aux == pytest.approx([loss.raw["image"] / len(aux)] * len(aux), rel=1e-4)


def _nnunet_list(stages: int) -> list[float]:
    """nnunetv2's nnUNetTrainer._build_loss: one output per stage but the bottleneck, 1/2^i,
    the lowest-resolution one at 0, normalised to sum 1."""
    weights = [1 / 2**i for i in range(stages - 1)]
    weights[-1] = 0
    return [w / sum(weights) for w in weights]


@pytest.mark.parametrize("depth", [4, 5])
def test_nnunet_preset_weighs_down_as_nnunet(depth):
    """weights="nnunet" for `down`: the full-resolution output (alpha) and the side heads weigh
    as nnU-Net's normalised list (the bottleneck's head, which nnU-Net lacks, at 0)."""
    from dsplug import UNet
    from dsplug.losses.weights import nnunet_weights

    expected = [*_nnunet_list(depth), 0.0]  # levels 0 .. depth-1, the bottleneck last
    assert list(nnunet_weights(depth)) == pytest.approx(expected[:-1], abs=1e-12)
    torch.manual_seed(0)
    net = UNet(1, 1, base_channels=4, depth=depth)
    ds = DeepSupervised(net, "down", weights="nnunet", balance="paper").train()
    x, y = make_batch("binary", 1, size=32)
    out = ds(x, y)
    heads = depth - 1
    # each head's own loss, read through a one-hot level weight
    per_head = []
    for k in range(heads):
        ds.set_weights({"aux_levels": tuple(float(i == k) for i in range(heads))})
        per_head.append(float(ds.loss(out, y).raw["aux"]))
    assert all(v > 0 for v in per_head) and len(set(per_head)) == heads
    ds.set_weights("nnunet")
    loss = ds.loss(out, y)
    used = [ds.criterion.weights.alpha, *ds.criterion.weights.level_weights("aux_levels", heads)]
    assert [w / sum(used) for w in used] == pytest.approx(expected, abs=1e-12)
    relative = [w / expected[0] for w in expected[1:]]  # the heads' weights, alpha = 1
    assert float(loss.raw["aux"]) == pytest.approx(
        sum(w * v for w, v in zip(relative, per_head)), rel=1e-6
    )
    assert float(loss.total.detach()) == pytest.approx(
        float(loss.raw["image"]) + float(loss.raw["aux"]), rel=1e-6
    )
    # alpha = aux = nnU-Net's first weight: exactly nnU-Net's sum of weights 1
    w0 = expected[0]
    ds.set_weights({"aux_levels": "nnunet", "alpha": w0, "aux": w0})
    exact = ds.loss(out, y)
    assert float(exact.total.detach()) == pytest.approx(
        expected[0] * float(exact.raw["image"])
        + sum(w * v for w, v in zip(expected[1:], per_head)),
        rel=1e-6,
    )


def test_nnunet_preset_is_refused_where_it_means_nothing():
    from dsplug import UNet

    for mode in ("none", "deep", "hyb"):
        with pytest.raises(ValueError, match=r"\['aux_levels'\] \(preset 'nnunet'\) are not used"):
            DeepSupervised(UNet(1, 1, base_channels=4, depth=3), mode, weights="nnunet")
    ds = DeepSupervised(UNet(1, 1, base_channels=4, depth=3), "up", weights="nnunet").train()
    x, y = make_batch("binary", 1, size=32)
    assert torch.isfinite(ds.loss(ds(x, y), y).total)
    with pytest.raises(ValueError, match=r"aux_levels rule 'nnnet'"):
        LossWeights(aux_levels="nnnet")
    # configs of earlier runs compare equal: the default is not written
    assert "aux_levels" not in LossWeights().to_dict()
    preset = LossWeights.preset("nnunet")
    assert LossWeights(**preset.to_dict()) == preset


# --- the G-pass terms average over the images with foreground ---------------------------------
G_TERMS = ("mask", "rem", "seg", "seg_rec", "deep", "deep_rec")


def _hyb_output(batch: int, seed: int = 0) -> DSOutput:
    """A hyb output whose image i is the same in every batch that holds it (no batch norm)."""
    g = torch.Generator().manual_seed(seed)

    def t(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(batch, *shape, generator=g) * scale

    features = {0: t(4, 16, 16), 1: t(8, 8, 8)}
    return DSOutput(
        logits=t(1, 16, 16, scale=3.0),
        image=t(1, 16, 16),
        features=features,
        mask_logits=t(1, 16, 16, scale=3.0),
        mask_features={0: t(4, 16, 16), 1: t(8, 8, 8)},
        rec_image=t(1, 16, 16),
        rec_mask=t(1, 16, 16, scale=3.0),
        rec_features={0: t(4, 16, 16), 1: t(8, 8, 8)},
    )


def _pick(out: DSOutput, index: list[int]) -> DSOutput:
    i = torch.tensor(index)
    return DSOutput(
        logits=out.logits[i],
        image=out.image[i],
        **{
            k: (v[i] if isinstance(v, torch.Tensor) else {r: f[i] for r, f in v.items()})
            for k, v in vars(out).items()
            if k not in ("logits", "image", "kl") and isinstance(v, torch.Tensor | dict)
        },
    )


def _fg_and_empty_targets() -> torch.Tensor:
    y = torch.zeros(2, 1, 16, 16)
    y[0, :, 4:12, 3:9] = 1.0  # image 0 has foreground, image 1 is empty
    return y


def test_g_pass_terms_do_not_shrink_with_the_share_of_empty_images():
    out, y = _hyb_output(2), _fg_and_empty_targets()
    pair = HybLoss()(out, y).raw
    alone = HybLoss()(_pick(out, [0]), y[:1]).raw
    assert all(pair[term] > 0.01 for term in G_TERMS), pair
    off = {t: (pair[t], alone[t]) for t in G_TERMS if pair[t] != pytest.approx(alone[t], rel=1e-5)}
    assert not off, f"[fg, empty] vs [fg]: {off}"


def test_paper_g_pass_terms_keep_the_literal_batch_mean():
    out, y = _hyb_output(2), _fg_and_empty_targets()
    pair = HybLoss(balance="paper")(out, y).raw
    fg = HybLoss(balance="paper")(_pick(out, [0]), y[:1]).raw
    empty = HybLoss(balance="paper")(_pick(out, [1]), y[1:]).raw
    for term in ("mask", "rem", "seg", "seg_rec"):  # L_BD / L_B: the mean over the batch
        assert pair[term] == pytest.approx((fg[term] + empty[term]) / 2, rel=1e-5), term
    assert pair["mask"] != pytest.approx(fg["mask"], rel=1e-3)  # the empty image counts
