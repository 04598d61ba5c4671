"""Atomic file writes: a crash or Ctrl-C leaves the old file or the new one, never half a file.

The bytes go to a temporary file in the target's folder (same file system), which is flushed and
fsynced, renamed over the target with ``os.replace`` and made durable by an fsync of the folder.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_open", "atomic_path", "fsync_dir"]


def fsync_dir(folder: str | Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened; the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write by name; on success it replaces ``path`` atomically.

    The temporary name ends with ``path``'s own name, so writers that pick the format from the
    suffix (``.nii.gz``, ``.png``) behave the same. On any error (or Ctrl-C) it is removed and
    ``path`` keeps its previous content.

    Example:
        >>> with atomic_path(tmp / "a.txt") as part:  # doctest: +SKIP
        ...     part.write_text("done")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".", suffix=f".{path.name}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())  # mkstemp's 0600 would outlive the rename
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


@contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """``open(path, mode)`` for writing (``"w"``: UTF-8 text, ``"wb"``: bytes), atomically."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', got {mode!r}.")
    text = {"encoding": "utf-8", "newline": ""} if mode == "w" else {}
    with atomic_path(path) as tmp, open(tmp, mode, **text) as f:
        yield f
        f.flush()
