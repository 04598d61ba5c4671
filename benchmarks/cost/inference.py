"""Eval-mode latency and outputs of ``DeepSupervised(model, mode)`` against the bare model (§8).

For every mode, ``ds = DeepSupervised(copy_of_model, mode).eval()`` and ``ds(x)`` is timed
against ``model(x)`` on a copy that was never wrapped (so hooks the wrapper leaves on its copy
count against it). Both run under ``torch.inference_mode()``, back to back, the order
alternating each round and the modes interleaved round-robin; the time ratio of a mode is the
median over rounds of ds time / bare time. Outputs must be identical (``torch.equal``).

Usage:
    python benchmarks/cost/inference.py
    python benchmarks/cost/inference.py --quick --json /tmp/inference.json
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from torch import nn
from tqdm.auto import tqdm

from benchmarks._common import (
    Settings,
    add_settings_args,
    apply_threads,
    build_model,
    emit,
    format_table,
    machine_info,
    make_batch,
    median,
    resolve_device,
    settings_from_args,
    time_once,
)
from dsplug import MODES, DeepSupervised

__all__ = ["DEFAULT", "QUICK", "TIME_LIMIT", "main", "run_inference"]

DEFAULT = Settings(
    model="unet",
    base=16,
    depth=5,
    batch=8,
    size=96,
    repeats=30,
    warmup=3,
    modes=tuple(MODES),
    device="cpu",
    # One thread: the ratios stay stable when other jobs share the cores (OpenMP threads that
    # wait for a busy core stall every op); --threads 0 keeps torch's default.
    threads=1,
)
QUICK = Settings(
    model="unet",
    base=8,
    depth=5,
    batch=2,
    size=64,
    repeats=5,
    warmup=1,
    modes=tuple(MODES),
    device="cpu",
    threads=1,
)
#: The issue's target: ds(x) in eval costs what model(x) costs, within 5 %.
TIME_LIMIT = 1.05


def _inference(module: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    def call() -> torch.Tensor:
        with torch.inference_mode():
            return module(x)

    return call


def _count_forward_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def _paired_times(
    bare: nn.Module,
    wrapped: Mapping[str, DeepSupervised],
    x: torch.Tensor,
    settings: Settings,
    device: torch.device,
) -> dict[str, list[tuple[float, float]]]:
    """(bare, ds) wall seconds per round and mode, each pair timed back to back.

    Modes go round-robin in an order rotated each round; within a pair, bare runs first in even
    rounds and second in odd ones. Warm-up rounds are not recorded.
    """
    modes = list(wrapped)
    pairs: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
    rounds = settings.warmup + settings.repeats
    for r in tqdm(range(rounds), desc="inference", unit="round", file=sys.stderr):
        shift = r % len(modes)
        for mode in modes[shift:] + modes[:shift]:
            calls = [_inference(bare, x), _inference(wrapped[mode], x)]
            if r % 2:
                ds_time, bare_time = (time_once(c, device)[0] for c in calls[::-1])
            else:
                bare_time, ds_time = (time_once(c, device)[0] for c in calls)
            if r >= settings.warmup:
                pairs[mode].append((bare_time, ds_time))
    return pairs


def run_inference(settings: Settings) -> dict[str, Any]:
    """Time ``ds(x)`` against the bare model for every mode and compare their outputs.

    Returns:
        ``{"ratios": {mode: {"time"}}, "outputs_identical": {mode: bool}, "absolute": {...},
        "targets": {...}, "config": {...}}``.
    """
    device = resolve_device(settings.device)
    apply_threads(settings)
    bare = build_model(settings).to(device).eval()
    x, _ = make_batch(settings, device)
    wrapped = {}
    for mode in settings.modes:
        torch.manual_seed(settings.seed)
        wrapped[mode] = DeepSupervised(copy.deepcopy(bare), mode).to(device).eval()
    reference = _inference(bare, x)()
    identical = {
        mode: bool(torch.equal(_inference(ds, x)(), reference)) for mode, ds in wrapped.items()
    }
    pairs = _paired_times(bare, wrapped, x, settings, device)
    ratios = {mode: {"time": round(median(d / b for b, d in p), 4)} for mode, p in pairs.items()}
    absolute = {
        mode: {
            "bare_median_s": median(b for b, _ in p),
            "ds_median_s": median(d for _, d in p),
            "bare_times_s": [b for b, _ in p],
            "ds_times_s": [d for _, d in p],
            # Hooks the wrapper left on its model (they fire on every call, even in eval).
            "forward_hooks": _count_forward_hooks(wrapped[mode].model),
        }
        for mode, p in pairs.items()
    }
    targets = {
        f"{mode} time": {
            "value": r["time"],
            "limit": TIME_LIMIT,
            "met": r["time"] <= TIME_LIMIT,
        }
        for mode, r in ratios.items()
    }
    config = {
        **settings.as_dict(),
        "machine": machine_info(device),
        "in_channels": 1,
        "classes": 1,
        "norm": "batch",
        "call": "ds.eval(); ds(x) under torch.inference_mode(), against model(x) on an "
        "unwrapped copy with the same weights",
        "timing": "modes interleaved round-robin (order rotated each round), bare and ds "
        "back to back (order alternating each round), warm-up rounds discarded; time ratio = "
        "median over rounds of ds / bare (wall-clock)",
        "identity": "torch.equal(ds(x), model(x))",
    }
    return {
        "ratios": ratios,
        "outputs_identical": identical,
        "absolute": absolute,
        "targets": targets,
        "config": config,
    }


def report(result: Mapping[str, Any]) -> str:
    """A readable table of ``result``."""
    rows = [
        [
            mode,
            f"{1e3 * a['bare_median_s']:.2f}",
            f"{1e3 * a['ds_median_s']:.2f}",
            f"{result['ratios'][mode]['time']:.3f}",
            "yes" if result["outputs_identical"][mode] else "NO",
            "ok" if result["targets"][f"{mode} time"]["met"] else "MISSED",
            a["forward_hooks"],
        ]
        for mode, a in result["absolute"].items()
    ]
    return format_table(
        ["mode", "bare ms", "ds ms", "x time", "identical", f"<= {TIME_LIMIT}", "hooks"], rows
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_settings_args(parser)
    args = parser.parse_args(argv)
    try:
        settings, json_path = settings_from_args(args, DEFAULT, QUICK)
        resolve_device(settings.device)
    except ValueError as e:
        parser.error(str(e))
    result = run_inference(settings)
    print(report(result), file=sys.stderr)
    emit(result, json_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
