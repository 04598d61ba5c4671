"""``aux_fraction``: the auxiliary branches (G pass, reconstruction) on part of each batch,
images with foreground first (issue 19's cheaper hyb)."""

from __future__ import annotations

import copy

import pytest
import torch

from dsplug import DeepSupervised
from tests.helpers import make_net


def _batch(batch: int = 4, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(batch, 1, size, size, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(batch, 1, size, size)
    y[1, :, 4:20, 4:20] = 1  # images 1 and 3 have foreground
    y[3, :, 8:12, 8:30] = 1
    return x, y


def test_the_g_pass_runs_on_the_chosen_share_foreground_first() -> None:
    torch.manual_seed(0)
    net = make_net(base=8, depth=3)
    sizes = []
    net.register_forward_pre_hook(lambda _, args: sizes.append(args[0].shape[0]))
    ds = DeepSupervised(net, mode="hyb", aux_fraction=0.5).train()
    x, y = _batch()
    out = ds(x, y)
    assert sizes == [4, 2]  # X pass on the batch, G pass on half of it
    assert out.aux_index.tolist() == [1, 3]
    assert out.mask_logits.shape[0] == out.rec_mask.shape[0] == out.rec_image.shape[0] == 2
    loss = ds.loss(out, y)
    loss.total.backward()
    assert all(v == v for v in loss.raw.values()) and loss.raw["mask"] > 0
    grads = [p.grad for p in ds._adapter.encoder().parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("mode", ["deep", "seg", "rec", "auto", "vae"])
def test_every_mode_with_auxiliary_branches_trains_on_a_share(mode: str) -> None:
    torch.manual_seed(0)
    ds = DeepSupervised(make_net(base=8, depth=3), mode=mode, aux_fraction=0.5).train()
    x, y = _batch()
    out = ds(x, y)
    loss = ds.loss(out, y)
    loss.total.backward()
    assert torch.isfinite(loss.total) and out.aux_index.tolist() == [1, 3]


def test_the_share_of_the_terms_matches_a_batch_of_those_images() -> None:
    """The terms read from the G pass alone equal those of a batch of just those images (the
    terms that also read the X pass differ by its batch statistics, taken over all images)."""
    torch.manual_seed(0)
    ds = DeepSupervised(make_net(base=8, depth=3), mode="hyb", aux_fraction=0.5).train()
    whole = copy.deepcopy(ds)
    whole.aux_fraction = 1.0
    x, y = _batch()
    part = ds.loss(ds(x, y), y).raw
    index = torch.tensor([1, 3])
    alone = whole.loss(whole(x[index], y[index]), y[index]).raw
    for name in ("mask", "rem"):
        assert part[name] == pytest.approx(alone[name], rel=1e-4), name


def test_multiclass_with_ignored_labels_and_a_batch_of_one() -> None:
    torch.manual_seed(0)
    ds = DeepSupervised(
        make_net(classes=3, base=8, depth=3), mode="hyb", aux_fraction=0.25, ignore_index=9
    ).train()
    x = torch.randn(4, 1, 32, 32)
    y = torch.full((4, 32, 32), 9)
    y[2, 4:10, 4:10] = 2  # the only image with a counted foreground pixel
    out = ds(x, y)
    assert out.aux_index.tolist() == [2]
    ds.loss(out, y).total.backward()
    one = ds(x[:1], y[:1])
    assert out.aux_index.numel() == 1 and one.aux_index is None  # one image: all of it


@pytest.mark.parametrize("bad", [0, 0.0, 1.5, -0.1, True, "half"])
def test_a_wrong_fraction_is_one_clear_error(bad) -> None:
    with pytest.raises(ValueError, match=r"aux_fraction must be a number in \(0, 1\]"):
        DeepSupervised(make_net(base=8, depth=3), mode="hyb", aux_fraction=bad)


def test_the_config_records_a_fraction_only_when_set() -> None:
    net = make_net(base=8, depth=3)
    assert "aux_fraction" not in DeepSupervised(copy.deepcopy(net), mode="hyb").config()
    assert DeepSupervised(net, mode="hyb", aux_fraction=0.5).config()["aux_fraction"] == 0.5
