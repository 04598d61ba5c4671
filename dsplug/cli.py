"""The ``dsplug`` command line: train, evaluate, predict, demo, compare.

Run ``dsplug <command> --help`` for every option. Every failure is one line on stderr,
``dsplug <command>: error: ...``, with exit status 2 for a bad option or input and 1 for a
failure while running (no traceback; ``--debug`` or ``DSPLUG_DEBUG=1`` shows one). Ctrl-C
stops training at a safe point and prints the command that continues it (exit status 130).
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import warnings
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, NoReturn

import torch

from ._checks import (
    integer,
    non_negative_int,
    positive_float,
    positive_int,
    unit_fraction,
    unit_interval,
)
from ._version import __version__
from .data import KINDS
from .losses import PRESETS
from .options import Amp, Balance, LabelMode, Mode, Schedule
from .train import commands
from .train.commands import DEFAULT_ENCODER, OWN_NET_DEFAULTS
from .train.config import SEMI_RECIPES
from .train.models import MODEL_ARCHS, MONAI_NET_DEFAULTS

__all__ = ["build_parser", "main"]

#: Exceptions that mean the command was given something it cannot use (exit status 2); any
#: other exception is a failure while running (exit status 1).
_USAGE_ERRORS = (ValueError, TypeError, FileNotFoundError, NotADirectoryError, IsADirectoryError)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``dsplug train: error: ...`` (usage is behind --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _values(option: type[StrEnum]) -> list[str]:
    """An option's names as argparse choices (plain strings read well in its messages)."""
    return [member.value for member in option]


def _devices_here() -> list[str]:
    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    if torch.backends.mps.is_available():
        names.append("mps")
    return names


def _device(text: str) -> str:
    """A device that exists on this machine (checked before anything runs)."""
    here = _devices_here()
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a device dsplug runs on; this machine has {', '.join(here)}"
        )
    if text not in here and str(device) not in here:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not present on this machine, which has {', '.join(here)}"
        )
    return text


def _device_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        type=_device,
        default=None,
        help="cpu, cuda, cuda:N or mps, present on this machine (default: CUDA when present, "
        "else CPU)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads for torch (default: the usable CPUs less the load already running, "
        "or $OMP_NUM_THREADS)",
    )


