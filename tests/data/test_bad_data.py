"""Bad data: each case is a clear DataError naming the file and the problem; nothing is
silently dropped."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from dsplug.data import (
    BraTSDataset,
    DataError,
    ImageFolderDataset,
    LabelRule,
    MSDDataset,
    NiftiPairsDataset,
    pair_files,
)

from .conftest import require_data, write_nifti


def test_misfits_unpaired_files_are_all_named() -> None:
    root = require_data("Task04_Hippocampus_misfits")
    with pytest.raises(DataError) as err:
        pair_files(root, "images/{id}.nii.gz", "labels/{id}.nii.gz")
    msg = str(err.value)
    assert "images/hippocampus_118.nii.gz" in msg and "without a mask" in msg
    assert "labels/hippocampus_010.nii.gz" in msg and "labels/hippocampus_281.nii.gz" in msg
    assert "without an image" in msg


def test_misfit_label_of_another_size_is_a_shape_error(tmp_path) -> None:
    root = require_data("Task04_Hippocampus_misfits")
    image = root / "images" / "hippocampus_118.nii.gz"
    for label, shape in (
        ("hippocampus_281", "(512, 512, 94)"),
        ("hippocampus_010", "(36, 50, 31)"),
    ):
        with pytest.raises(DataError) as err:
            NiftiPairsDataset(
                [(image, root / "labels" / f"{label}.nii.gz")],
                labels=LabelRule.multiclass((0, 1, 2)),
                cache_dir=tmp_path,
            )
        assert err.value.path == str(image)
        assert "(37, 52, 33)" in str(err.value) and shape in str(err.value)


def test_shape_mismatch(tmp_path) -> None:
    img = write_nifti(tmp_path / "img.nii.gz", np.random.rand(10, 12, 5).astype(np.float32))
    lbl = write_nifti(tmp_path / "lbl.nii.gz", np.zeros((10, 12, 6), np.uint8))
    with pytest.raises(DataError, match=r"img\.nii\.gz: shape \(10, 12, 5\) does not match"):
        NiftiPairsDataset([(img, lbl)], cache=False)


def test_affine_mismatch(tmp_path) -> None:
    img = write_nifti(tmp_path / "img.nii.gz", np.random.rand(10, 12, 5).astype(np.float32))
    shifted = np.eye(4)
    shifted[0, 3] = 2.0
    lbl = write_nifti(tmp_path / "lbl.nii.gz", np.zeros((10, 12, 5), np.uint8), shifted)
    with pytest.raises(DataError, match="affine differs"):
        NiftiPairsDataset([(img, lbl)], cache=False)


@pytest.mark.parametrize("content", [b"not a nifti file at all", b""])
def test_unreadable_file(tmp_path, content) -> None:
    img = tmp_path / "broken.nii.gz"
    img.write_bytes(content)
    lbl = write_nifti(tmp_path / "lbl.nii.gz", np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(DataError) as err:
        NiftiPairsDataset([(img, lbl)], cache=False)
    assert err.value.path == str(img) and "cannot read" in str(err.value)


def test_truncated_gzip(tmp_path) -> None:
    good = write_nifti(tmp_path / "good.nii.gz", np.random.rand(30, 30, 30).astype(np.float32))
    img = tmp_path / "cut.nii.gz"
    img.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    lbl = write_nifti(tmp_path / "lbl.nii.gz", np.zeros((30, 30, 30), np.uint8))
    with pytest.raises(DataError, match=r"cut\.nii\.gz: cannot read"):
        NiftiPairsDataset([(img, lbl)], cache=False)


def test_unexpected_label_values(make_msd, tmp_path) -> None:
    root = make_msd(n=3)
    bad = root / "labelsTr" / "tiny_001.nii.gz"
    label = np.zeros((21, 24, 11), np.uint8)
    label[2, 2, 2], label[3, 3, 3] = 5, 2
    write_nifti(bad, label)
    with pytest.raises(DataError) as err:
        MSDDataset(root, cache_dir=tmp_path / "c")
    assert err.value.path == str(bad)
    assert "unexpected label values [5]" in str(err.value) and "[0, 1, 2]" in str(err.value)


def test_fractional_label_values(tmp_path) -> None:
    img = write_nifti(tmp_path / "img.nii.gz", np.random.rand(6, 6, 3).astype(np.float32))
    lbl = write_nifti(tmp_path / "lbl.nii.gz", np.full((6, 6, 3), 0.5, np.float32))
    with pytest.raises(DataError, match="non-integer"):
        NiftiPairsDataset([(img, lbl)], cache=False)


def test_empty_folders(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty dataset") as err:
        ImageFolderDataset(tmp_path / "empty", "image/{id}.png", "label/{id}.png")
    assert err.value.path == str(tmp_path / "empty")
    with pytest.raises(DataError, match="empty dataset"):
        BraTSDataset(tmp_path / "empty")
    with pytest.raises(DataError, match=r"dataset\.json"):
        MSDDataset(tmp_path / "empty")
    with pytest.raises(DataError, match="empty dataset"):
        NiftiPairsDataset([])
    (tmp_path / "msd").mkdir()
    (tmp_path / "msd" / "dataset.json").write_text(
        json.dumps({"training": [], "labels": {"0": "bg", "1": "fg"}, "modality": {"0": "CT"}})
    )
    with pytest.raises(DataError, match="no training cases"):
        MSDDataset(tmp_path / "msd")


def test_dataset_json_lists_a_missing_file(make_msd, tmp_path) -> None:
    root = make_msd(n=3)
    missing = root / "labelsTr" / "tiny_002.nii.gz"
    missing.unlink()
    with pytest.raises(DataError) as err:
        MSDDataset(root, cache_dir=tmp_path / "c")
    assert err.value.path == str(missing)
    assert "file not found" in str(err.value) and "dataset.json" in str(err.value)


def test_unlisted_files_in_an_msd_folder(make_msd, tmp_path) -> None:
    root = make_msd(n=3)
    extra = write_nifti(root / "imagesTr" / "tiny_118.nii.gz", np.zeros((4, 4, 4), np.float32))
    (root / "imagesTr" / "._tiny_000.nii.gz").write_bytes(b"macOS resource fork")
    with pytest.raises(DataError, match=r"not listed as training pairs: \['imagesTr/tiny_118"):
        MSDDataset(root, cache_dir=tmp_path / "c")
    extra.unlink()
    assert len(MSDDataset(root, cache_dir=tmp_path / "c").cases) == 3  # hidden files ignored


def test_malformed_dataset_json(make_msd) -> None:
    root = make_msd(n=2)
    (root / "dataset.json").write_text("{not json")
    with pytest.raises(DataError, match="cannot read as JSON"):
        MSDDataset(root)


def _png(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


def test_image_folder_errors(tmp_path) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "set"
    for i in range(3):
        _png(root / "image" / f"{i}.png", rng.integers(0, 255, (16, 20), dtype=np.uint8))
        _png(
            root / "label" / f"{i}.png",
            np.where(rng.random((16, 20)) > 0.5, 255, 0).astype(np.uint8),
        )
    _png(root / "image" / "7.png", rng.integers(0, 255, (16, 20), dtype=np.uint8))
    with pytest.raises(DataError, match=r"image\(s\) without a mask.*7\.png"):
        ImageFolderDataset(root, "image/{id}.png", "label/{id}.png", cache=False)
    (root / "image" / "7.png").unlink()
    _png(root / "label" / "1.png", np.zeros((16, 21), np.uint8))
    with pytest.raises(DataError, match="does not match the mask"):
        ImageFolderDataset(root, "image/{id}.png", "label/{id}.png", cache=False)
    _png(root / "label" / "1.png", np.full((16, 20), 128, np.uint8))
    with pytest.raises(DataError, match=r"1\.png: unexpected label values \[128\]"):
        ImageFolderDataset(root, "image/{id}.png", "label/{id}.png", cache=False)
    ok = ImageFolderDataset(
        root, "image/{id}.png", "label/{id}.png", labels=LabelRule.threshold(100), cache=False
    )
    assert len(ok) == 3 and float(ok[1]["mask"][0, :16, :20].min()) == 1.0
    (root / "image" / "2.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"2\.png: cannot read as an image"):
        ImageFolderDataset(
            root, "image/{id}.png", "label/{id}.png", labels=LabelRule.threshold(100), cache=False
        )


def test_brats_case_without_a_modality(tmp_path) -> None:
    src = require_data("brats2015", "validation", "brats_2013_pat0003_1")
    case = tmp_path / "brats" / "case_a"
    case.mkdir(parents=True)
    shutil.copy(src / "OTMultiClass.nii.gz", case)
    with pytest.raises(DataError, match=r"case_a: no t1ce file"):
        BraTSDataset(tmp_path / "brats")
    with pytest.raises(ValueError, match="did you mean 'flair'"):
        BraTSDataset(tmp_path / "brats", modalities=["flari"])
