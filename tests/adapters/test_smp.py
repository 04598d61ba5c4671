"""smp 0.6 models under DeepSupervised: the architecture x encoder x mode matrix."""

import pytest
import torch

from dsplug import DeepSupervised
from dsplug.adapters import adapter_for

smp = pytest.importorskip("segmentation_models_pytorch")

ARCHS = ["Unet", "UnetPlusPlus", "MAnet", "Linknet", "FPN"]
ENCODERS = [
    "resnet34",
    "efficientnet-b0",
    "timm-efficientnet-b0",
    "mit_b0",
    "tu-resnet18",
    "tu-convnext_atto",
    "vgg11_bn",
]
MIT_ARCHS = {"Unet", "MAnet", "FPN"}  # where smp accepts mit_b0
MODES = ["none", "seg", "rec", "hyb"]
COMBOS = [(a, e) for a in ARCHS for e in ENCODERS if e != "mit_b0" or a in MIT_ARCHS]
SIZE = 64
DROP_SEED = 123


def build(arch: str, encoder: str, classes: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    return smp.create_model(
        arch, encoder_name=encoder, encoder_weights=None, in_channels=1, classes=classes
    )


def batch(classes: int = 2):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, SIZE, SIZE, generator=gen)
    y = torch.randint(0, classes, (2, SIZE, SIZE), generator=gen)
    return x, y


def params_the_bare_model_uses(model):
    """Parameters that get a non-zero gradient from the bare model: smp's U-Net++ never runs
    `center`, and timm zero-initialises the last norm of each residual block, which leaves the
    block's convolutions without gradient at initialisation. Stochastic depth (timm's drop
    path) drops random blocks: the seed is the one the wrapped step uses, so the X pass drops
    the same blocks."""
    x, y = batch()
    model.zero_grad()
    torch.manual_seed(DROP_SEED)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    used = {id(p) for p in model.parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    model.zero_grad()
    return used


@pytest.mark.parametrize(("arch", "encoder"), COMBOS, ids=[f"{a}-{e}" for a, e in COMBOS])
def test_declared_stages_match_a_real_forward(arch, encoder):
    model = build(arch, encoder).eval()
    stages = adapter_for(model).decoder_stages()
    assert stages[-1].name == "bottleneck"
    assert [s.reduction for s in stages] == sorted({s.reduction for s in stages})
    seen = {}
    handles = [
        model.get_submodule(s.module_path).register_forward_hook(
            lambda m, i, o, s=s: seen.__setitem__(s.name, o if s.output_index is None else o[-1])
        )
        for s in stages
    ]
    model(torch.zeros(1, 1, SIZE, SIZE))
    for h in handles:
        h.remove()
    for s in stages:
        assert seen[s.name].shape[1] == s.channels, s
        assert SIZE // seen[s.name].shape[-1] == s.reduction, s


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("arch", "encoder"), COMBOS, ids=[f"{a}-{e}" for a, e in COMBOS])
def test_training_step_eval_identity_and_strip(arch, encoder, mode):
    model = build(arch, encoder)
    keys = list(model.state_dict())
    used_by_model = params_the_bare_model_uses(model)
    model_params = {id(p) for p in model.parameters()}
    ds = DeepSupervised(model, mode, label_mode="multiclass").train()
    x, y = batch()
    torch.manual_seed(DROP_SEED)
    loss = ds.loss(ds(x, y), y)
    assert all(v == v and abs(v) != float("inf") for v in loss.terms.values()), loss.terms
    loss.total.backward()
    for name, p in ds.named_parameters():
        if id(p) in model_params and id(p) not in used_by_model:
            continue  # no gradient in the bare model either
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient for {name}"
        assert p.grad.abs().sum() > 0, f"zero gradient for {name}"
    ds.eval()
    with torch.no_grad():
        assert torch.equal(ds(x), model(x))
    assert ds.strip() is model
    assert list(model.state_dict()) == keys
    assert all(not m._forward_hooks for m in model.modules())


def test_tied_weights_are_the_encoders_tensors():
    model = build("Unet", "resnet34")
    ds = DeepSupervised(model, "hyb", label_mode="multiclass")
    encoder_ids = {id(p) for p in model.encoder.parameters()}
    own_ids = {id(p) for p in ds.reconstruction.parameters()}
    assert not own_ids & encoder_ids
    assert not any(k.startswith("encoder") for k in ds.reconstruction.state_dict())


def test_unet_plus_plus_taps_the_final_expansive_path():
    stages = adapter_for(build("UnetPlusPlus", "resnet34")).decoder_stages()
    assert [s.module_path for s in stages[:-1]] == [
        f"decoder.blocks.x_0_{j}" for j in (4, 3, 2, 1, 0)
    ]


def test_fpn_pyramid_levels():
    stages = adapter_for(build("FPN", "resnet34")).decoder_stages()
    assert [(s.module_path, s.reduction) for s in stages] == [
        ("decoder.p2", 4),
        ("decoder.p3", 8),
        ("decoder.p4", 16),
        ("encoder", 32),
    ]
