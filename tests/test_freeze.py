"""freeze_encoder() / unfreeze_encoder() on dsplug's own nets, on the wrapper for MONAI models
(its adapter's encoder) and through the wrapper for smp: frozen weights and statistics stay put
while the decoder trains; unfrozen, they train again."""

from collections.abc import Callable

import pytest
import torch
from torch import nn

from dsplug import DeepSupervised, UNet, UNetPlusPlus
from dsplug.nets.freeze import NORM_LAYERS


def _own(cls: type[UNet]) -> Callable[[], nn.Module]:
    return lambda: cls(1, 1, base_channels=4, depth=3)


def _basic() -> nn.Module:
    nets = pytest.importorskip("monai.networks.nets")
    # batch norm: the frozen encoder's running statistics must stay put
    return nets.BasicUNet(2, 1, 1, features=(4, 4, 8, 8, 16, 4), norm="batch")


def _dyn() -> nn.Module:
    nets = pytest.importorskip("monai.networks.nets")
    return nets.DynUNet(2, 1, 1, [3, 3, 3], [1, 2, 2], [2, 2], filters=[4, 8, 8], norm_name="batch")


def _smp() -> nn.Module:
    smp = pytest.importorskip("segmentation_models_pytorch")
    model = smp.Unet("tu-test_resnet", encoder_weights=None, in_channels=1, classes=1)
    for m in model.modules():  # timm zero-inits each residual block's last norm: undo it, so
        if isinstance(m, nn.BatchNorm2d):  # that every kernel gets a gradient from the start
            nn.init.ones_(m.weight)
    return model


# name: (builder, input size, mode); ``down`` is the cheapest mode with auxiliary terms (the
# balance measures on the shared weights), ``hyb`` adds a decoder tied to the frozen encoder
MODELS = {
    "unet": (_own(UNet), 32, "hyb"),
    "unetpp": (_own(UNetPlusPlus), 32, "down"),
    "monai-basic": (_basic, 32, "down"),
    "monai-dyn": (_dyn, 32, "down"),
    "smp": (_smp, 64, "down"),
}


def _batch(size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 1, size, size, generator=g)
    y = torch.zeros(2, 1, size, size)
    y[:, :, size // 4 : size // 2, size // 4 : size // 2 + 4] = 1
    return x, y


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and float buffers (running statistics), copied."""
    state = module.state_dict()
    return {k: v.detach().clone() for k, v in state.items() if v.is_floating_point()}


def _changed(before: dict[str, torch.Tensor], module: nn.Module) -> set[str]:
    after = module.state_dict()
    return {k for k, v in before.items() if not torch.equal(v, after[k])}


def _step(ds: DeepSupervised, opt: torch.optim.Optimizer, size: int, seed: int) -> None:
    x, y = _batch(size, seed)
    opt.zero_grad()
    ds.loss(ds(x, y), y).total.backward()
    opt.step()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_freeze_encoder_keeps_it_and_unfreeze_trains_it(name: str) -> None:
    build, size, mode = MODELS[name]
    torch.manual_seed(0)
    ds = DeepSupervised(build(), mode=mode).train()
    encoder = ds._adapter.encoder()
    encoder_ids = set(map(id, encoder.parameters()))
    decoder = [p for p in ds.model.parameters() if id(p) not in encoder_ids]
    norms = [m for m in encoder.modules() if isinstance(m, NORM_LAYERS)]
    assert norms, "the case needs normalisation layers in the encoder"
    # one optimiser over everything, built before freezing: frozen weights get no gradient
    opt = torch.optim.SGD(ds.parameters(), lr=0.1)

    ds.freeze_encoder()
    assert not any(p.requires_grad for p in encoder.parameters())
    ds.eval().train()  # norm layers of a frozen encoder stay in eval mode across .train()
    assert not any(m.training for m in norms)
    assert ds.training and ds.model.training
    # the balance measures on the model's trainable weights: the decoder's
    shared = set(map(id, ds._shared_parameters()))
    assert shared and not shared & encoder_ids
    enc_before = _snapshot(encoder)
    dec_before = [p.detach().clone() for p in decoder]
    _step(ds, opt, size, seed=0)
    assert not _changed(enc_before, encoder), "a frozen encoder changed (weights or statistics)"
    assert any(not torch.equal(b, p) for b, p in zip(dec_before, decoder)), "decoder unchanged"
    assert bool(ds.criterion.balancer.measured.any())

    ds.unfreeze_encoder()
    assert all(p.requires_grad for p in encoder.parameters())
    assert all(m.training for m in norms)
    assert set(map(id, ds._shared_parameters())) == encoder_ids
    enc_before = _snapshot(encoder)
    _step(ds, opt, size, seed=1)
    changed = _changed(enc_before, encoder)
    kernels = {k for k, v in encoder.named_parameters() if v.dim() > 1}  # convolutions
    assert kernels and kernels <= changed, f"unfrozen, did not train: {kernels - changed}"
    assert any(k.endswith("running_mean") for k in changed), "statistics did not update"


@pytest.mark.parametrize("cls", [UNet, UNetPlusPlus])
def test_own_net_freeze_without_the_wrapper(cls: type[UNet]) -> None:
    """The bare net: requires_grad off, norms in eval across .train(); unfreezing in eval mode
    leaves them in eval (smp would put them in training mode)."""
    net = cls(1, 1, base_channels=4, depth=3, norm="instance").train()
    norms = [m for m in net.encoder.modules() if isinstance(m, NORM_LAYERS)]
    decoder_norms = [m for m in net.decoder.modules() if isinstance(m, NORM_LAYERS)]
    net.freeze_encoder()
    assert not any(p.requires_grad for p in net.encoder.parameters())
    assert all(p.requires_grad for p in net.decoder.parameters())
    net.eval().train()
    assert not any(m.training for m in norms) and all(m.training for m in decoder_norms)
    net.eval()
    net.unfreeze_encoder()
    assert all(p.requires_grad for p in net.encoder.parameters())
    assert not any(m.training for m in norms)
    net.train()
    assert all(m.training for m in norms)


def test_wrapper_unfreeze_in_eval_keeps_smp_norms_in_eval() -> None:
    """smp's own unfreeze_encoder() puts the encoder's norms in training mode even in eval; the
    wrapper puts them back in its own mode."""
    ds = DeepSupervised(_smp(), mode="down").eval()
    ds.freeze_encoder()
    ds.unfreeze_encoder()
    norms = [m for m in ds.model.encoder.modules() if isinstance(m, NORM_LAYERS)]
    assert norms and not any(m.training for m in norms)
