"""``dsplug export``: a checkpoint's bare model as safetensors or ONNX."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..paths import check_writes
from ._common import COMPARE_FILES, EVALUATE_FILES, RUN_FILES

__all__ = ["export_command"]

#: The names of what train, evaluate and compare write: an export never takes one.
_OTHERS_FILES = frozenset(RUN_FILES) | frozenset(EVALUATE_FILES) | frozenset(COMPARE_FILES)


def _export_out(args: argparse.Namespace) -> Path:
    """``--out`` (a folder: the default file name inside it), or beside the checkpoint.

    Raises:
        ValueError: ``--out`` is a checkpoint, or a file that a run or a report writes (its
            folder's ``splits.json``, ``summary.json``, ``log.csv``, ...).
    """
    ckpt = Path(args.checkpoint)
    name = f"{ckpt.stem}.{args.format}"
    out = Path(args.out) if args.out else ckpt.with_name(name)
    if out.is_dir():  # as cp does: the file goes inside the folder
        out = out / name
    check_writes([(out, f"the {args.format} export")], [(ckpt, "the checkpoint")])
    if out.name in _OTHERS_FILES:
        raise ValueError(
            f"--out {out}: {out.name} is a file that dsplug train / evaluate / compare write; "
            f"export never replaces one; give another file name, e.g. {out.with_name(name)}."
        )
    return out


def export_command(args: argparse.Namespace) -> int:
    """``dsplug export``: the bare model of a checkpoint as safetensors or ONNX."""
    from ...export import export_checkpoint

    ckpt = Path(args.checkpoint)
    out = _export_out(args)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it, or --out FILE.")
    print(f"wrote {export_checkpoint(ckpt, out, args.format)}")
    return 0
