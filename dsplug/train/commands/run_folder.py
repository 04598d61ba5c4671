"""``dsplug train``'s run folder: where a run goes, refusing one that holds a run, clearing it
with --overwrite, and the line that continues an interrupted run."""

from __future__ import annotations

import argparse
import shlex
import shutil
import time
from pathlib import Path

from ..loop import TrainingInterrupted
from ._common import RUN_FILES, _holds_run

__all__ = ["add_options", "resume_hint"]


def _new_folder(mode: str) -> Path:
    """A fresh ``runs/<mode>-<date>-<time>`` (suffix -2, -3, ... when taken), created now so
    that two runs started in the same second never share it."""
    stem = Path("runs") / f"{mode}-{time.strftime('%Y%m%d-%H%M%S')}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        folder = stem if n == 1 else stem.with_name(f"{stem.name}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise FileExistsError(f"{stem}-*: no free run folder name left; give --out.")


def _clear_run(folder: Path) -> None:
    for name in RUN_FILES:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _out_path(args: argparse.Namespace) -> Path:
    """Where ``dsplug train`` runs (a new default folder is created now); nothing is changed.

    Raises:
        ValueError: ``--out`` is a file, ``--resume`` comes without ``--out``, or
            ``--resume-from`` would continue a checkpoint inside its own run folder.
    """
    if args.out is None:
        if args.resume:
            raise ValueError(
                "--resume continues the run in --out: give --out RUN_FOLDER (or --resume-from "
                "CKPT --out NEW_FOLDER to fork a run)."
            )
        out = Path(args.resume_from).parent if args.resume_from else _new_folder(args.mode)
    else:
        out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: a file, not a folder.")
    if args.resume_from:
        source = Path(args.resume_from)
        if source.resolve().parent == out.resolve() and source.name != "last.pt":
            raise ValueError(
                f"--resume-from {source} continues in its own run folder {out}, which would "
                "discard the later epochs (last.pt, log rows); fork it into another folder "
                f"with --out NEW_FOLDER, or continue the run itself with --out {out} --resume."
            )
    return out


def _run_folder(args: argparse.Namespace, out: Path) -> Path:
    """Check (and with ``--overwrite`` clear) the run folder; called while holding its lock.

    Raises:
        ValueError: ``out`` holds a run and neither ``--resume``, ``--resume-from`` nor
            ``--overwrite`` is given.
    """
    if args.resume:
        return out
    if args.resume_from and Path(args.resume_from).resolve().parent == out.resolve():
        return out  # RUN/last.pt into RUN: the run itself continues
    held = _holds_run(out)
    if held and not args.overwrite:
        shown = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
        raise ValueError(
            f"--out {out} already holds a run ({shown}); continue it with --resume, replace "
            "it with --overwrite, or choose another --out."
        )
    if args.overwrite:
        _clear_run(out)
    return out


def resume_hint(args: argparse.Namespace, exc: KeyboardInterrupt) -> str:
    """The one line ``dsplug train`` prints on Ctrl-C: what is kept, the command to continue."""
    out = Path(getattr(args, "run_folder", None) or args.out or "")
    if isinstance(exc, TrainingInterrupted):
        checkpoint = exc.checkpoint
    else:  # interrupted outside the training loop, or a second Ctrl-C
        checkpoint = out / "last.pt" if (out / "last.pt").is_file() else None
        if checkpoint is None and args.resume_from:
            checkpoint = Path(args.resume_from)
    if checkpoint is None:
        return "interrupted before the first epoch ended: nothing to keep; run the command again"
    kept = [a for a in _strip_options(args.argv)]
    if Path(checkpoint) == out / "last.pt":
        kept += ["--out", str(out), "--resume"]
    else:
        kept += ["--out", str(out), "--resume-from", str(checkpoint)]
    epoch = f" (epoch {exc.epoch})" if isinstance(exc, TrainingInterrupted) else ""
    return (
        f"interrupted; {checkpoint}{epoch} is kept. Continue with: {shlex.join(['dsplug', *kept])}"
    )


def _strip_options(argv: list[str]) -> list[str]:
    """``argv`` without --out / --resume / --resume-from / --overwrite (and their values)."""
    with_value, flags = ("--out", "--resume-from"), ("--resume", "--overwrite")
    kept: list[str] = []
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif token in with_value:
            skip = True
        elif token in flags or token.startswith(tuple(f"{o}=" for o in with_value)):
            continue
        else:
            kept.append(token)
    return kept


def add_options(p: argparse.ArgumentParser) -> None:
    """``dsplug train``'s run folder: ``--out`` and one of ``--resume``, ``--resume-from``,
    ``--overwrite`` (read here)."""
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
