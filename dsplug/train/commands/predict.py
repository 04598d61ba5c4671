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

__all__ = ["predict_command"]


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
