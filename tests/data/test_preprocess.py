"""Preprocessing: slicing axis, z-score, slice selection, padding at the high end, resize,
augmentation that keeps the padding in place, and the predict-time helpers."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from dsplug.data import (
    Augment,
    MSDDataset,
    Preprocessing,
    slices_to_volume,
    volume_to_slices,
)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_volume_round_trip_along_each_axis(axis) -> None:
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(20, 27, 13)).astype(np.float32)
    prep = Preprocessing(axis=axis, multiple=16)
    sv = volume_to_slices(vol, prep)
    n = vol.shape[axis]
    assert sv.images.shape[0] == n and sv.images.shape[2] % 16 == 0
    assert sv.images.shape[3] % 16 == 0
    # the first slice equals the z-scored volume sliced along the axis, padded at the end
    expected = (vol - vol.mean()) / vol.std()
    first = np.take(expected, 0, axis=axis)
    h, w = first.shape
    assert sv.sizes[0].tolist() == [h, w]
    np.testing.assert_allclose(sv.images[0, 0, :h, :w].numpy(), first, atol=1e-5)
    assert float(sv.images[0, 0, h:, :].abs().sum()) == 0.0
    assert float(sv.images[0, 0, :, w:].abs().sum()) == 0.0
    back = slices_to_volume(sv.images[:, 0], sv)
    np.testing.assert_allclose(back, expected, atol=1e-5)
    # extra leading dims of predictions (e.g. class probabilities) survive
    probs = torch.stack([sv.images[:, 0], -sv.images[:, 0]], dim=1)
    assert slices_to_volume(probs, sv).shape == (2, *vol.shape)


def test_slice_range_and_resize_round_trip() -> None:
    vol = np.arange(30 * 20 * 10, dtype=np.float32).reshape(30, 20, 10)
    prep = Preprocessing(slice_range=(2, 7), fit="resize", size=(32, 32), multiple=16)
    sv = volume_to_slices(vol, prep)
    assert sv.indices == (2, 3, 4, 5, 6) and tuple(sv.images.shape) == (5, 1, 32, 32)
    labels = (sv.images[:, 0] > 0).to(torch.int64)
    back = slices_to_volume(labels, sv, fill=-1)
    assert back.shape == vol.shape and back.dtype == np.int64
    assert (back[..., :2] == -1).all() and (back[..., 7:] == -1).all()
    z = (vol - vol.mean()) / vol.std()
    agree = (back[..., 2:7] == (z[..., 2:7] > 0)).mean()
    assert agree > 0.97  # nearest resize there and back only moves the boundary


def test_preprocessing_validation() -> None:
    with pytest.raises(ValueError, match="multiple"):
        Preprocessing(size=(50, 64), multiple=32)
    with pytest.raises(ValueError, match="explicit size"):
        Preprocessing(fit="resize")
    with pytest.raises(ValueError, match="fit"):
        Preprocessing(fit="crop")
    with pytest.raises(ValueError, match="slice_range"):
        Preprocessing(slice_range=(5, 5))
    with pytest.raises(ValueError, match="keys"):
        Preprocessing.from_config({"zscore": True, "zscroe": False})
    with pytest.raises(ValueError, match="do not fit"):
        volume_to_slices(np.random.rand(70, 20, 5), Preprocessing(size=(32, 32)))


def _raw(root, case):
    img = nib.load(root / "imagesTr" / f"{case}.nii.gz").get_fdata().astype(np.float64)
    lbl = np.asarray(nib.load(root / "labelsTr" / f"{case}.nii.gz").dataobj)
    return img, lbl


def test_items_match_an_independent_computation(make_msd, tmp_path) -> None:
    root = make_msd(n=3)
    ds = MSDDataset(root, preprocessing=Preprocessing(multiple=16), cache_dir=tmp_path / "c")
    assert ds.preprocessing.size == (32, 32)  # largest slice 22 x 24, rounded up to 16
    img, lbl = _raw(root, "tiny_001")
    z = (img - img.mean()) / img.std()
    for i in range(len(ds)):
        item = ds[i]
        if item["case"] != "tiny_001":
            continue
        k = item["slice"]
        h, w = item["size"].tolist()
        assert (h, w) == z.shape[:2]
        np.testing.assert_allclose(item["image"][0, :h, :w].numpy(), z[..., k], atol=1e-5)
        assert torch.equal(item["mask"][:h, :w], torch.from_numpy(lbl[..., k].astype(np.int64)))
        assert float(item["image"][:, h:].abs().sum() + item["image"][:, :, w:].abs().sum()) == 0
        assert int(item["mask"][h:].sum() + item["mask"][:, w:].sum()) == 0


def test_drop_empty_only_in_training_and_slice_range(make_msd, tmp_path) -> None:
    root = make_msd(n=3)
    prep = Preprocessing(drop_empty=True, multiple=16)
    train = MSDDataset(root, preprocessing=prep, split="train", cache_dir=tmp_path / "c")
    test = MSDDataset(root, preprocessing=prep, split="test", cache_dir=tmp_path / "c")
    total = fg = 0
    for case in train.cases:
        _, lbl = _raw(root, case)
        total += lbl.shape[2]
        fg += int((lbl.reshape(-1, lbl.shape[2]) > 0).any(axis=0).sum())
    assert len(test) == total and len(train) == fg < total
    assert train.dropped["empty"] == total - fg
    assert all(int(train[i]["mask"].sum()) > 0 for i in range(len(train)))
    ranged = MSDDataset(
        root, preprocessing=Preprocessing(slice_range=(1, 4), multiple=16), cache_dir=tmp_path / "c"
    )
    assert len(ranged) == 3 * len(train.cases)
    assert sorted({ranged[i]["slice"] for i in range(len(ranged))}) == [1, 2, 3]


def test_augmentation_keeps_padding_at_the_high_end(make_msd, tmp_path) -> None:
    root = make_msd(n=2)
    prep = Preprocessing(multiple=16)
    plain = MSDDataset(root, preprocessing=prep, cache_dir=tmp_path / "c")
    aug = MSDDataset(
        root, preprocessing=prep, split="train", augment=Augment(p=1.0), cache_dir=tmp_path / "c"
    )
    torch.manual_seed(0)
    for i in range(len(aug)):
        a, p = aug[i], plain[i]
        h, w = a["size"].tolist()
        assert float(a["image"][:, h:].abs().sum() + a["image"][:, :, w:].abs().sum()) == 0
        crop, ref = a["image"][0, :h, :w], p["image"][0, :h, :w]
        # both flips with p=1; these slices are not square, so no rotation
        assert h != w and torch.equal(crop, ref.flip(0).flip(1))
        assert torch.equal(a["mask"][:h, :w], p["mask"][:h, :w].flip(0).flip(1))


def test_rotation_only_of_square_slices() -> None:
    aug = Augment(flip=False, rot90=True, p=1.0)
    torch.manual_seed(0)
    img = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    out, _ = aug(img, np.zeros((3, 4), np.uint8))
    assert np.array_equal(out, img)
    square = np.arange(9, dtype=np.float32).reshape(1, 3, 3)
    out, m = aug(square, np.arange(9).reshape(3, 3))
    assert not np.array_equal(out, square) and np.array_equal(out[0], m)


def test_resize_fit_items(make_msd, tmp_path) -> None:
    root = make_msd(n=2)
    prep = Preprocessing(fit="resize", size=(48, 32), multiple=16)
    ds = MSDDataset(root, preprocessing=prep, cache_dir=tmp_path / "c")
    item = ds[0]
    assert item["image"].shape == (1, 48, 32) and item["mask"].shape == (48, 32)
    assert item["size"].tolist() == [48, 32]
    assert set(item["mask"].unique().tolist()) <= {0, 1, 2}
