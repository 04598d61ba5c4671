"""The own nets' tied decoder: tied means tied."""

import pytest
import torch

from dsplug import DeepSupervised
from dsplug.losses import feature_mse
from tests.helpers import make_batch, make_net


def _encoder_convs(net):
    return [conv for block in net.encoder.blocks for conv in block.convs()]


@pytest.mark.parametrize("kind", ["unet", "unetpp"])
@pytest.mark.parametrize("mode", ["seg", "rec", "hyb"])
def test_decoder_weights_are_the_encoders_tensors(kind, mode):
    net = make_net(kind)
    ds = DeepSupervised(net, mode)
    tied = [conv.weight for conv in ds.reconstruction._tied_convs]
    convs = _encoder_convs(net)
    assert len(tied) == len(convs)
    assert all(t is c.weight for t, c in zip(tied, convs))
    own = {id(p) for p in ds.reconstruction.parameters()}
    assert not own & {id(c.weight) for c in convs}, "the decoder registers an encoder weight"
    assert not any("encoder" in k for k in ds.reconstruction.state_dict())


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_reconstruction_loss_alone_reaches_every_encoder_conv(spatial_dims):
    torch.manual_seed(0)
    net = make_net("unet", spatial_dims=spatial_dims)
    ds = DeepSupervised(net, "rec")
    x, _ = make_batch("binary", 1, size=16, spatial_dims=spatial_dims)
    bottleneck = net.encoder(x)[-1].detach()  # only the tied path can carry gradient now
    feature_mse(ds.reconstruction(bottleneck, tuple(x.shape)).rec_image, x).backward()
    for i, conv in enumerate(_encoder_convs(net)):
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0, i


def test_rec_mode_adds_under_five_percent_parameters():
    net = make_net("unet", base=16, depth=5)
    bare = sum(p.numel() for p in net.parameters())
    wrapped = sum(p.numel() for p in DeepSupervised(net, "rec").parameters())
    assert wrapped > bare
    assert (wrapped - bare) / bare < 0.05


def test_vae_decoder_has_its_own_weights():
    net = make_net("unet")
    ds = DeepSupervised(net, "vae")
    own = list(ds.reconstruction.own_weights)
    convs = _encoder_convs(net)
    assert all(w is not c.weight for w, c in zip(own, convs))
    assert all(torch.equal(w, c.weight) for w, c in zip(own, convs))  # cloned at construction


def test_auto_mode_trains_its_own_copy_of_the_encoder():
    net = make_net("unet")
    ds = DeepSupervised(net, "auto")
    ae = [conv.weight for conv in ds.reconstruction._tied_convs]
    assert all(w is not c.weight for w, c in zip(ae, _encoder_convs(net)))
    ae_ids = {id(p) for p in ds.ae_encoder.parameters()}
    assert all(id(w) in ae_ids for w in ae)


def test_reconstruction_levels_mirror_the_encoder():
    net = make_net("unet", depth=4)
    ds = DeepSupervised(net, "rec")
    x, _ = make_batch("binary", 1, size=32)
    feats = net.encoder(x)
    rec = ds.reconstruction(feats[-1], tuple(x.shape))
    assert [t.shape for t in rec.levels.values()] == [f.shape for f in feats]
    assert rec.rec_image.shape == x.shape
