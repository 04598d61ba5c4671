"""Shared builders for the core tests: tiny nets and matching batches."""

from __future__ import annotations

import pytest
import torch

from dsplug import UNet, UNetPlusPlus

NETS = {"unet": UNet, "unetpp": UNetPlusPlus}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a shared 2-core runner the
    thread pool's contention makes each op ~50x slower; restore the setting afterwards.

    Autouse in each test module that imports it (``from tests.helpers import one_thread as
    one_thread``).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_net(
    kind: str = "unet",
    *,
    in_channels: int = 1,
    classes: int = 1,
    base: int = 8,
    depth: int = 3,
    norm: str = "batch",
    spatial_dims: int = 2,
) -> torch.nn.Module:
    """A tiny own network."""
    return NETS[kind](in_channels, classes, base, depth, norm, spatial_dims)


def make_batch(
    label_mode: str,
    classes: int,
    *,
    batch: int = 2,
    in_channels: int = 1,
    size: int = 32,
    spatial_dims: int = 2,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A z-scored-looking image batch and a target in the label mode's format."""
    gen = torch.Generator().manual_seed(seed)
    spatial = (size,) * spatial_dims
    x = torch.randn(batch, in_channels, *spatial, generator=gen)
    if label_mode == "multiclass":
        y = torch.randint(0, classes, (batch, *spatial), generator=gen)
    else:
        y = (torch.rand(batch, classes, *spatial, generator=gen) > 0.6).float()
    return x, y
