"""The disk cache: a second run reads no NIfTI file; a changed parameter or source file is
re-read; cached datasets work in DataLoader workers."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import dsplug.data.nifti as nifti_module
from dsplug.data import MSDDataset, Preprocessing, dataset_from_config

from .conftest import write_nifti


@pytest.fixture
def count_reads(monkeypatch):
    """Count the NIfTI files the datasets read (data and headers)."""
    calls: list[str] = []
    real_read, real_header = nifti_module.read_nifti, nifti_module.read_nifti_header

    def read(path, **kw):
        calls.append(str(path))
        return real_read(path, **kw)

    def header(path):
        calls.append(str(path))
        return real_header(path)

    monkeypatch.setattr(nifti_module, "read_nifti", read)
    monkeypatch.setattr(nifti_module.NiftiPairsDataset, "_header_reader", staticmethod(header))
    return calls


def _items(ds):
    return [ds[i] for i in range(len(ds))]


def test_second_run_reads_no_nifti(make_msd, tmp_path, count_reads) -> None:
    root = make_msd(n=4)
    first = MSDDataset(root, cache_dir=tmp_path / "cache")
    assert len(count_reads) == 4 * 2 + 4  # image + label per case, one header per case
    count_reads.clear()
    second = MSDDataset(root, cache_dir=tmp_path / "cache")
    assert count_reads == []
    for a, b in zip(_items(first), _items(second)):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    info = second.case_info("tiny_002")
    assert info.shape == (22, 24, 12) and info.spacing == (1.0, 1.0, 1.0)


def test_parameter_change_invalidates(make_msd, tmp_path, count_reads) -> None:
    root = make_msd(n=3)
    cache = tmp_path / "cache"
    zs = MSDDataset(root, cache_dir=cache)
    count_reads.clear()
    raw = MSDDataset(root, preprocessing=Preprocessing(zscore=False), cache_dir=cache)
    assert len([c for c in count_reads if "imagesTr" in c]) == 3
    assert not torch.equal(zs[0]["image"], raw[0]["image"])
    count_reads.clear()
    axis0 = MSDDataset(root, preprocessing=Preprocessing(axis=0), cache_dir=cache)
    assert len([c for c in count_reads if "imagesTr" in c]) == 3
    assert len(axis0) != len(zs)
    count_reads.clear()
    resized = MSDDataset(
        root, preprocessing=Preprocessing(fit="resize", size=(32, 32)), cache_dir=cache
    )
    assert len([c for c in count_reads if "imagesTr" in c]) == 3
    assert resized[0]["size"].tolist() == [32, 32]


def test_changed_source_file_invalidates(make_msd, tmp_path, count_reads) -> None:
    root = make_msd(n=3)
    cache = tmp_path / "cache"
    before = MSDDataset(root, cache_dir=cache)
    path = root / "imagesTr" / "tiny_001.nii.gz"
    img = nib.load(path).get_fdata().astype(np.float32)
    img[:5] *= -3.0  # new content
    write_nifti(path, img)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    count_reads.clear()
    after = MSDDataset(root, cache_dir=cache)
    assert [c for c in count_reads if "imagesTr" in c] == [str(path)]
    idx = after.index("tiny_001", 0)
    assert not torch.equal(before[idx]["image"], after[idx]["image"])
    z = (img - img.mean()) / img.std()
    h, w = after[idx]["size"].tolist()
    np.testing.assert_allclose(after[idx]["image"][0, :h, :w].numpy(), z[..., 0], atol=1e-5)


def test_without_cache_nothing_is_written(make_msd, tmp_path) -> None:
    root = make_msd(n=2)
    ds = MSDDataset(root, cache=False, cache_dir=tmp_path / "never")
    assert len(ds) > 0 and not (tmp_path / "never").exists()


def test_dataloader_with_two_workers(make_msd, tmp_path) -> None:
    root = make_msd(n=4)
    MSDDataset(root, cache_dir=tmp_path / "cache")  # fill the cache
    ds = MSDDataset(root, cache_dir=tmp_path / "cache")
    loader = DataLoader(ds, batch_size=8, num_workers=2, shuffle=False)
    seen = 0
    for batch in loader:
        b = batch["image"].shape[0]
        assert batch["image"].shape[1:] == (1, 32, 32) and batch["mask"].dtype == torch.int64
        assert batch["size"].shape == (b, 2) and len(batch["case"]) == b
        seen += b
    assert seen == len(ds)
    first = next(iter(loader))
    assert torch.equal(first["image"][0], ds[0]["image"])


def test_config_rebuilds_the_same_dataset(make_msd, tmp_path, count_reads) -> None:
    root = make_msd(n=12)
    ds = MSDDataset(root, cases=["tiny_003", "tiny_007"], split="val", cache_dir=tmp_path / "c")
    config = ds.config()
    assert config["info"] == {
        "label_mode": "multiclass",
        "classes": 3,
        "in_channels": 1,
        "spatial_dims": 2,
        "channels": None,
    }
    count_reads.clear()
    again = dataset_from_config(json.loads(json.dumps(config)), cache_dir=tmp_path / "c")
    assert count_reads == []
    assert again.cases == ds.cases and again.preprocessing == ds.preprocessing
    assert torch.equal(again[len(again) - 1]["image"], ds[len(ds) - 1]["image"])
