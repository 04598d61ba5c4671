"""Learning from images without masks: ds.unlabeled, ds.loss(out), EMATeacher, mean teacher."""

from __future__ import annotations

import copy
import pickle
from types import SimpleNamespace

import pytest
import torch

from dsplug import DeepSupervised, UNet
from dsplug.semi import EMATeacher, flip_noise, mean_teacher_loss, sigmoid_rampup


def _net(classes: int = 1, dtype: torch.dtype = torch.float32) -> UNet:
    torch.manual_seed(0)
    return UNet(1, classes, base_channels=8, depth=3).to(dtype)


def _batch(b: int = 2, classes: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(b, 1, 32, 32, generator=g)
    if classes == 1:
        y = torch.zeros(b, 1, 32, 32)
        y[:, :, 8:20, 8:24] = 1
    else:
        y = torch.zeros(b, 32, 32, dtype=torch.long)
        y[:, 4:14, 4:14], y[:, 18:28, 18:28] = 1, 2
    return x, y


def _encoder_grad(ds: DeepSupervised) -> float:
    return float(
        sum(p.grad.norm() ** 2 for p in ds.model.encoder.parameters() if p.grad is not None)
    )


@pytest.mark.parametrize("classes", [1, 3])
@pytest.mark.parametrize("mode", ["none", "up", "hyb"])
def test_unlabeled_with_teacher_trains_the_encoder(mode: str, classes: int) -> None:
    ds = DeepSupervised(_net(classes), mode)
    teacher = EMATeacher(ds)
    x, _ = _batch(2, classes)
    out = ds.unlabeled(x, teacher)
    assert not out.labeled and out.target is not None and out.target_valid is not None
    loss = ds.loss(out)
    loss.total.backward()
    assert torch.isfinite(loss.total)
    assert _encoder_grad(ds) > 0
    if mode == "hyb":  # the G pass and the tied decoder ran on the pseudo-mask
        assert out.mask_logits is not None and out.rec_mask is not None
        assert out.rec_image is not None


def test_unlabeled_without_teacher_trains_the_tied_decoder() -> None:
    ds = DeepSupervised(_net(), "hyb")
    x, _ = _batch()
    out = ds.unlabeled(x)
    loss = ds.loss(out)
    assert loss.raw["rei"] > 0 and loss.terms["rei"] > 0
    assert {k for k, v in loss.terms.items() if v != 0} == {"rei"}
    loss.total.backward()
    assert _encoder_grad(ds) > 0
    assert ds.reconstruction is not None


@pytest.mark.parametrize("mode", ["none", "deep"])
def test_modes_without_a_label_free_term_refuse_in_one_line(mode: str) -> None:
    ds = DeepSupervised(_net(), mode)
    with pytest.raises(ValueError, match="no term that learns without a mask") as err:
        ds.unlabeled(_batch()[0])
    assert "\n" not in str(err.value)


def test_loss_refuses_a_mask_for_an_unlabeled_batch_and_none_for_a_labeled_one() -> None:
    ds = DeepSupervised(_net(), "hyb")
    x, y = _batch()
    with pytest.raises(ValueError, match=r"ds\.unlabeled"):
        ds.loss(ds(x, y))
    with pytest.raises(ValueError, match="with its mask"):
        ds.loss(ds.unlabeled(x), y)


@pytest.mark.parametrize("mode", ["up", "down"])
def test_unlabeled_without_teacher_trains_the_side_outputs_to_agree(mode: str) -> None:
    """up / down on an unlabelled batch: the side outputs' consistency (URPC) alone, which
    reaches the encoder; a labelled batch does not compute it."""
    torch.manual_seed(0)
    ds = DeepSupervised(_net(), mode)
    x, y = _batch()
    loss = ds.loss(ds.unlabeled(x))
    assert {k for k, v in loss.terms.items() if v != 0} == {"cons"}
    loss.total.backward()
    assert _encoder_grad(ds) > 0
    assert "cons" not in ds.loss(ds(x, y), y).terms


def test_side_output_consistency_is_zero_when_every_output_agrees() -> None:
    """The URPC term is 0 exactly when the side outputs equal the main output, and grows as
    one of them departs."""
    from dsplug.losses.baselines import consistency_term
    from dsplug.output import DSOutput

    logits = torch.randn(2, 3, 8, 8)
    c = SimpleNamespace(
        out=DSOutput(logits=logits, image=logits, aux_logits={2: logits[..., ::2, ::2]}),
        label_mode="multiclass",
        weights=DeepSupervised(_net(), "up").criterion.weights,
    )
    smooth = torch.nn.functional.interpolate(logits[..., ::2, ::2], size=(8, 8), mode="bilinear")
    c.out.logits = smooth
    assert float(consistency_term(c)) == pytest.approx(0.0, abs=1e-6)
    c.out.aux_logits = {2: -logits[..., ::2, ::2]}
    assert float(consistency_term(c)) > 0.01


def _constant_teacher(value: float) -> object:
    def teacher(x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 1, *x.shape[2:]), value)

    return teacher


