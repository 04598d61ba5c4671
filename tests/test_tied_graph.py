"""GraphTiedDecoder on real encoders: a tied reconstruction decoder derived from the graph.

Real encoders (smp, timm through smp, a MONAI BasicUNet encoder in 2D and 3D) are built once per
module. Small hand-made encoders that check each transposition rule against an independent
oracle are in ``test_tied_graph_rules.py``.
"""

from __future__ import annotations

import io
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from dsplug._checks import ShapeError
from dsplug.tied.graph import GraphTiedDecoder, PlanError
from tests.helpers import one_thread as one_thread

smp_encoders = pytest.importorskip("segmentation_models_pytorch.encoders")


# --- encoders under test --------------------------------------------------------------------
class BasicUNetEncoder(nn.Module):
    """The contracting path of a MONAI BasicUNet, returning the level features."""

    def __init__(self, spatial_dims: int) -> None:
        super().__init__()
        monai_nets = pytest.importorskip("monai.networks.nets")
        net = monai_nets.BasicUNet(
            spatial_dims=spatial_dims, in_channels=1, out_channels=2, features=(4, 4, 8, 8, 16, 4)
        )
        self.conv_0, self.down_1, self.down_2 = net.conv_0, net.down_1, net.down_2
        self.down_3, self.down_4 = net.down_3, net.down_4

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x0 = self.conv_0(x)
        x1 = self.down_1(x0)
        x2 = self.down_2(x1)
        x3 = self.down_3(x2)
        return [x0, x1, x2, x3, self.down_4(x3)]


# name -> (factory, in_channels, spatial sizes: reference first, then another size)
FAST = ["resnet18", "vgg11_bn", "tu-resnet18", "basicunet2d"]
SLOW = [
    "efficientnet-b0",
    "timm-efficientnet-b0",
    "mit_b0",
    "tu-convnext_atto",
    "basicunet3d",
]
# Weights that the gate rule cuts on purpose (squeeze-excitation gates, attention queries).
CUT = {
    "efficientnet-b0": ("_se_reduce", "_se_expand"),
    "timm-efficientnet-b0": ("se.conv_reduce", "se.conv_expand"),
    "mit_b0": ("attn.q.",),
}


def _make(name: str) -> tuple[nn.Module, int, list[tuple[int, ...]]]:
    torch.manual_seed(0)
    if name.startswith("basicunet"):
        dims = int(name[-2])
        sizes = [(32, 32), (48, 32)] if dims == 2 else [(32, 32, 32), (48, 32, 32)]
        return BasicUNetEncoder(dims), 1, sizes
    encoder = smp_encoders.get_encoder(name, in_channels=3, depth=5, weights=None)
    return encoder, 3, [(64, 64), (96, 64)]


def _snapshot(module: nn.Module) -> dict:
    return {
        "state": {k: v.detach().clone() for k, v in module.state_dict().items()},
        "training": [m.training for m in module.modules()],
        "attrs": [sorted(vars(m)) for m in module.modules()],
        "hooks": sum(
            len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
            for m in module.modules()
        ),
        "params": [id(p) for p in module.parameters()],
    }


class Case:
    def __init__(self, name: str) -> None:
        self.name = name
        self.encoder, self.in_channels, self.sizes = _make(name)
        self.before = _snapshot(self.encoder)
        example = torch.randn(1, self.in_channels, *self.sizes[0])
        self.decoder = GraphTiedDecoder(self.encoder, example, mask_classes=2)
        self.after = _snapshot(self.encoder)

    def batch(self, size: tuple[int, ...], seed: int = 1) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(2, self.in_channels, *size, generator=gen)


_CASES: dict[str, Case] = {}


def _case(name: str) -> Case:
    if name not in _CASES:
        _CASES[name] = Case(name)
    return _CASES[name]


ALL = [*FAST, *(pytest.param(n, marks=pytest.mark.slow) for n in SLOW)]


# --- real encoders ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_construction_leaves_the_encoder_unchanged(name):
    case = _case(name)
    before, after = case.before, case.after
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key
    assert before["training"] == after["training"]
    assert before["attrs"] == after["attrs"]
    assert before["hooks"] == after["hooks"] == 0
    assert before["params"] == after["params"]


@pytest.mark.parametrize("name", ALL)
def test_tied_weights_are_the_encoders_tensors(name):
    case = _case(name)
    enc, dec = case.encoder, case.decoder
    tied = dec.tied_parameters()
    assert tied, "no tied weight"
    for path, param in tied.items():
        assert param is enc.get_parameter(path), path
    convs = {
        id(m.weight): n for n, m in enc.named_modules() if isinstance(m, nn.modules.conv._ConvNd)
    }
    x = case.batch(case.sizes[0])
    bottleneck = enc(x)[-1].detach()
    with _RecordWeights() as record:
        dec(bottleneck, x.shape)
    transposed = [w for w in record.conv_transpose_weights]
    assert transposed and all(id(w) in convs for w in transposed), "a transposed conv reads a copy"
    tied_convs = {id(p) for p in tied.values() if id(p) in convs}
    assert tied_convs == {id(w) for w in transposed}
    own = {id(p) for p in dec.parameters()}
    assert not own & {id(p) for p in enc.parameters()}
    enc_ptrs = {t.untyped_storage().data_ptr() for t in enc.state_dict().values() if t.numel()}
    for key, value in dec.state_dict().items():
        assert value.untyped_storage().data_ptr() not in enc_ptrs, key