def _non_negative_float(text: str) -> float:
    """An argparse ``type``: a finite number >= 0, else a one-line usage error."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}") from None
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _nsd_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--nsd-tolerance",
        type=_non_negative_float,
        default=None,
        metavar="MM",
        help="tolerance of the normalised surface Dice in mm, from the image spacing (default: "
        "1.0 for train; evaluate: the run's own). HD95 and NSD follow MONAI: both masks of a "
        "class empty: nan (skipped in means); one empty: HD95 nan (skipped) and NSD 0; "
        "summary.json counts the nan values (hd95_nan, nsd_nan)",
    )


def _tta_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tta",
        action="store_true",
        help="mirror test-time augmentation: the mean logits over all axis flips (2^k forward "
        "passes per window, k = 2 in 2D, 3 in 3D)",
    )


def _debug_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--debug", action="store_true", help="show the traceback of an error (or DSPLUG_DEBUG=1)"
    )


def _checkpoint_options(p: argparse.ArgumentParser, out: str | None, default: str) -> None:
    p.add_argument("checkpoint", help="a best.pt or last.pt of a run")
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=16,
        help="slices, or sliding windows of a patch model, per forward pass (default: 16)",
    )
    _device_options(p)
    p.add_argument("--out", default=out, help=f"output folder (default: {default})")


def _cache_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache-dir",
        default=None,
        help="file data: preprocessed-slice cache (default: $DSPLUG_CACHE or ./.dsplug_cache)",
    )
    p.add_argument("--no-cache", action="store_true", help="file data: keep slices in memory only")


def _train_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        choices=MODEL_ARCHS,
        default="unet",
        help="dsplug's own unet / unetpp, an smp architecture (2D), or MONAI's "
        "monai-dynunet / monai-basicunet (2D and 3D, with the monai extra) (default: unet)",
    )
    g.add_argument(
        "--encoder",
        default=None,
        help="smp models only: the encoder, e.g. resnet34 or tu-<timm model>; never downloads "
        f"weights (default: {DEFAULT_ENCODER})",
    )
    g.add_argument(
        "--base-channels",
        type=positive_int,
        default=None,
        help="own and MONAI nets: channels of level 0 "
        f"(default: {OWN_NET_DEFAULTS['base_channels']}, the paper; MONAI nets "
        f"{MONAI_NET_DEFAULTS['base_channels']})",
    )
    g.add_argument(
        "--depth",
        type=positive_int,
        default=None,
        help="own nets and monai-dynunet: levels "
        f"(default: {OWN_NET_DEFAULTS['depth']}, the paper)",
    )
    g.add_argument(
        "--norm",
        choices=("batch", "instance"),
        default=None,
        help=f"own and MONAI nets (default: {OWN_NET_DEFAULTS['norm']}; MONAI nets "
        f"{MONAI_NET_DEFAULTS['norm']})",
    )
    g = p.add_argument_group("deep supervision")
    g.add_argument(
        "--mode", choices=_values(Mode), default="hyb", help="strategy (default: hyb, μ-Net-Hyb)"
    )
    g.add_argument(
        "--weights",
        choices=list(PRESETS),
        default="equal",
        help="loss-weight preset (default: equal)",
    )
    g.add_argument(
        "--label-mode",
        choices=_values(LabelMode),
        default=None,
        help="synthetic data: its label mode; real data decides its own (default: from the data)",
    )
    g.add_argument(
        "--balance",
        choices=_values(Balance),
        default="auto",
        help="how the loss terms add up: auto (scale-free, gradient-balanced, averaged; the "
        "default) or paper (the paper's literal weighted sum)",
    )
    g.add_argument(
        "--schedule",
        choices=_values(Schedule),
        default=None,
        help="deep-supervision schedule over training (default: cosine with --balance auto, "
        "constant with --balance paper)",
    )
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        default="synthetic",
        help="dataset folder (MSD task, BraTS, image folder) or 'synthetic' (default: synthetic); "
        "a resume accepts the folder its data moved to when the files match the run's record",
    )
    g.add_argument("--kind", choices=KINDS, default="auto", help="folder layout (default: auto)")
    g.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="a layout option, repeatable; VALUE is JSON or a string, e.g. num_cases=40, "
        'size=64 (synthetic), modalities=["t1ce","flair"] (BraTS), image=images/{id}.png',
    )
    g.add_argument(
        "--axis",
        type=integer,
        choices=(-3, -2, -1, 0, 1, 2),
        metavar="AXIS",
        default=None,
        help="3D volumes only: slicing axis (default: -1, axial)",
    )
    g.add_argument(
        "--no-zscore", action="store_true", help="file data: skip the per-volume z-score"
    )
    g.add_argument(
        "--drop-empty",
        action="store_true",
        help="file data, training: drop slices without foreground",
    )
    g.add_argument(
        "--slice-range",
        type=non_negative_int,
        nargs=2,
        metavar=("START", "STOP"),
        default=None,
        help="3D volumes only: keep slices START <= i < STOP (BraTS in the paper: 30 125)",
    )
    g.add_argument(
        "--fit",
        choices=("pad", "resize"),
        default=None,
        help="file data: bring slices to one size by padding or resizing (default: pad)",
    )
    g.add_argument(
        "--size",
        type=positive_int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="file data: slice size, a multiple of the network's stride (default: the largest "
        "slice, rounded up; synthetic data: --option size=N)",
    )
    g.add_argument("--augment", action="store_true", help="training: random flips / 90° turns")
    g.add_argument(
        "--splits", default=None, help="JSON file of explicit splits (default: seeded 70/10/20)"
    )
    g.add_argument(
        "--split-seed",
        type=non_negative_int,
        default=None,
        help="seed of the case split (default: 0)",
    )
    g.add_argument(
        "--contiguous",
        action="store_true",
        help="split into contiguous blocks (one stack such as ISBI 2012)",
    )
    _cache_options(g)
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=positive_int, default=100, help="maximum epochs (default: 100)")
    g.add_argument(
        "--min-epochs",
        type=positive_int,
        default=10,
        help="never stop early before this epoch (default: 10)",
    )
    g.add_argument("--batch-size", type=positive_int, default=4, help="per process (default: 4)")
    g.add_argument(
        "--recipe",
        choices=("paper", "field"),
        default=None,
        help="paper: Adam, lr x0.9 every 3 epochs, each item once per epoch; field (nnU-Net's): "
        "linear warm-up then poly decay, --iterations steps per epoch, flips, rotations, "
        "scaling, intensity, gamma and noise (default: paper; a resume keeps the run's)",
    )
    g.add_argument(
        "--lr", type=positive_float, default=None, help="Adam (default: 3e-4; field: 1e-3)"
    )
    g.add_argument(
        "--iterations",
        type=positive_int,
        default=None,
        help="--recipe field: optimiser steps per epoch, whatever the data's size (default: 250)",
    )
    g.add_argument(
        "--warmup-epochs",
        type=non_negative_int,
        default=None,
        help="--recipe field: epochs of linear learning-rate warm-up (default: 1)",
    )
    g.add_argument(
        "--patience",
        type=positive_int,
        default=None,
        help="stop after this many epochs without a better validation avg.m (default: stop at "
        "twice the best epoch, the paper's rule)",
    )
    g.add_argument(
        "--lr-step",
        type=positive_int,
        default=3,
        help="decay the lr every this many epochs (default: 3)",
    )
    g.add_argument(
        "--lr-gamma", type=unit_fraction, default=0.9, help="lr decay factor (default: 0.9)"
    )
    g.add_argument("--seed", type=integer, default=0, help="seed of everything (default: 0)")
    g.add_argument(
        "--workers", type=non_negative_int, default=0, help="DataLoader workers (default: 0)"
    )
    g.add_argument(
        "--amp",
        choices=_values(Amp),
        default="auto",
        help="mixed precision on CUDA (default: auto: bf16, or fp16 with a grad scaler)",
    )
    g.add_argument(
        "--channels-last",
        choices=("auto", "on", "off"),
        default="auto",
        help="channels-last memory format (default: auto: on CUDA)",
    )
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument(
        "--deterministic", action="store_true", help="deterministic algorithms (slower on GPU)"
    )
    g.add_argument(
        "--target-dice",
        type=unit_interval,
        default=None,
        help="report the wall time until validation Dice reaches this (default: none)",
    )
    _device_options(g)
    g = p.add_argument_group(
        "patches at native resolution",
        "Train on random patches cut from the images at their own size (no resize), then "
        "validate and test whole cases by Gaussian sliding windows of the patch, with HD95 "
        "and surface Dice (NSD) per case; evaluate and predict of the checkpoint do the same.",
    )
    g.add_argument(
        "--patch",
        type=positive_int,
        nargs="+",
        metavar="SIZE",
        default=None,
        help="patch size: H W (2D: images, or the slices of volumes) or D H W (3D: whole "
        "volumes, axes in the files' order; own and MONAI nets built in 3D); each a multiple "
        "of the network's stride (default: no patches, whole slices at --size)",
    )
    g.add_argument(
        "--patches-per-image",
        type=positive_int,
        default=None,
        metavar="N",
        help="--patch: random patches per image and epoch, a third centred on foreground "
        "(default: 4); --augment flips, rotates, scales and changes intensities (MONAI, else "
        "torchvision)",
    )
    _nsd_option(g)
    _semi_options(p)
    g = p.add_argument_group("output")
    g.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    g.add_argument(
        "--no-tensorboard",
        action="store_true",
        help="no TensorBoard events (they need pip install 'dsplug[tensorboard]')",
    )
    g.add_argument("--no-plots", action="store_true", help="no PNG plots")


def _semi_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "images without masks",
        "Learn from unlabelled images too (README: Learning from images without masks).",
    )
    g.add_argument(
        "--unlabeled",
        default=None,
        metavar="PATH",
        help="a folder of images, or an MSD task whose images are read without their labels, "
        "preprocessed as --data; turns on --semi mean-teacher (default: none)",
    )
    g.add_argument(
        "--semi",
        choices=(*SEMI_RECIPES, "none"),
        default=None,
        help="the recipe: pseudo (an EMA teacher's confident pseudo-masks, every mode), "
        "mean-teacher, rei (the tied decoder reconstructs them; modes with one), consistency "
        "(the side outputs agree; up, down), none (--labeled-cases N: the N cases alone, the "
        "supervised baseline) (default: mean-teacher: the measured least harmful, README)",
    )
    g.add_argument(
        "--labeled-cases",
        type=positive_int,
        default=None,
        metavar="N",
        help="keep the masks of the first N training cases only; the others' images are "
        "used without them (benchmarks) (default: all labelled)",
    )
    g.add_argument(
        "--unlabeled-ratio",
        type=positive_int,
        default=1,
        metavar="N",
        help="unlabelled images per labelled image in a step (default: 1)",
    )
    g.add_argument(
        "--rampup",
        type=float,
        default=0.25,
        metavar="FRACTION",
        help="the unlabelled weight ramps up over this fraction of the steps (default: 0.25)",
    )
    g.add_argument(
        "--unlabeled-weight",
        type=_non_negative_float,
        default=None,
        metavar="W",
        help="the unlabelled loss's weight (default: 1.0; 0.1 with mean-teacher)",
    )
    g.add_argument(
        "--ema-decay",
        type=float,
        default=0.99,
        metavar="D",
        help="the EMA teacher's decay (default: 0.99)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``dsplug`` argument parser (one sub-parser per command)."""
    parser = _Parser(
        prog="dsplug",
        description="Deep supervision (μ-Net and friends) for U-Net-style segmentation models.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--version", action="version", version=f"dsplug {__version__} (torch {torch.__version__})"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train a model with a deep-supervision strategy",
        description="Train with the paper's schedule and early stopping; checkpoints every "
        "epoch. Ctrl-C stops at a safe point and prints the command that continues the run. "
        "Under torchrun, trains with DistributedDataParallel.",
        allow_abbrev=False,
    )
    _train_options(p)
    g = p.add_argument_group("run folder")
    g.add_argument(
        "--out",
        default=None,
        help="run folder; one that holds a run is never overwritten (default: a new "
        "runs/<mode>-<date>-<time>; with --resume-from: the checkpoint's folder)",
    )
    how = g.add_mutually_exclusive_group()
    how.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last.pt"
    )
    how.add_argument(
        "--resume-from",
        default=None,
        metavar="CKPT",
        help="continue from this checkpoint (any of a run's, e.g. RUN/best.pt)",
    )
    how.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --out (its checkpoints, logs and plots are deleted)",
    )
    _debug_option(p)

    p = sub.add_parser(
        "evaluate",
        help="per-case metrics of a checkpoint on a split or a folder",
        description="Writes cases.csv (per case), summary.json and overlays.png to --out: by "
        "default a subfolder of the checkpoint's run folder, never the run folder itself (its "
        "own summary.json and overlays.png stay). An existing report is replaced only with "
        "--overwrite.",
        allow_abbrev=False,
    )
    _checkpoint_options(p, None, "RUN/evaluate-<checkpoint>-<split or folder>")
    p.add_argument(
        "--split",
        choices=("train", "val", "test"),
        default=None,
        help="which split of the run's data (default: test)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="evaluate on this folder instead of a split (same layout and preprocessing as "
        "the run); with --split: where the run's data set moved (its files are checked "
        "against the run's record)",
    )
    p.add_argument(
        "--workers", type=non_negative_int, default=0, help="DataLoader workers (default: 0)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace a report in --out")
    _cache_options(p)
    g = p.add_argument_group(
        "scoring",
        "Dice, PPV, sensitivity, IoU and avg.m per case; HD95 and NSD per case and class "
        "(slices of a case are stacked into its volume; a checkpoint trained with --patch is "
        "scored on whole cases at native resolution by Gaussian sliding windows of its patch).",
    )
    _tta_option(g)
    _nsd_option(g)
    _debug_option(p)

    p = sub.add_parser(
        "predict",
        help="segment NIfTI volumes or 2D images with a checkpoint",
        description="One mask per input: NIfTI keeps the input's affine and header; images "
        "give PNG masks. Preprocessing is the run's own. Slices larger than the training size "
        "are segmented with Gaussian-weighted sliding windows of the training size that "
        "overlap by 50%; smaller ones are zero-padded to it, as in training. Masks keep the "
        "inputs' folders relative to their common parent (a/x.nii.gz and b/x.nii.gz give "
        "OUT/a/x_mask.nii.gz and OUT/b/x_mask.nii.gz); existing masks are never replaced "
        "without --overwrite.",
        allow_abbrev=False,
    )
    _checkpoint_options(p, "runs/predict", "runs/predict")
    p.add_argument(
        "inputs",
        nargs="+",
        help="input files, one case each; a case with one file per channel as a,b,c (a file "
        "whose name holds commas is taken whole); a file that fails is named and skipped "
        "(exit status 1 at the end)",
    )
    p.add_argument("--roi", default=None, help="ROI mask of the case (BraTS brain mask)")
    p.add_argument("--overwrite", action="store_true", help="replace masks that already exist")
    g = p.add_argument_group("inference")
    _tta_option(g)
    _debug_option(p)

    p = sub.add_parser(
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
    _device_options(p)
    _debug_option(p)

    p = sub.add_parser(
        "export",
        help="write a checkpoint's bare model as safetensors (with its config) or ONNX",
        description="The trained model without the deep-supervision wrapper: safetensors "
        "weights with the model config that rebuilds them (dsplug.export.load_exported), or "
        "an ONNX inference graph.",
        allow_abbrev=False,
    )
    p.add_argument("checkpoint", help="a checkpoint of dsplug train (e.g. runs/x/best.pt)")
    p.add_argument(
        "--format",
        choices=("safetensors", "onnx"),
        default="safetensors",
        help="(default: %(default)s)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="the file to write, or a folder to write <name>.safetensors / <name>.onnx into "
        "(default: beside the checkpoint); never a run's or a report's file",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    _debug_option(p)

    p = sub.add_parser(
        "compare",
        help="metric and efficiency tables of two or more runs",
        description="Per-case metrics with paired p-values against the first run (a warning "
        "when fewer than 10 cases pair up), and Avg.T / Epoch / Tot.T (as the paper's Tables "
        "3-5); Markdown and CSV. Runs are labelled by their path below their common folder.",
        allow_abbrev=False,
    )
    p.add_argument("runs", nargs="+", help="run folders (the first is the baseline)")
    p.add_argument(
        "--out",
        default=None,
        help="output folder, never a run folder (default: compare/ in the runs' common folder)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an earlier comparison")
    _debug_option(p)
    return parser


def _one_line_warnings(prog: str) -> Any:
    def show(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
        text = " ".join(str(message).split())
        print(f"{prog}: warning: {text}", file=sys.stderr)

    return show


def _interrupted(prog: str, args: argparse.Namespace, exc: KeyboardInterrupt) -> str:
    if args.command == "train":
        return f"{prog}: {commands.resume_hint(args, exc)}"
    if args.command == "demo":
        return (
            f"{prog}: interrupted; the runs so far are in {args.out}; "
            f"`dsplug demo --out {args.out} --overwrite` starts it again"
        )
    return f"{prog}: interrupted"


_DISK_HINTS = {
    errno.ENOSPC: "free space on that disk, or write to another one",
    errno.EROFS: "the file system is read-only; write to a writable folder",
    errno.EACCES: "no permission; write to a folder you own",
    errno.EPERM: "no permission; write to a folder you own",
}
if hasattr(errno, "EDQUOT"):
    _DISK_HINTS[errno.EDQUOT] = "the disk quota is full; free space or write elsewhere"


#: Errors re-raised from a DataLoader worker, by the name its traceback's last line gives.
_WORKER_USAGE = {"DataError", "ValueError", "TypeError", "FileNotFoundError"}
_WORKER_EXPECTED = {"CacheError", "OSError", "PermissionError"}


def _worker_error(exc: BaseException) -> tuple[str, str] | None:
    """``(type name, message)`` of the error a DataLoader worker raised (torch re-raises it
    with the worker's whole traceback in the message), else None."""
    text = str(exc)
    if "Original Traceback" not in text:
        return None
    last = [line.strip() for line in text.splitlines() if line.strip()][-1]
    head, sep, rest = last.partition(": ")
    if sep and " " not in head:  # "dsplug.data.errors.DataError: x.png: ..."
        return head.rsplit(".", 1)[-1], rest
    return type(exc).__name__, last


def _one_line(exc: BaseException) -> str:
    """The error's message on one line: the original error of a DataLoader worker (not its
    traceback), and disk errors with the path and what to do."""
    worker = _worker_error(exc)
    if worker is not None:
        text = f"in a data worker: {worker[1]}"
    elif isinstance(exc, OSError) and exc.errno in _DISK_HINTS and exc.filename:
        text = f"{exc.filename}: {exc.strerror}; {_DISK_HINTS[exc.errno]}"
    else:
        text = str(exc)
    return " ".join(text.split()) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dsplug`` command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # reported by the command's own parser, so the line names the command
        commands_ = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        where = commands_.choices.get(args.command, parser)
        where.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.print_help()
        return 0
    args.argv = argv
    run = {
        "train": commands.train_command,
        "evaluate": commands.evaluate_command,
        "predict": commands.predict_command,
        "compare": commands.compare_command,
        "export": commands.export_command,
        "demo": lambda a: commands.demo_command(a, parser.parse_args(["train"])),
    }[args.command]
    prog = f"dsplug {args.command}"
    debug = args.debug or bool(os.environ.get("DSPLUG_DEBUG"))
    with warnings.catch_warnings():
        if not debug:
            warnings.showwarning = _one_line_warnings(prog)
        try:
            return run(args)
        except KeyboardInterrupt as exc:
            if debug:
                raise
            print(_interrupted(prog, args, exc), file=sys.stderr)
            return 130
        except Exception as exc:
            if debug:
                raise
            text = _one_line(exc)
            usage = isinstance(exc, _USAGE_ERRORS)
            expected = isinstance(exc, commands.EXPECTED_FAILURES)
            worker = _worker_error(exc)
            if worker is not None:  # judged by the worker's own error, not torch's wrapper
                usage, expected = worker[0] in _WORKER_USAGE, worker[0] in _WORKER_EXPECTED
            if not usage and not expected:
                text = f"{type(exc).__name__}: {text} (--debug shows the traceback)"
            print(f"{prog}: error: {text}", file=sys.stderr)
            return 2 if usage else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
