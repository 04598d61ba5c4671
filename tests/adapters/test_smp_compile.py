"""smp models under torch.compile and torch.export."""

import pytest
import torch

from dsplug import DeepSupervised

smp = pytest.importorskip("segmentation_models_pytorch")

# A residual CNN under two decoders and a timm ConvNeXt (layer norms, permutes).
COMPILE_COMBOS = [
    ("Unet", "resnet34"),
    ("UnetPlusPlus", "resnet34"),
    ("Unet", "tu-convnext_atto"),
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

    compiled = torch.compile(loss_of, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(x, y), loss_of(x, y), rtol=1e-4, atol=1e-4)


@pytest.mark.compile
@pytest.mark.parametrize("arch", ["Unet", "UnetPlusPlus", "MAnet", "Linknet", "FPN"])
def test_stripped_model_exports(arch):
    model = _build(arch, "resnet18")
    bare = DeepSupervised(model, "hyb", label_mode="multiclass").strip().eval()
    x, _ = _batch()
    exported = torch.export.export(bare, (x,))
    torch.testing.assert_close(exported.module()(x), bare(x))
