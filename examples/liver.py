"""Liver: MSD Task03_Liver (liver and tumour), the paper's Liver recipe.

Dataset: Medical Segmentation Decathlon Task03_Liver (131 labelled CT volumes, 512 x 512 slices;
labels 0 background, 1 liver, 2 tumour: multiclass), ``Task03_Liver.tar`` from
http://medicaldecathlon.com (CC-BY-SA 4.0). Unpack it and give the task folder.

Recipe (§4.1, §4.3, §4.8): axial slices, per-volume z-score, every slice kept (the paper deletes
negative samples only for Cardiac and Spleen), resized to 480 x 480, the Liver loss weights
(α6 β1 a3 b1 λ9 η6), a seeded 70/10/20 case split. Batch 1: the paper gives no Liver batch size;
this is Spleen's, the other dataset it trains at 480 x 480 on the same 11-12 GB GPUs.

Run:
    python examples/liver.py --data /path/to/Task03_Liver
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
    name="Liver",
    description=__doc__.split("\n\n")[0],
    fixed=(
        "--kind",
        "msd",
        "--fit",
        "resize",
        "--size",
        "480",
        "480",
    ),
    batch_size=1,
    weights="liver",
)


def build_parser() -> argparse.ArgumentParser:
    """This example's argument parser."""
    return _common.build_parser(EXAMPLE)


def main(argv: Sequence[str] | None = None) -> int:
    """Train on Liver; returns the exit status of ``dsplug train``."""
    return _common.main(EXAMPLE, argv)


if __name__ == "__main__":
    raise SystemExit(main())
