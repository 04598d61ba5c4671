"""DeepSupervised on the own networks: shapes, gradients, eval identity, strip, BatchNorm."""

import copy

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsplug import MODES, DeepSupervised, DSOutput, LossBreakdown
from tests.helpers import make_batch, make_net

LABEL_CLASSES = {"binary": [1], "multilabel": [2, 3], "multiclass": [2, 3]}


@st.composite
def configurations(draw):
    spatial_dims = draw(st.sampled_from([2, 3]))
    depth = draw(st.integers(2, 4 if spatial_dims == 2 else 3))
    divisor = 2 ** (depth - 1)
    max_size = 64 if spatial_dims == 2 else 16
    size = divisor * draw(st.integers(2, max_size // divisor))  # BatchNorm needs > 1 value
    label_mode = draw(st.sampled_from(sorted(LABEL_CLASSES)))
    return {
        "mode": draw(st.sampled_from(sorted(MODES))),
        "kind": draw(st.sampled_from(["unet", "unetpp"])),
        "depth": depth,
        "base": draw(st.sampled_from([4, 8])),
        "batch": draw(st.integers(1, 3)),
        "size": size,
        "spatial_dims": spatial_dims,
        "label_mode": label_mode,
        "classes": draw(st.sampled_from(LABEL_CLASSES[label_mode])),
        "in_channels": draw(st.integers(1, 2)),
    }


def _expected_branches(mode):
    spec = MODES[mode]
    return {
        "mask_logits": spec.mask_pass,
        "rec_image": spec.reconstruction is not None,
        "rec_mask": spec.reconstruct_mask,
        "aux_logits": spec.heads is not None,
        "kl": spec.reconstruction == "vae",
    }


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configurations())
def test_every_branch_has_the_right_shape(cfg):
    net = make_net(
        cfg["kind"],
        in_channels=cfg["in_channels"],
        classes=cfg["classes"],
        base=cfg["base"],
        depth=cfg["depth"],
        spatial_dims=cfg["spatial_dims"],
    )
    ds = DeepSupervised(net, cfg["mode"], label_mode=cfg["label_mode"])
    x, y = make_batch(
        cfg["label_mode"],
        cfg["classes"],
        batch=cfg["batch"],
        in_channels=cfg["in_channels"],
        size=cfg["size"],
        spatial_dims=cfg["spatial_dims"],
    )
    out = ds(x, y)
    assert isinstance(out, DSOutput)
    b, s, dims = cfg["batch"], cfg["size"], cfg["spatial_dims"]
    assert out.logits.shape == (b, cfg["classes"], *(s,) * dims)
    channels = net.encoder.channels
    if MODES[cfg["mode"]].features:
        assert sorted(out.features) == [2**k for k in range(cfg["depth"])]
        for k, c in enumerate(channels):
            assert out.features[2**k].shape == (b, c, *(s // 2**k,) * dims)
    for name, present in _expected_branches(cfg["mode"]).items():
        assert (getattr(out, name) is not None) == present, name
    if out.mask_logits is not None:
        assert out.mask_logits.shape == out.logits.shape
        assert {r: t.shape for r, t in out.mask_features.items()} == {
            r: t.shape for r, t in out.features.items()
        }
    if out.rec_image is not None:
        assert out.rec_image.shape == x.shape
    if out.rec_mask is not None:
        assert out.rec_mask.shape == out.logits.shape
        for k, c in enumerate(channels):
            assert out.rec_features[2**k].shape == (b, c, *(s // 2**k,) * dims)
    if out.aux_logits is not None:
        assert sorted(out.aux_logits) == [2**k for k in range(1, cfg["depth"])]
        for r, logits in out.aux_logits.items():
            assert logits.shape == (b, cfg["classes"], *(s // r,) * dims)
    if out.kl is not None:
        assert out.kl.dim() == 0
    loss = ds.loss(out, y)
    assert isinstance(loss, LossBreakdown)
    assert loss.total.dim() == 0 and torch.isfinite(loss.total)
    assert list(loss.terms) == [t.name for t in ds.criterion.terms]


@pytest.mark.parametrize("kind", ["unet", "unetpp"])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_parameter_gets_a_finite_nonzero_gradient(kind, mode):
    torch.manual_seed(0)
    ds = DeepSupervised(make_net(kind, classes=3), mode, label_mode="multiclass")
    x, y = make_batch("multiclass", 3)
    loss = ds.loss(ds(x, y), y)
    assert all(torch.isfinite(torch.tensor(v)) for v in loss.terms.values()), loss.terms
    loss.total.backward()
    for name, p in ds.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient for {name}"
        assert p.grad.abs().sum() > 0, f"zero gradient for {name}"


@pytest.mark.parametrize("mode", sorted(MODES))
def test_eval_without_target_is_the_bare_model(mode):
    torch.manual_seed(0)
    net = make_net("unetpp", classes=2)
    reference = copy.deepcopy(net).eval()
    ds = DeepSupervised(net, mode, label_mode="multiclass")
    x, y = make_batch("multiclass", 2)
    ds.train()
    ds.loss(ds(x, y), y).total.backward()  # a training step must not change eval behaviour
    ds.eval()
    reference.load_state_dict(net.state_dict())
    assert all(not m._forward_hooks for m in net.modules()), "eval mode keeps a hook"
    out = ds(x)
    assert type(out) is torch.Tensor
    assert torch.equal(out, net(x))
    assert torch.equal(out, reference(x))
    ds.train()  # hooks come back for training, and go again in eval
    assert any(m._forward_hooks for m in net.modules()) == bool(MODES[mode].features)
    ds.eval()
    assert all(not m._forward_hooks for m in net.modules())


@pytest.mark.parametrize("mode", sorted(MODES))
def test_strip_returns_the_same_model_with_its_keys(mode):
    net = make_net("unet")
    keys = list(net.state_dict())
    ds = DeepSupervised(net, mode)
    bare = ds.strip()
    assert bare is net
    assert list(bare.state_dict()) == keys
    assert all(not m._forward_hooks for m in bare.modules())


@pytest.mark.parametrize("mode", sorted(MODES))
def test_state_dict_does_not_depend_on_train_or_eval(mode):
    torch.manual_seed(0)
    net = make_net("unet")
    bare_keys = list(net.state_dict())
    ds = DeepSupervised(net, mode)
    keys = list(ds.state_dict())
    # The wrapped model's own keys, unchanged, under "model."; nothing else of it elsewhere.
    assert [k.removeprefix("model.") for k in keys if k.startswith("model.")] == bare_keys
    assert list(ds.train().state_dict()) == keys
    assert list(ds.eval().state_dict()) == keys
    x, y = make_batch("binary", 1)
    ds.train()
    ds.loss(ds(x, y), y).total.backward()  # nothing is built lazily by the first step
    assert list(ds.state_dict()) == keys
    ds.eval()
    ds(x)
    assert list(ds.state_dict()) == keys


def test_only_the_modes_modules_are_built():
    plain = sum(p.numel() for p in DeepSupervised(make_net("unet"), "none").parameters())
    assert plain == sum(p.numel() for p in make_net("unet").parameters())
    assert DeepSupervised(make_net("unet"), "seg").reconstruction.mask_head is None
    assert DeepSupervised(make_net("unet"), "rec").reconstruction.mask_head is not None
    assert len(DeepSupervised(make_net("unet"), "deep").heads) == 0


@pytest.mark.parametrize(
    "mode", [m for m in sorted(MODES) if MODES[m].mask_pass or MODES[m].reconstruct_mask]
)
def test_mask_pass_leaves_batchnorm_running_stats_alone(mode):
    torch.manual_seed(0)
    net = make_net("unet", classes=2)
    twin = copy.deepcopy(net)
    x, y = make_batch("multiclass", 2)
    initial = {name: value.clone() for name, value in net.named_buffers()}
    assert any("running_mean" in name for name in initial)
    ds = DeepSupervised(net, mode, label_mode="multiclass").train()
    ds.loss(ds(x, y), y).total.backward()
    twin.train()(x)  # the same step without the G pass
    buffers = dict(twin.named_buffers())
    assert buffers.keys() == initial.keys()
    for name, value in net.named_buffers():
        assert torch.equal(value, buffers[name]), name
    # The X pass did update them (once): the check above compares two updated states.
    assert all(int(v) == 1 for n, v in buffers.items() if n.endswith("num_batches_tracked"))
    means = [name for name in initial if name.endswith("running_mean")]
    assert all(not torch.equal(buffers[name], initial[name]) for name in means)
