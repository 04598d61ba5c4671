"""``dsplug demo``: train ``none`` and ``hyb`` on synthetic phantoms, then compare them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..._checks import integer, positive_int, unit_interval
from ..compare import compare_runs
from ._common import COMPARE_FILES, _run_markers
from .arguments import debug_option, device_options
from .train import train_command

__all__ = ["add_parser", "demo_command"]


def _dice_gap(out: Path) -> str:
    """``hyb - none test Dice: +0.004`` from the two runs' summaries (validation without test)."""
    summaries = {m: json.loads((out / m / "summary.json").read_text()) for m in ("none", "hyb")}
    split, key = (
        ("test", "test")
        if all(s.get("test") for s in summaries.values())
        else (
            "validation",
            "best_val",
        )
    )
    gap = summaries["hyb"][key]["dice"] - summaries["none"][key]["dice"]
    return f"hyb - none {split} Dice: {gap:+.3f}"


def _check_demo(args: argparse.Namespace) -> None:
    """Refuse demo settings in the demo's own options (train's messages name train's).

    Raises:
        ValueError: too few phantoms, a shallow U-Net, or a size the U-Net cannot divide.
    """
    if args.cases < 10:
        raise ValueError(
            f"--cases {args.cases}: the demo splits its phantoms 70/10/20 and needs at least "
            "10; pass --cases 10 or more."
        )
    if args.depth < 2:
        raise ValueError(f"--depth must be >= 2, got {args.depth}.")
    stride = 2 ** (args.depth - 1)
    if args.size % stride:
        raise ValueError(
            f"--size {args.size} is not a multiple of {stride}, the stride of a {args.depth}-"
            f"level U-Net; pass e.g. --size {-(-args.size // stride) * stride}, or a smaller "
            "--depth."
        )
    if args.min_epochs > args.epochs:
        raise ValueError(
            f"--min-epochs {args.min_epochs} exceeds --epochs {args.epochs}; lower it."
        )


def demo_command(args: argparse.Namespace, train_defaults: argparse.Namespace) -> int:
    """``dsplug demo``: train ``none`` and ``hyb`` on synthetic phantoms, then compare them.

    Raises:
        ValueError: ``--out`` holds an earlier demo and ``--overwrite`` is not given.
    """
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: a file, not a folder.")
    run = _run_markers(out)
    if run:
        raise ValueError(
            f"--out {out} is a training run's folder ({', '.join(run[:3])}, ...); the demo "
            "never writes into one, even with --overwrite; choose another --out."
        )
    held = sorted(name for name in ("none", "hyb", *COMPARE_FILES) if (out / name).exists())
    if held and not args.overwrite:
        raise ValueError(
            f"--out {out} already holds a demo ({', '.join(held[:4])}); replace it with "
            "--overwrite, or choose another --out."
        )
    _check_demo(args)
    runs = []
    for mode in ("none", "hyb"):
        run = argparse.Namespace(**vars(train_defaults))
        run.mode, run.out, run.data, run.seed = mode, str(out / mode), "synthetic", args.seed
        run.model, run.base_channels, run.depth = "unet", args.base_channels, args.depth
        run.epochs, run.min_epochs, run.batch_size = args.epochs, args.min_epochs, args.batch_size
        run.option = [f"num_cases={args.cases}", f"size={args.size}"]
        run.target_dice, run.quiet, run.device = args.target_dice, args.quiet, args.device
        run.threads = args.threads
        run.overwrite, run.argv = args.overwrite, []
        print(f"== training {mode!r} on {args.cases} synthetic phantoms ({args.size} px) ==")
        train_command(run)
        runs.append(run.out)
    print("== comparison ==")
    print(compare_runs(runs, out))
    print(_dice_gap(out))
    print(
        "These phantoms are easy and their labels plentiful: hyb is level with none here (within "
        "0.005 over seeds). On real data it gained +0.02 with 6 Task04 cases or 15 ISBI slices; "
        "with fewer labels 'up' did better. See README 'Which mode when'."
    )
    print(f"Plots: {out}/<mode>/curves.png and overlays.png; tables: {out}/compare.md")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``dsplug demo`` and its options."""
    p = commands.add_parser(
        "demo",
        help="a few minutes on CPU: train none and hyb on synthetic phantoms, compare",
        description="Trains U-Net (none) and μ-Net-Hyb (hyb) on seeded synthetic phantoms, "
        "prints their metrics and the difference of their test Dice, writes curves, overlays "
        "and comparison tables.",
        allow_abbrev=False,
    )
    p.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo in --out")
    p.add_argument("--epochs", type=positive_int, default=12, help="maximum epochs (default: 12)")
    p.add_argument(
        "--min-epochs", type=positive_int, default=8, help="no early stop before (default: 8)"
    )
    p.add_argument(
        "--cases", type=positive_int, default=60, help="synthetic phantoms (default: 60)"
    )
    p.add_argument("--size", type=positive_int, default=64, help="phantom size (default: 64)")
    p.add_argument(
        "--base-channels", type=positive_int, default=16, help="U-Net width (default: 16)"
    )
    p.add_argument("--depth", type=positive_int, default=4, help="U-Net levels (default: 4)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="(default: 8)")
    p.add_argument(
        "--target-dice",
        type=unit_interval,
        default=0.8,
        help="report the time to this validation Dice (default: 0.8)",
    )
    p.add_argument("--seed", type=integer, default=0, help="(default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    device_options(p)
    debug_option(p)
    return p
