"""PH2: skin-lesion segmentation on dermoscopy images (RGB, non-square), from 2D folders.

Dataset: PH2 (200 dermoscopic images of melanocytic lesions with lesion masks; Mendonca et al.,
IEEE EMBC 2013), from https://www.fc.up.pt/addi/ph2%20database.html, in its per-case layout
``images/{id}/{id}_Dermoscopic_Image/{id}.bmp`` with ``images/{id}/{id}_lesion/{id}_lesion.bmp``
(BMP or PNG); a 40-case PNG subset is in ``../shared/data/PH2_subset40``.

Recipe: RGB input, per-image z-score per channel, resized from about 572 x 765 to 288 x 384 (the
aspect ratio kept), masks 255 (lesion) and 0, a seeded 70/10/20 case split, batch 4, equal loss
weights.

Run:
    python examples/ph2.py --data ../shared/data/PH2_subset40
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
    name="PH2",
    description=__doc__.split("\n\n")[0],
    fixed=(
        "--kind",
        "folder",
        "--option",
        "image=images/{id}/{id}_Dermoscopic_Image/{id}.*",
        "--option",
        "mask=images/{id}/{id}_lesion/{id}_lesion.*",
        "--fit",
        "resize",
        "--size",
        "288",
        "384",
    ),
    batch_size=4,
    weights="equal",
)


def build_parser() -> argparse.ArgumentParser:
    """This example's argument parser."""
    return _common.build_parser(EXAMPLE)


def main(argv: Sequence[str] | None = None) -> int:
    """Train on PH2; returns the exit status of ``dsplug train``."""
    return _common.main(EXAMPLE, argv)


if __name__ == "__main__":
    raise SystemExit(main())
