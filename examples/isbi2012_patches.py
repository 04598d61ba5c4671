"""ISBI 2012 with patches: thin membranes trained and scored at native resolution (512 x 512).

Dataset: the ISBI 2012 EM segmentation challenge training stack (30 slices of 512 x 512 from a
Drosophila ventral nerve cord; Arganda-Carreras et al., Front. Neuroanat. 2015), from
https://imagej.net/events/isbi-2012-segmentation-challenge, laid out as ``image/{id}.png`` and
``label/{id}.png``; a copy is in ``../shared/data/isbi2012_em_membrane/train``.

Recipe: as ``isbi2012.py`` (grayscale PNG, per-image z-score, a contiguous 21 / 3 / 6 split of
the stack), but the membranes (mask value 0) are the foreground, as in ``benchmarks/`` (the
label rule ``{"binary": {"values": [0, 255], "foreground": [0]}}``), and nothing is resized:
random 128 x 128 patches of the 512 x 512 slices, 8 per slice and epoch, a third centred on
foreground, augmented (flips, rotations, scaling, intensity); validation and test score whole
slices by Gaussian sliding windows of the patch, with HD95 and surface Dice (1 px tolerance:
the images have no spacing). A U-Net of width 16, batch 8, equal loss weights. Thin structures
are where the resize of ``isbi2012.py`` loses most. ``--quick``: 64 x 64 patches, width 8, 2
epochs (about a minute on a CPU).

Run:
    python examples/isbi2012_patches.py --data ../shared/data/isbi2012_em_membrane/train
    python examples/isbi2012_patches.py --data ../shared/data/isbi2012_em_membrane/train --quick
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:  # for the sibling _common.py
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

__all__ = ["EXAMPLE", "MEMBRANES", "build_parser", "main"]

#: The label rule: the masks hold 255 (cell) and 0 (membrane); the membranes are the foreground.
MEMBRANES = 'labels={"binary":{"values":[0,255],"foreground":[0]}}'

EXAMPLE = _common.Example(
    name="ISBI 2012 patches",
    description=__doc__.split("\n\n")[0],
    fixed=(
        "--kind",
        "folder",
        "--option",
        "image=image/{id}.png",
        "--option",
        "mask=label/{id}.png",
        "--option",
        MEMBRANES,
        "--contiguous",
        "--patch",
        "128",
        "128",
        "--patches-per-image",
        "8",
        "--augment",
        "--recipe",
        "paper",
    ),
    batch_size=8,
    weights="equal",
    base_channels=16,
    quick=(
        *("--patch", "64", "64", "--patches-per-image", "4", "--base-channels", "8"),
        *("--depth", "3", "--epochs", "2", "--min-epochs", "2", "--no-tensorboard"),
    ),
)


def build_parser() -> argparse.ArgumentParser:
    """This example's argument parser."""
    return _common.build_parser(EXAMPLE)


def main(argv: Sequence[str] | None = None) -> int:
    """Train on ISBI 2012 patches; returns the exit status of ``dsplug train``."""
    return _common.main(EXAMPLE, argv)


if __name__ == "__main__":
    raise SystemExit(main())
