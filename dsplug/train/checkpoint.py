"""Checkpoints that survive crashes: atomic writes, integrity-checked, weights-only loads.

A checkpoint is a ``dict`` of tensors and plain Python types only (no pickled objects), so it
loads with ``torch.load(weights_only=True)`` and never runs code from the file. The writer puts
the bytes in a temporary file in the target folder, flushes and fsyncs it, renames it over the
target and fsyncs the folder: a crash at any moment leaves either the old or the new file,
never a mixture. The reader checks every CRC of the zip archive ``torch.save`` writes before
unpickling, so a truncated or bit-flipped file is reported by name instead of loading garbage.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import atomic_open

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "capture_rng",
    "load_checkpoint",
    "load_weights",
    "restore_rng",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "dsplug-checkpoint"
CHECKPOINT_VERSION = 1
_REQUIRED_KEYS = ("format", "version", "epoch", "model_config", "model_state")


def _other_checkpoint(path: Path) -> str:
    """What to use instead of a damaged checkpoint (never the damaged file itself)."""
    run = path.parent
    if path.name == "best.pt":
        return (
            f"Use another checkpoint of the run (e.g. {run / 'last.pt'}); a run with an intact "
            f"last.pt continues with `dsplug train ... --out {run} --resume`."
        )
    other = run / "best.pt"
    return (
        f"Use another checkpoint of the run (e.g. {other}); training continues from it in a "
        f"new folder with `dsplug train ... --resume-from {other} --out NEW_FOLDER`."
    )


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupted, unsafe or not a dsplug checkpoint."""


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
    with atomic_open(path, "wb") as f:
        torch.save(state, f)
    return Path(path)


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
            f"torch.save archive ({exc}). {_other_checkpoint(path)}"
        ) from exc
    if bad_entry is not None:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} is corrupted: entry {bad_entry!r} fails its CRC check. "
            f"{_other_checkpoint(path)}"
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
            f"{exc}). {_other_checkpoint(path)}"
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


def load_weights(
    module: torch.nn.Module, state: dict[str, Any], path: str | Path, key: str = "model_state"
) -> None:
    """``module.load_state_dict(state)``, with a one-line error naming the checkpoint.

    Raises:
        CheckpointError: the weights do not fit the module the checkpoint's config describes.
    """
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        details = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
        first = details[0] if details else str(exc)
        if len(first) > 240:
            first = first[:240] + "..."
        raise CheckpointError(
            f"Checkpoint {str(path)!r}: its {key} does not fit the model its config describes "
            f"({first}); the file was edited or assembled from two runs. Use another "
            "checkpoint of the run."
        ) from exc


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
