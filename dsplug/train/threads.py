"""How many CPU threads a command gives torch: the cores this process may use, less the load
already running on them, so that a run beside others does not oversubscribe the cores (threads
that wait for a busy core stall every parallel op: many times slower, not twice)."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import torch

__all__ = ["default_threads", "set_threads", "usable_cpus"]

_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
_LOADAVG = Path("/proc/loadavg")


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity, capped by a cgroup CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    try:
        quota, period = _CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def _load() -> float:
    """The 1-minute load average, or the tasks running now besides this one where more (a
    job started seconds ago shows there first; Linux's ``/proc/loadavg``)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        load = 0.0
    try:
        running = int(_LOADAVG.read_text().split()[3].split("/")[0]) - 1
    except (OSError, ValueError, IndexError):
        running = 0
    return max(load, float(running))


def default_threads() -> int:
    """Threads per process when none are asked for: ``$OMP_NUM_THREADS`` when set, else the
    usable CPUs less the load already running (rounded; see :func:`_load`), shared by the
    processes of this node (``$LOCAL_WORLD_SIZE`` under torchrun); at least 1.

    Example:
        >>> default_threads() >= 1
        True
    """
    given = os.environ.get("OMP_NUM_THREADS", "")
    if given.isdigit() and int(given) > 0:
        return int(given)
    local = os.environ.get("LOCAL_WORLD_SIZE", "1")
    processes = int(local) if local.isdigit() and int(local) > 0 else 1
    free = usable_cpus() - round(_load())
    return max(1, free // processes)


def set_threads(threads: int | None = None) -> int:
    """Give torch ``threads`` intra-op threads (None: :func:`default_threads`) and one
    inter-op thread; returns the number set.

    Raises:
        ValueError: ``threads`` below 1.
    """
    if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}.")
    count = default_threads() if threads is None else int(threads)
    torch.set_num_threads(count)
    with contextlib.suppress(RuntimeError):  # possible only before any inter-op work
        torch.set_num_interop_threads(1)
    return count
