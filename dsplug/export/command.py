"""``dsplug export`` as the command line runs it: the command of ``dsplug.train.commands``
(its options, the file it writes, the refusals) with this package's writer handed in, so the
command needs no import from the layer above ``train``."""

from __future__ import annotations

import argparse

from ..train.commands.export import add_parser as add_parser
from ..train.commands.export import export_command as _checked_export
from . import export_checkpoint

__all__ = ["add_parser", "export_command"]


def export_command(args: argparse.Namespace) -> int:
    """``dsplug export``: the bare model of a checkpoint as safetensors or ONNX."""
    return _checked_export(args, export_checkpoint)
