"""GraphTiedDecoder: a tied reconstruction decoder derived from any encoder's graph.

Real encoders (smp, timm through smp, a MONAI BasicUNet encoder in 2D and 3D) are built once per
module; small hand-made encoders check the transposition rules against independent oracles
(autograd's vector-Jacobian product of a linear encoder is its exact transpose).
"""

from __future__ import annotations

import io
import math
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from dsplug._checks import ShapeError
from dsplug.tied import _graph_steps
from dsplug.tied.gain import transpose_gain
from dsplug.tied.graph import (
    GraphTiedDecoder,
    GraphTransposeError,
    PlanError,
    clear_trace_cache,
    trace_cache_info,
)

smp_encoders = pytest.importorskip("segmentation_models_pytorch.encoders")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a shared 2-core runner the
    thread pool's contention makes each op ~50x slower; restore the setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


class PickyEncoder(nn.Module):
    """Its graph depends on the input size: the trace's guard must refuse other branches."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        y = self.conv(x)
        return [y * 2 if y.shape[-1] > 8 else y]


def test_a_size_outside_the_traced_branch_is_refused():
    dec = GraphTiedDecoder(PickyEncoder(), torch.randn(1, 1, 32, 32))
    assert dec(torch.randn(2, 2, 24, 16), (2, 1, 48, 32)).rec_image.shape == (2, 1, 48, 32)
    with pytest.raises(PlanError, match=r"the trace supports|a condition of the trace"):
        dec(torch.randn(2, 2, 16, 8), (2, 1, 32, 16))


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


# --- transposition rules against independent oracles -----------------------------------------
def _tied_t(x: torch.Tensor, weight: torch.Tensor, **kwargs) -> torch.Tensor:
    """The oracle of one tied transposed conv at unit gain (``transpose_gain``; biases zero)."""
    return F.conv_transpose2d(x, weight, **kwargs) * transpose_gain(weight)


class LinearEncoder(nn.Module):
    """Only linear ops (no bias, norm or activation): its tied decoder (own biases still zero) is
    its exact transpose, i.e. autograd's vector-Jacobian product."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, 3, stride=2, padding=1, bias=False)
        self.c2 = nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2, bias=False)
        self.c3 = nn.Conv2d(8, 6, 3, stride=2, bias=False)
        self.fc = nn.Linear(6, 6, bias=False)
        self.scale = nn.Parameter(torch.rand(6) + 0.5)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        a = self.c1(x)  # stride 2; odd sizes need an output padding
        b = a + 0.5 * self.c2(a)  # residual: fan-out / sum
        b = torch.cat([b, F.pad(b, (1, 0, 0, 1))[..., :-1, 1:]], 1)  # pad, slice, cat
        c = self.c3(F.pad(b, (0, 1, 0, 1)))  # stride 4 with an asymmetric pad
        t = c.flatten(2).transpose(1, 2)  # tokens: flatten, transpose
        t = self.fc(t) * self.scale  # linear, a scale by an encoder tensor
        d = t.transpose(1, 2).reshape(c.shape)  # back to a map
        head, tail = d.split([2, 4], 1)
        e = torch.cat([tail, head - head.flip(1)], 1)  # split, flip, sub, cat
        return [x, a, e]


def _vjp(encoder: nn.Module, x: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, ...]:
    x = x.clone().requires_grad_(True)
    feats = encoder(x)
    (gx, ga) = torch.autograd.grad(feats[-1], [x, feats[1]], grad_outputs=r)
    return gx, ga


@pytest.fixture
def unit_gains(monkeypatch):
    """Decoders without the unit-scale gains: then the decoder is the encoder's exact VJP."""
    monkeypatch.setattr(_graph_steps, "transpose_gain", lambda *args, **kwargs: 1.0)


@pytest.mark.parametrize("size", [(32, 32), (34, 38), (33, 35)])
def test_linear_encoder_decoder_is_its_exact_transpose(size, unit_gains):
    torch.manual_seed(0)
    enc = LinearEncoder()
    dec = GraphTiedDecoder(enc, torch.randn(1, 2, 32, 32))
    assert dec.reductions == [2, 4]
    x = torch.randn(2, 2, *size)
    with torch.no_grad():
        r = torch.randn_like(enc(x)[-1])
    out = dec(r, x.shape)
    gx, ga = _vjp(enc, x, r)
    torch.testing.assert_close(out.rec_image, gx, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.levels[2], ga, rtol=1e-4, atol=1e-5)
    assert set(dec.tied_parameters()) == {n for n, _ in enc.named_parameters()}


