"""Guard tests of the gradient balance (issue 18): each fails when the balancing is removed,
inverted or its state lost, on degenerate batches, and in users' own loops.

The "ratio" is ||∇θ (total - α L_image)|| / ||∇θ α L_image|| on the encoder θ: how hard the
auxiliary terms together steer the encoder next to the segmentation loss (healthy: 0.05-2).
"""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from torch import nn

from dsplug import DeepSupervised, UNet
from dsplug._compile import at_compile_time
from dsplug.losses.balance import GradientBalance
from dsplug.losses.base import Term
from dsplug.losses.terms import bce_dice

smp = pytest.importorskip("segmentation_models_pytorch")


# --- helpers ----------------------------------------------------------------------------------
def _x(batch: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 1, size, size, generator=torch.Generator().manual_seed(seed))


def _masks(batch: int = 4, size: int = 32, full: int = 4) -> torch.Tensor:
    """``full`` images with a square, the others empty."""
    y = torch.zeros(batch, 1, size, size)
    y[:full, :, size // 4 : size // 2 + 4, size // 4 : size // 2 + 6] = 1
    return y


def _encoder(ds: DeepSupervised) -> list[nn.Parameter]:
    return [p for p in ds._adapter.encoder().parameters() if p.requires_grad]


def _flat(grads) -> torch.Tensor:
    return torch.cat([g.flatten() for g in grads if g is not None])


def _ratio(ds: DeepSupervised, x: torch.Tensor, y: torch.Tensor) -> float:
    """The auxiliary / image encoder-gradient ratio of one training step (on a copy: the
    balance measures as it would on this step)."""
    ds = copy.deepcopy(ds).train()
    torch.manual_seed(1)
    out = ds(x, y)
    loss = ds.loss(out, y)
    image = ds.criterion.weights.alpha * bce_dice(out.logits, y, False)
    params = _encoder(ds)
    total = _flat(torch.autograd.grad(loss.total, params, retain_graph=True, allow_unused=True))
    alone = _flat(torch.autograd.grad(image, params, allow_unused=True))
    return float((total - alone).norm() / alone.norm())


def _step(ds: DeepSupervised, opt: torch.optim.Optimizer, x, y) -> None:
    opt.zero_grad()
    ds.loss(ds(x, y), y).total.backward()
    opt.step()


def _smp_unet(encoder: str = "tu-test_resnet") -> nn.Module:
    return smp.Unet(encoder, encoder_weights=None, in_channels=1, classes=1)


def _monai_basic() -> nn.Module:
    nets = pytest.importorskip("monai.networks.nets")
    return nets.BasicUNet(2, 1, 1, features=(8, 8, 16, 16, 32, 8))


MODELS = {
    "own": lambda: UNet(1, 1, base_channels=16, depth=4),
    "smp": _smp_unet,
    "monai": _monai_basic,
}


# --- degenerate batches ---------------------------------------------------------------------
@pytest.mark.parametrize("family", sorted(MODELS))
def test_all_empty_first_batch_keeps_the_encoder_on_scale(family: str) -> None:
    """All-empty masks at initialisation: the G pass gives all-zero features, so L_D / L_D'
    divided by their 1e-6 floor and the step-0 measurement pinned their scales at the clip
    (9-33x L_image's gradient); then a few half-empty steps stay in range too."""
    torch.manual_seed(0)
    ds = DeepSupervised(MODELS[family](), mode="hyb").train()
    empty = torch.zeros(4, 1, 32, 32)
    assert 0.05 <= _ratio(ds, _x(), empty) <= 2.0
    opt = torch.optim.AdamW(ds.parameters(), lr=1e-3)
    _step(ds, opt, _x(), empty)
    raw = ds.loss(ds(_x(), empty), empty).raw
    assert all(math.isfinite(v) and v < 10 for v in raw.values()), raw
    for seed in range(4):
        _step(ds, opt, _x(seed=seed + 1), _masks(full=2))
    assert 0.05 <= _ratio(ds, _x(seed=9), _masks(full=2)) <= 2.0


def test_all_empty_batch_does_not_pin_the_scales() -> None:
    """A degenerate batch measures provisionally: the next informative batch measures afresh
    and its scales are what a balance that never saw the empty batch would find."""
    torch.manual_seed(0)
    ds = DeepSupervised(UNet(1, 1, base_channels=8, depth=3), mode="hyb", aux_every=1).train()
    fresh = copy.deepcopy(ds)
    empty, half = torch.zeros(4, 1, 32, 32), _masks(full=2)
    ds.loss(ds(_x(), empty), empty)
    assert int(ds.criterion.balancer.steps) == 0  # not counted: the next step measures
    ds.loss(ds(_x(), half), half)
    fresh.loss(fresh(_x(), half), half)
    a, b = ds.criterion.balancer, fresh.criterion.balancer
    assert torch.allclose(a.log_scales, b.log_scales, atol=1e-5), (a.log_scales, b.log_scales)
    assert torch.equal(a.measured, b.measured) and int(a.steps) == int(b.steps) == 1


def test_every_pixel_ignored_gives_a_finite_loss_on_scale() -> None:
    """All pixels ignore_index: hyb gave a total of about 1e5 where none gives 0."""
    torch.manual_seed(0)
    ds = DeepSupervised(UNet(1, 1, base_channels=8, depth=3), mode="hyb", ignore_index=2).train()
    y = torch.full((2, 1, 32, 32), 2.0)
    loss = ds.loss(ds(_x(2), y), y)
    assert math.isfinite(float(loss.total)) and float(loss.total) < 10, loss.terms
    assert loss.raw["deep"] == 0.0 and loss.raw["deep_rec"] == 0.0
    loss.total.backward()
    grads = [p.grad for p in _encoder(ds) if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads)
    assert float(_flat(grads).norm()) < 100


def test_an_empty_batch_is_one_clear_error() -> None:
    ds = DeepSupervised(UNet(1, 1, base_channels=8, depth=3), mode="hyb").train()
    x, y = torch.zeros(0, 1, 32, 32), torch.zeros(0, 1, 32, 32)
    with pytest.raises(ValueError, match=r"B = 0"):
        ds(x, y)
    out = DeepSupervised(UNet(1, 1, base_channels=8, depth=3), mode="none")(_x(2), _masks(2))
    out.logits = out.logits[:0]
    with pytest.raises(ValueError, match=r"empty batch"):
        ds.criterion(out, y)


# --- the balance itself -----------------------------------------------------------------------
def _mis_scaled(ds: DeepSupervised, factor: float) -> None:
    """Every auxiliary term multiplied by ``factor`` before the balance sees it."""

    def scaled(compute):
        return lambda c: factor * compute(c)

    ds.criterion.terms = tuple(
        Term(t.name, t.weight, scaled(t.compute), t.scheduled) if t.scheduled else t
        for t in type(ds.criterion).terms
    )


@pytest.mark.parametrize("factor", [1e3, 1e-3])
def test_mis_scaled_terms_land_in_range_after_one_measured_step(factor: float) -> None:
    """Each auxiliary term, whatever its scale, sends the encoder L_image's gradient after the
    step-0 measurement (fails with the balance removed or inverted: 1e3x or 1e-3x off)."""
    torch.manual_seed(0)
    ds = DeepSupervised(UNet(1, 1, base_channels=8, depth=3), mode="hyb", aux_every=1).train()
    _mis_scaled(ds, factor)
    x, y = _x(), _masks(full=3)
    out = ds(x, y)
    loss = ds.loss(out, y)  # measures at step 0
    params = _encoder(ds)
    reference = _flat(
        torch.autograd.grad(
            loss.raw_tensors["image"] * 0 + bce_dice(out.logits, y, False),
            params,
            retain_graph=True,
            allow_unused=True,
        )
    ).norm()
    scales = ds.criterion.balancer.scales()
    c = ds.criterion
    checked = 0
    for term in c.terms[1:]:
        value = term.compute(c._context(out, y))
        if not value.requires_grad or float(value) == 0.0:
            continue  # a silent pseudo-label term (no confident teacher pixel yet)
        grad = _flat(torch.autograd.grad(value, params, retain_graph=True, allow_unused=True))
        ratio = float(scales[term.name] * grad.norm() / reference)
        assert 0.5 <= ratio <= 2.0, f"{term.name}: {ratio:.3g} x L_image's gradient"
        checked += 1
    assert checked >= 5
    assert 0.05 <= _ratio(ds, _x(seed=5), _masks(full=3)) <= 2.0


def _toy(every: int = 8, smoothing: float = 0.5, limit: float = 1e4):
    w = nn.Parameter(torch.ones(3))
    balance = GradientBalance(["t"], every=every, smoothing=smoothing, limit=limit).train()
    balance.attach([w])
    return w, balance


@pytest.mark.parametrize("smoothing", [0.5, 0.8])
def test_cadence_and_smoothing(smoothing: float) -> None:
    """Measured at steps 0, 1, 2, 4, then every ``every``; each new measurement averaged with
    the last in log space, the last weighted by ``smoothing`` (at 0.5 s and 1 - s agree)."""
    w, balance = _toy(every=8, smoothing=smoothing)
    measured_at, previous = [], None
    for step in range(26):
        k = 2.0 ** (step % 5 + 1)  # the term's gradient changes every step
        before = balance.log_scales.clone()
        balance.update((w * 3).sum(), {"t": (k * w).sum()})
        if not torch.equal(before, balance.log_scales):
            measured_at.append(step)
            new = math.log(3 / k)
            expected = new if previous is None else smoothing * previous + (1 - smoothing) * new
            assert float(balance.log_scales[0]) == pytest.approx(expected, abs=1e-5)
            previous = float(balance.log_scales[0])
    assert measured_at == [0, 1, 2, 4, 8, 16, 24]


def test_scales_are_clipped() -> None:
    w, balance = _toy(limit=100.0)
    balance.update((w * 1.0).sum(), {"t": (1e-6 * w).sum()})
    assert float(balance.scales()["t"]) == pytest.approx(100.0)
    w, balance = _toy(limit=100.0)
    balance.update((w * 1.0).sum(), {"t": (1e6 * w).sum()})
    assert float(balance.scales()["t"]) == pytest.approx(0.01)


class _NanGrad(torch.autograd.Function):
    """Identity forward, NaN gradient: a finite loss whose gradient is not."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("nan"))


def test_non_finite_gradients_skip_the_measurement_with_one_warning() -> None:
    w, balance = _toy(every=1)
    balance.update((w * 3).sum(), {"t": (2 * w).sum()})
    kept = balance.log_scales.clone()
    with pytest.warns(UserWarning, match="not finite"):
        balance.update((w * 3).sum(), {"t": _NanGrad.apply(w).sum()})
    assert torch.equal(balance.log_scales, kept)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning only
        balance.update(_NanGrad.apply(w).sum(), {"t": (2 * w).sum()})
    assert torch.equal(balance.log_scales, kept) and torch.isfinite(balance.log_scales).all()


def test_scales_and_progress_survive_a_state_dict() -> None:
    torch.manual_seed(0)
    net = UNet(1, 1, base_channels=8, depth=3)
    ds = DeepSupervised(copy.deepcopy(net), mode="hyb", aux_every=1).train()
    opt = torch.optim.AdamW(ds.parameters(), lr=1e-3)
    for seed in range(3):
        _step(ds, opt, _x(seed=seed), _masks(full=3))
    ds.set_epoch(2, 5)
    again = DeepSupervised(copy.deepcopy(net), mode="hyb", aux_every=1)
    again.load_state_dict(ds.state_dict())
    a, b = ds.criterion.balancer, again.criterion.balancer
    assert torch.equal(a.log_scales, b.log_scales) and int(a.steps) == int(b.steps) == 3
    assert bool(b.measured.any()) and again.criterion.factor == ds.criterion.factor < 1
    # the restored balance goes on (step 3 is not due): the same scales are used
    again.train()
    x, y = _x(seed=7), _masks(full=3)
    again.loss(again(x, y), y)
    assert torch.equal(b.log_scales, a.log_scales) and int(b.steps) == 4


def test_scales_survive_a_trainer_checkpoint(tmp_path) -> None:
    from dsplug.data import SyntheticDataset
    from dsplug.train import TrainConfig, Trainer
    from dsplug.train.checkpoint import load_checkpoint, load_weights

    torch.manual_seed(0)
    ds = DeepSupervised(UNet(1, 1, base_channels=8, depth=3), mode="hyb")
    data = SyntheticDataset(8, size=32, seed=0)
    config = TrainConfig(
        max_epochs=2, min_epochs=1, batch_size=4, progress=False, plots=False, amp="off"
    )
    Trainer(ds, data, data, out=tmp_path, config=config).fit()
    state = load_checkpoint(tmp_path / "last.pt")["wrapper_state"]
    scales = state["criterion.balancer.log_scales"]
    assert bool(state["criterion.balancer.measured"].any()) and bool(scales.abs().sum() > 0)
    assert float(state["criterion.progress"]) == 1.0  # saved in the last epoch
    # a fresh wrapper loaded as a resume loads it (not the object that wrote it) holds them
    fresh = DeepSupervised(UNet(1, 1, base_channels=8, depth=3), mode="hyb")
    assert not bool(fresh.criterion.balancer.measured.any())
    load_weights(fresh, state, tmp_path / "last.pt", "wrapper_state")
    balancer = fresh.criterion.balancer
    assert torch.equal(balancer.log_scales, scales) and torch.equal(
        balancer.measured, state["criterion.balancer.measured"]
    )
    assert int(balancer.steps) == int(state["criterion.balancer.steps"]) > 0
    assert fresh.criterion._progress == 1.0 and fresh.criterion.factor == 0.0


# --- the shared weights, read at each measurement ------------------------------------------
def test_freeze_encoder_after_wrapping_trains_and_balances() -> None:
    """smp's freeze_encoder() through the wrapper raised at the next step ("One of the
    differentiated Tensors does not require grad"); unfreezing measures on the encoder again."""
    torch.manual_seed(0)
    ds = DeepSupervised(_smp_unet(), mode="hyb", aux_every=1).train()
    balancer = ds.criterion.balancer
    measured_on: list[set[int]] = []  # the weights of each gradient measurement
    norm = balancer._norm
    balancer._norm = lambda value, params: (
        measured_on.append(set(map(id, params))) or norm(value, params)
    )
    ds.freeze_encoder()
    opt = torch.optim.AdamW(ds.parameters(), lr=1e-3)  # frozen weights get no gradient
    _step(ds, opt, _x(size=64), _masks(size=64, full=3))
    assert bool(balancer.measured.any())  # measured on the trainable decoder
    encoder = set(map(id, ds._adapter.encoder().parameters()))
    assert measured_on and not encoder & set.union(*measured_on)
    ds.unfreeze_encoder()
    assert set(map(id, ds._shared_parameters())) == encoder
    weights = [p.detach().clone() for p in ds._adapter.encoder().parameters()]
    measured_on.clear()
    _step(ds, opt, _x(size=64, seed=1), _masks(size=64, full=3))  # step 1: measured again
    assert measured_on and all(ids == encoder for ids in measured_on)  # on the encoder again
    after = list(ds._adapter.encoder().parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, weights))  # and it trains


