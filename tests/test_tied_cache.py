"""The trace cache of GraphTiedDecoder: a second encoder of the same structure reuses the first
one's trace, reads its own weights, and the cache never keeps the first encoder's tensors."""

from __future__ import annotations

import dataclasses
import gc
import weakref

import pytest
import torch
from torch import nn

from dsplug.tied._graph_cache import BlueprintCache, signature
from dsplug.tied.graph import _CACHE, GraphTiedDecoder, clear_trace_cache, trace_cache_info


@pytest.fixture(autouse=True)
def _fresh_cache():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    clear_trace_cache()
    yield
    clear_trace_cache()
    torch.set_num_threads(threads)


class Small(nn.Module):
    """Two strided convs; ``scale`` is a plain tensor attribute (traced as a constant)."""

    def __init__(self, stride: int = 2, channels: int = 4, scale: float = 1.0) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, channels, 3, stride=stride, padding=1)
        self.c2 = nn.Conv2d(channels, 6, 3, stride=2, padding=1)
        self.scale = torch.tensor(scale)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        a = torch.relu(self.c1(x)) * self.scale
        return [a, self.c2(a)]


def _key(encoder: nn.Module, size: int = 16, dtype: torch.dtype = torch.float32) -> object:
    return signature(encoder, torch.zeros(1, 1, size, size, dtype=dtype), None)


def _rec(dec: GraphTiedDecoder, enc: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return dec(enc(x)[-1], x.shape, mask=False).rec_image


def test_a_second_encoder_hits_the_cache_and_its_decoder_reads_its_own_weights():
    torch.manual_seed(0)
    first, second = Small(), Small()
    example = torch.randn(1, 1, 16, 16)
    dec1 = GraphTiedDecoder(first, example)
    dec2 = GraphTiedDecoder(second, example)
    assert trace_cache_info()["hits"] == 1 and trace_cache_info()["misses"] == 1
    tied = dec2.tied_parameters()
    assert tied and all(p is second.get_parameter(path) for path, p in tied.items())
    x = torch.randn(2, 1, 24, 16)
    fresh = GraphTiedDecoder(second, example, cache=False)  # same own parameters: zeros, ones
    torch.testing.assert_close(_rec(dec2, second, x), _rec(fresh, second, x))
    bottleneck = second(x)[-1]
    assert not torch.allclose(dec1(bottleneck, x.shape).rec_image, _rec(dec2, second, x))
    _rec(dec2, second, x).square().sum().backward()
    assert second.c1.weight.grad is not None and first.c1.weight.grad is None
    consts1, consts2 = dict(dec1.named_buffers()), dict(dec2.named_buffers())
    assert consts1 and consts1.keys() == consts2.keys()  # the traced constant: a copy each
    assert all(consts1[k] is not consts2[k] for k in consts1)


def _tensors_held(value: object, seen: set[int] | None = None) -> list[torch.Tensor]:
    """The tensors a blueprint holds: through its fields, containers and modules (op handles
    and functions are not followed: they lead into torch's own global state)."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return []
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, nn.Module):
        return [*value.parameters(), *value.buffers()]
    if isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    elif isinstance(value, list | tuple | set | frozenset):
        items = list(value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        items = [getattr(value, f.name) for f in dataclasses.fields(value)]
    else:
        return []
    return [t for item in items for t in _tensors_held(item, seen)]


def test_the_cache_keeps_no_tensor_of_the_first_encoder():
    torch.manual_seed(0)
    first = Small()
    dec = GraphTiedDecoder(first, torch.randn(1, 1, 16, 16))
    storages = {t.untyped_storage().data_ptr() for t in (*first.parameters(), first.scale)}
    (blueprint,) = _CACHE._items.values()
    held = _tensors_held(blueprint)
    assert held  # the copy of the traced constant, the norms' templates
    assert not storages & {t.untyped_storage().data_ptr() for t in held}
    refs = [weakref.ref(p) for p in first.parameters()]
    del first, dec
    gc.collect()
    assert trace_cache_info()["size"] == 1
    assert all(r() is None for r in refs)


def test_a_different_configuration_misses():
    base = _key(Small())
    assert base is not None and base == _key(Small())
    assert base != _key(Small(stride=1))  # a hyper-parameter (same tensor shapes)
    assert base != _key(Small(channels=8))  # parameter shapes
    assert base != _key(Small(scale=2.0))  # a traced constant's value
    assert base != _key(Small(), size=32)  # the reference size
    assert base != _key(Small().double(), dtype=torch.float64)  # dtypes
    frozen = Small()
    frozen.c1.weight.requires_grad_(False)
    assert base != _key(frozen)
    hooked = Small()
    hooked.c1.register_forward_hook(lambda m, i, o: o * 2)
    assert base != _key(hooked)

    class Twin(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(1, 4, 3, stride=2, padding=1)
            self.c2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
            self.scale = torch.tensor(1.0)

    Twin.__name__ = Twin.__qualname__ = Small.__qualname__  # the same name, another class
    assert base != _key(Twin())


def test_an_encoder_it_cannot_describe_is_traced_every_time():
    enc = Small()
    enc.opaque = object()  # no structural description
    assert _key(enc) is None
    GraphTiedDecoder(enc, torch.randn(1, 1, 16, 16))
    GraphTiedDecoder(enc, torch.randn(1, 1, 16, 16))
    assert trace_cache_info() == {"hits": 0, "misses": 0, "size": 0, "maxsize": 8}


def test_different_encode_functions_are_different_keys():
    enc, x = Small(), torch.zeros(1, 1, 16, 16)

    def deepest(encoder, x):
        return list(encoder(x))[-1:]

    assert signature(enc, x, None) != signature(enc, x, deepest)
    assert signature(enc, x, deepest) == signature(Small(), x, deepest)


def test_the_cache_is_bounded_least_recently_used_first():
    cache = BlueprintCache(maxsize=3)
    for k in "abc":
        cache.put(k, k.upper())
    assert cache.get("a") == "A"  # now the most recent
    cache.put("d", "D")
    assert cache.get("b") is None and cache.get("a") == "A" and cache.get("d") == "D"
    assert cache.info() == {"hits": 3, "misses": 1, "size": 3, "maxsize": 3}


def test_a_second_wrapped_smp_model_reuses_the_trace_and_is_tied_to_its_own_encoder():
    smp = pytest.importorskip("segmentation_models_pytorch")
    from dsplug import DeepSupervised

    def wrap() -> tuple[nn.Module, DeepSupervised]:
        model = smp.Unet("resnet18", encoder_weights=None, in_channels=1, classes=1)
        return model, DeepSupervised(model, mode="hyb")

    _, ds1 = wrap()
    model, ds2 = wrap()
    assert trace_cache_info()["hits"] == 1
    tied = ds2.reconstruction.tied_parameters()
    assert tied and all(p is model.encoder.get_parameter(path) for path, p in tied.items())
    first = set(map(id, ds1.parameters()))
    assert not first & set(map(id, ds2.parameters()))
    x = torch.randn(2, 1, 64, 64)
    y = (torch.rand(2, 1, 64, 64) > 0.5).float()
    ds2.train()
    ds2(x, y).rec_image.sum().backward()
    assert all(p.grad is not None for p in tied.values())
    assert all(p.grad is None for p in ds1.parameters())
