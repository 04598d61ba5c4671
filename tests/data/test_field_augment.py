"""The field recipe's augmentation (issue 29, item 1): image and mask stay aligned in 2D and
3D (multiclass and binary), labels stay labels, draws repeat under a seed, bad values are one
line."""

from __future__ import annotations

import pytest
import torch

from dsplug.data.field_augment import AugmentedDataset, FieldAugment

# Every spatial step always on; intensity off, so that the image still encodes the mask.
SPATIAL = {
    "p_rotate": 1.0,
    "p_scale": 1.0,
    "p_elastic": 1.0,
    "p_rot90": 1.0,
    "p_intensity": 0.0,
    "p_shift": 0.0,
    "p_gamma": 0.0,
    "p_noise": 0.0,
}
EXACT = {**SPATIAL, "p_rotate": 0.0, "p_scale": 0.0, "p_elastic": 0.0}  # turns and mirrors only


def _classes(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Three-class blobs: boxes of classes 1 and 2 at seeded places."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(shape, dtype=torch.long)
    for value in (1, 2):
        starts = [int(torch.randint(0, n // 2, (), generator=g)) for n in shape]
        mask[tuple(slice(s, s + n // 3) for s, n in zip(starts, shape))] = value
    return mask


@pytest.mark.parametrize("shape", [(24, 32), (12, 16, 20)], ids=["2d", "3d"])
def test_turns_and_mirrors_move_image_and_mask_alike_exactly(shape) -> None:
    aug = FieldAugment(**EXACT)
    for seed in range(8):
        mask = _classes(shape, seed)
        image = mask[None].float()  # the mask drawn from the image itself
        g = torch.Generator().manual_seed(seed)
        new_image, new_mask = aug(image, mask, generator=g)
        assert torch.equal(new_image[0].round().long(), new_mask)


@pytest.mark.parametrize("shape", [(24, 32), (12, 16, 20)], ids=["2d", "3d"])
def test_rotation_zoom_and_elastic_move_image_and_mask_alike(shape) -> None:
    """Bilinear image vs nearest mask differ only on class borders (a few %); a mask moved by
    another draw than the image's would disagree on far more."""
    aug = FieldAugment(**SPATIAL, rotate=30.0, scale=(0.7, 1.4), elastic=0.1)
    changed = 0
    for seed in range(6):
        mask = _classes(shape, seed)
        image = mask[None].float()
        new_image, new_mask = aug(image, mask, generator=torch.Generator().manual_seed(seed))
        agree = (new_image[0].round().long() == new_mask).float().mean().item()
        assert agree > 0.93, (seed, agree)
        assert set(new_mask.unique().tolist()) <= {0, 1, 2}
        changed += int(not torch.equal(new_mask, mask))
    assert changed >= 5  # the transforms did move things


@pytest.mark.parametrize("shape", [(24, 32), (12, 16, 20)], ids=["2d", "3d"])
def test_binary_channel_masks_stay_zero_one(shape) -> None:
    aug = FieldAugment(**SPATIAL, rotate=30.0)
    for seed in range(4):
        mask = (_classes(shape, seed) > 0).float()[None]  # dsplug's binary item mask (1, ...)
        new_image, new_mask = aug(mask.clone(), mask, generator=torch.Generator().manual_seed(seed))
        assert new_mask.shape == mask.shape and new_mask.dtype == torch.float32
        assert set(new_mask.unique().tolist()) <= {0.0, 1.0}
        assert (new_image.round() == new_mask).float().mean() > 0.93


def test_the_same_seed_repeats_and_another_differs() -> None:
    aug = FieldAugment(p_rotate=1.0, p_scale=1.0, p_noise=1.0, p_gamma=1.0, p_intensity=1.0)
    image, mask = torch.randn(1, 3, 16, 16), _classes((3, 16, 16), 0)
    first = aug(image, mask, generator=torch.Generator().manual_seed(5))
    torch.rand(10)  # the global RNG moving on must not matter with a generator
    again = aug(image, mask, generator=torch.Generator().manual_seed(5))
    other = aug(image, mask, generator=torch.Generator().manual_seed(6))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])
    torch.manual_seed(3)
    global_a = aug(image, mask)
    torch.manual_seed(3)
    global_b = aug(image, mask)
    assert all(torch.equal(a, b) for a, b in zip(global_a, global_b))


def test_intensity_steps_touch_the_image_only() -> None:
    aug = FieldAugment(
        p_rotate=0, p_scale=0, p_rot90=0, mirror=False, p_intensity=1, p_gamma=1, p_noise=1
    )
    image, mask = torch.randn(1, 16, 16), _classes((16, 16), 1)
    new_image, new_mask = aug(image, mask, generator=torch.Generator().manual_seed(0))
    assert torch.equal(new_mask, mask) and not torch.allclose(new_image, image)
    assert torch.isfinite(new_image).all()


def test_augmented_dataset_serves_the_items_other_attributes_unchanged() -> None:
    class Items(torch.utils.data.Dataset):
        cases = ("a",)

        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> dict:
            return {"image": torch.ones(1, 8, 8), "mask": torch.ones(1, 8, 8), "case": "a"}

    data = AugmentedDataset(Items(), FieldAugment(p_rot90=0, mirror=False, p_gamma=0))
    assert len(data) == 2 and data.cases == ("a",) and data[0]["case"] == "a"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"p_rotate": 2}, "p_rotate must be a probability in [0, 1], got 2"),
        ({"p_noise": -0.1}, "p_noise must be a probability in [0, 1], got -0.1"),
        ({"scale": (1.2, 0.8)}, "scale must be (low, high) with 0.0 < low <= high"),
        ({"rotate": float("nan")}, "rotate must be a finite number >= 0"),
    ],
)
def test_bad_values_are_one_line(kwargs, message) -> None:
    with pytest.raises(ValueError) as info:
        FieldAugment(**kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_mismatched_shapes_are_one_line() -> None:
    with pytest.raises(ValueError, match="a mask of its spatial size") as info:
        FieldAugment()(torch.zeros(1, 8, 8), torch.zeros(8, 9))
    assert "\n" not in str(info.value)