def test_assign_loaded_weights_are_the_ones_measured() -> None:
    """After load_state_dict(..., assign=True) the encoder's tensors are new ones: the balance
    measures on them (it kept the old list, measured 0 and stopped balancing)."""
    torch.manual_seed(0)
    net = UNet(1, 1, base_channels=8, depth=3)
    ds = DeepSupervised(net, mode="hyb").train()
    ds.model.load_state_dict(copy.deepcopy(UNet(1, 1, 8, 3).state_dict()), assign=True)
    assert set(map(id, ds._shared_parameters())) == set(map(id, net.encoder.parameters()))
    x, y = _x(), _masks(full=3)
    ds.loss(ds(x, y), y)
    assert bool(ds.criterion.balancer.measured.any())


@pytest.mark.parametrize(
    ("mode", "balance", "frozen"),
    [
        ("hyb", "auto", "model"),
        ("hyb", "paper", "model"),  # trained its own branches silently
        ("hyb", "paper", "all"),  # trained nothing, silently
        ("none", "auto", "all"),  # torch's "element 0 of tensors does not require grad"
        ("deep", "paper", "all"),
    ],
)
def test_no_trainable_weight_left_is_one_clear_error(mode: str, balance: str, frozen: str):
    ds = DeepSupervised(UNet(1, 1, base_channels=8, depth=3), mode=mode, balance=balance).train()
    (ds.model if frozen == "model" else ds).requires_grad_(False)
    x, y = _x(batch=2), _masks(batch=2, full=1)
    with pytest.raises(RuntimeError, match="every parameter of the model is frozen"):
        ds.loss(ds(x, y), y)
    with torch.no_grad():  # measuring a frozen model's loss is fine
        ds.loss(ds(x, y), y)


