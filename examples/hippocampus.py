"""Hippocampus: MSD Task04_Hippocampus (anterior and posterior), sized for a CPU.

Dataset: Medical Segmentation Decathlon Task04_Hippocampus (MRI crops of about 35 x 50 x 35
voxels; labels 0 background, 1 anterior, 2 posterior), ``Task04_Hippocampus.tar`` from
http://medicaldecathlon.com (CC-BY-SA 4.0); a copy with 200 labelled cases is in
``../shared/data/Task04_Hippocampus``.
Not one of the paper's datasets: this is the recipe of ``benchmarks/convergence/convergence.py``.

Recipe: axial slices, per-volume z-score, training slices without hippocampus left out, padded to
48 x 64, a U-Net of width 16 (the paper's 64 also works, slower), batch 8, equal loss weights, a
seeded 70/10/20 case split.

Run:
    python examples/hippocampus.py --data ../shared/data/Task04_Hippocampus
    python examples/hippocampus.py --data ../shared/data/Task04_Hippocampus --mode none --epochs 10
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
    name="Hippocampus",
    description=__doc__.split("\n\n")[0],
    fixed=(
        "--kind",
        "msd",
        "--drop-empty",
        "--size",
        "48",
        "64",
    ),
    batch_size=8,
    weights="equal",
    base_channels=16,
)


def build_parser() -> argparse.ArgumentParser:
    """This example's argument parser."""
    return _common.build_parser(EXAMPLE)


def main(argv: Sequence[str] | None = None) -> int:
    """Train on Hippocampus; returns the exit status of ``dsplug train``."""
    return _common.main(EXAMPLE, argv)


if __name__ == "__main__":
    raise SystemExit(main())
