"""Patches at native resolution (2D and 3D, foreground share, padding) and their augmentation."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dsplug.data.augment import PatchAugment
from dsplug.data.patches import PatchDataset, patch_starts

HAS_MONAI = importlib.util.find_spec("monai") is not None
if HAS_MONAI:  # imported here, so the first test that augments does not pay for it
    import monai.transforms  # noqa: F401


def one_voxel(shape: tuple[int, ...], at: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape, np.int64)
    mask[at] = 1
    return mask


# --- shapes and padding ---------------------------------------------------------------------


@given(
    spatial=st.one_of(
        st.tuples(st.integers(1, 20), st.integers(1, 20)),
        st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9)),
    ),
    data=st.data(),
)
@settings(max_examples=40, deadline=None)
def test_patches_have_the_patch_size_and_the_image_inside(spatial, data) -> None:
    patch = tuple(data.draw(st.integers(1, 12)) for _ in spatial)
    channels = data.draw(st.integers(1, 2))
    image = np.arange(channels * np.prod(spatial), dtype=np.float32).reshape(channels, *spatial)
    image += 1  # every image voxel non-zero: padding is where the patch reads 0
    mask = (np.indices(spatial).sum(0) % 3 == 0).astype(np.int64)
    ds = PatchDataset([image], [mask], patch, label_mode="binary", patches_per_image=2)
    item = ds[1]
    size = tuple(int(s) for s in item["size"])
    assert tuple(item["image"].shape) == (channels, *patch) and item["slice"] == 1
    assert tuple(item["mask"].shape) == (1, *patch)
    assert size == tuple(min(n, p) for n, p in zip(spatial, patch))
    inside = (..., *(slice(0, s) for s in size))
    assert bool((item["image"][inside] > 0).all())  # the valid region is image
    assert int((item["image"] != 0).sum()) == channels * int(np.prod(size))  # the rest: pad


def test_a_small_image_is_padded_at_the_high_end() -> None:
    image = np.ones((1, 5, 7), np.float32)
    mask = np.ones((5, 7), np.int64)
    item = PatchDataset([image], [mask], (8, 8), label_mode="binary")[0]
    assert torch.equal(item["image"][0, :5, :7], torch.ones(5, 7))
    assert float(item["image"][0, 5:].abs().sum() + item["image"][0, :, 7:].abs().sum()) == 0
    assert float(item["mask"][0, 5:].sum()) == 0 and item["size"].tolist() == [5, 7]


# --- foreground share -----------------------------------------------------------------------


def _contains(ds: PatchDataset, draws: int, value: int = 1) -> float:
    return float(np.mean([bool((ds[i % len(ds)]["mask"] == value).any()) for i in range(draws)]))


def test_every_foreground_patch_holds_the_foreground_even_at_the_border() -> None:
    torch.manual_seed(0)
    for at in [(40, 20), (0, 63), (63, 0)]:
        mask = one_voxel((64, 64), at)
        ds = PatchDataset(
            [np.zeros((1, 64, 64), np.float32)],
            [mask],
            (8, 8),
            label_mode="binary",
            foreground_fraction=1.0,
        )
        assert _contains(ds, 20) == 1.0


def test_a_third_of_the_patches_are_centred_on_foreground() -> None:
    torch.manual_seed(0)
    mask = one_voxel((64, 64), (40, 20))
    image = np.zeros((1, 64, 64), np.float32)
    ds = PatchDataset([image], [mask], (8, 8), label_mode="binary", patches_per_image=6)
    # 1/3 forced, plus random patches that happen to hit the voxel ((8 / 57) ** 2 ~ 2%).
    share = _contains(ds, 600)
    assert 0.27 < share < 0.42
    ds.foreground_fraction = 0.0
    assert _contains(ds, 300) < 0.06


def test_rare_classes_are_chosen_as_often_as_common_ones() -> None:
    torch.manual_seed(0)
    mask = np.zeros((48, 48), np.int64)
    mask[:24] = 1  # a large class 1
    mask[40, 40] = 2  # a single voxel of class 2
    ds = PatchDataset(
        [np.zeros((1, 48, 48), np.float32)],
        [mask],
        (6, 6),
        label_mode="multiclass",
        foreground_fraction=1.0,
    )
    assert 0.35 < _contains(ds, 300, value=2) < 0.65


def test_3d_multilabel_patches_and_repeatable_draws() -> None:
    mask = np.zeros((2, 10, 12, 14), np.float32)
    mask[1, 8, 1, 13] = 1
    image = np.random.default_rng(0).standard_normal((1, 10, 12, 14)).astype(np.float32)
    ds = PatchDataset([image], [mask], (4, 4, 4), label_mode="multilabel", foreground_fraction=1)
    torch.manual_seed(3)
    first = ds[0]
    torch.manual_seed(3)
    again = ds[0]
    assert torch.equal(first["image"], again["image"]) and first["mask"].shape == (2, 4, 4, 4)
    assert float(first["mask"][1].sum()) == 1.0


def test_wrong_inputs_are_named() -> None:
    image, mask = np.zeros((1, 8, 8), np.float32), np.zeros((8, 8), np.int64)
    with pytest.raises(ValueError, match="mask"):
        PatchDataset([image], [mask[:4]], (4, 4), label_mode="binary")
    with pytest.raises(ValueError, match=r"\(K, \*spatial\)"):
        PatchDataset([image], [mask], (4, 4), label_mode="multilabel")
    with pytest.raises(ValueError, match="patch_size"):
        PatchDataset([image], [mask], (4,), label_mode="binary")
    with pytest.raises(ValueError, match="label_mode"):
        PatchDataset([image], [mask], (4, 4), label_mode="binery")
    assert patch_starts((10,), (4,), centre=(9,)) == (6,)


# --- augmentation ---------------------------------------------------------------------------


BACKENDS = [
    pytest.param("monai", marks=pytest.mark.skipif(not HAS_MONAI, reason="needs monai")),
    "torchvision",
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dims", [2, 3])
def test_flips_move_image_and_mask_together(backend: str, dims: int) -> None:
    if backend == "torchvision" and dims == 3:
        with pytest.raises(ValueError, match="3D patches need MONAI"):
            PatchAugment(3, backend="torchvision")
        return
    torch.manual_seed(0)
    aug = PatchAugment(dims, rotate=0.0, scale=0.0, intensity=False, backend=backend)
    shape = (5, 6, 7)[:dims]
    image = torch.arange(float(np.prod(shape))).reshape(1, *shape)
    mask = image[0].long() % 4
    subsets = [
        tuple(d for d in range(dims) if bits >> d & 1) for bits in range(2**dims)
    ]  # every combination of axes
    seen = set()
    for _ in range(12):
        new_image, new_mask = aug(image, mask)
        # The image's voxels are distinct, so exactly one set of flips explains the output.
        (flips,) = [f for f in subsets if torch.equal(new_image[0], image[0].flip(f))]
        assert torch.equal(new_mask, mask.flip(flips)) and new_mask.dtype == mask.dtype
        seen.add(flips)
    assert len(seen) > 1  # not always the identity


@pytest.mark.parametrize("backend", BACKENDS)
def test_rotation_and_scaling_keep_labels_and_alignment(backend: str) -> None:
    torch.manual_seed(0)
    aug = PatchAugment(
        2, flip=False, rotate=30.0, scale=0.2, p_affine=1.0, intensity=False, backend=backend
    )
    mask = torch.zeros(24, 24, dtype=torch.long)
    mask[6:18, 8:16] = 2
    image = (mask == 2).float()[None]
    changed = 0
    for _ in range(5):
        new_image, new_mask = aug(image, mask)
        assert set(new_mask.unique().tolist()) <= {0, 2}  # nearest: labels stay labels
        inside = new_image[0][new_mask == 2]
        assert float(inside.mean()) > 0.8  # the mask moved with the image
        changed += int(not torch.equal(new_mask, mask))
    assert changed >= 3  # a tiny draw may round back to the same grid


@pytest.mark.skipif(not HAS_MONAI, reason="needs monai")
def test_3d_augmented_patches_from_the_dataset() -> None:
    torch.manual_seed(0)
    mask = np.zeros((12, 12, 12), np.int64)
    mask[4:8, 4:8, 4:8] = 1
    ds = PatchDataset(
        [mask[None].astype(np.float32)],
        [mask],
        (8, 8, 8),
        label_mode="binary",
        transform=PatchAugment(3, p_affine=1.0),
    )
    item = ds[0]
    assert item["image"].shape == (1, 8, 8, 8) and item["mask"].shape == (1, 8, 8, 8)
    assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
