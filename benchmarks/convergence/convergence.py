"""Convergence ablation on real data (the paper's Tables 4-5), sized for a CPU.

Task04_Hippocampus (Medical Segmentation Decathlon, ``../shared/data``), dsplug's own U-Net, and
the variants ``none``, ``deep``, ``auto``, ``seg``, ``rec``, ``hyb``, ``up``, ``down``, plus ``hyb``
with the paper's ``brats`` loss weights (``hyb-brats``) and with the ``linear`` deep-supervision
schedule (``hyb-linear``), each trained from the same seeded weights with several seeds.

What it measures, per run: validation metrics every epoch; Epoch (best epoch by validation
avg.m, the Trainer's rule), Avg.T (training seconds per epoch) and Tot.T = Avg.T x Epoch; the
epochs until validation Dice first reaches the best validation Dice of ``none`` with the same
seed, converted to time with the step-time ratios measured interleaved in one process on a real
training batch (so that machine noise between separate runs does not decide it); test DICE,
PPV, SEN, IoU per case and foreground class with the best-epoch weights. Across seeds: means,
standard deviations, and the comparison with ``none`` with the seed as the unit: per-seed
differences in mean test Dice, better in k of n seeds, a t-test of the per-seed differences and a
seeds x cases bootstrap (``dsplug.metrics.paired.compare_seeds``). The test split is never used for
any choice.

Splits are by case: a seeded 70/10/20 split of all 200 cases (``splits.json``), from which a
seeded sample of ``--train-cases`` / ``--val-cases`` / ``--test-cases`` is used. Training drops
slices without foreground; validation and test keep every slice. Slices are padded to 48 x 64.
Optimiser and schedule are the paper's (Adam 3e-4, x0.9 every 3 epochs); every run trains a
fixed number of epochs (so all cost the same), and Epoch is its best epoch by validation avg.m.

Settings:
    --quick: base 8, depth 3, batch 8, 6 / 3 / 4 cases, 2 epochs, every variant, seed 0, one
        thread (about a minute on 2 cores).
    default (full): base 16, depth 5, batch 4, 12 / 8 / 40 cases (292 / 285 / 1438 slices), 10
        epochs (730 steps), seeds 0, 1, 2, every variant (30 runs), two single-threaded runs at
        a time; sized for about 1.4 hours on 2 idle cores (from measured CPU times per step).

Resumable: every run writes ``runs/<variant>_seed<k>.json`` when it finishes and is skipped when
that file exists (with the same settings); an interrupted run resumes from its ``last.pt``. The
step-time ratios are kept in ``step_time.json``. The result is ``convergence.json`` (also printed
to stdout); ``benchmarks/report.py`` turns it into the README table.

Usage:
    python benchmarks/convergence/convergence.py --quick --out runs/convergence_quick
    mkdir -p runs && nohup .venv/bin/python benchmarks/convergence/convergence.py \\
        --out runs/convergence > runs/convergence.log 2>&1 &
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch

from benchmarks._common import emit
from benchmarks.convergence.analysis import analyse, estimate_seconds
from benchmarks.convergence.driver import run_convergence
from benchmarks.convergence.runs import build_sets, measure_step_ratios, run_variant
from benchmarks.convergence.settings import (
    FULL,
    PAPER_ORDER,
    QUICK,
    THIN,
    VARIANTS,
    ConvergenceSettings,
    Variant,
    default_source,
    setting_name,
)
from dsplug._checks import positive_int
from dsplug.data import default_cache_dir

__all__ = [
    "FULL",
    "PAPER_ORDER",
    "QUICK",
    "THIN",
    "VARIANTS",
    "ConvergenceSettings",
    "Variant",
    "analyse",
    "build_parser",
    "build_sets",
    "default_source",
    "estimate_seconds",
    "main",
    "measure_step_ratios",
    "run_convergence",
    "run_variant",
    "setting_name",
    "settings_from_args",
]


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown variant(s) {unknown or [text]}; expected a comma-separated subset of "
            f"{list(VARIANTS)}"
        )
    return names


def _seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    """The command-line options (explicit flags override the chosen preset)."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Presets: --quick (CI, about a minute) or the full setting (default).",
    )
    parser.add_argument("--quick", action="store_true", help="the quick (CI) setting")
    parser.add_argument(
        "--thin", action="store_true", help="the second data set: ISBI 2012 membranes"
    )
    parser.add_argument(
        "--data", type=Path, default=None, help="Task04_Hippocampus folder (default: shared data)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: runs/convergence, or runs/convergence_quick)",
    )
    parser.add_argument(
        "--variants", type=_names, help=f"comma-separated subset of {','.join(VARIANTS)}"
    )
    parser.add_argument("--seeds", type=_seeds, help="comma-separated training seeds")
    names = ("train-cases", "val-cases", "test-cases", "epochs", "min-epochs", "batch", "base")
    for name in (*names, "depth"):
        parser.add_argument(f"--{name}", type=positive_int, help=f"override the preset's {name}")
    parser.add_argument(
        "--size", type=positive_int, nargs=2, metavar=("H", "W"), help="padded size"
    )
    parser.add_argument("--split-seed", type=int, help="seed of the case split (default 0)")
    parser.add_argument("--step-repeats", type=positive_int, help="timed step-time rounds")
    parser.add_argument("--threads", type=int, help="torch threads per run (0: automatic)")
    parser.add_argument("--jobs", type=positive_int, help="runs trained at the same time")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: auto")
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="slice cache (default: $DSPLUG_CACHE)"
    )
    parser.add_argument(
        "--step-time",
        type=Path,
        default=None,
        help="use the ratios of this step_time.py JSON instead of measuring them",
    )
    parser.add_argument(
        "--keep-checkpoints", action="store_true", help="keep each run's checkpoints"
    )
    parser.add_argument(
        "--progress", action="store_true", help="the Trainer's progress output (with --jobs 1)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the result here")
    return parser


def settings_from_args(args: argparse.Namespace) -> ConvergenceSettings:
    """The preset (``--quick`` or full) with the explicitly given flags applied."""
    preset = QUICK if args.quick else THIN if args.thin else FULL
    overrides: dict[str, Any] = {}
    names = {f.name for f in fields(ConvergenceSettings)}
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = tuple(value) if isinstance(value, list) else value
    if "variants" in overrides:
        overrides["variants"] = ("none", *(v for v in overrides["variants"] if v != "none"))
    return replace(preset, **overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    name = "cuda" if args.device is None and torch.cuda.is_available() else args.device or "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was asked for, but CUDA is not available.")
    default = "convergence_quick" if args.quick else "convergence_thin" if args.thin else ""
    out = args.out or Path("runs") / (default or "convergence")
    try:
        result = run_convergence(
            settings,
            (args.data or default_source(settings.dataset)).resolve(),
            out,
            device=torch.device(name),
            cache_dir=args.cache_dir or default_cache_dir(),
            step_time=args.step_time,
            keep_checkpoints=args.keep_checkpoints,
            progress=args.progress,
        )
    except ValueError as exc:  # bad data, or an output folder made with other settings
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
