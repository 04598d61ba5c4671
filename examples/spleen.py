"""Spleen: MSD Task09_Spleen, the paper's Spleen recipe.

Dataset: Medical Segmentation Decathlon Task09_Spleen (41 labelled CT volumes, 512 x 512 slices),
``Task09_Spleen.tar`` from http://medicaldecathlon.com (CC-BY-SA 4.0). Unpack it and give the
task folder (the one with ``dataset.json``).

Recipe (§4.1, §4.3, §4.8): axial slices, per-volume z-score, training slices without spleen left
out (negative samples deleted, as the paper), resized to 480 x 480 (bilinear images, nearest
masks), batch 1, the Spleen loss weights (α3 β5 a2 b2 λ8 η6), a seeded 70/10/20 case split.

Run:
    python examples/spleen.py --data /path/to/Task09_Spleen
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
    name="Spleen",
    description=__doc__.split("\n\n")[0],
    fixed=(
        "--kind",
        "msd",
        "--drop-empty",
        "--fit",
        "resize",
        "--size",
        "480",
        "480",
    ),
    batch_size=1,
    weights="spleen",
)


def build_parser() -> argparse.ArgumentParser:
    """This example's argument parser."""
    return _common.build_parser(EXAMPLE)


def main(argv: Sequence[str] | None = None) -> int:
    """Train on Spleen; returns the exit status of ``dsplug train``."""
    return _common.main(EXAMPLE, argv)


if __name__ == "__main__":
    raise SystemExit(main())
