"""Per-epoch records: a CSV log (rewritten whole from the run's history) and TensorBoard."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .atomic import atomic_open

__all__ = ["RunLog", "write_csv", "write_json", "write_text_atomic"]


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (never half a file)."""
    with atomic_open(path, "w") as f:
        f.write(text)
    return Path(path)


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``rows`` as CSV; the columns are the union of their keys, in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (NaN/Inf written as null)."""
    return write_text_atomic(path, json.dumps(_json_safe(obj), indent=2, sort_keys=False) + "\n")


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


class RunLog:
    """The CSV log of a run (``log.csv``) plus TensorBoard scalars when it is installed.

    The CSV is rewritten from the whole history each epoch, so after a resume it holds exactly
    the epochs the checkpoint knows. TensorBoard is optional (``pip install dsplug[tensorboard]``);
    when it is asked for but absent, one line on stderr says so (once per process) and the run
    logs to CSV only (:attr:`tensorboard_enabled` is False).

    Args:
        folder: the run folder.
        tensorboard: write TensorBoard events to ``folder/tb`` when the package is installed.
        first_epoch: the first epoch this process logs (events from a killed run at or after it
            are purged on resume).
    """

    _absence_told = False  # the missing-TensorBoard line is printed once per process

    def __init__(self, folder: str | Path, tensorboard: bool = True, first_epoch: int = 1) -> None:
        self.folder = Path(folder)
        self.csv_path = self.folder / "log.csv"
        self._writer: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # optional dependency
                self._tell_absent()
            else:
                self._writer = SummaryWriter(str(self.folder / "tb"), purge_step=first_epoch)

    @classmethod
    def _tell_absent(cls) -> None:
        if not cls._absence_told:
            cls._absence_told = True
            print(
                "dsplug: TensorBoard is not installed, so this run logs to log.csv only "
                "(pip install 'dsplug[tensorboard]' adds tb/ events; --no-tensorboard hides "
                "this line).",
                file=sys.stderr,
            )

    @property
    def tensorboard_enabled(self) -> bool:
        """Whether TensorBoard events are written."""
        return self._writer is not None

    def log(self, history: Sequence[Mapping[str, Any]]) -> None:
        """Rewrite the CSV from ``history`` and send its last row to TensorBoard."""
        write_csv(self.csv_path, history)
        if self._writer is not None and history:
            row = history[-1]
            for key, value in row.items():
                if key != "epoch" and isinstance(value, int | float):
                    self._writer.add_scalar(key, value, int(row["epoch"]))
            self._writer.flush()

    def close(self) -> None:
        """Close the TensorBoard writer."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
