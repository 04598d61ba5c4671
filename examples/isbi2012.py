"""ISBI 2012: EM membrane segmentation (the original U-Net data), from a 2D image folder.

Dataset: the ISBI 2012 EM segmentation challenge training stack (30 slices of 512 x 512 from a
Drosophila ventral nerve cord; Arganda-Carreras et al., Front. Neuroanat. 2015), from
https://imagej.net/events/isbi-2012-segmentation-challenge, laid out as ``image/{id}.png`` and
``label/{id}.png`` (as in github.com/zhixuhao/unet ``data/membrane/train``); a copy is in
``../shared/data/isbi2012_em_membrane/train``.

Recipe: grayscale PNG, per-image z-score, 512 x 512, masks 255 (cell, the foreground) and 0
(membrane), a contiguous 70/10/20 split of the stack (neighbouring slices stay together: 21 / 3 /
6 slices), batch 2, equal loss weights.

Run:
    python examples/isbi2012.py --data ../shared/data/isbi2012_em_membrane/train
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
    name="ISBI 2012",
    description=__doc__.split("\n\n")[0],
    fixed=(
        "--kind",
        "folder",
        "--option",
        "image=image/{id}.png",
        "--option",
        "mask=label/{id}.png",
        "--contiguous",
    ),
    batch_size=2,
    weights="equal",
)


def build_parser() -> argparse.ArgumentParser:
    """This example's argument parser."""
    return _common.build_parser(EXAMPLE)


def main(argv: Sequence[str] | None = None) -> int:
    """Train on ISBI 2012; returns the exit status of ``dsplug train``."""
    return _common.main(EXAMPLE, argv)


if __name__ == "__main__":
    raise SystemExit(main())
