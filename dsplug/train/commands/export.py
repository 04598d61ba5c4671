"""``dsplug export``: a checkpoint's bare model as safetensors or ONNX."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..paths import check_writes

__all__ = ["export_command"]


def export_command(args: argparse.Namespace) -> int:
    """``dsplug export``: the bare model of a checkpoint as safetensors or ONNX."""
    from ...export import export_checkpoint

    ckpt = Path(args.checkpoint)
    out = Path(args.out) if args.out else ckpt.with_suffix(f".{args.format}")
    check_writes([(out, f"the {args.format} export")], [(ckpt, "the checkpoint")])
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it, or --out FILE.")
    print(f"wrote {export_checkpoint(ckpt, out, args.format)}")
    return 0
