"""MONAI adapters: declared levels against a real forward, every supported mode, refusals."""

import copy
import importlib.util
import sys
import types
from dataclasses import dataclass

import pytest
import torch

from dsplug import MODES, DeepSupervised
from dsplug.adapters import ALL_MODES, UnsupportedModelError, adapter_for
from dsplug.adapters.base import _REGISTRY
from dsplug.hooks import FeatureHooks
from dsplug.losses import feature_mse

monai_nets = pytest.importorskip("monai.networks.nets")
monai_adapters = importlib.import_module("dsplug.adapters.monai")

ATTENTION_MODES = ("none", "deep", "seg", "up", "down")


@dataclass(frozen=True)
class Case:
    """A tiny MONAI network, the input size it runs at and the label mode of its target."""

    name: str
    shape: tuple[int, ...]
    label_mode: str
    classes: int
    modes: tuple[str, ...] = tuple(sorted(ALL_MODES))
    batch: int = 2

    @property
    def spatial_dims(self) -> int:
        return len(self.shape)

    def build(self) -> torch.nn.Module:
        torch.manual_seed(0)
        return BUILDERS[self.name.rsplit("_", 1)[0]](self)


def _basic(case, **options):
    return monai_nets.BasicUNet(
        spatial_dims=case.spatial_dims,
        in_channels=1,
        out_channels=case.classes,
        features=(4, 4, 8, 8, 16, 4),
        **options,
    )


def _dyn(case, **options):
    depth = 4 if case.spatial_dims == 2 else 3
    return monai_nets.DynUNet(
        case.spatial_dims,
        1,
        case.classes,
        kernel_size=[3] * depth,
        strides=[1] + [2] * (depth - 1),
        upsample_kernel_size=[2] * (depth - 1),
        filters=[4, 8, 8, 16][:depth],
        **options,
    )


def _attention(case):
    return monai_nets.AttentionUnet(
        case.spatial_dims, 1, case.classes, channels=(4, 8, 16), strides=(2, 2)
    )


BUILDERS = {
    "basic": _basic,
    "basic-nontrainable": lambda case: _basic(case, upsample="nontrainable"),
    "basic-pixelshuffle": lambda case: _basic(case, upsample="pixelshuffle"),
    "dyn": _dyn,
    "dyn-res": lambda case: _dyn(case, res_block=True),
    "attention": _attention,
}

# Every network in 2D with every mode it supports; in 3D (convolutions there are slow on CPU)
# with the plain mode and the one that runs every branch. The 3D BasicUNet needs 32 voxels along
# one axis so that its instance norms see more than one value at stride 16.
CASES = [
    Case("basic_2d", (32, 32), "multiclass", 3),
    Case("basic_3d", (16, 16, 32), "binary", 1, ("none", "hyb")),
    Case("dyn_2d", (32, 32), "binary", 1),
    Case("dyn-res_3d", (16, 16, 16), "multiclass", 2, ("none", "hyb")),
    Case("attention_2d", (32, 32), "multilabel", 2, ATTENTION_MODES),
    Case("attention_3d", (16, 16, 16), "binary", 1, ("none", "seg")),
]
# Variants checked for their declared levels only.
LEVEL_CASES = [
    *CASES,
    Case("basic-nontrainable_2d", (32, 32), "binary", 1),
    Case("basic-pixelshuffle_2d", (32, 32), "binary", 1),
    Case("dyn_3d", (16, 16, 16), "binary", 1, batch=1),
    Case("dyn-res_2d", (32, 32), "binary", 1),
]
CASE_MODES = [pytest.param(c, m, id=f"{c.name}-{m}") for c in CASES for m in c.modes]


