"""Training-step time, peak memory and FLOPs of every mode, as ratios to ``none`` (published).

One step is ``ds(x, y)``, ``ds.loss``, backward and an Adam step. Every mode wraps its own
copy of one seeded model and sees the same batch. Step times are measured interleaved in one
process (round-robin over the modes, warm-up rounds first, the median per mode). Peak memory is
the peak of live tensor bytes during one step, parameters, gradients, Adam state and the batch
included (tracked op by op with a TorchDispatchMode on the CPU; torch.cuda.max_memory_allocated
on CUDA). FLOPs are counted with torch.utils.flop_counter.FlopCounterMode over the forward and
backward of one step.

Usage:
    python benchmarks/cost/step_time.py                 # defaults sized for a 2-core CPU
    python benchmarks/cost/step_time.py --quick --json /tmp/step_time.json
    python benchmarks/cost/step_time.py --device cuda --base 64 --size 256 --batch 16
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch

from benchmarks._common import (
    Settings,
    add_settings_args,
    apply_threads,
    emit,
    format_table,
    interleaved,
    machine_info,
    median,
    quartiles,
    resolve_device,
    settings_from_args,
    time_once,
)
from benchmarks.cost.step_cases import (
    AUX_VARIANTS,
    DESIGNS,
    LR,
    ModeCase,
    balance_due,
    build_cases,
    measure_flops,
    measure_memory,
    ratio,
)
from benchmarks.cost.step_unlabeled import UNLABELED_ROWS, unlabeled_ratios
from dsplug import MODES

# The cases (now in .step_cases) and the unlabelled rows (now in .step_unlabeled) stay
# importable from here, where they were first defined.
__all__ = [
    "AUX_VARIANTS",
    "DEFAULT",
    "DESIGNS",
    "LR",
    "QUICK",
    "TARGETS",
    "UNLABELED_ROWS",
    "ModeCase",
    "build_cases",
    "check_targets",
    "main",
    "measure_flops",
    "measure_memory",
    "run_step_time",
    "unlabeled_ratios",
]

DEFAULT = Settings(
    model="unet",
    base=16,
    depth=5,
    batch=8,
    size=96,
    repeats=15,
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
    repeats=3,
    warmup=1,
    modes=tuple(MODES),
    device="cpu",
    threads=1,
)
#: Modes whose extra cost is convolutions (a mask pass or a reconstruction decoder): their time
#: ratio should follow their FLOP ratio.
CONV_DOMINATED = tuple(m for m, spec in MODES.items() if spec.mask_pass or spec.reconstruction)
#: The targets of GitHub issue 6: (mode, what, limit); "time/flops" is the time ratio over the
#: FLOP ratio.
TARGETS: tuple[tuple[str, str, float], ...] = (
    *((m, "time/flops", 1.05) for m in CONV_DOMINATED),
    ("hyb", "time", 2.8),
    ("hyb", "memory", 2.4),
    ("up", "time", 1.15),
    ("down", "time", 1.15),
    # issue 19: a hyb whose auxiliary branches run on half the batch (aux_fraction=0.5)
    ("hyb-aux50", "time", 1.8),
    ("hyb-aux50", "memory", 1.8),
)


def check_targets(ratios: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, Any]]:
    """The issue's targets for the modes measured: value, limit and whether it is met."""
    results = {}
    for mode, what, limit in TARGETS:
        if mode not in ratios:
            continue
        r = ratios[mode]
        value = r["time"] / r["flops"] if what == "time/flops" else r[what]
        results[f"{mode} {what}"] = {
            "value": round(value, 3),
            "limit": limit,
            "met": value <= limit,
        }
    return results


