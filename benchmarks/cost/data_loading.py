"""Data loading: slices per second over Task04_Hippocampus, first (uncached) and second (cached)
pass (the disk cache).

A pass builds ``MSDDataset`` (reading and preprocessing every case, or finding it in the cache)
and then reads every item once, as one epoch does. The first pass starts from an empty cache
folder; the second builds a new dataset object on the filled cache, as a second run does. Each
is repeated ``--repeats`` times (the uncached one with a fresh cache folder each time) and the
median is reported. A last, optional figure reads the cached dataset through a ``DataLoader``
with workers.

Usage:
    python benchmarks/cost/data_loading.py
    python benchmarks/cost/data_loading.py --repeats 3 --json /tmp/data_loading.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from torch.utils.data import DataLoader

from benchmarks._common import emit, format_table, machine_info
from dsplug.data import MSDDataset

__all__ = ["default_source", "main", "run_data_loading", "run_pass"]

TARGET_SPEEDUP = 10.0


def default_source() -> Path:
    """``$DSPLUG_DATA/Task04_Hippocampus``, else ``<repo>/../shared/data/Task04_Hippocampus``."""
    env = os.environ.get("DSPLUG_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    return (root / "Task04_Hippocampus").resolve()


def run_pass(source: Path, cache_dir: Path) -> dict[str, float]:
    """Build the dataset and read every item once; seconds of each part and slices/s."""
    start = time.perf_counter()
    ds = MSDDataset(source, cache_dir=cache_dir)
    built = time.perf_counter()
    for i in range(len(ds)):
        ds[i]
    done = time.perf_counter()
    return {
        "slices": len(ds),
        "cases": len(ds.cases),
        "build_s": built - start,
        "read_s": done - built,
        "total_s": done - start,
        "slices_per_s": len(ds) / (done - start),
        "build_slices_per_s": len(ds) / (built - start),
    }


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def _loader_pass(source: Path, cache_dir: Path, workers: int, batch: int) -> dict[str, float]:
    ds = MSDDataset(source, cache_dir=cache_dir)
    loader = DataLoader(ds, batch_size=batch, num_workers=workers, shuffle=True)
    start = time.perf_counter()
    seen = sum(b["image"].shape[0] for b in loader)
    seconds = time.perf_counter() - start
    return {"workers": workers, "batch": batch, "seconds": seconds, "slices_per_s": seen / seconds}


def run_data_loading(
    source: Path, repeats: int, workers: int, batch: int, scratch: Path
) -> dict[str, Any]:
    """Measure both passes ``repeats`` times; return the JSON-ready result."""
    if not (source / "dataset.json").is_file():
        raise FileNotFoundError(
            f"{source}: no Task04_Hippocampus here (set DSPLUG_DATA to the shared data folder)."
        )
    first, second = [], []
    for r in range(repeats):
        cache = scratch / f"cache_{r}"
        first.append(run_pass(source, cache))
        second.append(run_pass(source, cache))
    uncached, cached = _median(first), _median(second)
    result: dict[str, Any] = {
        "benchmark": "data_loading",
        "source": str(source),
        "repeats": repeats,
        "machine": machine_info(torch.device("cpu")),
        "uncached": uncached,
        "cached": cached,
        "speedup": uncached["total_s"] / cached["total_s"],
        "speedup_build": uncached["build_s"] / cached["build_s"],
        "target_speedup": TARGET_SPEEDUP,
        "meets_target": uncached["total_s"] / cached["total_s"] >= TARGET_SPEEDUP,
    }
    if workers > 0:
        result["dataloader"] = _loader_pass(source, scratch / "cache_0", workers, batch)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=default_source(), help="the MSD folder")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions of both passes")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (0: skip)")
    parser.add_argument("--batch", type=int, default=32, help="DataLoader batch size")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    scratch = Path(tempfile.mkdtemp(prefix="dsplug_data_bench_"))
    try:
        result = run_data_loading(args.source, args.repeats, args.workers, args.batch, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rows = [
        [
            name,
            f"{p['build_s']:.3f}",
            f"{p['read_s']:.3f}",
            f"{p['total_s']:.3f}",
            f"{p['slices_per_s']:.0f}",
        ]
        for name, p in (("uncached", result["uncached"]), ("cached", result["cached"]))
    ]
    table = format_table(["pass", "build s", "read s", "total s", "slices/s"], rows)
    print(table, file=sys.stderr)
    print(
        f"speedup {result['speedup']:.1f}x (build only {result['speedup_build']:.1f}x), "
        f"target {TARGET_SPEEDUP:.0f}x",
        file=sys.stderr,
    )
    emit(result, args.json)
    return result


if __name__ == "__main__":
    main()