def _batch(case, seed=0):
    """A z-scored-looking image batch and a target in the case's label mode."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(case.batch, 1, *case.shape, generator=gen)
    if case.label_mode == "multiclass":
        y = torch.randint(0, case.classes, (case.batch, *case.shape), generator=gen)
    else:
        y = (torch.rand(case.batch, case.classes, *case.shape, generator=gen) > 0.6).float()
    return x, y


def _real_levels(net, stages, x):
    with FeatureHooks(net, [(s.module_path, s.output_index) for s in stages]) as hooks:
        with hooks.capture():
            net(x)
        return hooks.pop(x.device)


@pytest.mark.parametrize("case", LEVEL_CASES, ids=lambda c: c.name)
def test_declared_levels_match_a_real_forward(case):
    net = case.build()
    adapter = adapter_for(net)
    assert adapter.family == "monai"
    assert (adapter.in_channels, adapter.classes) == (1, case.classes)
    assert adapter.spatial_dims == case.spatial_dims
    assert all(s % adapter.divisor == 0 for s in case.shape)
    stages = adapter.decoder_stages()
    assert stages[-1].name == "bottleneck"
    x, _ = _batch(case)
    features = _real_levels(net, stages, x)
    for stage, feature in zip(stages, features):
        expected = (x.shape[0], stage.channels, *(s // stage.reduction for s in x.shape[2:]))
        assert tuple(feature.shape) == expected, stage
    reductions = [s.reduction for s in stages]
    assert reductions == sorted(set(reductions)), "levels must be distinct, shallowest first"
    # The divisor is the bottleneck's stride: the input must reach it evenly.
    assert stages[-1].reduction == adapter.divisor


@pytest.mark.parametrize("case", LEVEL_CASES, ids=lambda c: c.name)
def test_encoder_view_is_the_models_own_down_path(case):
    net = case.build().eval()
    adapter = adapter_for(net)
    view = adapter.encoder()
    assert adapter.encoder() is view, "one view per adapter"
    owned = {id(m) for m in net.modules()}
    assert all(id(block) in owned for block in view.blocks), "the view must not copy blocks"
    stages = adapter.decoder_stages()
    x, _ = _batch(case)
    with torch.no_grad():
        levels = adapter.encode(view, x)
        bottleneck = _real_levels(net, stages, x)[-1]
    assert len(levels) == len(stages)
    for stage, level in zip(stages, levels):
        assert level.shape[2] * stage.reduction == x.shape[2]
    # The view runs exactly the chain the model runs: the same bottleneck, bit for bit.
    assert torch.equal(levels[-1], bottleneck)


@pytest.mark.parametrize(("case", "mode"), CASE_MODES)
def test_train_step_then_eval_identity_then_strip(case, mode):
    """One training step per (network, mode), then the eval and strip contracts on the same
    objects (3D convolutions are slow on CPU: one build serves the three checks)."""
    net = case.build()
    keys = list(net.state_dict())
    reference = copy.deepcopy(net)
    ds = DeepSupervised(net, mode, label_mode=case.label_mode)
    x, y = _batch(case)

    # A finite loss and a finite non-zero gradient on every parameter the mode built or uses.
    out = ds(x, y)
    assert out.logits.shape == (case.batch, case.classes, *case.shape)
    if MODES[mode].reconstruction is not None:
        assert out.rec_image.shape == x.shape
    loss = ds.loss(out, y)
    assert list(loss.terms) == [t.name for t in ds.criterion.terms]
    for name, value in loss.terms.items():
        assert torch.isfinite(torch.tensor(value)), f"{name} = {value}"
    loss.total.backward()
    for name, p in ds.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient for {name}"
        assert p.grad.abs().sum() > 0, f"zero gradient for {name}"

    # Eval without a target: exactly the bare model, no hook recording.
    ds.eval()
    reference.load_state_dict(net.state_dict())
    reference.eval()
    if ds._hooks is not None:
        ds._hooks._outputs.clear()
    with torch.no_grad():
        logits = ds(x)
        assert type(logits) is torch.Tensor
        assert torch.equal(logits, net(x))
        assert torch.equal(logits, reference(x))
    if ds._hooks is not None:
        assert ds._hooks._outputs == {}, "a hook recorded during ds(x)"

    # strip(): the very model object, its own keys, no hooks left.
    bare = ds.strip()
    assert bare is net
    assert list(bare.state_dict()) == keys
    assert all(not m._forward_hooks for m in bare.modules())


@pytest.mark.parametrize(
    "case", [c for c in CASES if "seg" in c.modes and c.spatial_dims == 2], ids=lambda c: c.name
)
def test_tied_decoder_reads_the_encoders_weights(case):
    net = case.build()
    ds = DeepSupervised(net, "seg", label_mode=case.label_mode)
    view = ds._adapter.encoder()
    tied = ds.reconstruction.tied_parameters()
    assert tied, "no tied weight"
    for path, weight in tied.items():
        assert weight is view.get_parameter(path), path  # the model's very tensor, not a copy
    model_params = {id(p) for p in net.parameters()}
    assert {id(w) for w in tied.values()} <= model_params
    assert not model_params & {id(p) for p in ds.reconstruction.parameters()}, (
        "the tied decoder registers (or copies) a weight of the model"
    )
    x, _ = _batch(case)
    bottleneck = ds._adapter.encode(view, x)[-1].detach()  # only the tied path carries gradient
    feature_mse(ds.reconstruction(bottleneck, tuple(x.shape)).rec_image, x).backward()
    convs = [m for m in view.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
    assert convs
    for conv in convs:
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0, conv


def test_auto_mode_copies_the_encoder_view():
    case = CASES[0]
    net = case.build()
    ds = DeepSupervised(net, "auto", label_mode=case.label_mode)
    copied = {id(p) for p in ds.ae_encoder.parameters()}
    assert copied and not copied & {id(p) for p in net.parameters()}
    view = ds._adapter.encoder()
    for a, b in zip(ds.ae_encoder.parameters(), view.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("mode", sorted(ALL_MODES - set(ATTENTION_MODES)))
def test_attention_unet_refuses_the_reconstruction_modes(mode):
    net = CASES[4].build()
    with pytest.raises(UnsupportedModelError) as info:
        DeepSupervised(net, mode, label_mode="multilabel")
    message = str(info.value)
    assert "AttentionUnet" in message and repr(mode) in message
    assert str(sorted(ATTENTION_MODES)) in message
    assert all(not m._forward_hooks for m in net.modules())


@pytest.mark.parametrize("mode", ["none", "up", "hyb"])
def test_dynunet_with_its_own_deep_supervision_is_refused(mode):
    case = CASES[2]
    net = _dyn(case, deep_supervision=True)
    with pytest.raises(UnsupportedModelError, match=r"deep_supervision=True.*deep_supervision=Fa"):
        DeepSupervised(net, mode)
    assert repr(mode) in _refusal(net, mode) and "DynUNet" in _refusal(net, mode)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"strides": [2, 2, 2, 2]}, r"input block has stride 2"),
        ({"strides": [1, (2, 1), 2, 2]}, r"anisotropic strides"),
        ({"strides": [1, 1, 2, 2]}, r"at least 2"),
    ],
)
def test_dynunet_with_unusable_strides_is_refused(options, match):
    net = monai_nets.DynUNet(
        2, 1, 1, kernel_size=[3] * 4, upsample_kernel_size=options["strides"][1:], **options
    )
    with pytest.raises(UnsupportedModelError, match=match):
        DeepSupervised(net, "none")


def test_one_dimensional_basic_unet_is_refused():
    net = monai_nets.BasicUNet(spatial_dims=1, in_channels=1, out_channels=1)
    with pytest.raises(UnsupportedModelError, match=r"BasicUNet.*spatial_dims=1"):
        DeepSupervised(net, "none")


def _refusal(net, mode):
    with pytest.raises(UnsupportedModelError) as err:
        DeepSupervised(net, mode)
    return str(err.value)


def test_without_monai_the_module_imports_and_registers_nothing(monkeypatch):
    for name in [n for n in sys.modules if n == "monai" or n.startswith("monai.")]:
        monkeypatch.setitem(sys.modules, name, None)
    before = dict(_REGISTRY)
    spec = importlib.util.spec_from_file_location(
        "dsplug.adapters._monai_without_monai", monai_adapters.__file__
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not added to sys.modules: nothing to clean up
    assert module.MONAI_AVAILABLE is False
    assert before == _REGISTRY
    assert monai_adapters.MONAI_AVAILABLE is True


def test_a_broken_monai_install_is_not_hidden(monkeypatch):
    broken = types.ModuleType("monai.networks.nets")  # installed, but without the networks
    monkeypatch.setitem(sys.modules, "monai.networks.nets", broken)
    spec = importlib.util.spec_from_file_location(
        "dsplug.adapters._monai_broken", monai_adapters.__file__
    )
    with pytest.raises(ImportError, match=r"BasicUNet|AttentionUnet|DynUNet"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


# The 2D networks with the richest mode each supports (AttentionUnet has no reconstruction).
COMPILE_CASES = [
    pytest.param(c, "seg" if c.name.startswith("attention") else "hyb", id=c.name)
    for c in CASES
    if c.spatial_dims == 2
]


def _compiles_fullgraph(module, x) -> bool:
    try:
        torch.compile(module, fullgraph=True, backend="eager")(x)
    except torch._dynamo.exc.Unsupported:
        return False
    finally:
        torch._dynamo.reset()
    return True


@pytest.mark.compile
@pytest.mark.slow
@pytest.mark.parametrize(("case", "mode"), COMPILE_CASES)
def test_training_forward_compiles_fullgraph(case, mode):
    """fullgraph wherever the bare network itself compiles fullgraph: BasicUNet's UpCat calls
    ``torch.jit.isinstance``, which Dynamo refuses to trace, so there the wrapped forward is
    compiled with graph breaks (all inside MONAI) and must still equal eager."""
    # aux_every=1: every call the same step, so the eager and the compiled call compare
    ds = DeepSupervised(case.build(), mode, label_mode=case.label_mode, aux_every=1).train()
    x, y = _batch(case)
    fullgraph = _compiles_fullgraph(case.build().train(), x)
    if case.name.startswith(("dyn", "attention")):
        assert fullgraph, f"the bare {case.name} no longer compiles fullgraph"

    def loss_of(x, y):
        return ds.loss(ds(x, y), y).total

    compiled = torch.compile(loss_of, fullgraph=fullgraph, backend="eager")
    loss_of(x, y)  # the loss balance measures its scales in eager steps: take the first eagerly
    torch.testing.assert_close(compiled(x, y), loss_of(x, y), rtol=1e-4, atol=1e-4)


@pytest.mark.compile
@pytest.mark.parametrize("case", [c for c in CASES if c.spatial_dims == 2], ids=lambda c: c.name)
def test_stripped_model_exports(case):
    bare = DeepSupervised(case.build(), "seg", label_mode=case.label_mode).strip().eval()
    x, _ = _batch(case)
    exported = torch.export.export(bare, (x,))
    torch.testing.assert_close(exported.module()(x), bare(x))
