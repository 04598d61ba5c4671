"""BraTS: brain-tumour segmentation on T1ce MRI (regions WT, TC, ET), the paper's recipe.

Dataset: BraTS 2019 training data, HGG cases (the paper: 259 cases, 155 slices of 240 x 240),
from https://www.med.upenn.edu/cbica/brats2019/data.html (registration required). Other BraTS
releases work too (2015-2023 file names are recognised; case folders at any depth under PATH).
A 4-case public copy (BraTS 2015 as shipped with DeepMedic) is in ``../shared/data/brats2015``;
fewer than 10 cases need explicit splits (``--splits FILE``, a JSON of train / val / test ids).

Recipe (§4.1, §4.3, §4.8): T1ce only, axial slices 30 to 125, per-volume z-score, padded to
240 x 240, batch 4, the BraTS loss weights (α5 β1 a1 b1 λ9 η6), Adam 3e-4 x0.9 every 3 epochs,
early stopping on validation avg.m.

Run:
    python examples/brats.py --data /path/to/MICCAI_BraTS_2019_Data_Training/HGG
    python examples/brats.py --data ../shared/data/brats2015 --splits splits.json \\
        --base-channels 16 --epochs 5
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
    name="BraTS",
    description=__doc__.split("\n\n")[0],
    fixed=(
        "--kind",
        "brats",
        "--option",
        'modalities=["t1ce"]',
        "--slice-range",
        "30",
        "125",
    ),
    batch_size=4,
    weights="brats",
)


def build_parser() -> argparse.ArgumentParser:
    """This example's argument parser."""
    return _common.build_parser(EXAMPLE)


def main(argv: Sequence[str] | None = None) -> int:
    """Train on BraTS; returns the exit status of ``dsplug train``."""
    return _common.main(EXAMPLE, argv)


if __name__ == "__main__":
    raise SystemExit(main())