def _balance_cost(case: ModeCase, median_s: float, device: torch.device) -> dict[str, float]:
    """The step that measures the balance (median of 3) and the step time amortised over the
    balance's period (one measuring step every ``every``; the first 100 steps measure 8
    times)."""
    balancer = getattr(case.ds.criterion, "balancer", None)
    if balancer is None:
        return {"time_amortised_s": median_s}
    times = []
    for _ in range(3):
        balance_due(case, True)
        times.append(time_once(case.step, device)[0] / case.steps)
    measuring = median(times)
    every = balancer.every
    return {
        "balance_step_s": measuring,
        "balance_every": every,
        "time_amortised_s": ((every - 1) * median_s + measuring) / every,
    }


#: Run lengths (epochs) for the whole-run cost under the default schedule.
RUN_EPOCHS = (12, 50)


def _factor_zero_ratios(
    cases: Mapping[str, ModeCase], settings: Settings, device: torch.device
) -> dict[str, float]:
    """Each mode's step at schedule factor 0 (the last epoch under the default cosine
    schedule, where no auxiliary branch runs) over none's, timed interleaved like the main
    measurement (a third of its rounds)."""
    for case in cases.values():
        case.ds.set_progress(1.0)
    timings = interleaved(
        {m: c.step for m, c in cases.items()},
        max(3, settings.repeats // 3),
        1,
        device,
        desc="factor 0",
    )
    for case in cases.values():
        case.ds.set_progress(0.0)
    reference = median(timings.wall["none"])
    return {m: ratio(median(timings.wall[m]) / c.steps, reference) for m, c in cases.items()}


def _whole_run(amortised: float, factor0: float, epochs: int) -> float:
    """The mean step over an ``epochs``-epoch run, relative to none's: every epoch at the
    amortised step but the last, at factor 0 (progress epoch / (epochs - 1))."""
    return round(((epochs - 1) * amortised + factor0) / epochs, 4)


def run_step_time(settings: Settings) -> dict[str, Any]:
    """Measure every mode of ``settings`` and return the JSON-ready result.

    Returns:
        ``{"ratios": {mode: {"time", "memory", "flops"}}, "absolute": {mode: {...}},
        "targets": {...}, "config": {...}}``; ``none``'s ratios are exactly 1.0.
    """
    device = resolve_device(settings.device)
    apply_threads(settings)
    cases = build_cases(settings, device)
    for case in cases.values():  # steady state: the balance measures 1 step in `every`
        balance_due(case, False)
    timings = interleaved(
        {m: c.step for m, c in cases.items()},
        settings.repeats,
        settings.warmup,
        device,
        desc="step_time",
    )
    absolute: dict[str, dict[str, Any]] = {}
    for mode, case in cases.items():  # per training step
        timings.wall[mode] = [t / case.steps for t in timings.wall[mode]]
        timings.cpu[mode] = [t / case.steps for t in timings.cpu[mode]]
        absolute[mode] = {
            "time_median_s": median(timings.wall[mode]),
            "time_min_s": min(timings.wall[mode]),
            "time_max_s": max(timings.wall[mode]),
            "times_s": timings.wall[mode],
            "cpu_time_median_s": median(timings.cpu[mode]),
            # Paired in time: this mode's step over none's step in the same round.
            "time_ratio_per_round": quartiles(
                t / r for t, r in zip(timings.wall[mode], timings.wall["none"])
            ),
            "memory_bytes": measure_memory(case, device),
            "flops": measure_flops(case),
            "parameters": sum(p.numel() for p in case.ds.parameters()),
        }
    for mode, case in cases.items():
        absolute[mode].update(_balance_cost(case, absolute[mode]["time_median_s"], device))
    factor0 = _factor_zero_ratios(cases, settings, device)
    ref = absolute["none"]
    ratios = {
        mode: {
            "time": ratio(a["time_median_s"], ref["time_median_s"]),
            "time_amortised": ratio(a["time_amortised_s"], ref["time_median_s"]),
            "cpu_time": ratio(a["cpu_time_median_s"], ref["cpu_time_median_s"]),
            "memory": ratio(a["memory_bytes"], ref["memory_bytes"]),
            "flops": ratio(a["flops"], ref["flops"]),
            "time_factor0": factor0[mode],
            **{
                f"whole_run_{e}_epochs": _whole_run(
                    a["time_amortised_s"] / ref["time_median_s"], factor0[mode], e
                )
                for e in RUN_EPOCHS
            },
        }
        for mode, a in absolute.items()
    }
    config = {
        **settings.as_dict(),
        "machine": machine_info(device),
        "in_channels": 1,
        "classes": 1,
        "label_mode": "binary",
        "norm": "batch",
        "weights": "equal",
        "validate": True,
        "optimizer": f"Adam(lr={LR})",
        "step": "zero_grad, ds(x, y), ds.loss, backward, Adam step",
        "timing": "interleaved round-robin (order rotated each round), warm-up rounds "
        "discarded, median per mode; 'time' is wall-clock, 'cpu_time' the process's CPU time; "
        "balance='auto' timed in its steady state (no measuring step), 'time_amortised' adds "
        "one measuring step (median of 3) per balance period; 'time_factor0' is the step at "
        "schedule factor 0 (the last epoch under the default cosine schedule: no auxiliary "
        "branch runs) over none's, timed interleaved too, 'whole_run_E_epochs' the mean step "
        "over an E-epoch run (progress epoch / (E - 1), so the last epoch is at factor 0) "
        "over none's",
        "memory_method": (
            "torch.cuda.max_memory_allocated during one step (minus what was allocated before) "
            "+ the mode's parameters, buffers, Adam state and batch"
            if device.type == "cuda"
            else "peak live tensor bytes over one step, tracked with a TorchDispatchMode "
            "(parameters, buffers, Adam state, batch and gradients included)"
        ),
        "flops_method": "torch.utils.flop_counter.FlopCounterMode over forward + backward "
        "of one step (convolutions and matmuls only)",
    }
    result = {
        "ratios": ratios,
        "absolute": absolute,
        "targets": check_targets(ratios),
        "config": config,
    }
    if {"none", "up", "hyb"} <= set(settings.modes):
        result["unlabeled"] = unlabeled_ratios(settings, device)
    return result


def report(result: Mapping[str, Any]) -> str:
    """A readable table of ``result`` (absolute figures and ratios to ``none``)."""
    rows = []
    for mode, a in result["absolute"].items():
        r = result["ratios"][mode]
        rows.append(
            [
                mode,
                f"{1e3 * a['time_median_s']:.1f}",
                f"{r['time']:.2f}",
                f"{r['time_amortised']:.2f}",
                "{q1:.2f}-{q3:.2f}".format(**a["time_ratio_per_round"]),
                f"{r['cpu_time']:.2f}",
                f"{a['memory_bytes'] / 2**20:.1f}",
                f"{r['memory']:.2f}",
                f"{a['flops'] / 1e9:.2f}",
                f"{r['flops']:.2f}",
                f"{r['time'] / r['flops']:.2f}",
                f"{r['time_factor0']:.2f}",
                *(f"{r[f'whole_run_{e}_epochs']:.2f}" for e in RUN_EPOCHS),
            ]
        )
    table = format_table(
        [
            "mode",
            "ms",
            "x time",
            "x amortised",
            "rounds q1-q3",
            "x cpu",
            "MiB",
            "x mem",
            "GFLOP",
            "x flops",
            "time/flops",
            "x at f=0",
            *(f"x run {e} ep" for e in RUN_EPOCHS),
        ],
        rows,
    )
    targets = [
        f"  {name}: {t['value']:.3f} (limit {t['limit']}) {'ok' if t['met'] else 'MISSED'}"
        for name, t in result["targets"].items()
    ]
    unlabeled = [
        f"  {row}: {r['time']:.2f}x none's step time, {r['flops']:.2f}x its FLOPs"
        for row, r in result.get("unlabeled", {}).items()
    ]
    lines = [table, "targets:", *targets]
    return "\n".join(lines + (["a step on an unlabelled batch:", *unlabeled] if unlabeled else []))


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
    result = run_step_time(settings)
    print(report(result), file=sys.stderr)
    emit(result, json_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
