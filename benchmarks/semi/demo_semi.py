"""The demo's regime with few masks: does learning from unlabelled phantoms pay? (issue 27)

``dsplug demo``'s phantoms (60 synthetic cases, 42 / 6 / 12, 64 px, own U-Net base 16, depth
4), but only the first ``--labeled`` training cases keep their masks; the other training cases
are unlabelled images (``dsplug train --labeled-cases N``). Every arm runs through
``dsplug train`` with the same options (``--epochs`` with the paper's early stopping, the
best validation checkpoint tested on the 12 test phantoms):

    none, up: supervised, labelled cases only;
    mean-teacher: ``none`` + ``--semi mean-teacher``;
    up-consistency: ``up`` + ``--semi consistency --unlabeled-weight 1`` (its side outputs
        agree on unlabelled X);
    hyb-rei: ``hyb`` + ``--semi rei`` (the tied decoder reconstructs unlabelled X).

Per-seed test Dice, differences from ``none`` and ``up`` with "better in k of n" and the t-test
over seeds (the seed is the unit).

Usage:
    python benchmarks/semi/demo_semi.py --seeds 0,1,2 --out runs/demo_semi \\
        --json benchmarks/semi/results/demo_semi.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

from dsplug.cli import main as dsplug_main
from dsplug.metrics.paired import compare_seeds

__all__ = ["ARMS", "main", "run"]

#: arm -> (mode, semi recipe or None, the unlabelled weight or None for the recipe's)
ARMS: dict[str, tuple[str, str | None, float | None]] = {
    "none": ("none", None, None),  # --semi none: the labelled cases alone
    "up": ("up", None, None),
    "mean-teacher": ("none", "mean-teacher", None),
    "up-consistency": ("up", "consistency", 1.0),
    "hyb-rei": ("hyb", "rei", None),
}


def run(arm: str, seed: int, args: argparse.Namespace) -> float:
    """Train one arm with ``dsplug train`` (reused when its summary exists); its test Dice."""
    out = args.out / f"{arm}_n{args.labeled}_seed{seed}"
    summary = out / "summary.json"
    if not summary.is_file():
        mode, semi, weight = ARMS[arm]
        argv = [
            "train", "--data", "synthetic", "--option", f"num_cases={args.cases}",
            "--option", "size=64", "--model", "unet", "--base-channels", "16", "--depth", "4",
            "--mode", mode, "--labeled-cases", str(args.labeled), "--epochs", str(args.epochs),
            "--min-epochs", str(args.min_epochs), "--batch-size", "4", "--seed", str(seed),
            "--out", str(out), "--quiet",
        ]  # fmt: skip
        argv += ["--semi", semi or "none"]  # none: the labelled cases alone
        if weight is not None:
            argv += ["--unlabeled-weight", str(weight)]
        with redirect_stdout(StringIO()):
            status = dsplug_main(argv)
        if status != 0:
            raise RuntimeError(f"dsplug {' '.join(argv)} exited with {status}")
    return float(json.loads(summary.read_text())["test"]["dice"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--labeled", type=int, default=4, help="training cases with masks")
    parser.add_argument("--cases", type=int, default=60, help="phantoms (the demo's 60)")
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--min-epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("runs/demo_semi"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    arms = [a for a in args.arms.split(",") if a]
    seeds = [int(s) for s in args.seeds.split(",")]
    from tqdm.auto import tqdm

    dice = {a: [] for a in arms}
    for seed in tqdm(seeds, desc="seeds"):
        for arm in arms:
            dice[arm].append(run(arm, seed, args))
    table: dict[str, Any] = {}
    for arm in arms:
        row: dict[str, Any] = {
            "test_dice_mean": float(np.mean(dice[arm])),
            "test_dice_sd": float(np.std(dice[arm], ddof=1)) if len(seeds) > 1 else 0.0,
            "per_seed": dice[arm],
        }
        for ref in ("none", "up"):
            if ref in dice and ref != arm:
                row[f"vs_{ref}"] = compare_seeds(dice[arm], dice[ref])
        table[arm] = row
    result = {
        "benchmark": "demo_semi",
        "settings": {
            "data": f"synthetic phantoms ({args.cases} cases, 70/10/20 split, 64 px), "
            f"{args.labeled} training cases with masks, the other training cases unlabelled",
            "model": "own U-Net base 16, depth 4, batch 4",
            "epochs": f"at most {args.epochs}, early stopping from {args.min_epochs}",
            "command": "python benchmarks/semi/demo_semi.py " + " ".join(argv or sys.argv[1:]),
        },
        "seeds": seeds,
        "labeled": args.labeled,
        "table": table,
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
