"""Hippocampus in 3D: MSD Task04_Hippocampus trained as 3D patches, scored per volume.

Dataset: Medical Segmentation Decathlon Task04_Hippocampus (MRI crops of about 35 x 50 x 35
voxels of 1 mm; labels 0 background, 1 anterior, 2 posterior), ``Task04_Hippocampus.tar`` from
http://medicaldecathlon.com (CC-BY-SA 4.0); a copy with 200 labelled cases is in
``../shared/data/Task04_Hippocampus``.

Recipe: whole volumes, per-volume z-score, no resize; random 32 x 32 x 32 patches (axes in the
files' order), 2 per volume and epoch, a third centred on foreground, augmented (MONAI: flips,
rotations, scaling, intensity); dsplug's own 3D U-Net of width 16 and depth 4 (add ``--model
unetpp`` for U-Net++), batch 4, equal loss weights, a seeded 70/10/20 case split. Validation and
test score each volume by 3D Gaussian sliding windows: Dice & co. of the volume's voxels, HD95
and surface Dice (1 mm) per case and class. ``--quick``: 16^3 patches, width 4, depth 3, one
epoch (about a minute on a CPU).

Run:
    python examples/hippocampus3d.py --data ../shared/data/Task04_Hippocampus
    python examples/hippocampus3d.py --data ../shared/data/Task04_Hippocampus --quick
    python examples/hippocampus3d.py --data ../shared/data/Task04_Hippocampus --mode none
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:  # for the sibling _common.py
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

__all__ = ["EXAMPLE", "build_parser", "main"]

EXAMPLE = _common.Example(
    name="Hippocampus 3D",
    description=__doc__.split("\n\n")[0],
    fixed=(
        "--kind",
        "msd",
        "--patch",
        "32",
        "32",
        "32",
        "--patches-per-image",
        "2",
        "--depth",
        "4",
        "--augment",
        "--recipe",
        "paper",
    ),
    batch_size=4,
    weights="equal",
    base_channels=16,
    quick=(
        *("--patch", "16", "16", "16", "--patches-per-image", "1", "--base-channels", "4"),
        *("--depth", "3", "--epochs", "1", "--min-epochs", "1", "--no-tensorboard"),
    ),
)


def build_parser() -> argparse.ArgumentParser:
    """This example's argument parser."""
    return _common.build_parser(EXAMPLE)


def main(argv: Sequence[str] | None = None) -> int:
    """Train Hippocampus as 3D patches; returns the exit status of ``dsplug train``."""
    return _common.main(EXAMPLE, argv)


if __name__ == "__main__":
    raise SystemExit(main())