@pytest.mark.parametrize("mode", ["none", "up", "hyb"])
def test_unsure_pixels_teach_nothing(mode: str) -> None:
    """A teacher at p = 0.5 everywhere is sure nowhere: no supervised term counts a pixel."""
    ds = DeepSupervised(_net(), mode)
    x, _ = _batch()
    loss = ds.loss(ds.unlabeled(x, _constant_teacher(0.0), noise=0.0))
    for name, value in loss.terms.items():
        if name != "rei":  # the one label-free term reads X, not the mask
            assert value == 0.0, name
    empty = ds.loss(ds.unlabeled(x, _constant_teacher(-6.0), noise=0.0))
    assert empty.terms["image"] == 0.0  # a confidently empty pseudo-mask teaches nothing

    def square(x: torch.Tensor) -> torch.Tensor:  # sure everywhere, foreground in a square
        logits = torch.full((x.shape[0], 1, *x.shape[2:]), -6.0)
        logits[..., 8:20, 8:20] = 6.0
        return logits

    assert ds.loss(ds.unlabeled(x, square, noise=0.0)).terms["image"] > 0


def test_only_confident_pixels_count_in_l_image() -> None:
    """L_image of a pseudo-labelled batch is L_B (no soft Dice) on the teacher's confident
    pixels alone."""
    from dsplug.losses.terms import cross_entropy

    ds = DeepSupervised(_net(), "none")
    x, _ = _batch()

    def teacher(x: torch.Tensor) -> torch.Tensor:
        logits = torch.full((x.shape[0], 1, *x.shape[2:]), 6.0)
        logits[..., 16:] = 0.0  # unsure on the right half
        return logits

    out = ds.unlabeled(x, teacher, noise=0.0)
    valid = torch.zeros(2, 1, 32, 32)
    valid[..., :16] = 1
    flipped = out.target_valid[..., 16:].sum() > 0  # a horizontal flip moved the sure half
    if flipped:
        valid = valid.flip(-1)
    expected = cross_entropy(out.logits, torch.ones(2, 1, 32, 32), False, valid)
    assert torch.allclose(ds.loss(out).raw_tensors["image"], expected.detach())
    assert torch.equal(out.target_valid, valid)


def test_the_pseudo_mask_is_flipped_with_the_image() -> None:
    """The student's perturbed (flipped) X and the pseudo-mask stay aligned."""
    ds = DeepSupervised(_net(), "hyb")
    torch.manual_seed(3)
    x = torch.rand(2, 1, 32, 32)
    x[..., :10, :6] = 1.0  # an asymmetric pattern
    for _ in range(8):  # every flip combination is drawn at some point
        out = ds.unlabeled(x, lambda t: 20 * (t - 0.5), noise=0.0)
        assert torch.equal(out.target, (out.image > 0.5).float())


def test_ema_teacher_follows_the_student() -> None:
    ds = DeepSupervised(_net(), "hyb")
    teacher = EMATeacher(ds, decay=0.99)
    before = {k: v.clone() for k, v in teacher.module.state_dict().items()}
    opt = torch.optim.SGD(ds.parameters(), lr=0.5)
    x, y = _batch()
    ds.loss(ds(x, y), y).total.backward()
    opt.step()
    student = ds.model.state_dict()
    teacher.update()  # update 0: d = min(0.99, 1 / 10)
    name = next(k for k in before if k.endswith("weight") and before[k].dim() == 4)
    expected = 0.1 * before[name] + 0.9 * student[name]
    assert torch.allclose(teacher.module.state_dict()[name], expected, atol=1e-6)
    assert not torch.equal(teacher.module.state_dict()[name], before[name])
    assert int(teacher.updates) == 1
    # the teacher has no gradient, no hooks of the wrapper, and stays in eval mode
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.module.training
    assert all(not m._forward_hooks for m in teacher.module.modules())


