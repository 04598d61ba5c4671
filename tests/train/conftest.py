"""Shared helpers of the trainer and CLI tests: tiny synthetic data, tiny models, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from dsplug import DeepSupervised
from dsplug.data import build_datasets
from dsplug.train import TrainConfig, build_model

REPO = Path(__file__).resolve().parents[2]

# Tiny settings shared by the in-process and the CLI runs (base 8, depth 3, 32 px).
TINY_NET = {"arch": "unet", "base_channels": 8, "depth": 3}
TINY_CLI = ["--base-channels", "8", "--depth", "3", "--quiet", "--no-tensorboard"]


def synthetic_cli(num_cases: int = 12, size: int = 32) -> list[str]:
    """CLI options for a small synthetic dataset."""
    return ["--data", "synthetic", "--option", f"num_cases={num_cases}", "--option", f"size={size}"]


def tiny_sets(num_cases: int = 12, size: int = 32, label_mode: str = "binary") -> dict:
    """Train / val / test splits of seeded synthetic phantoms (70/10/20 by case)."""
    options = {"num_cases": num_cases, "size": size, "label_mode": label_mode}
    return build_datasets("synthetic", options=options)


def tiny_ds(mode: str, data, norm: str = "batch", seed: int = 0) -> DeepSupervised:
    """A tiny own U-Net for ``data``, wrapped with ``mode``."""
    torch.manual_seed(seed)
    config = {**TINY_NET, "norm": norm, "in_channels": data.in_channels, "classes": data.classes}
    return DeepSupervised(build_model(config), mode, label_mode=data.label_mode)


def tiny_config(**overrides) -> TrainConfig:
    """A quiet TrainConfig for tests."""
    base = {"max_epochs": 2, "min_epochs": 2, "batch_size": 4, "progress": False}
    return TrainConfig(**{**base, **overrides})


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, module: bool = True
) -> subprocess.CompletedProcess:
    """Run ``python -m dsplug ARGS`` (or ``python ARGS`` with ``module=False``) in a subprocess."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("DSPLUG_DEBUG", None)
    command = [sys.executable, "-m", "dsplug", *args] if module else [sys.executable, *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=REPO
    )


def start_cli(*args: str, cwd: Path = REPO) -> subprocess.Popen:
    """Start ``python -m dsplug ARGS`` in the background (stdout / stderr piped, text)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("DSPLUG_DEBUG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "dsplug", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    """Poll until ``path`` exists (fails if ``process`` ends first or ``timeout`` passes)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"the process ended before {path} appeared:\n{out}\n{err}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.01)


def write_msd(root: Path, n: int = 4, affine: np.ndarray | None = None) -> Path:
    """A tiny MSD task (multiclass 0/1/2, 20 x 24 x 6 volumes) with explicit splits JSON."""
    rng = np.random.default_rng(0)
    affine = np.diag([0.8, 0.9, 2.5, 1.0]) if affine is None else affine
    training = []
    for i in range(n):
        shape = (20, 24, 6)
        label = np.zeros(shape, np.uint8)
        label[4 + i : 10 + i, 5:12, 1:5] = 1
        label[11:16, 14 - i : 20 - i, 2:5] = 2
        image = (rng.normal(0, 1, shape) + 2.0 * label).astype(np.float32)
        for folder, array in (("imagesTr", image), ("labelsTr", label)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(array, affine), root / folder / f"tiny_{i:03d}.nii.gz")
        training.append(
            {"image": f"./imagesTr/tiny_{i:03d}.nii.gz", "label": f"./labelsTr/tiny_{i:03d}.nii.gz"}
        )
    meta = {
        "modality": {"0": "MRI"},
        "labels": {"0": "background", "1": "anterior", "2": "posterior"},
        "training": training,
        "test": [],
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    ids = [f"tiny_{i:03d}" for i in range(n)]
    splits = {"train": ids[: n - 2], "val": [ids[n - 2]], "test": [ids[n - 1]]}
    (root / "splits.json").write_text(json.dumps(splits))
    return root


@pytest.fixture
def msd_root(tmp_path: Path) -> Path:
    """A tiny MSD task folder with ``splits.json``."""
    return write_msd(tmp_path / "Task99_Tiny")
