"""SyntheticDataset: seeded, the documented shapes and dtypes, foreground present, fast."""

from __future__ import annotations

import time

import pytest
import torch

from dsplug.data import Augment, SyntheticDataset


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b = SyntheticDataset(4, size=32, seed=3), SyntheticDataset(4, size=32, seed=3)
    c = SyntheticDataset(4, size=32, seed=4)
    for i in range(4):
        assert torch.equal(a[i]["image"], b[i]["image"])
        assert torch.equal(a[i]["mask"], b[i]["mask"])
    assert not torch.equal(a[0]["image"], c[0]["image"])
    assert not torch.equal(a[0]["mask"], a[1]["mask"])  # cases differ


def test_a_case_does_not_depend_on_the_subset() -> None:
    full = SyntheticDataset(10, size=32, seed=1)
    sub = full.subset(["synthetic_0007"], split="val")
    assert torch.equal(sub[0]["image"], full[7]["image"])
    assert sub[0]["case"] == "synthetic_0007"


@pytest.mark.parametrize(
    ("dim", "label_mode", "classes", "mask_shape", "mask_dtype"),
    [
        (2, "binary", None, (1, 32, 32), torch.float32),
        (2, "multiclass", None, (32, 32), torch.int64),
        (2, "multiclass", 4, (32, 32), torch.int64),
        (2, "multilabel", 3, (3, 32, 32), torch.float32),
        (3, "binary", None, (1, 32, 32, 32), torch.float32),
        (3, "multiclass", 3, (32, 32, 32), torch.int64),
    ],
)
def test_shapes_dtypes_and_foreground(dim, label_mode, classes, mask_shape, mask_dtype) -> None:
    ds = SyntheticDataset(6, size=32, dim=dim, label_mode=label_mode, classes=classes, seed=0)
    assert ds.label_mode == label_mode and ds.in_channels == 1
    expected_classes = {"binary": 1, "multiclass": 3, "multilabel": 2}[label_mode]
    assert ds.classes == (classes or expected_classes)
    for i in range(len(ds)):
        item = ds[i]
        assert item["image"].shape == (1, *(32,) * dim) and item["image"].dtype == torch.float32
        assert item["mask"].shape == mask_shape and item["mask"].dtype == mask_dtype
        assert item["size"].tolist() == [32] * dim and item["size"].dtype == torch.int64
        assert item["slice"] == 0
        mask = item["mask"]
        if label_mode == "multiclass":
            assert int(mask.max()) < ds.classes and int(mask.min()) >= 0
            assert (mask == 1).any(), "the organ must be present"
        else:
            assert set(mask.unique().tolist()) <= {0.0, 1.0}
            assert mask[0].sum() > 0, "foreground must be present"
        # foreground is a minority, and the image is z-scored
        assert 0.02 < float((mask > 0).float().mean()) < 0.6
        assert abs(float(item["image"].mean())) < 1e-3


def test_multiclass_has_small_structures_near_the_organ() -> None:
    ds = SyntheticDataset(10, size=64, label_mode="multiclass", seed=0)
    cases_with_small = 0
    for i in range(len(ds)):
        mask = ds[i]["mask"]
        small = mask == 2
        if small.any():
            cases_with_small += 1
            organ_px, small_px = int((mask == 1).sum()), int(small.sum())
            assert small_px < organ_px, "structures are small next to the organ"
            # each structure touches the organ: dilating it by 2 px reaches organ pixels
            dil = torch.nn.functional.max_pool2d(small[None, None].float(), 5, 1, 2)[0, 0] > 0
            assert (dil & (mask == 1)).any()
    assert cases_with_small >= 8


def test_images_carry_the_labels() -> None:
    """The organ is brighter than the background on average: a learnable contrast."""
    ds = SyntheticDataset(5, size=48, label_mode="multiclass", noise=0.25, seed=2)
    for i in range(len(ds)):
        item = ds[i]
        img, mask = item["image"][0], item["mask"]
        assert img[mask == 1].mean() > img[mask == 0].mean() + 1.0


def test_multichannel_and_augment() -> None:
    torch.manual_seed(0)
    ds = SyntheticDataset(4, size=32, in_channels=3, split="train", augment=Augment(p=1.0))
    item = ds[0]
    assert item["image"].shape == (3, 32, 32) and ds.in_channels == 3
    plain = SyntheticDataset(4, size=32, in_channels=3)[0]
    assert not torch.equal(item["image"], plain["image"])  # flipped / rotated
    assert torch.equal(item["mask"].sum(), plain["mask"].sum())


def test_generation_is_fast() -> None:
    ds2, ds3 = SyntheticDataset(50, size=64), SyntheticDataset(5, size=32, dim=3)
    start = time.perf_counter()
    for i in range(len(ds2)):
        ds2[i]
    for i in range(len(ds3)):
        ds3[i]
    per_item = (time.perf_counter() - start) / 55
    assert per_item < 0.02, f"{per_item * 1e3:.1f} ms per phantom"


def test_config_round_trip_and_bad_arguments() -> None:
    from dsplug.data import dataset_from_config

    ds = SyntheticDataset(12, size=32, label_mode="multiclass", seed=5).subset(
        ["synthetic_0002", "synthetic_0003"], split="test"
    )
    again = dataset_from_config(ds.config())
    assert again.cases == ds.cases and torch.equal(again[1]["image"], ds[1]["image"])
    with pytest.raises(ValueError, match="label_mode"):
        SyntheticDataset(4, label_mode="multi")
    with pytest.raises(ValueError, match="classes"):
        SyntheticDataset(4, label_mode="binary", classes=2)
    with pytest.raises(ValueError, match="augmentation"):
        SyntheticDataset(4, augment=Augment(), split="val")
    with pytest.raises(ValueError, match="unknown"):
        SyntheticDataset(4).subset(["synthetic_0009"])