def test_ema_teacher_state_pickles_and_resumes() -> None:
    ds = DeepSupervised(_net(), "hyb")
    teacher = EMATeacher(ds)
    teacher.update()
    clone = EMATeacher(copy.deepcopy(ds))
    clone.load_state_dict(teacher.state_dict())
    assert int(clone.updates) == 1
    again = pickle.loads(pickle.dumps(teacher))
    x = _batch()[0]
    assert torch.equal(again(x), teacher(x))


def test_unlabeled_batches_do_not_measure_the_balance() -> None:
    ds = DeepSupervised(_net(), "hyb")
    x, y = _batch()
    ds.loss(ds(x, y), y)
    steps = int(ds.criterion.balancer.steps)
    scales = ds.criterion.balancer.log_scales.clone()
    ds.loss(ds.unlabeled(x, EMATeacher(ds)))
    ds.loss(ds.unlabeled(x))
    assert int(ds.criterion.balancer.steps) == steps
    assert torch.equal(ds.criterion.balancer.log_scales, scales)


def test_user_seg_loss_is_not_used_on_unsure_pseudo_pixels() -> None:
    calls = []

    def seg_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return logits.mean() * 0 + 1.0

    ds = DeepSupervised(_net(), "none", seg_loss=seg_loss)
    x, _ = _batch()
    ds.loss(ds.unlabeled(x, _constant_teacher(-6.0), noise=0.0))
    assert not calls  # L_BD on the confident pixels, not the user's loss on every pixel


@pytest.mark.parametrize("batch", [1, 3])
def test_mean_teacher_batch_one_float64(batch: int) -> None:
    ds = DeepSupervised(_net(dtype=torch.float64), "none")
    teacher = EMATeacher(ds)
    x = torch.randn(batch, 1, 32, 32, dtype=torch.float64)
    loss = mean_teacher_loss(ds, teacher, x, ds.label_mode)
    loss.backward()
    assert loss.dtype == torch.float64 and _encoder_grad(ds) > 0
    assert torch.isfinite(ds.loss(ds.unlabeled(x, teacher)).total)


def test_flip_noise_and_rampup() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 1, 8, 8)
    same, dims = flip_noise(x, noise=0.0, flip=False)
    assert torch.equal(same, x) and dims == ()
    noisy, _ = flip_noise(x, noise=0.1, flip=False)
    assert 0 < (noisy - x).abs().max() <= 0.2 * x.std(dim=(1, 2, 3)).max() + 1e-6
    assert sigmoid_rampup(0, 100) == pytest.approx(0.006738, rel=1e-3)
    assert sigmoid_rampup(100, 100) == sigmoid_rampup(500, 100) == 1.0
    assert sigmoid_rampup(50, 100) < sigmoid_rampup(60, 100)


@pytest.mark.parametrize("mode", ["none", "up", "hyb"])
def test_a_partly_labelled_batch_is_an_all_ignore_mask(mode: str) -> None:
    """An image whose mask is ``ignore_index`` everywhere adds nothing to any mask term: the
    mask terms of [labelled, unlabelled] are those of [labelled] alone (L_rei, which reads X
    alone, trains on both)."""
    torch.manual_seed(0)
    net = UNet(1, 1, base_channels=8, depth=3, norm="instance")  # per-image statistics
    ds = DeepSupervised(net, mode, ignore_index=255, aux_every=1)  # both calls run the branches
    x, y = _batch(2)
    y[1] = 255
    both = ds.loss(ds(x, y), y)
    alone = ds.loss(ds(x[:1], y[:1]), y[:1])
    for name, value in alone.raw.items():
        if name not in ds.criterion.label_free_terms:
            assert both.raw[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
