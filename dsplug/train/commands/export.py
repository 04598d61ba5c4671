"""``dsplug export``: a checkpoint's bare model as safetensors or ONNX: the options, the file it
writes and the refusals. The write itself is ``dsplug.export``'s, a layer above ``train``:
``dsplug.export.command`` hands it in, and the command line runs that."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from ..paths import check_writes
from ._common import COMPARE_FILES, EVALUATE_FILES, RUN_FILES
from .arguments import debug_option

__all__ = ["add_parser", "export_command"]

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


def export_command(args: argparse.Namespace, export: Callable[[Path, Path, str], Path]) -> int:
    """``dsplug export``: the bare model of a checkpoint as safetensors or ONNX, written by
    ``export(checkpoint, out, format)`` (``dsplug.export.export_checkpoint``; the command line
    runs :func:`dsplug.export.command.export_command`, which passes it)."""
    ckpt = Path(args.checkpoint)
    out = _export_out(args)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it, or --out FILE.")
    print(f"wrote {export(ckpt, out, args.format)}")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``dsplug export`` and its options."""
    p = commands.add_parser(
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
    debug_option(p)
    return p