@pytest.mark.parametrize("name", ALL)
def test_reconstruction_loss_alone_reaches_every_tied_weight(name):
    case = _case(name)
    enc, dec = case.encoder, case.decoder
    x = case.batch(case.sizes[0])
    enc.zero_grad(set_to_none=True)
    feats = enc(x)
    sum(f.square().mean() for f in feats if f.requires_grad).backward()
    used = {n for n, p in enc.named_parameters() if p.ndim >= 2 and p.grad is not None}
    enc.zero_grad(set_to_none=True)
    bottleneck = feats[-1].detach()  # only the tied path can carry a gradient to the encoder now
    F.mse_loss(dec(bottleneck, x.shape).rec_image, x).backward()
    tied = dec.tied_parameters()
    for path, param in tied.items():
        assert param.grad is not None, f"no gradient for {path}"
        assert torch.isfinite(param.grad).all(), path
        assert param.grad.abs().sum() > 0, f"zero gradient for {path}"
    # Every conv/linear weight the encoder uses is tied, except in gates that are cut by design.
    untied = used - set(tied)
    allowed = CUT.get(name, ())
    assert all(any(a in n for a in allowed) for n in untied), sorted(untied)
    assert set(tied) <= {n for n, _ in enc.named_parameters()}


@pytest.mark.parametrize("name", ALL)
def test_levels_have_the_encoders_shapes_at_two_sizes(name):
    case = _case(name)
    enc, dec = case.encoder, case.decoder
    for size in case.sizes:
        x = case.batch(size)
        with torch.no_grad():
            feats = [f for f in enc(x) if f is not x and f.shape[1] > 0]
            out = dec(feats[-1], x.shape)
        assert list(out.levels) == dec.reductions
        assert [f.shape for f in feats] == [r.shape for r in out.levels.values()]
        for feat, red in zip(feats, dec.reductions):
            assert [s * red for s in feat.shape[2:]] == list(size)  # sizes divide exactly here
            assert dec.level_channels[red] == feat.shape[1]
        assert out.levels[dec.reductions[-1]] is feats[-1]
        assert out.rec_image.shape == x.shape
        assert out.rec_mask.shape == (2, 2, *size)
        assert out.kl is None
        assert all(torch.isfinite(t).all() for t in [out.rec_image, *out.levels.values()])


@pytest.mark.compile
@pytest.mark.parametrize(
    ("name", "n_sizes"),
    [
        ("basicunet2d", 2),
        ("resnet18", 1),
        pytest.param("tu-convnext_atto", 1, marks=pytest.mark.slow),  # layer scale: a const op
    ],
)
def test_compiled_forward_backward_matches_eager(name, n_sizes):
    case = _case(name)
    enc, dec = case.encoder, case.decoder
    compiled = None
    for size in case.sizes[-n_sizes:]:  # a second size must recompile, never reuse a stale plan
        x = case.batch(size)
        bottleneck = enc(x)[-1].detach()

        def step(b: torch.Tensor, x: torch.Tensor = x) -> torch.Tensor:
            out = dec(b, x.shape)
            return F.mse_loss(out.rec_image, x) + out.rec_mask.square().mean()

        compiled = compiled or torch.compile(step, fullgraph=True, backend="eager")
        results = []
        for fn in (step, compiled):
            enc.zero_grad(set_to_none=True)
            dec.zero_grad(set_to_none=True)
            loss = fn(bottleneck, x)
            loss.backward()
            grads = [p.grad.clone() for p in dec.tied_parameters().values()]
            results.append([loss.detach(), *grads])
        for eager, graph in zip(*results):
            torch.testing.assert_close(graph, eager, rtol=1e-4, atol=1e-5)


def test_variational_decoder_owns_its_weights_and_gives_a_finite_kl():
    torch.manual_seed(0)
    enc = smp_encoders.get_encoder("resnet18", in_channels=3, depth=5, weights=None)
    vae = GraphTiedDecoder(enc, torch.randn(1, 3, 64, 64), variational=True)
    tied = _case("resnet18").decoder
    assert vae.tied_parameters() == {}
    weights = dict(vae.weights.items())
    assert len(weights) == len(tied.tied_parameters())
    enc_params = {id(p) for p in enc.parameters()}
    for key, w in weights.items():
        original = enc.get_parameter(_path(key, enc))
        assert id(w) not in enc_params
        assert torch.equal(w, original) and w.data_ptr() != original.data_ptr()
    assert any(k.startswith("weights.") for k in vae.state_dict())
    assert any(k.startswith("bottleneck_vae.") for k in vae.state_dict())
    x = torch.randn(2, 3, 64, 64)
    bottleneck = enc(x)[-1].detach()
    out = vae(bottleneck, x.shape)
    assert out.kl is not None and out.kl.ndim == 0 and torch.isfinite(out.kl)
    assert out.rec_image.shape == x.shape
    enc.zero_grad(set_to_none=True)
    (F.mse_loss(out.rec_image, x) + out.kl).backward()
    assert all(p.grad is None for p in enc.parameters()), "the VAE decoder read an encoder weight"
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in weights.values())
    vae.eval()
    with torch.no_grad():
        a, b = vae(bottleneck, x.shape), vae(bottleneck, x.shape)
    assert torch.equal(a.rec_image, b.rec_image)  # eval: mu, no sampling


