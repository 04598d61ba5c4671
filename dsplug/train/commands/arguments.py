"""The option groups that several commands share (device and threads, a checkpoint to read,
the slice cache, the surface-Dice tolerance, test-time augmentation, --debug) and the
argparse types they use. Each command declares its own options in its module, with these."""

from __future__ import annotations

import argparse
from enum import StrEnum

import torch

from ..._checks import positive_int

__all__ = [
    "cache_options",
    "checkpoint_options",
    "debug_option",
    "device",
    "device_options",
    "non_negative_float",
    "nsd_option",
    "tta_option",
    "values",
]

#: What a command's options are added to: a parser or one of its argument groups.
Options = argparse.ArgumentParser | argparse._ArgumentGroup


def values(option: type[StrEnum]) -> list[str]:
    """An option's names as argparse choices (plain strings read well in its messages)."""
    return [member.value for member in option]


def _devices_here() -> list[str]:
    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    if torch.backends.mps.is_available():
        names.append("mps")
    return names


def device(text: str) -> str:
    """An argparse ``type``: a device that exists on this machine (checked before anything
    runs)."""
    here = _devices_here()
    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError):
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a device dsplug runs on; this machine has {', '.join(here)}"
        )
    if text not in here and str(parsed) not in here:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not present on this machine, which has {', '.join(here)}"
        )
    return text


def non_negative_float(text: str) -> float:
    """An argparse ``type``: a finite number >= 0, else a one-line usage error."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}") from None
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def device_options(p: Options) -> None:
    """``--device`` and ``--threads``."""
    p.add_argument(
        "--device",
        type=device,
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


def nsd_option(p: Options) -> None:
    """``--nsd-tolerance``."""
    p.add_argument(
        "--nsd-tolerance",
        type=non_negative_float,
        default=None,
        metavar="MM",
        help="tolerance of the normalised surface Dice in mm, from the image spacing (default: "
        "1.0 for train; evaluate: the run's own). HD95 and NSD follow MONAI: both masks of a "
        "class empty: nan (skipped in means); one empty: HD95 nan (skipped) and NSD 0; "
        "summary.json counts the nan values (hd95_nan, nsd_nan)",
    )


def tta_option(p: Options) -> None:
    """``--tta``."""
    p.add_argument(
        "--tta",
        action="store_true",
        help="mirror test-time augmentation: the mean logits over all axis flips (2^k forward "
        "passes per window, k = 2 in 2D, 3 in 3D)",
    )


def debug_option(p: Options) -> None:
    """``--debug``: every command has it (the CLI reads it to show a traceback)."""
    p.add_argument(
        "--debug", action="store_true", help="show the traceback of an error (or DSPLUG_DEBUG=1)"
    )


def checkpoint_options(p: Options, out: str | None, default: str) -> None:
    """A checkpoint to read, ``--batch-size``, the device options and ``--out`` (``out`` its
    default, ``default`` how the help names it)."""
    p.add_argument("checkpoint", help="a best.pt or last.pt of a run")
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=16,
        help="slices, or sliding windows of a patch model, per forward pass (default: 16)",
    )
    device_options(p)
    p.add_argument("--out", default=out, help=f"output folder (default: {default})")


def cache_options(p: Options) -> None:
    """``--cache-dir`` and ``--no-cache`` (file data's slice cache)."""
    p.add_argument(
        "--cache-dir",
        default=None,
        help="file data: preprocessed-slice cache (default: $DSPLUG_CACHE or ./.dsplug_cache)",
    )
    p.add_argument("--no-cache", action="store_true", help="file data: keep slices in memory only")
