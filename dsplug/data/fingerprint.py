"""What a dataset read: a cheap print of each source file (size and a CRC of its head), and the
check that tells a user how the files changed since a checkpoint recorded them."""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import DataError

__all__ = ["fingerprint_changes"]

_PRINT_BYTES = 1 << 16


def _file_print(path: str) -> list[int]:
    """``[size, crc32 of the first 64 KiB]`` of a file (a cheap content check)."""
    try:
        size = os.stat(path).st_size
        with open(path, "rb") as f:
            head = f.read(_PRINT_BYTES)
    except OSError as exc:
        raise DataError(path, f"cannot read ({exc.strerror or exc})") from exc
    return [int(size), zlib.crc32(head)]


def fingerprint_changes(root: str | Path, stored: Mapping[str, Sequence[int]]) -> list[str]:
    """How the files under ``root`` differ from a :meth:`SliceDataset.fingerprint`.

    Returns:
        One phrase per kind of change, e.g. ``"2 of 6 files are missing (labelsTr/a.nii.gz,
        ...)"``; empty when every file is as recorded.
    """
    missing, other = [], []
    for name, recorded in stored.items():
        path = Path(name) if os.path.isabs(name) else Path(root) / name
        if not path.is_file():
            missing.append(name)
        elif _file_print(str(path)) != list(recorded):
            other.append(name)
    changes = []
    for what, names in (("are missing", missing), ("have other contents", other)):
        if names:
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            changes.append(f"{len(names)} of {len(stored)} files {what} ({shown})")
    return changes
