"""build_datasets, dataset_from_config and prediction_input: the CLI's entry points agree
with the datasets they describe."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from dsplug.data import (
    Augment,
    DataError,
    ImageFolderDataset,
    MSDDataset,
    Preprocessing,
    build_datasets,
    dataset_from_config,
    detect_kind,
    prediction_input,
    slices_to_volume,
)

from .conftest import write_nifti


def test_build_synthetic_splits_with_augmentation_on_train_only() -> None:
    sets = build_datasets(
        "synthetic", augment=Augment(), seed=1, options={"num_cases": 20, "size": 32}
    )
    assert [len(sets[k]) for k in ("train", "val", "test")] == [14, 2, 4]
    assert sets["train"].augment == Augment() and sets["val"].augment is None
    assert sets["test"].config()["split"] == "test"


def test_auto_kind_and_option_checks(make_msd, tmp_path) -> None:
    root = make_msd(n=10)
    assert detect_kind(root) == "msd" and detect_kind("synthetic") == "synthetic"
    with pytest.raises(ValueError, match="did you mean 'modalities'"):
        build_datasets(root, options={"modalites": ["MRI"]}, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="dataset kind"):
        build_datasets(root, kind="decathlon")
    with pytest.raises(DataError, match="cannot tell the layout"):
        detect_kind(tmp_path)


def test_explicit_splits_saved(make_msd, tmp_path) -> None:
    root = make_msd(n=4)
    splits = {"train": ["tiny_000", "tiny_001"], "val": ["tiny_002"], "test": ["tiny_003"]}
    path = tmp_path / "splits.json"
    sets = build_datasets(root, splits=splits, splits_path=path, cache_dir=tmp_path / "c")
    assert {k: v.cases for k, v in sets.items()} == splits
    again = build_datasets(root, splits=path, cache_dir=tmp_path / "c")
    assert {k: v.cases for k, v in again.items()} == splits
    with pytest.raises(ValueError, match="explicit splits"):
        build_datasets(root, cache_dir=tmp_path / "c")  # 4 cases: no random split


def test_prediction_input_matches_the_dataset(make_msd, tmp_path) -> None:
    root = make_msd(n=3)
    ds = MSDDataset(root, preprocessing=Preprocessing(multiple=16), cache_dir=tmp_path / "c")
    config = json.loads(json.dumps(ds.config()))
    image = root / "imagesTr" / "tiny_002.nii.gz"
    sliced, header = prediction_input(config, image)
    np.testing.assert_allclose(np.asarray(header.affine), nib.load(image).affine)
    slices = ds.slices_of("tiny_002")
    assert list(sliced.indices) == slices
    for k in slices:
        item = ds[ds.index("tiny_002", k)]
        assert torch.allclose(sliced.images[k], item["image"], atol=1e-6)
        assert torch.equal(sliced.sizes[k], item["size"])
    # the dataset's masks, stacked back, are the label volume
    masks = torch.stack([ds[ds.index("tiny_002", k)]["mask"] for k in slices])
    label = np.asarray(nib.load(root / "labelsTr" / "tiny_002.nii.gz").dataobj)
    assert np.array_equal(slices_to_volume(masks, sliced), label)


def test_msd_multimodal_4d_channels(tmp_path) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "Task98_Multi"
    image = rng.normal(size=(16, 18, 6, 3)).astype(np.float32)
    image[..., 1] += 50.0
    label = np.zeros((16, 18, 6), np.uint8)
    label[4:8, 4:8, 2:4] = 1
    training = []
    for i in range(2):
        write_nifti(root / "imagesTr" / f"m_{i}.nii.gz", image)
        write_nifti(root / "labelsTr" / f"m_{i}.nii.gz", label)
        training.append({"image": f"./imagesTr/m_{i}.nii.gz", "label": f"./labelsTr/m_{i}.nii.gz"})
    meta = {
        "modality": {"0": "FLAIR", "1": "T1w", "2": "T2w"},
        "labels": {"0": "background", "1": "tumour"},
        "training": training,
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    full = MSDDataset(root, cache=False)
    assert full.in_channels == 3 and full.label_mode == "binary" and full.classes == 1
    two = MSDDataset(root, modalities=["t2w", 1], cache=False)
    assert two.in_channels == 2
    item = two[2]
    z = image[..., 1]
    z = (z - z.mean()) / z.std()
    np.testing.assert_allclose(item["image"][1, :16, :18].numpy(), z[..., 2], atol=1e-5)
    sliced, _ = prediction_input(two.config(), root / "imagesTr" / "m_0.nii.gz")
    assert torch.allclose(sliced.images[2], item["image"], atol=1e-6)
    with pytest.raises(ValueError, match="unknown modality 'PD'"):
        MSDDataset(root, modalities=["PD"], cache=False)


@pytest.mark.parametrize("ext", ["bmp", "tif", "png"])
def test_folder_prediction_input_and_config(tmp_path, ext) -> None:
    """A DRIVE-like layout: ``images/{id}_training.<ext>`` + ``1st_manual/{id}_manual1.gif``."""
    rng = np.random.default_rng(1)
    (tmp_path / "images").mkdir()
    (tmp_path / "1st_manual").mkdir()
    for i in range(2):
        rgb = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(tmp_path / "images" / f"{i + 21}_training.{ext}")
        mask = np.where(rng.random((20, 30)) > 0.7, 255, 0).astype(np.uint8)
        Image.fromarray(mask).save(tmp_path / "1st_manual" / f"{i + 21}_manual1.gif")
    templates = (f"images/{{id}}_training.{ext}", "1st_manual/{id}_manual1.gif")
    ds = ImageFolderDataset(tmp_path, *templates, cache=False)
    assert ds.cases == ["21", "22"]
    assert ds.in_channels == 3 and ds.preprocessing.size == (32, 32)
    again = dataset_from_config(ds.config(), cache=False)
    assert torch.equal(again[1]["image"], ds[1]["image"])
    rgb = np.asarray(Image.open(tmp_path / "images" / f"22_training.{ext}"), np.float64)
    z = (rgb - rgb.mean(axis=(0, 1))) / rgb.std(axis=(0, 1))
    np.testing.assert_allclose(ds[1]["image"][:, :20, :30].numpy(), z.transpose(2, 0, 1), atol=1e-5)
    sliced, _ = prediction_input(ds.config(), tmp_path / "images" / f"22_training.{ext}")
    assert torch.allclose(sliced.images[0], ds[1]["image"])
    gif = np.asarray(Image.open(tmp_path / "1st_manual" / "22_manual1.gif").convert("L"))
    assert torch.equal(
        ds[1]["mask"][0, :20, :30], torch.from_numpy((gif == 255).astype(np.float32))
    )
    back = slices_to_volume(ds[1]["mask"][None, 0], sliced)
    assert back.shape == (20, 30) and np.array_equal(back, gif == 255)
