"""Shared helpers of the benchmarks: settings and flags, model and batch, timing, memory, output.

Each benchmark is a script (``python benchmarks/<name>.py``) that prints a table to stderr and
its JSON result to stdout (and to ``--json PATH``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary
from tqdm.auto import tqdm

import dsplug
from dsplug import MODES, UNet, UNetPlusPlus
from dsplug._checks import non_negative_int, positive_int

__all__ = [
    "MODELS",
    "LiveTensorBytes",
    "Settings",
    "Timings",
    "add_settings_args",
    "apply_threads",
    "build_model",
    "emit",
    "format_table",
    "interleaved",
    "machine_info",
    "make_batch",
    "median",
    "quartiles",
    "resolve_device",
    "settings_from_args",
    "storage_bytes",
    "synchronize",
    "time_once",
]

MODELS: dict[str, type[nn.Module]] = {"unet": UNet, "unetpp": UNetPlusPlus}


@dataclass(frozen=True)
class Settings:
    """What one benchmark run measures: the model, the batch, the repeats, the modes.

    Attributes:
        model: ``unet`` or ``unetpp`` (dsplug's own networks).
        base: channels of level 0.
        depth: number of levels (inputs must be divisible by 2^(depth-1)).
        batch: images per batch.
        size: height and width of the square 2D input.
        repeats: timed repetitions per mode (the median is reported).
        warmup: untimed repetitions per mode before them.
        modes: the modes measured, ``none`` (the reference) first.
        device: ``cpu`` or ``cuda``.
        threads: intra-op CPU threads (``torch.set_num_threads``); 0 keeps torch's default.
        seed: seeds the model's initial weights and the batch.
    """

    model: str
    base: int
    depth: int
    batch: int
    size: int
    repeats: int
    warmup: int
    modes: tuple[str, ...]
    device: str
    threads: int = 0
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Plain-typed fields (for the JSON config)."""
        d = asdict(self)
        d["modes"] = list(self.modes)
        return d


def _modes(text: str) -> tuple[str, ...]:
    names = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in names if m not in MODES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown mode(s) {unknown or [text]}; expected a comma-separated subset of "
            f"{list(MODES)}"
        )
    return names


def add_settings_args(parser: argparse.ArgumentParser) -> None:
    """Add the flags every benchmark shares (each defaults to the script's preset)."""
    parser.add_argument("--quick", action="store_true", help="small sizes, a run under a minute")
    parser.add_argument("--model", choices=sorted(MODELS), help="dsplug's own network")
    parser.add_argument("--base", type=positive_int, help="channels of level 0")
    parser.add_argument("--depth", type=positive_int, help="number of levels")
    parser.add_argument("--batch", type=positive_int, help="images per batch")
    parser.add_argument("--size", type=positive_int, help="input height and width")
    parser.add_argument("--repeats", type=positive_int, help="timed repetitions per mode")
    parser.add_argument("--warmup", type=non_negative_int, help="untimed repetitions per mode")
    parser.add_argument(
        "--modes",
        type=_modes,
        help=f"comma-separated modes (default: all of {','.join(MODES)}); "
        "'none' is always measured, as the reference",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), help="where to run")
    parser.add_argument(
        "--threads", type=non_negative_int, help="CPU threads (default 0: torch's default)"
    )
    parser.add_argument("--seed", type=int, help="seed of the weights and the batch")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the JSON here")


def settings_from_args(
    args: argparse.Namespace, default: Settings, quick: Settings
) -> tuple[Settings, Path | None]:
    """Flags given explicitly win over the preset (``quick`` with ``--quick``, else ``default``).

    ``none`` is put first in the modes (every ratio is relative to it).
    """
    preset = quick if args.quick else default
    values = {f.name: getattr(args, f.name, None) for f in fields(Settings)}
    chosen = {k: (getattr(preset, k) if v is None else v) for k, v in values.items()}
    chosen["modes"] = ("none", *(m for m in chosen["modes"] if m != "none"))
    settings = Settings(**chosen)
    divisor = 2 ** (settings.depth - 1)
    if settings.depth < 2 or settings.size % divisor:
        raise ValueError(
            f"--size {settings.size} with --depth {settings.depth}: the depth must be >= 2 and "
            f"the size a multiple of 2^(depth-1) = {divisor}."
        )
    return settings, args.json


def apply_threads(settings: Settings) -> None:
    """Set torch's intra-op thread count if ``settings.threads`` asks for one."""
    if settings.threads:
        torch.set_num_threads(settings.threads)


