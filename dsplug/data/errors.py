"""The one error type for bad data: it names the file (or folder) and the problem."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CacheError", "DataError"]


class DataError(ValueError):
    """A data file or folder is missing, unreadable or inconsistent.

    The message reads ``"<path>: <problem>"``; ``path`` and ``problem`` are kept for programs.

    Example:
        >>> str(DataError("labelsTr/a.nii.gz", "file not found"))
        'labelsTr/a.nii.gz: file not found'
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


#: What to do about a cache that cannot be used, for every :class:`CacheError`.
CACHE_FIXES = (
    "use another cache folder (--cache-dir DIR or DSPLUG_CACHE=DIR), or none (--no-cache; "
    "cache=False in Python)"
)


class CacheError(OSError):
    """The slice cache cannot be written or read (read-only, full disk, no permission, or a
    damaged entry); the message names the path, the cause and the fix."""

    def __init__(self, path: str | Path, problem: str, fix: str = CACHE_FIXES) -> None:
        super().__init__(f"slice cache {path}: {problem}; {fix}")
        self.path = str(path)
        self.problem = problem
