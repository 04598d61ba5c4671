"""What a command may write: never a path it reads in the same call, never a checkpoint.

Every command that writes files (``predict``, ``export``, ``evaluate``, ``compare``, ``demo``)
passes what it reads and what it is about to write to :func:`check_writes` before it writes
anything; a clash is one line naming both roles of the path.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from pathlib import Path

__all__ = ["check_writes", "is_checkpoint", "same_path"]


def same_path(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` and ``b`` name one file (links and ``..`` resolved; either may not exist)."""
    return Path(a).resolve() == Path(b).resolve()


def is_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is an existing ``torch.save`` archive (a checkpoint of any kind)."""
    path = Path(path)
    if not path.is_file():
        return False
    if path.suffix.lower() in (".pt", ".pth", ".ckpt"):
        return True
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("data.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def check_writes(
    writes: Iterable[tuple[str | Path, str]], reads: Iterable[tuple[str | Path, str]]
) -> None:
    """Refuse to write a path that is read in the same call, or any existing checkpoint.

    Args:
        writes: ``(path, role)`` of every file about to be written, e.g.
            ``("out/a_mask.png", "the mask of in/a.png")``.
        reads: ``(path, role)`` of every file read, e.g. ``("run/best.pt", "the checkpoint")``.

    Raises:
        ValueError: the first clash, naming the path and both its roles; nothing is written.
    """
    read = {Path(p).resolve(): (Path(p), role) for p, role in reads}
    for path, role in writes:
        target = Path(path)
        hit = read.get(target.resolve())
        if hit is not None:
            raise ValueError(
                f"{target} would be both {hit[1]} ({hit[0]}) and {role}: a command never "
                "writes a file it reads; choose another --out (nothing was written)."
            )
        if is_checkpoint(target):
            raise ValueError(
                f"{target} is a checkpoint and would be overwritten as {role}; checkpoints are "
                "never written over by this command; choose another --out (nothing was written)."
            )
