"""Convergence benchmark driver: every variant and seed, resumable, ``jobs`` at a time, then
the analysis written to ``convergence.json``."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch

from benchmarks._common import format_table, machine_info
from benchmarks.convergence.analysis import EQUAL_COMPUTE, P_VALUES, analyse, estimate_seconds
from benchmarks.convergence.runs import (
    build_sets,
    class_names,
    external_step_ratios,
    measure_step_ratios,
    run_variant,
    unet_config,
)
from benchmarks.convergence.settings import (
    FOLDERS,
    LR,
    SCHEMA_VERSION,
    TITLES,
    VARIANTS,
    ConvergenceSettings,
    setting_name,
)
from dsplug.data import MSDDataset
from dsplug.train.runlog import write_json

__all__ = ["run_convergence"]


def _run_name(variant: str, seed: int) -> str:
    return f"{variant}_seed{seed}"


def _load_run(path: Path, settings: ConvergenceSettings) -> dict[str, Any]:
    run = json.loads(path.read_text())
    if run.get("settings") != settings.run_key():
        raise ValueError(
            f"{path} was made with other settings ({run.get('settings')}) than this call "
            f"({settings.run_key()}); use another --out folder, or delete the file."
        )
    return run


def _step_result(
    settings: ConvergenceSettings,
    sets: Mapping[str, MSDDataset],
    out: Path,
    device: torch.device,
    external: Path | None,
) -> dict[str, Any]:
    if external is not None:
        return external_step_ratios(external, settings.variants)
    path = out / "step_time.json"
    key = {
        **settings.run_key(),
        "variants": list(settings.variants),
        "repeats": settings.step_repeats,
        "device": device.type,
    }
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored.get("key") == key:
            print(f"step time: reusing {path}", file=sys.stderr)
            return stored
        raise ValueError(
            f"{path} was measured with other settings; delete it or use another --out folder."
        )
    result = {**measure_step_ratios(settings, sets, device), "key": key}
    write_json(path, result)
    return result


def _print_table(analysis: Mapping[str, Any]) -> None:
    rows = []
    for name, v in analysis["variants"].items():
        p = v["p_vs_none"]
        rows.append(
            [
                name,
                f"{v['test']['dice']:.4f}",
                f"{v['test']['avg_m']:.4f}",
                "-" if p is None else f"{p['better_seeds']}/{p['n_seeds']}",
                "-" if p is None or p["p"] is None else f"{p['p']:.3g}",
                f"{v['epoch']['mean']:.1f}",
                f"{v['avg_t_s']['mean']:.1f}",
                f"{v['step_time_ratio']:.2f}",
                "-"
                if v["epochs_to_target"]["mean"] is None
                else f"{v['epochs_to_target']['mean']:.1f} ({v['seeds_reaching_target']})",
            ]
        )
    headers = [
        "variant",
        "Dice",
        "avg.m",
        "better seeds",
        "p(seeds)",
        "Epoch",
        "Avg.T s",
        "x step",
        "ep->none",
    ]
    print(format_table(headers, rows), file=sys.stderr)
    order = analysis["ordering"]
    verdict = "reproduced" if order["reproduced"] else "NOT reproduced"
    print(
        f"paper ordering {order['paper']}: {verdict} (observed {order['observed']})",
        file=sys.stderr,
    )


def _worker_threads(settings: ConvergenceSettings) -> int:
    """Torch threads per run: as set, else the CPU count split between the jobs (0: default)."""
    if settings.threads:
        return settings.threads
    if settings.jobs == 1:
        return 0
    return max(1, (os.cpu_count() or 1) // settings.jobs)


def _run_line(run: Mapping[str, Any]) -> str:
    eff = run["efficiency"]
    return (
        f"{run['variant']['name']} seed {run['seed']}: best epoch {eff['epoch']}/"
        f"{eff['epochs_run']}, Avg.T {eff['avg_t_s']:.1f} s, test Dice "
        f"{run['test']['summary']['dice']:.4f} ({run['call_wall_s']:.0f} s)"
    )


def _train_and_save(
    name: str,
    seed: int,
    settings: ConvergenceSettings,
    sets: Mapping[str, MSDDataset],
    out: Path,
    device: torch.device,
    keep_checkpoints: bool,
    progress: bool,
) -> dict[str, Any]:
    folder = out / "runs" / _run_name(name, seed)
    run = run_variant(VARIANTS[name], seed, settings, sets, folder, device, progress)
    write_json(out / "runs" / f"{_run_name(name, seed)}.json", run)
    if not keep_checkpoints:
        shutil.rmtree(folder, ignore_errors=True)
    return run


def _job(
    name: str,
    seed: int,
    settings: ConvergenceSettings,
    source: Path,
    out: Path,
    cache_dir: Path | None,
    device: str,
    keep_checkpoints: bool,
) -> str:
    """One run in a worker process; the slices come from the cache the parent filled."""
    threads = _worker_threads(settings)
    if threads:
        torch.set_num_threads(threads)
    sets = build_sets(settings, source, out, cache_dir)
    run = _train_and_save(
        name, seed, settings, sets, out, torch.device(device), keep_checkpoints, False
    )
    return _run_line(run)


def _run_pending(
    pending: Sequence[tuple[str, int]],
    settings: ConvergenceSettings,
    sets: Mapping[str, MSDDataset],
    source: Path,
    out: Path,
    *,
    device: torch.device,
    cache_dir: Path | None,
    keep_checkpoints: bool,
    progress: bool,
) -> None:
    """Train the runs not done yet: one after another, or ``settings.jobs`` at a time."""
    total = len(pending)
    if settings.jobs == 1 or total <= 1:
        for i, (name, seed) in enumerate(pending, 1):
            run = _train_and_save(
                name, seed, settings, sets, out, device, keep_checkpoints, progress
            )
            print(f"[{i}/{total}] {_run_line(run)}", file=sys.stderr, flush=True)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=settings.jobs, mp_context=context) as pool:
        futures = [
            pool.submit(
                _job, name, seed, settings, source, out, cache_dir, device.type, keep_checkpoints
            )
            for name, seed in pending
        ]
        try:
            for i, future in enumerate(as_completed(futures), 1):
                print(f"[{i}/{total}] {future.result()}", file=sys.stderr, flush=True)
        except BaseException:  # a failed run: start no more (finished runs stay saved)
            for future in futures:
                future.cancel()
            raise


def run_convergence(
    settings: ConvergenceSettings,
    source: Path,
    out: Path,
    *,
    device: torch.device,
    cache_dir: Path | None = None,
    step_time: Path | None = None,
    keep_checkpoints: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Run (or resume) every variant and seed, then analyse; writes ``out/convergence.json``.

    Runs whose JSON exists are skipped (after checking their settings); the others are
    trained, ``settings.jobs`` at a time, each writing its JSON when it finishes.

    Returns:
        ``{"config", "step_time", "estimate", "variants", "ordering", "runs"}``.

    Raises:
        ValueError: ``source`` is not an MSD task folder, or files in ``out`` were made with
            other settings.
    """
    expected = "dataset.json" if settings.dataset == "hippocampus" else "image"
    if not (source / expected).exists():
        raise ValueError(
            f"{source} is not the {FOLDERS[settings.dataset]} folder (no {expected}); pass "
            "--data or set DSPLUG_DATA."
        )
    threads = _worker_threads(settings)
    if threads:
        torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    sets = build_sets(settings, source, out, cache_dir)
    slices = {name: len(data) for name, data in sets.items()}
    step = _step_result(settings, sets, out, device, step_time)
    estimate = estimate_seconds(settings, step, slices) if "absolute" in step else None
    if estimate:
        print(
            f"estimated duration of all runs on this machine: {estimate['total_s'] / 3600:.2f} h "
            f"({settings.jobs} at a time; from the step time, without data loading)",
            file=sys.stderr,
        )
    order = [(v, s) for s in settings.seeds for v in settings.variants]
    pending = []
    for name, seed in order:
        path = out / "runs" / f"{_run_name(name, seed)}.json"
        if path.is_file():
            _load_run(path, settings)
            print(f"{name} seed {seed}: done before, skipped", file=sys.stderr)
        else:
            pending.append((name, seed))
    _run_pending(
        pending,
        settings,
        sets,
        source,
        out,
        device=device,
        cache_dir=cache_dir,
        keep_checkpoints=keep_checkpoints,
        progress=progress,
    )
    records = {
        (name, seed): _load_run(out / "runs" / f"{_run_name(name, seed)}.json", settings)
        for name, seed in order
    }
    analysis = analyse(records, step)
    test_data = sets["test"]
    config = {
        "schema": SCHEMA_VERSION,
        "setting": setting_name(settings),
        **settings.as_dict(),
        "torch_threads_per_run": threads or torch.get_num_threads(),
        "dataset": TITLES[settings.dataset],
        "data": str(source),
        "device": device.type,
        "machine": machine_info(device),
        "cases": {name: list(data.cases) for name, data in sets.items()},
        "slices": slices,
        "classes": class_names(test_data),
        "label_mode": test_data.label_mode,
        "model": unet_config(settings, test_data),
        "preprocessing": test_data.preprocessing.config(),
        "optimizer": f"Adam(lr={LR}), x0.9 every 3 epochs (the paper's schedule)",
        "epochs_rule": "the paper's early stopping: stop after epoch e when e >= "
        "max(min_epochs, 2 x best epoch), or at epochs; Epoch = best epoch by validation avg.m; "
        "Avg.T = mean training seconds per epoch; Tot.T = Avg.T x Epoch",
        "target_rule": "epochs until validation Dice first reaches the best validation Dice "
        "of 'none' with the same seed; time = epochs x step-time ratio x Avg.T of 'none'",
        "p_values": P_VALUES,
        "equal_compute": EQUAL_COMPUTE,
    }
    result = {
        "config": config,
        "step_time": step,
        "estimate": estimate,
        **analysis,
        "runs": [f"runs/{_run_name(v, s)}.json" for v, s in order],
    }
    write_json(out / "convergence.json", result)
    _print_table(analysis)
    return result
