"""torch.compile of a training forward, torch.export / ONNX of the stripped model."""

import pytest
import torch

from dsplug import DeepSupervised
from tests.helpers import make_batch, make_net


@pytest.mark.compile
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["hyb", "auto", "vae", "up"])
def test_compiled_training_forward_matches_eager(mode):
    torch.manual_seed(0)
    # aux_every=1: every call the same step, so the eager and the compiled call compare
    net = make_net("unet", classes=2)
    ds = DeepSupervised(net, mode, label_mode="multiclass", aux_every=1).train()
    x, y = make_batch("multiclass", 2)

    def loss_of(x, y):
        return ds.loss(ds(x, y), y).total

    def seeded(fn):
        torch.manual_seed(0)  # the VAE samples; seeding inside a compiled function breaks the graph
        return fn(x, y)

    compiled = torch.compile(loss_of, fullgraph=True, backend="eager")
    # balance="auto" measures its scales in eager steps only (autograd.grad would break the
    # graph): one eager step first, as a training loop's first step would
    seeded(loss_of)
    # training mode normalises with batch statistics: the same batch gives the same loss
    torch.testing.assert_close(seeded(compiled), seeded(loss_of))
    compiled(x, y).backward()
    assert all(p.grad is not None for p in ds.parameters())


@pytest.mark.compile
@pytest.mark.parametrize("kind", ["unet", "unetpp"])
def test_stripped_model_exports(kind):
    net = make_net(kind)
    bare = DeepSupervised(net, "hyb").strip().eval()
    x = torch.randn(1, 1, 32, 32)
    exported = torch.export.export(bare, (x,))
    torch.testing.assert_close(exported.module()(x), bare(x))


@pytest.mark.compile
def test_stripped_model_exports_to_onnx(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    bare = DeepSupervised(make_net("unet"), "hyb").strip().eval()
    path = tmp_path / "unet.onnx"
    torch.onnx.export(bare, (torch.randn(1, 1, 32, 32),), str(path), dynamo=True)
    import onnx

    onnx.checker.check_model(str(path))
    assert path.stat().st_size > 0
