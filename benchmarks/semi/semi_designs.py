"""The pseudo-label designs tried for issue 27 (seed 0, chosen by validation Dice), as JSON.

Each design is one ``benchmarks/semi/semi.py`` run of the ``pseudo-none`` arm (``none`` trained on
the EMA teacher's confident pseudo-masks of the unlabelled cases, 4 labelled Task04 cases,
1000 steps); designs 1 and 2 are earlier forms of ``dsplug.losses`` (soft Dice on the
pseudo-masks; every image counted), 4a and 4b use ``--confidence 0.95`` and ``--ramp-start 0.5``.

Usage (after the runs):
    python benchmarks/semi/semi_designs.py \\
        --json benchmarks/semi/results/semi_designs_hippocampus.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

__all__ = ["DESIGNS", "collect", "main"]

#: (design, the run folder that holds its seed-0 ``pseudo-none`` run).
DESIGNS = (
    ("1: L_BD (BCE + soft Dice) on every confident pixel", "runs/semi_design1"),
    ("2: L_B (BCE) alone on every confident pixel", "runs/semi_design2"),
    (
        "3 (the library's form): L_B on the confident pixels of the images whose pseudo-mask "
        "has confident foreground",
        "runs/semi",
    ),
    ("4a: design 3 with confidence 0.95", "runs/semi_d4a"),
    ("4b: design 3, the unlabelled loss off for the first half of the steps", "runs/semi_d4b"),
)


def collect(root: Path) -> dict:
    """The designs' validation and test Dice beside ``none`` and ``up`` of the same seed."""

    def read(folder: str, arm: str) -> dict:
        r = json.loads((root / folder / f"{arm}_n4_seed0.json").read_text())
        keep = ("val_dice_best", "test_dice", "best_step", "val_curve", "setting")
        return {k: r[k] for k in keep}

    return {
        "benchmark": "semi designs: pseudo-none, Task04 2D, 4 labelled cases, seed 0",
        "reference": {arm: read("runs/semi", arm) for arm in ("none", "up")},
        "designs": [{"design": name, **read(folder, "pseudo-none")} for name, folder in DESIGNS],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    text = json.dumps(collect(args.root), indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