class GatedEncoder(nn.Module):
    """conv -> squeeze-excitation gate -> swish written by hand -> strided conv."""

    def __init__(self, gate: bool) -> None:
        super().__init__()
        self.gate = gate
        self.c1 = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.se1 = nn.Conv2d(4, 2, 1)
        self.se2 = nn.Conv2d(2, 4, 1)
        self.c2 = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        a = self.c1(x)
        if self.gate:
            a = a * torch.sigmoid(self.se2(F.relu(self.se1(a.mean((2, 3), keepdim=True)))))
        a = a * torch.sigmoid(a)
        return [a, self.c2(a)]


def test_gates_are_cut_and_self_gating_is_reapplied():
    torch.manual_seed(0)
    enc = GatedEncoder(gate=True)
    dec = GraphTiedDecoder(enc, torch.randn(1, 1, 16, 16))
    assert set(dec.tied_parameters()) == {"c1.weight", "c2.weight"}
    x = torch.randn(2, 1, 16, 16)
    r = torch.randn(2, 6, 8, 8)
    out = dec(r, x.shape)
    # Oracle written with torch alone: c2^T, swish re-applied, c1^T (biases still zero).
    r1 = _tied_t(r, enc.c2.weight, stride=2, padding=1, output_padding=1)
    torch.testing.assert_close(out.levels[1], r1)
    torch.testing.assert_close(out.rec_image, _tied_t(F.silu(r1), enc.c1.weight, padding=1))


class NormEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.gn = nn.GroupNorm(4, 8)
        self.c2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        a = F.gelu(self.gn(self.c1(x)))
        return [a, self.pool(F.relu(self.bn(self.c2(a))))]


def test_norms_get_their_own_parameters_and_pooling_becomes_upsampling():
    torch.manual_seed(0)
    enc = NormEncoder()
    dec = GraphTiedDecoder(enc, torch.randn(1, 1, 16, 16))
    kinds = {type(m) for m in dec.norms.values()}
    assert kinds == {nn.GroupNorm, nn.BatchNorm2d}
    gn = next(m for m in dec.norms.values() if isinstance(m, nn.GroupNorm))
    assert (gn.num_groups, gn.num_channels) == (4, 8)
    enc_ids = {id(p) for p in enc.parameters()}
    assert not any(id(p) in enc_ids for p in dec.norms.parameters())
    assert set(dec.tied_parameters()) == {"c1.weight", "c2.weight"}
    assert {tuple(b.shape) for b in dec.biases.values()} == {(1,), (8,)}  # transposed outputs
    x = torch.randn(2, 1, 16, 16)
    r = torch.randn(2, 8, 4, 4)
    dec.eval()  # norms with running statistics at their initial values: an affine identity
    out = dec(r, x.shape)
    up = F.interpolate(r, scale_factor=2, mode="nearest")  # pooling -> nearest upsampling
    bn = dec.norms[next(k for k, m in dec.norms.items() if isinstance(m, nn.BatchNorm2d))]
    r1 = _tied_t(bn(F.relu(up)), enc.c2.weight, stride=2, padding=1, output_padding=1)
    torch.testing.assert_close(out.levels[1], r1)
    expected = _tied_t(gn(F.gelu(r1)), enc.c1.weight, padding=1)
    torch.testing.assert_close(out.rec_image, expected)


