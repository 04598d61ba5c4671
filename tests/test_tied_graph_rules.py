"""GraphTiedDecoder's transposition rules against independent oracles, on small hand-made
encoders: autograd's vector-Jacobian product of a linear encoder is its exact transpose; gates,
norms, pooling, attention and side levels are checked against decoders written with torch alone.
Also: what the trace refuses, and the fallback when an encoder cannot be traced symbolically.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dsplug.tied import _graph_steps_weighted
from dsplug.tied.gain import transpose_gain
from dsplug.tied.graph import (
    GraphTiedDecoder,
    GraphTransposeError,
    PlanError,
    clear_trace_cache,
    trace_cache_info,
)
from tests.helpers import one_thread as one_thread


# --- what the trace refuses -------------------------------------------------------------------
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
    monkeypatch.setattr(_graph_steps_weighted, "transpose_gain", lambda *args, **kwargs: 1.0)


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
