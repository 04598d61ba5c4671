"""The ``dsplug`` command line: train, evaluate, predict, demo, export, compare.

Run ``dsplug <command> --help`` for every option. Each command declares its options in its own
module (``dsplug.train.commands.*``; export: ``dsplug.export.command``); this module builds the
parser from them, dispatches, and holds the error policy: every failure is one line on stderr,
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
from typing import Any, NoReturn

import torch

from ._version import __version__
from .export import command as export_cmd
from .train import commands
from .train.commands import compare, demo, evaluate, predict
from .train.commands import train as train_cmd

__all__ = ["build_parser", "main"]

#: Exceptions that mean the command was given something it cannot use (exit status 2); any
#: other exception is a failure while running (exit status 1).
_USAGE_ERRORS = (ValueError, TypeError, FileNotFoundError, NotADirectoryError, IsADirectoryError)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``dsplug train: error: ...`` (usage is behind --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


#: The commands in the order ``dsplug --help`` lists them; each module declares its own
#: options (``add_parser``).
_COMMANDS = (train_cmd, evaluate, predict, demo, export_cmd, compare)


def build_parser() -> argparse.ArgumentParser:
    """The ``dsplug`` argument parser (one sub-parser per command, from its own module)."""
    parser = _Parser(
        prog="dsplug",
        description="Deep supervision (μ-Net and friends) for U-Net-style segmentation models.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--version", action="version", version=f"dsplug {__version__} (torch {torch.__version__})"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in _COMMANDS:
        command.add_parser(sub)
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
        "export": export_cmd.export_command,
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
