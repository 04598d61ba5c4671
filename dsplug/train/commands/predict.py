"""``dsplug predict``: one mask per input case, never two at one path, never over an input."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..paths import check_writes
from ..predict import load_model, mask_paths, predict_file
from ..threads import set_threads
from ._common import PredictFailures
from .arguments import checkpoint_options, debug_option, tta_option

__all__ = ["add_parser", "predict_command"]


def _case_files(text: str) -> list[Path]:
    """One ``predict`` input: a file (its name may hold commas), or one file per channel as
    ``a,b,c``."""
    if Path(text).is_file() or "," not in text:
        return [Path(text)]
    return [Path(p) for p in text.split(",")]


def predict_command(args: argparse.Namespace) -> int:
    """``dsplug predict``: one mask per input case, never two at one path, never over an input.

    A case that cannot be read or segmented is named on stderr and skipped; the others are
    written, and the exit status is 1 at the end.
    """
    cases = [_case_files(case) for case in args.inputs]
    missing = [str(p) for files in cases for p in files if not p.is_file()]
    if missing:
        raise ValueError(f"input file(s) not found: {missing}.")
    targets = mask_paths([files[0] for files in cases], args.out)
    reads = [(args.checkpoint, "the checkpoint")]
    reads += [(p, "an input") for files in cases for p in files]
    if args.roi:
        reads.append((args.roi, "the --roi mask"))
    check_writes([(t, f"the mask of {files[0]}") for files, t in zip(cases, targets)], reads)
    existing = [str(t) for t in targets if t.exists()]
    if existing and not args.overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise ValueError(
            f"{existing[0]} exists already{more}; replace it with --overwrite, or choose "
            "another --out."
        )
    threads = set_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    print(f"dsplug predict: device {device}, {threads} CPU thread(s)")
    model, ckpt = load_model(args.checkpoint, device)
    failed = []
    for files, target in zip(cases, targets):
        try:
            predict_file(
                model,
                ckpt,
                files,
                args.out,
                roi=args.roi,
                batch_size=args.batch_size,
                target=target,
                tta=args.tta,
            )
        except (ValueError, OSError) as exc:
            text = " ".join(str(exc).split())
            if str(files[0]) not in text:
                text = f"{files[0]}: {text}"
            print(f"dsplug predict: skipped {text}", file=sys.stderr)
            failed.append(str(files[0]))
            continue
        print(f"{files[0]} -> {target}")
    if failed:
        raise PredictFailures(
            f"{len(failed)} of {len(cases)} input(s) skipped ({', '.join(failed[:3])}"
            f"{', ...' if len(failed) > 3 else ''}); the other masks are written."
        )
    return 0


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``dsplug predict`` and its options."""
    p = commands.add_parser(
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
    checkpoint_options(p, "runs/predict", "runs/predict")
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
    tta_option(g)
    debug_option(p)
    return p