def _path(key: str, enc: nn.Module) -> str:
    names = {n.replace(".", "_"): n for n, _ in enc.named_parameters()}
    return names[key]


def test_mask_head_is_built_only_when_asked():
    case = _case("resnet18")
    dec = case.decoder
    assert isinstance(dec.mask_head, nn.Conv2d)
    assert dec.mask_head.in_channels == dec.level_channels[dec.reductions[0]]
    assert any(k.startswith("mask_head.") for k in dec.state_dict())


def test_image_and_mask_outputs_can_be_skipped():
    case = _case("resnet18")
    x = case.batch((64, 64))
    with torch.no_grad():
        bottleneck = case.encoder(x)[-1]
        full = case.decoder(bottleneck, x.shape)
        bare = case.decoder(bottleneck, x.shape, image=False, mask=False)
    assert bare.rec_image is None and bare.rec_mask is None
    assert full.rec_image is not None and full.rec_mask is not None
    assert list(bare.levels) == list(full.levels)
    for red in full.levels:
        torch.testing.assert_close(bare.levels[red], full.levels[red])


def test_a_level_one_pixel_wide_is_served_with_the_encoders_shapes():
    case = _case("resnet18")  # traced at 64x64: a 2x2 bottleneck
    x = case.batch((32, 64))  # a 1x2 bottleneck: the trace's "not 1" assumptions are waived
    with torch.no_grad():
        feats = [f for f in case.encoder(x) if f is not x]
        out = case.decoder(feats[-1], x.shape)
    assert [f.shape for f in feats] == [r.shape for r in out.levels.values()]
    assert out.rec_image.shape == x.shape


@pytest.mark.parametrize("batch", [1, 3])
def test_any_batch_size_is_served(batch):
    case = _case("resnet18")  # traced with a symbolic batch (export assumes >= 2)
    x = torch.randn(batch, case.in_channels, 64, 64)
    with torch.no_grad():
        feats = [f for f in case.encoder(x) if f is not x]
        out = case.decoder(feats[-1], x.shape)
    assert [f.shape for f in feats] == [r.shape for r in out.levels.values()]
    assert out.rec_image.shape == x.shape and out.rec_mask.shape == (batch, 2, 64, 64)


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_the_decoder_pickles_with_its_encoder(how):
    case = _case("resnet18")
    if how == "pickle":
        enc, dec = pickle.loads(pickle.dumps((case.encoder, case.decoder)))
    else:
        buffer = io.BytesIO()
        torch.save((case.encoder, case.decoder), buffer)
        buffer.seek(0)
        enc, dec = torch.load(buffer, weights_only=False)
    tied = dec.tied_parameters()
    assert tied and all(p is enc.get_parameter(path) for path, p in tied.items())
    assert all(p is not case.encoder.get_parameter(path) for path, p in tied.items())
    x = case.batch((64, 96))
    with torch.no_grad():
        expected = case.decoder(case.encoder(x)[-1], x.shape)
        got = dec(enc(x)[-1], x.shape)
    torch.testing.assert_close(got.rec_image, expected.rec_image)
    torch.testing.assert_close(got.rec_mask, expected.rec_mask)


def test_bad_inputs_raise_clear_errors():
    case = _case("resnet18")
    dec = case.decoder
    x = case.batch((64, 64))
    bottleneck = case.encoder(x)[-1].detach()
    with pytest.raises(ShapeError, match="bottleneck has shape"):
        dec(bottleneck, (2, 3, 96, 64))
    with pytest.raises(PlanError, match="channels 4"):
        dec(bottleneck, (2, 4, 64, 64))
    with pytest.raises(PlanError, match="dims"):
        dec(bottleneck, (2, 3, 64))
    with pytest.raises(TypeError, match=r"nn\.Module"):
        GraphTiedDecoder("resnet18", torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="example_input"):
        GraphTiedDecoder(case.encoder, torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match="mask_classes"):
        GraphTiedDecoder(case.encoder, torch.randn(1, 3, 64, 64), mask_classes=0)
    with pytest.raises(TypeError, match="cache must be a bool"):
        GraphTiedDecoder(case.encoder, torch.randn(1, 3, 64, 64), cache="yes")


class _RecordWeights(TorchFunctionMode):
    """Records the weight tensors passed to conv_transpose calls."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_transpose_weights: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d):
            self.conv_transpose_weights.append(args[1] if len(args) > 1 else kwargs["weight"])
        return func(*args, **kwargs)
