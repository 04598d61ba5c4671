"""smp 0.6 models under DeepSupervised: the architecture x encoder x mode matrix."""

import pytest
import torch

from dsplug import DeepSupervised
from dsplug.adapters import adapter_for
from dsplug.options import Mode

smp = pytest.importorskip("segmentation_models_pytorch")

ARCHS = ["Unet", "UnetPlusPlus", "MAnet", "Linknet", "FPN"]
# timm's tiny test models (smp's own tests use tu-test_resnet): a residual CNN with batch norms
# (zero-initialised last norms), MBConv blocks with squeeze-excitation, a ConvNeXt (depthwise
# convolutions, layer norms, permutes). They run the same adapter, hook and tied-decoder code as
# full-size encoders in a fraction of the time; encoder_weights=None never downloads.
TINY_ENCODERS = [
    "tu-test_resnet.r160_in1k",
    "tu-test_efficientnet.r160_in1k",
    "tu-test_convnext.r160_in1k",
]
# One real-size encoder per architecture (slow): smp's own encoder classes (ResNet, EfficientNet,
# the Mix Transformer, VGG) and timm's EfficientNet port, each once.
REAL_COMBOS = [
    ("Unet", "resnet34"),
    ("UnetPlusPlus", "efficientnet-b0"),
    ("MAnet", "mit_b0"),
    ("Linknet", "timm-efficientnet-b0"),
    ("FPN", "vgg11_bn"),
]
assert sorted(a for a, _ in REAL_COMBOS) == sorted(ARCHS)
# Real-size encoders run the modes whose code depends on the encoder: the tied decoder on X and
# G (hyb), the encoder copy with its own tied decoder (auto) and the cloned one (vae).
REAL_MODES = ["hyb", "auto", "vae"]


def _combo_id(arch: str, encoder: str) -> str:
    return f"{arch}-{encoder.removeprefix('tu-').split('.')[0]}"


TINY_COMBOS = [pytest.param(a, e, id=_combo_id(a, e)) for e in TINY_ENCODERS for a in ARCHS]
SLOW_COMBOS = [
    pytest.param(a, e, id=_combo_id(a, e), marks=pytest.mark.slow) for a, e in REAL_COMBOS
]
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


@pytest.mark.parametrize(("arch", "encoder"), [*TINY_COMBOS, *SLOW_COMBOS])
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


TRAIN_CASES = [
    *(pytest.param(*c.values, m, id=f"{c.id}-{m}") for c in TINY_COMBOS for m in Mode),
    *(
        pytest.param(*c.values, m, id=f"{c.id}-{m}", marks=pytest.mark.slow)
        for c in SLOW_COMBOS
        for m in REAL_MODES
    ),
]


@pytest.mark.parametrize(("arch", "encoder", "mode"), TRAIN_CASES)
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
    assert len(used_by_model) > len(model_params) / 2, "the bare model trains too few parameters"
    # Parameters without a gradient in the bare model, and (auto) their copies in the
    # autoencoder's encoder, which sit in the same zero-initialised blocks.
    unused = {id(p) for p in model.parameters() if id(p) not in used_by_model}
    if mode == "auto":
        for name, p in ds.ae_encoder.named_parameters():
            if id(model.encoder.get_parameter(name)) in unused:
                unused.add(id(p))
    checked = 0
    for name, p in ds.named_parameters():
        if id(p) in unused:
            continue  # no gradient in the bare model either
        checked += 1
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient for {name}"
        assert p.grad.abs().sum() > 0, f"zero gradient for {name}"
    assert checked == len(list(ds.parameters())) - len(unused) > len(model_params) / 2
    ds.eval()
    with torch.no_grad():
        assert torch.equal(ds(x), model(x))
    assert ds.strip() is model
    assert list(model.state_dict()) == keys
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize(
    ("arch", "encoder"),
    [
        *(pytest.param("Unet", e, id=_combo_id("Unet", e)) for e in TINY_ENCODERS),
        *(c for c in SLOW_COMBOS if c.values[0] == "Unet"),
    ],
)
@pytest.mark.parametrize("mode", ["seg", "hyb"])
def test_tied_weights_are_the_encoders_tensors(arch, encoder, mode):
    model = build(arch, encoder)
    ds = DeepSupervised(model, mode, label_mode="multiclass").train()
    tied = ds.reconstruction.tied_parameters()
    assert tied, "no tied weight"
    for path, weight in tied.items():
        assert weight is model.encoder.get_parameter(path), path  # the very tensor, not a copy
    encoder_ids = {id(p) for p in model.encoder.parameters()}
    own_ids = {id(p) for p in ds.reconstruction.parameters()}
    assert not own_ids & encoder_ids, "the decoder registers an encoder weight as its own"
    assert not any(k.startswith("encoder") for k in ds.reconstruction.state_dict())
    convs = [m.weight for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert any(w is c for w in tied.values() for c in convs), "no convolution weight is tied"
    # The decoder reads the encoder's weights at call time: changing one changes its output.
    x, _ = batch()
    with torch.no_grad():
        bottleneck = model.encoder(x)[-1]
        before = ds.reconstruction(bottleneck, tuple(x.shape)).rec_image
        next(iter(tied.values())).mul_(2.0)
        after = ds.reconstruction(bottleneck, tuple(x.shape)).rec_image
    assert not torch.equal(before, after)


def test_unet_plus_plus_taps_the_final_expansive_path():
    stages = adapter_for(build("UnetPlusPlus", TINY_ENCODERS[0])).decoder_stages()
    assert [s.module_path for s in stages[:-1]] == [
        f"decoder.blocks.x_0_{j}" for j in (4, 3, 2, 1, 0)
    ]


def test_fpn_pyramid_levels():
    stages = adapter_for(build("FPN", TINY_ENCODERS[0])).decoder_stages()
    assert [(s.module_path, s.reduction) for s in stages] == [
        ("decoder.p2", 4),
        ("decoder.p3", 8),
        ("decoder.p4", 16),
        ("encoder", 32),
    ]