def resolve_device(name: str) -> torch.device:
    """``cpu`` or ``cuda``; asking for CUDA on a machine without it raises."""
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {name!r}.")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but torch.cuda.is_available() is False.")
    return torch.device(name)


def build_model(settings: Settings) -> nn.Module:
    """The benchmarked network: 1 input channel, 1 class (binary labels), seeded weights."""
    torch.manual_seed(settings.seed)
    return MODELS[settings.model](
        in_channels=1, classes=1, base_channels=settings.base, depth=settings.depth
    )


def make_batch(settings: Settings, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A z-scored-looking image batch and binary labels (blobs: a thresholded smooth field)."""
    gen = torch.Generator().manual_seed(settings.seed)
    shape = (settings.batch, 1, settings.size, settings.size)
    x = torch.randn(shape, generator=gen)
    field = torch.nn.functional.avg_pool2d(torch.randn(shape, generator=gen), 9, 1, 4)
    y = (field > field.std()).float()
    return x.to(device), y.to(device)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median(values: Iterable[float]) -> float:
    """The median of a non-empty collection."""
    return float(statistics.median(list(values)))


def quartiles(values: Iterable[float]) -> dict[str, float]:
    """First quartile, median and third quartile (the median thrice for a single value)."""
    data = sorted(values)
    if len(data) == 1:
        return dict.fromkeys(("q1", "median", "q3"), float(data[0]))
    q1, q2, q3 = statistics.quantiles(data, n=4, method="inclusive")
    return {"q1": q1, "median": q2, "q3": q3}


def time_once(call: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one ``call()`` (GPU work synchronised)."""
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


@dataclass
class Timings:
    """Seconds per call of each entry: wall-clock and CPU time of this process."""

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]


def interleaved(
    calls: Mapping[str, Callable[[], object]],
    repeats: int,
    warmup: int,
    device: torch.device,
    desc: str,
) -> Timings:
    """Time each entry round-robin, so that machine noise hits all alike.

    Each round calls every entry once, in an order rotated by one each round (so no entry always
    follows the same one); the first ``warmup`` rounds are not recorded.

    Returns:
        ``repeats`` wall-clock and CPU timings per entry, in seconds.
    """
    names = list(calls)
    timings = Timings({n: [] for n in names}, {n: [] for n in names})
    for r in tqdm(range(warmup + repeats), desc=desc, unit="round", file=sys.stderr):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            wall, cpu = time_once(calls[name], device)
            if r >= warmup:
                timings.wall[name].append(wall)
                timings.cpu[name].append(cpu)
    return timings


def storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors`` (views and ties counted once)."""
    seen: dict[int, int] = {}
    for t in tensors:
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


class LiveTensorBytes(TorchDispatchMode):
    """Tracks the bytes of live tensor storages and their peak, op by op.

    Every storage an operator returns is counted until it is freed (a weak reference on the
    storage, which PyTorch keeps alive exactly as long as the storage itself). Storages passed
    to :meth:`track` (parameters, optimiser state, the batch) count from the start. Memory that
    kernels allocate internally and free before returning is not seen.

    Example:
        >>> with LiveTensorBytes() as mem:
        ...     y = torch.ones(1024).exp()
        >>> mem.peak >= 4096
        True
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen: WeakIdKeyDictionary = WeakIdKeyDictionary()

    def _free(self, nbytes: int) -> None:
        self.live -= nbytes

    def track(self, tensors: Iterable[object]) -> None:
        """Count the storages of ``tensors`` (non-tensors are ignored) from now on."""
        for t in tensors:
            if not isinstance(t, torch.Tensor) or t.layout != torch.strided:
                continue
            st = t.untyped_storage()
            if st in self._seen:
                continue
            nbytes = st.nbytes()
            self._seen[st] = nbytes
            self.live += nbytes
            weakref.finalize(st, self._free, nbytes)
        self.peak = max(self.peak, self.live)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.track(tree_flatten(out)[0])
        return out


def machine_info(device: torch.device) -> dict[str, Any]:
    """The machine a result was measured on."""
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "dsplug": dsplug.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "device": device.type,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table, first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))
        )

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def emit(result: Mapping[str, Any], path: Path | None) -> None:
    """Print ``result`` as JSON to stdout and, if ``path`` is given, write it there too."""
    text = json.dumps(result, indent=2, sort_keys=False)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    sys.stdout.write(text + "\n")
