"""Guard tests (issue 7): deep supervision must not drown the segmentation loss.

At initialisation, on realistic phantoms, for the own U-Net at base 16 and base 64 and for an
smp Unet: every auxiliary term is within one decade of L_image (a confidence-aware pseudo-label
term with no confident pixel yet is exactly 0 and sends no gradient), and the encoder gradient
of all auxiliary terms together is between 0.2x and 2x that of L_image (measured as the
difference between the encoder gradients of the mode and of ``none`` on the same weights and
batch, over ``none``'s). ``balance="paper"`` keeps the paper's literal sum, which fails this.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.data import DataLoader

from dsplug import MODES, DeepSupervised, UNet
from dsplug.data import SyntheticDataset
from dsplug.losses.base import pseudo_label

# The modes whose auxiliary terms the balancer scales (all but `none` and the side-head baselines).
BALANCED = tuple(m for m, spec in MODES.items() if spec.features and spec.heads is None)
PSEUDO_LABEL_TERMS = {"seg", "seg_rec"}


def _batch(size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    batch = next(iter(DataLoader(SyntheticDataset(8, size=size, seed=3), batch_size=4)))
    return batch["image"], batch["mask"]


def _encoder_grad(net: torch.nn.Module, mode: str, x, y, **options) -> tuple[torch.Tensor, dict]:
    ds = DeepSupervised(copy.deepcopy(net), mode=mode, **options).train()
    torch.manual_seed(1)  # VAE sampling, drop paths: alike in both passes
    loss = ds.loss(ds(x, y), y)
    loss.total.backward()
    encoder = ds._adapter.encoder()
    grad = torch.cat([p.grad.flatten() for p in encoder.parameters() if p.grad is not None])
    return grad, loss.raw


def _check(net: torch.nn.Module, modes, x, y) -> None:
    reference, _ = _encoder_grad(net, "none", x, y)
    for mode in modes:
        grad, raw = _encoder_grad(net, mode, x, y)
        ratio = float((grad - reference).norm() / reference.norm())
        assert 0.2 <= ratio <= 2.0, f"{mode}: auxiliary/image encoder gradient {ratio:.2f}"
        image = raw["image"]
        for name, value in raw.items():
            if name in PSEUDO_LABEL_TERMS and value == 0.0:
                continue  # no confident teacher pixel yet: silent (checked below)
            assert image / 10 <= value <= image * 10, f"{mode}: {name}={value:.3g} vs {image:.3g}"


def test_own_unet_base16_every_mode() -> None:
    torch.manual_seed(0)
    x, y = _batch()
    _check(UNet(1, 1, base_channels=16, depth=4), BALANCED, x, y)


@pytest.mark.slow
def test_own_unet_base64() -> None:
    torch.manual_seed(0)
    x, y = _batch(size=32)
    _check(UNet(1, 1, base_channels=64, depth=5), ("hyb", "rec"), x, y)


@pytest.mark.slow
def test_smp_unet_resnet34() -> None:
    smp = pytest.importorskip("segmentation_models_pytorch")
    torch.manual_seed(0)
    x, y = _batch()
    net = smp.Unet("resnet34", encoder_weights=None, in_channels=1, classes=1)
    _check(net, ("hyb",), x, y)


def test_paper_recipe_is_the_literal_sum_and_fails_the_guard() -> None:
    """The documented paper-literal switch: raw MSE, soft labels, plain sum (issue 7's cause)."""
    torch.manual_seed(0)
    x, y = _batch()
    net = UNet(1, 1, base_channels=16, depth=4)
    reference, _ = _encoder_grad(net, "none", x, y)
    grad, _ = _encoder_grad(net, "hyb", x, y, balance="paper")
    assert float((grad - reference).norm() / reference.norm()) > 10


def test_confident_pseudo_labels_leave_unsure_pixels_out() -> None:
    logits = torch.tensor([[[[3.0, 0.2], [-0.1, -4.0]]]])  # p ~ 0.95, 0.55, 0.48, 0.02
    target, valid = pseudo_label(logits, "binary", confident=True)
    assert target.flatten().tolist() == [1.0, 1.0, 0.0, 0.0]
    assert valid.flatten().tolist() == [1.0, 0.0, 0.0, 1.0]
    soft, none = pseudo_label(logits, "binary", confident=False)
    assert none is None and torch.allclose(soft, logits.sigmoid())
    multi = torch.tensor([[[[4.0, 0.0]], [[0.0, 0.1]], [[0.0, 0.0]]]])  # (1, 3, 1, 2)
    labels, valid = pseudo_label(multi, "multiclass", confident=True)
    assert labels.flatten().tolist() == [0, 1] and valid.flatten().tolist() == [1.0, 0.0]


def test_unconfident_teacher_sends_no_gradient() -> None:
    """A teacher that is unsure everywhere (p = 0.5): L_seg' is 0 and trains nothing."""
    torch.manual_seed(0)
    x, y = _batch()
    ds = DeepSupervised(UNet(1, 1, base_channels=8, depth=3), mode="rec").train()
    head = ds.reconstruction.mask_head
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    out = ds(x, y)
    ds.criterion.set_weights({"alpha": 0.0, "a": 0.0, "b": 0.0, "eta": 0.0})
    loss = ds.loss(out, y)
    assert loss.raw["seg_rec"] == 0.0 and float(loss.total.detach()) == 0.0
    loss.total.backward(retain_graph=True)  # no gradient anywhere, not only a zero value
    grads = [p.grad for p in ds.parameters() if p.grad is not None]
    assert grads and all(float(g.abs().max()) == 0.0 for g in grads)
    ds.criterion.pseudo_labels = "soft"  # the paper's soft labels do teach p = 0.5
    assert ds.loss(out, y).raw["seg_rec"] > 0.5


@pytest.mark.parametrize("base", [16, 64])
def test_tied_decoder_starts_at_unit_scale_at_any_width(base: int) -> None:
    """Without the gain, rec_image's std grows as sqrt(2 x base) (about 11 at base 64): the
    same decoder with ``unit_gain`` off leaves the range (so the check guards the gain)."""
    torch.manual_seed(0)
    x, y = _batch(size=32)
    ds = DeepSupervised(UNet(1, 1, base_channels=base, depth=3), mode="rec").train()
    std = float(ds(x, y).rec_image.detach().std())
    assert 0.2 < std < 3.0, std
    ds.reconstruction.unit_gain = False
    plain = float(ds(x, y).rec_image.detach().std())
    assert plain > 3.0, plain
