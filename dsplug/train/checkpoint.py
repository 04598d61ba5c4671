"""Checkpoints that survive crashes: atomic writes, integrity-checked, weights-only loads.

A checkpoint is a ``dict`` of tensors and plain Python types only (no pickled objects), so it
loads with ``torch.load(weights_only=True)`` and never runs code from the file. The writer puts
the bytes in a temporary file in the target folder, flushes and fsyncs it, renames it over the
target and fsyncs the folder: a crash at any moment leaves either the old or the new file,
never a mixture. The reader checks every CRC of the zip archive ``torch.save`` writes before
unpickling, so a truncated or bit-flipped file is reported by name instead of loading garbage.
"""

from __future__ import annotations

import os
import pickle
import random
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "capture_rng",
    "load_checkpoint",
    "restore_rng",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "dsplug-checkpoint"
CHECKPOINT_VERSION = 1
_REQUIRED_KEYS = ("format", "version", "epoch", "model_config", "model_state")


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupted, unsafe or not a dsplug checkpoint."""


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened; the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically.

    Args:
        state: tensors and plain types only (dicts, lists, tuples, str, int, float, bool, None).
        path: destination file; its folder is created if needed.

    Returns:
        The destination path.

    Raises:
        OSError: writing failed; ``path`` still holds its previous content, if any.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a dsplug checkpoint safely (integrity check, then ``weights_only=True``).

    Args:
        path: a file written by :func:`save_checkpoint` through the Trainer.

    Returns:
        The checkpoint dict (tensors on the CPU).

    Raises:
        CheckpointError: the file is missing, truncated, corrupted, holds anything but tensors
            and plain types, or is not a dsplug checkpoint; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {str(path)!r} does not exist (expected a .pt file).")
    try:
        with zipfile.ZipFile(path) as archive:
            bad_entry = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} is truncated or corrupted: it is not a complete "
            f"torch.save archive ({exc}). Use another checkpoint of the run (best.pt / last.pt)."
        ) from exc
    if bad_entry is not None:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} is corrupted: entry {bad_entry!r} fails its CRC check. "
            "Use another checkpoint of the run (best.pt / last.pt)."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"Refusing to load checkpoint {str(path)!r}: it holds objects other than tensors "
            "and plain types, whose unpickling could run code. dsplug checkpoints never do; "
            f"do not trust this file. ({str(exc).splitlines()[-1] if str(exc) else exc!r})"
        ) from exc
    except (RuntimeError, EOFError, KeyError, ValueError) as exc:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} is corrupted and cannot be read ({type(exc).__name__}: "
            f"{exc})."
        ) from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is not a dsplug checkpoint (expected a dict with "
            f"format={CHECKPOINT_FORMAT!r}, got {type(state).__name__})."
        )
    missing = [key for key in _REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"Checkpoint {str(path)!r} lacks the keys {missing}.")
    if state["version"] > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} has format version {state['version']}, newer than this "
            f"dsplug reads ({CHECKPOINT_VERSION}); upgrade dsplug."
        )
    return state


def capture_rng() -> dict[str, Any]:
    """The global RNG states of torch (CPU and CUDA), numpy and Python, as tensors and lists."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Restore the RNG states captured by :func:`capture_rng`.

    Raises:
        ValueError: the checkpoint holds CUDA RNG states for a different number of devices.
    """
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
    cuda_states = state["cuda"]
    if cuda_states and torch.cuda.is_available():
        if len(cuda_states) != torch.cuda.device_count():
            raise ValueError(
                f"The checkpoint holds CUDA RNG states for {len(cuda_states)} devices, but "
                f"{torch.cuda.device_count()} are visible; resume with the same devices."
            )
        torch.cuda.set_rng_state_all(cuda_states)
