"""Shared helpers of the data tests: where the real data is, and tiny NIfTI / MSD builders."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest


def shared_data_root() -> Path:
    """``$DSPLUG_DATA`` if set, else ``<repo>/../shared/data``."""
    env = os.environ.get("DSPLUG_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def require_data(*parts: str) -> Path:
    """The real-data path ``parts`` under the shared data root; skip when absent (fail on CI)."""
    path = shared_data_root().joinpath(*parts)
    if not path.exists():
        message = (
            f"real data not found at {path.resolve()} (set DSPLUG_DATA, or put the shared data "
            "at <repo>/../shared/data)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {message}")
        pytest.skip(message)
    return path


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Write ``array`` as a NIfTI file (identity affine by default)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array), np.eye(4) if affine is None else affine), path)
    return path


def random_case(
    rng: np.random.Generator, shape: tuple[int, int, int], classes: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """An image and a label with a foreground blob on the middle slices only (last axis)."""
    image = rng.normal(100.0, 20.0, shape).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    x, y, z = shape
    label[x // 4 : x // 2, y // 4 : y // 2, z // 3 : 2 * z // 3] = 1
    if classes > 2:
        label[x // 2 : 3 * x // 4, y // 3 : y // 2, z // 3 : 2 * z // 3] = 2
    return image, label


@pytest.fixture
def make_msd(tmp_path: Path) -> Callable[..., Path]:
    """Build a small MSD task folder: ``make_msd(n=12, shapes=None, classes=3) -> root``."""

    def build(
        n: int = 12, shapes: list[tuple[int, int, int]] | None = None, classes: int = 3
    ) -> Path:
        rng = np.random.default_rng(0)
        root = tmp_path / "Task99_Tiny"
        shapes = shapes or [(20 + i % 3, 24, 10 + i % 4) for i in range(n)]
        training = []
        for i, shape in enumerate(shapes):
            image, label = random_case(rng, shape, classes)
            write_nifti(root / "imagesTr" / f"tiny_{i:03d}.nii.gz", image)
            write_nifti(root / "labelsTr" / f"tiny_{i:03d}.nii.gz", label)
            training.append(
                {
                    "image": f"./imagesTr/tiny_{i:03d}.nii.gz",
                    "label": f"./labelsTr/tiny_{i:03d}.nii.gz",
                }
            )
        labels = {str(v): f"class{v}" for v in range(classes)}
        meta = {"modality": {"0": "MRI"}, "labels": labels, "training": training, "test": []}
        (root / "dataset.json").write_text(json.dumps(meta))
        return root

    return build


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder for the whole session (real data is preprocessed once)."""
    return tmp_path_factory.mktemp("dsplug_cache")
