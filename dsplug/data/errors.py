"""The one error type for bad data: it names the file (or folder) and the problem."""

from __future__ import annotations

from pathlib import Path

__all__ = ["DataError"]


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
