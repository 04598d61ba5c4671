"""The loaders on the real data in ../shared/data (skipped when absent; a failure on CI).

Oracles are computed here directly from the files with nibabel / Pillow."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from dsplug.data import (
    BraTSDataset,
    ImageFolderDataset,
    MSDDataset,
    NiftiPairsDataset,
    Preprocessing,
    build_datasets,
)

from .conftest import require_data

pytestmark = [pytest.mark.data, pytest.mark.slow]


def test_hippocampus_all_cases_and_slice_counts(session_cache) -> None:
    root = require_data("Task04_Hippocampus")
    listed = json.loads((root / "dataset.json").read_text())["training"]
    shapes = {
        e["image"].split("/")[-1][: -len(".nii.gz")]: nib.load(root / e["image"]).shape
        for e in listed
    }
    ds = MSDDataset(root, cache_dir=session_cache)
    assert sorted(ds.cases) == sorted(shapes) and len(ds.cases) == len(listed)
    assert len(ds) == sum(s[2] for s in shapes.values())
    for case in ("hippocampus_001", ds.cases[-1]):
        assert ds.slices_of(case) == list(range(shapes[case][2]))
        assert ds.case_info(case).shape == shapes[case]
    assert (ds.label_mode, ds.classes, ds.in_channels) == ("multiclass", 3, 1)
    h = max(s[0] for s in shapes.values())
    w = max(s[1] for s in shapes.values())
    assert ds.preprocessing.size == (-(-h // 32) * 32, -(-w // 32) * 32)
    # one item against the file
    i = ds.slices_of("hippocampus_001")[10]
    item = ds[ds.index("hippocampus_001", i)]
    assert item["case"] == "hippocampus_001"
    lbl = np.asarray(nib.load(root / "labelsTr" / "hippocampus_001.nii.gz").dataobj)
    hh, ww = item["size"].tolist()
    assert item["slice"] == i
    assert torch.equal(item["mask"][:hh, :ww], torch.from_numpy(lbl[..., i].astype(np.int64)))
    again = MSDDataset(root, cache_dir=session_cache)  # cached
    assert len(again) == len(ds)


def test_brats_region_voxel_counts(session_cache) -> None:
    root = require_data("brats2015")
    ds = BraTSDataset(root, cache_dir=session_cache)
    assert (ds.label_mode, ds.classes, ds.in_channels) == ("multilabel", 3, 1)
    assert ds.preprocessing.size == (256, 256)
    counts = {c: np.zeros(3, np.int64) for c in ds.cases}
    for i in range(len(ds)):
        item = ds[i]
        h, w = item["size"].tolist()
        mask = item["mask"].numpy()
        counts[item["case"]] += mask[:, :h, :w].sum(axis=(1, 2), dtype=np.int64)
        assert mask.sum(dtype=np.int64) == mask[:, :h, :w].sum(dtype=np.int64)
    for folder in sorted(root.glob("*/*/OTMultiClass.nii.gz")):
        label = np.asarray(nib.load(folder).dataobj)
        expected = [np.isin(label, r).sum() for r in ((1, 2, 3, 4), (1, 3, 4), (4,))]
        assert counts[folder.parent.name].tolist() == expected, folder.parent.name
    assert len(counts) == 4


def test_brats_paper_slices_two_modalities_and_brain_mask(session_cache) -> None:
    root = require_data("brats2015")
    case = "brats_2013_pat0005_1"
    prep = Preprocessing(slice_range=(30, 125))
    ds = BraTSDataset(
        root,
        modalities=["T1c", "FLAIR"],
        brain_mask=True,
        preprocessing=prep,
        cases=[case],
        cache_dir=session_cache,
    )
    assert ds.in_channels == 2 and len(ds) == 95
    assert ds.slices_of(case) == list(range(30, 125))
    folder = root / "train" / case
    brain = np.asarray(nib.load(folder / "brainmask.nii.gz").dataobj) > 0.5
    flair = nib.load(folder / "Flair_subtrMeanDivStd.nii.gz").get_fdata()
    z = (flair - flair[brain].mean()) / flair[brain].std()
    z[~brain] = 0
    item = ds[50]
    k = item["slice"]
    np.testing.assert_allclose(item["image"][1, :240, :240].numpy(), z[..., k], atol=1e-4)
    assert float(item["image"][:, :240, :240][:, ~torch.from_numpy(brain[..., k])].abs().max()) == 0


def test_isbi_pairs_every_image_with_its_mask(session_cache) -> None:
    root = require_data("isbi2012_em_membrane", "train")
    ds = ImageFolderDataset(root, "image/{id}.png", "label/{id}.png", cache_dir=session_cache)
    images = sorted(p.stem for p in (root / "image").glob("*.png"))
    assert sorted(ds.cases) == images and len(ds) == len(images) == 30
    assert (ds.label_mode, ds.in_channels, ds.preprocessing.size) == ("binary", 1, (512, 512))
    for i in (0, 17):
        item = ds[i]
        png = np.asarray(Image.open(root / "label" / f"{item['case']}.png"))
        assert torch.equal(item["mask"][0], torch.from_numpy((png == 255).astype(np.float32)))
    sets = build_datasets(
        root,
        kind="folder",
        contiguous=True,
        cache_dir=session_cache,
        options={"image": "image/{id}.png", "mask": "label/{id}.png"},
    )
    assert sets["train"].cases == [str(i) for i in range(21)]
    assert sets["test"].cases == [str(i) for i in range(24, 30)]


def test_ph2_per_case_folders_rgb_non_square(session_cache) -> None:
    root = require_data("PH2_subset40")
    ds = ImageFolderDataset(
        root,
        "images/{id}/{id}_Dermoscopic_Image/{id}.png",
        "images/{id}/{id}_lesion/{id}_lesion.png",
        cache_dir=session_cache,
    )
    folders = sorted(p.name for p in (root / "images").iterdir() if p.is_dir())
    assert sorted(ds.cases) == folders and len(ds) == 40
    assert ds.in_channels == 3 and ds.config()["info"]["color"] == "rgb"
    item = ds[3]
    with Image.open(
        root / "images" / item["case"] / f"{item['case']}_lesion" / f"{item['case']}_lesion.png"
    ) as mask:
        w, h = mask.size
        lesion = np.asarray(mask) == 255
    assert item["size"].tolist() == [h, w] and h != w
    H, W = ds.preprocessing.size
    assert H % 32 == 0 and W % 32 == 0 and item["image"].shape == (3, H, W)
    assert torch.equal(item["mask"][0, :h, :w], torch.from_numpy(lesion.astype(np.float32)))


def test_ivadomed_ct_keeps_its_anisotropic_geometry(tmp_path) -> None:
    root = require_data("ivadomed_data_testing", "ct_scan")
    image = root / "sub-spleen2" / "ct" / "sub-spleen2_ct.nii.gz"
    label = (
        root / "derivatives" / "labels" / "sub-spleen2" / "ct" / "sub-spleen2_ct_seg-manual.nii.gz"
    )
    ds = NiftiPairsDataset([(image, label)], cache_dir=tmp_path)
    ref = nib.load(image)
    info = ds.case_info("sub-spleen2_ct")
    assert info.shape == ref.shape == (164, 166, 26)
    np.testing.assert_allclose(info.spacing, ref.header.get_zooms()[:3], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(info.affine), ref.affine, rtol=1e-6)
    assert info.spacing[2] > 4 * info.spacing[0]  # anisotropic
    assert len(ds) == 26 and ds.preprocessing.size == (192, 192)
    again = NiftiPairsDataset([(image, label)], cache_dir=tmp_path)  # from the cache
    assert again.case_info("sub-spleen2_ct") == info
