"""smp models under torch.compile and torch.export."""

import pytest
import torch

from dsplug import DeepSupervised

smp = pytest.importorskip("segmentation_models_pytorch")

# Every architecture with one encoder, and every encoder of the matrix with Unet.
COMPILE_COMBOS = [(a, "resnet34") for a in ["Unet", "UnetPlusPlus", "MAnet", "Linknet", "FPN"]] + [
    ("Unet", e)
    for e in [
        "efficientnet-b0",
        "timm-efficientnet-b0",
        "mit_b0",
        "tu-resnet18",
        "tu-convnext_atto",
        "vgg11_bn",
    ]
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
@pytest.mark.slow
def test_inductor_compile_of_unet_resnet18():
    ds = DeepSupervised(_build("Unet", "resnet18"), "hyb", label_mode="multiclass").train()
    x, y = _batch()
    compiled = torch.compile(lambda x, y: ds.loss(ds(x, y), y).total)
    torch.testing.assert_close(compiled(x, y), ds.loss(ds(x, y), y).total, rtol=1e-3, atol=1e-3)


@pytest.mark.compile
@pytest.mark.parametrize("arch", ["Unet", "UnetPlusPlus", "MAnet", "Linknet", "FPN"])
def test_stripped_model_exports(arch):
    model = _build(arch, "resnet18")
    bare = DeepSupervised(model, "hyb", label_mode="multiclass").strip().eval()
    x, _ = _batch()
    exported = torch.export.export(bare, (x,))
    torch.testing.assert_close(exported.module()(x), bare(x))