class AttentionEncoder(nn.Module):
    """A patch embedding and one spatial-reduction attention block (as in SegFormer), written
    out or with F.scaled_dot_product_attention."""

    def __init__(self, fused: bool) -> None:
        super().__init__()
        self.fused = fused
        self.embed = nn.Conv2d(1, 8, 4, stride=4)
        self.q, self.kv, self.proj = nn.Linear(8, 8), nn.Linear(8, 16), nn.Linear(8, 8)
        self.sr = nn.Conv2d(8, 8, 2, stride=2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        e = self.embed(x)
        b, c, h, w = e.shape
        t = e.flatten(2).transpose(1, 2)
        kv = self.kv(self.sr(e).flatten(2).transpose(1, 2))
        k, v = kv.chunk(2, dim=-1)
        if self.fused:
            a = F.scaled_dot_product_attention(self.q(t)[:, None], k[:, None], v[:, None])[:, 0]
        else:
            a = torch.softmax(self.q(t) @ k.transpose(1, 2) / math.sqrt(c), dim=-1) @ v
        t = t + self.proj(a)
        return [t.transpose(1, 2).reshape(b, c, h, w)]


@pytest.mark.parametrize("fused", [False, True])
def test_attention_keeps_the_value_path_and_pools_tokens_between_grids(fused, unit_gains):
    torch.manual_seed(0)
    enc = AttentionEncoder(fused)
    dec = GraphTiedDecoder(enc, torch.randn(1, 1, 32, 32))
    assert set(dec.tied_parameters()) == {"embed.weight", "kv.weight", "proj.weight", "sr.weight"}
    for size in [(32, 32), (48, 32)]:
        x = torch.randn(2, 1, *size)
        h, w = size[0] // 4, size[1] // 4
        r = torch.randn(2, 8, h, w)
        out = dec(r, x.shape)
        assert out.levels[4] is r
        # Oracle: proj^T, the 16 query tokens pooled onto the 4 value tokens of the reduced grid,
        # kv^T with nothing for the keys, sr^T, plus the residual; then embed^T (biases zero).
        with torch.no_grad():
            g = r.flatten(2).transpose(1, 2) @ enc.proj.weight
            g = F.adaptive_avg_pool2d(g.transpose(1, 2).reshape(2, 8, h, w), (h // 2, w // 2))
            g = g.flatten(2).transpose(1, 2)
            g = torch.cat([torch.zeros_like(g), g], -1) @ enc.kv.weight
            g = g.transpose(1, 2).reshape(2, 8, h // 2, w // 2)
            e = r + F.conv_transpose2d(g, enc.sr.weight, stride=2)
            expected = F.conv_transpose2d(e, enc.embed.weight, stride=4)
        torch.testing.assert_close(out.rec_image, expected, rtol=1e-4, atol=1e-5)
    enc.zero_grad(set_to_none=True)
    out.rec_image.square().mean().backward()
    k_rows = enc.kv.weight.grad[:8]  # the key half of kv only feeds the softmax gate
    assert k_rows.abs().sum() == 0 and enc.kv.weight.grad[8:].abs().sum() > 0


class SideLevelEncoder(nn.Module):
    """A level computed off the path to the bottleneck (as DPN's relu(cat(dual paths)))."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, stride=2, padding=1, bias=False)
        self.c2 = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        a = self.c1(x)
        return [torch.relu(torch.cat([a, -a], 1)), self.c2(a)]


def test_a_level_off_the_main_path_replays_its_branch_on_the_reconstruction():
    torch.manual_seed(0)
    enc = SideLevelEncoder()
    dec = GraphTiedDecoder(enc, torch.randn(1, 1, 16, 16))
    assert dec.level_channels == {2: 8, 4: 6}
    x = torch.randn(2, 1, 16, 16)
    r = torch.randn(2, 6, 4, 4)
    out = dec(r, x.shape)
    ra = _tied_t(r, enc.c2.weight, stride=2, padding=1, output_padding=1)
    torch.testing.assert_close(out.levels[2], torch.relu(torch.cat([ra, -ra], 1)))
    expected = _tied_t(ra, enc.c1.weight, stride=2, padding=1, output_padding=1)
    torch.testing.assert_close(out.rec_image, expected)


def test_an_op_without_a_rule_is_named_with_the_encoder():
    class CumsumEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, stride=2, padding=1)

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            return [self.conv(x).cumsum(-1)]

    with pytest.raises(GraphTransposeError, match=r"cumsum.*CumsumEncoder"):
        GraphTiedDecoder(CumsumEncoder(), torch.randn(1, 1, 16, 16))


@pytest.fixture
def fresh_trace_cache():
    """An empty trace cache, emptied again afterwards (a test that changes how encoders are
    traced must neither reuse an earlier trace nor leave its own for later tests)."""
    clear_trace_cache()
    yield
    clear_trace_cache()


def test_a_trace_that_cannot_be_symbolic_falls_back_and_refuses_other_sizes(
    monkeypatch, fresh_trace_cache
):
    from dsplug.tied import _graph_trace

    export = _graph_trace._export

    def no_symbolic_space(wrapper, x, dims):
        if any(d >= 2 for d in dims):
            raise RuntimeError("simulated: this encoder specialises its spatial size")
        return export(wrapper, x, dims)

    monkeypatch.setattr(_graph_trace, "_export", no_symbolic_space)
    torch.manual_seed(0)
    enc = SideLevelEncoder()
    with pytest.warns(UserWarning, match="only the reference spatial size"):
        dec = GraphTiedDecoder(enc, torch.randn(1, 1, 16, 16))
    assert dec.reductions == [2, 4]
    out = dec(torch.randn(3, 6, 4, 4), (3, 1, 16, 16))  # the batch stays free
    assert out.rec_image.shape == (3, 1, 16, 16)
    with pytest.raises(PlanError, match="reference size"):
        dec(torch.randn(3, 6, 8, 4), (3, 1, 32, 16))
    with pytest.warns(UserWarning, match="only the reference spatial size"):  # a cached trace
        again = GraphTiedDecoder(SideLevelEncoder(), torch.randn(1, 1, 16, 16))
    assert trace_cache_info()["hits"] == 1
    with pytest.raises(PlanError, match="reference size"):
        again(torch.randn(3, 6, 8, 4), (3, 1, 32, 16))


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
