"""smp models under torch.compile and torch.export."""

import pytest
import torch

from dsplug import DeepSupervised

smp = pytest.importorskip("segmentation_models_pytorch")

# Every architecture and every encoder of the test matrix (tests/adapters/test_smp.py) at least
# once: residual CNNs, MBConv blocks with squeeze-excitation and drop-connect, a mix transformer
# (attention, drop path), a timm ConvNeXt (layer norms, permutes) and a plain VGG. The full
# 31-combination cross product costs about 15 minutes of compilation on 2 cores.
COMPILE_COMBOS = [
    ("Unet", "resnet34"),
    ("UnetPlusPlus", "resnet34"),
    ("Unet", "tu-convnext_atto"),
    ("UnetPlusPlus", "efficientnet-b0"),
    ("MAnet", "mit_b0"),
    ("Linknet", "timm-efficientnet-b0"),
    ("FPN", "tu-resnet18"),
    ("UnetPlusPlus", "vgg11_bn"),
]


def _build(arch, encoder):
    torch.manual_seed(0)
    return smp.create_model(
        arch, encoder_name=encoder, encoder_weights=None, in_channels=1, classes=2
    )


def _batch():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(2, 1, 64, 64, generator=gen), torch.randint(0, 2, (2, 64, 64), generator=gen)


@pytest.mark.compile
@pytest.mark.slow
@pytest.mark.parametrize(
    ("arch", "encoder"), COMPILE_COMBOS, ids=[f"{a}-{e}" for a, e in COMPILE_COMBOS]
)
def test_hyb_training_forward_compiles_fullgraph(arch, encoder):
    ds = DeepSupervised(_build(arch, encoder), "hyb", label_mode="multiclass").train()
    x, y = _batch()

    def loss_of(x, y):
        return ds.loss(ds(x, y), y).total

    def seeded(fn):
        torch.manual_seed(1)  # drop-connect and drop path draw the same masks in both runs
        return fn(x, y)

    compiled = torch.compile(loss_of, fullgraph=True, backend="eager")
    seeded(loss_of)  # the loss balance measures its scales in eager steps: take the first eagerly
    torch.testing.assert_close(seeded(compiled), seeded(loss_of), rtol=1e-4, atol=1e-4)


@pytest.mark.compile
@pytest.mark.slow
def test_hyb_training_step_compiles_with_inductor():
    """The default backend generates and builds C++ kernels for the forward and the backward.

    Inductor fuses and reorders float32 reductions; batch norms over 2x2 maps at batch 2 amplify
    that rounding in the backward (measured: loss equal to 1e-7, per-parameter gradient error up
    to 4% of the gradient's norm), so gradients are compared by relative norm, not elementwise.
    """
    ds, reference = (  # the same seeded build twice: equal weights, separate gradients
        DeepSupervised(_build("Unet", "resnet18"), "hyb", label_mode="multiclass").train()
        for _ in range(2)
    )
    x, y = _batch()

    def loss_of(model, x, y):
        return model.loss(model(x, y), y).total

    compiled = torch.compile(loss_of, fullgraph=True)
    for model in (ds, reference):  # the loss balance measures its scales in eager steps
        loss_of(model, x, y)
    loss = compiled(ds, x, y)
    expected = loss_of(reference, x, y)
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-4)
    loss.backward()
    expected.backward()
    for (name, p), q in zip(ds.named_parameters(), reference.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if q.grad is not None:
            error = (p.grad - q.grad).norm() / q.grad.norm()
            assert error < 0.1, f"{name}: gradient differs from eager by {error:.1%} of its norm"


@pytest.mark.compile
@pytest.mark.parametrize("arch", ["Unet", "UnetPlusPlus", "MAnet", "Linknet", "FPN"])
def test_stripped_model_exports(arch):
    model = _build(arch, "resnet18")
    bare = DeepSupervised(model, "hyb", label_mode="multiclass").strip().eval()
    x, _ = _batch()
    exported = torch.export.export(bare, (x,))
    torch.testing.assert_close(exported.module()(x), bare(x))
