"""Cardiac: MSD Task02_Heart (left atrium), the paper's Cardiac recipe.

Dataset: Medical Segmentation Decathlon Task02_Heart (20 labelled MRI volumes, 320 x 320 slices;
the paper's "Cardiac"), ``Task02_Heart.tar`` from http://medicaldecathlon.com (CC-BY-SA 4.0).
Unpack it and give the task folder (the one with ``dataset.json``).

Recipe (§4.1, §4.3, §4.8): axial slices, per-volume z-score, training slices without the heart
left out (the paper deletes negative samples for Cardiac and Spleen), padded to the largest
slice (320 x 320), batch 2, the Cardiac loss weights (α7 β1 a4 b1 λ9 η6), a seeded 70/10/20 case
split.

Run:
    python examples/cardiac.py --data /path/to/Task02_Heart
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
    name="Cardiac",
    description=__doc__.split("\n\n")[0],
    fixed=(
        "--kind",
        "msd",
        "--drop-empty",
    ),
    batch_size=2,
    weights="cardiac",
)


def build_parser() -> argparse.ArgumentParser:
    """This example's argument parser."""
    return _common.build_parser(EXAMPLE)


def main(argv: Sequence[str] | None = None) -> int:
    """Train on Cardiac; returns the exit status of ``dsplug train``."""
    return _common.main(EXAMPLE, argv)


if __name__ == "__main__":
    raise SystemExit(main())