def test_a_load_without_the_progress_keeps_it_and_warns() -> None:
    ds = DeepSupervised(UNet(1, 1, base_channels=8, depth=3), mode="hyb")
    ds.set_epoch(2, 5)
    weights = {k: v for k, v in ds.state_dict().items() if k.startswith("model.")}
    with pytest.warns(UserWarning, match="no criterion.progress.*stays at progress 0.5"):
        ds.load_state_dict(weights, strict=False)
    assert float(ds.criterion.progress) == ds.criterion._progress == 0.5  # not reset to 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a whole state dict loads silently
        fresh = DeepSupervised(UNet(1, 1, base_channels=8, depth=3), mode="hyb")
        fresh.load_state_dict(ds.state_dict())
    assert fresh.criterion._progress == 0.5


def test_compiled_before_any_eager_measurement_warns() -> None:
    w, balance = _toy()

    def step(scale: torch.Tensor) -> None:
        balance.update((w * scale).sum(), {"t": (2 * w).sum()})

    compiled = torch.compile(step, backend="eager", fullgraph=True)
    with pytest.warns(UserWarning, match="before any eager step"):
        compiled(torch.tensor(3.0))
    torch._dynamo.reset()
    w, balance = _toy()
    balance.update((w * 3).sum(), {"t": (2 * w).sum()})  # eager first: no warning
    compiled = torch.compile(step, backend="eager", fullgraph=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compiled(torch.tensor(3.0))
    torch._dynamo.reset()


def test_at_compile_time_runs_only_while_tracing() -> None:
    """dsplug._compile's private torch API (torch._dynamo.comptime) behaves as relied on."""
    calls = []
    _record.calls = calls
    at_compile_time(_record)  # eager: nothing
    assert calls == []

    def f(x):
        at_compile_time(_record)
        return x + 1

    compiled = torch.compile(f, backend="eager", fullgraph=True)
    compiled(torch.ones(1))
    compiled(torch.ones(1))
    assert len(calls) == 1
    torch._dynamo.reset()


def _record(ctx=None) -> None:
    _record.calls.append(ctx)


# --- the schedule --------------------------------------------------------------------------
def test_factor_zero_computes_no_auxiliary_branch() -> None:
    """In the last epoch under the cosine schedule a hyb step runs the model once, as `none`."""
    torch.manual_seed(0)
    net = UNet(1, 1, base_channels=8, depth=3)
    calls = []
    net.register_forward_hook(lambda *_: calls.append(1))
    ds = DeepSupervised(net, mode="hyb").train()
    x, y = _x(), _masks(full=3)
    ds.set_epoch(0, 3)
    ds.loss(ds(x, y), y)
    assert len(calls) == 2  # X and G
    calls.clear()
    ds.set_epoch(2, 3)
    out = ds(x, y)
    assert len(calls) == 1 and out.mask_logits is None and out.rec_image is None
    loss = ds.loss(out, y)
    none = DeepSupervised(copy.deepcopy(net), mode="none").train()
    assert float(loss.total) == pytest.approx(float(none.loss(none(x, y), y).total), rel=1e-5)
    assert set(loss.terms) == {t.name for t in ds.criterion.terms}  # the same keys, 0 for aux


def test_one_progress_convention() -> None:
    from dsplug.losses import epoch_progress
    from dsplug.train.schedule import ds_progress

    assert [epoch_progress(e, 4) for e in range(4)] == [0.0, 1 / 3, 2 / 3, 1.0]
    assert [ds_progress(e, 4) for e in range(1, 5)] == [epoch_progress(e, 4) for e in range(4)]
    with pytest.raises(ValueError, match="0-based"):
        epoch_progress(4, 4)
    for epoch in (0, 5, 10):  # clamped to 0 or 1 before
        with pytest.raises(ValueError, match=r"1-based.*got epoch="):
            ds_progress(epoch, 4)


# --- the paper's literal form ----------------------------------------------------------------
@pytest.mark.parametrize("family", ["own", "smp"])
def test_paper_form_projects_only_where_channel_counts_differ(family: str) -> None:
    def make() -> nn.Module:
        return UNet(1, 1, base_channels=8, depth=3) if family == "own" else _smp_unet()

    ds = DeepSupervised(make(), mode="hyb", balance="paper")
    targets = ds.reconstruction.level_channels
    projected = {int(k) for k in ds.align}
    compared = {s.reduction for s in ds.stages if s.reduction in targets}
    differ = {r for r in compared if targets[r] != _channels(ds, r)}
    if family == "own":  # the tied decoder mirrors the encoder: every count matches
        assert compared and not differ
    else:  # smp's decoder: some counts differ, some match
        assert differ and compared - differ
    assert projected == differ
    assert ds.reconstruction.unit_gain is False
    auto = DeepSupervised(make(), mode="hyb")
    assert {int(k) for k in auto.align} == compared  # every compared level, by default
    assert auto.reconstruction.unit_gain is True


def _channels(ds: DeepSupervised, reduction: int) -> int:
    return next(s.channels for s in ds.stages if s.reduction == reduction)


# --- the wrapper's own checks ----------------------------------------------------------------
def test_wrapping_a_wrapper_says_it_is_wrapped() -> None:
    ds = DeepSupervised(UNet(1, 1, base_channels=8, depth=3), mode="hyb")
    with pytest.raises(TypeError, match="already wrapped"):
        DeepSupervised(ds, mode="deep")


def test_dtype_mismatch_is_one_line() -> None:
    ds = DeepSupervised(UNet(1, 1, base_channels=8, depth=3), mode="hyb").train()
    x, y = _x().double(), _masks(full=3)
    with pytest.raises(TypeError, match=r"torch.float64 but the model's weights are torch.float32"):
        ds(x, y)
