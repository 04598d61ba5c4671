"""Convergence benchmark: one run (a variant with a seed, trained and tested), the data sets it
uses, and the step-time ratios that turn epochs into time."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from benchmarks._common import interleaved, median, time_once
from benchmarks.convergence.settings import (
    EVAL_BATCH,
    LR,
    SCHEMA_VERSION,
    VARIANTS,
    ConvergenceSettings,
    Variant,
)
from benchmarks.cost.step_time import ModeCase, measure_flops
from dsplug import DeepSupervised
from dsplug.data import LabelRule, MSDDataset, Preprocessing, build_datasets, make_splits
from dsplug.data.msd import read_msd_json
from dsplug.data.nifti import nifti_case_id
from dsplug.train import TrainConfig, Trainer, build_model, seed_everything

__all__ = [
    "build_sets",
    "class_names",
    "external_step_ratios",
    "measure_step_ratios",
    "run_variant",
    "unet_config",
]


def _sample(ids: Sequence[str], count: int, rng: np.random.Generator, split: str) -> list[str]:
    if count > len(ids):
        raise ValueError(f"{count} {split} cases asked for, but the {split} split has {len(ids)}.")
    picked = rng.permutation(len(ids))[:count]
    return [ids[i] for i in sorted(picked)]


def build_sets(
    settings: ConvergenceSettings, source: Path, out: Path, cache_dir: Path | None
) -> dict[str, MSDDataset]:
    """Train / val / test datasets: a seeded sample of each split of a seeded 70/10/20 split.

    Only the sampled cases are read. The full split is written to (and reused from)
    ``out/splits.json``. ISBI 2012: contiguous 15 / 3 / 12 slices of the stack, membrane (raw
    value 0) as the foreground, resized to ``settings.size``; training on the first
    ``settings.train_cases`` of the 15 (a contiguous block, as an annotator would label).
    """
    if settings.dataset == "isbi2012":
        sets = build_datasets(
            source,
            kind="folder",
            preprocessing=Preprocessing(
                fit="resize", size=settings.size, multiple=2 ** (settings.depth - 1)
            ),
            contiguous=True,
            fractions=(0.5, 0.1, 0.4),
            splits_path=out / "splits.json",
            cache_dir=cache_dir,
            options={
                "image": "image/{id}.png",
                "mask": "label/{id}.png",
                "labels": LabelRule.binary((0, 255), foreground=(0,)),
            },
        )
        train = sets["train"].cases
        if settings.train_cases > len(train):
            raise ValueError(
                f"{settings.train_cases} train cases asked for, but the train split has "
                f"{len(train)}."
            )
        sets["train"] = sets["train"].subset(train[: settings.train_cases], split="train")
        return sets
    meta = read_msd_json(source)
    ids = [nifti_case_id(entry["image"]) for entry in meta["training"]]
    splits = make_splits(ids, settings.split_seed, path=out / "splits.json")
    rng = np.random.default_rng(settings.split_seed)
    counts = {
        "train": settings.train_cases,
        "val": settings.val_cases,
        "test": settings.test_cases,
    }
    chosen = {name: _sample(splits[name], n, rng, name) for name, n in counts.items()}
    prep = Preprocessing(
        drop_empty=settings.drop_empty, size=settings.size, multiple=2 ** (settings.depth - 1)
    )
    union = [c for name in ("train", "val", "test") for c in chosen[name]]
    full = MSDDataset(source, preprocessing=prep, cases=union, cache_dir=cache_dir)
    return {name: full.subset(cases, split=name) for name, cases in chosen.items()}


def unet_config(settings: ConvergenceSettings, data: MSDDataset) -> dict[str, Any]:
    """The config of dsplug's own U-Net that every run trains (``build_model``)."""
    return {
        "arch": "unet",
        "in_channels": data.in_channels,
        "classes": data.classes,
        "base_channels": settings.base,
        "depth": settings.depth,
        "norm": "batch",
        "spatial_dims": 2,
    }


def _wrap(model: torch.nn.Module, variant: Variant, label_mode: str) -> DeepSupervised:
    return DeepSupervised(
        model,
        variant.mode,
        weights=variant.weights if isinstance(variant.weights, str) else dict(variant.weights),
        label_mode=label_mode,
        schedule=variant.schedule,
        balance=variant.balance,
        aux_fraction=variant.aux_fraction,
        aux_scale=variant.aux_scale,
        aux_every=variant.aux_every,
    )


# --------------------------------------------------------------------------- step time
def measure_step_ratios(
    settings: ConvergenceSettings, sets: Mapping[str, MSDDataset], device: torch.device
) -> dict[str, Any]:
    """Train-step time of every variant relative to ``none``, interleaved in one process.

    The step of ``benchmarks/cost/step_time.py`` (forward, loss, backward, Adam) on the first
    training batch, one wrapper per variant around a copy of one seeded model; rounds
    round-robin with the order rotated each round, warm-up rounds discarded, medians.

    Returns:
        ``{"ratios": {variant: {"time", "cpu_time", "flops"}}, "absolute": {...},
        "config": {...}}`` (the schema of ``step_time.py``; ``none`` is exactly 1.0).
    """
    train = sets["train"]
    batch = next(iter(DataLoader(train, batch_size=settings.batch, shuffle=False)))
    x, y = batch["image"].to(device), batch["mask"].to(device)
    torch.manual_seed(0)
    model = build_model(unet_config(settings, train))
    cases = {}
    for name in settings.variants:
        torch.manual_seed(0)
        ds = _wrap(copy.deepcopy(model), VARIANTS[name], train.label_mode).to(device).train()
        opt = torch.optim.Adam(ds.parameters(), lr=LR)
        # aux_every = k: a timed call is one period of k steps (figures per step)
        cases[name] = ModeCase(ds, opt, x, y, VARIANTS[name].aux_every)
    timings = interleaved(
        {name: case.step for name, case in cases.items()},
        settings.step_repeats,
        settings.step_warmup,
        device,
        desc="step_time",
    )
    for name, case in cases.items():
        timings.wall[name] = [t / case.steps for t in timings.wall[name]]
        timings.cpu[name] = [t / case.steps for t in timings.cpu[name]]
    absolute = {
        name: {
            "time_median_s": median(timings.wall[name]),
            "cpu_time_median_s": median(timings.cpu[name]),
            "times_s": timings.wall[name],
            "flops": measure_flops(case),
        }
        for name, case in cases.items()
    }
    absolute["none"]["eval_s_per_slice"] = _eval_time_per_slice(
        cases["none"].ds, sets["val"], settings, device
    )
    ref = absolute["none"]
    ratios = {
        name: {
            "time": round(a["time_median_s"] / ref["time_median_s"], 4),
            "cpu_time": round(a["cpu_time_median_s"] / ref["cpu_time_median_s"], 4),
            "flops": round(a["flops"] / ref["flops"], 4),
        }
        for name, a in absolute.items()
    }
    config = {
        "batch": int(x.shape[0]),
        "input_shape": list(x.shape),
        "repeats": settings.step_repeats,
        "warmup": settings.step_warmup,
        "torch_threads": torch.get_num_threads(),
        "step": "zero_grad, ds(x, y), ds.loss, backward, Adam step (benchmarks.cost.step_time)",
        "timing": "interleaved round-robin (order rotated each round), warm-up rounds "
        "discarded, median per variant; 'time' is wall-clock, 'cpu_time' the process's",
    }
    return {"ratios": ratios, "absolute": absolute, "config": config}


def _eval_time_per_slice(
    ds: DeepSupervised, data: MSDDataset, settings: ConvergenceSettings, device: torch.device
) -> float:
    """Median seconds per slice of an eval-mode forward pass over one validation batch."""
    x = next(iter(DataLoader(data, batch_size=EVAL_BATCH, shuffle=False)))["image"].to(device)
    ds.eval()
    with torch.no_grad():
        times = [time_once(lambda: ds(x), device)[0] for _ in range(1 + settings.step_repeats)]
    ds.train()
    return median(times[1:]) / x.shape[0]


def external_step_ratios(path: Path, variants: Sequence[str]) -> dict[str, Any]:
    """Ratios from a ``step_time.py`` JSON (keyed by mode), mapped onto the variants."""
    data = json.loads(path.read_text())
    ratios = data.get("ratios") if isinstance(data, dict) else None
    if not isinstance(ratios, dict):
        raise ValueError(f"{path}: not a step_time JSON (no 'ratios' object).")
    missing = sorted({VARIANTS[v].mode for v in variants} - set(ratios))
    if missing:
        raise ValueError(f"{path}: the step_time JSON lacks the mode(s) {missing}.")
    return {
        "ratios": {v: dict(ratios[VARIANTS[v].mode]) for v in variants},
        "source": str(path),
        "config": data.get("config", {}),
    }


# ---------------------------------------------------------------------------- one run
def run_variant(
    variant: Variant,
    seed: int,
    settings: ConvergenceSettings,
    sets: Mapping[str, MSDDataset],
    folder: Path,
    device: torch.device,
    progress: bool = False,
) -> dict[str, Any]:
    """Train one variant with one seed, then score the test cases with the best weights.

    The run folder keeps the Trainer's checkpoints; a folder with ``last.pt`` is resumed.

    Returns:
        The run record: the variant, seed, settings, per-epoch history, efficiency, best
        validation metrics, test metrics (summary, per case, per case and class), and the
        wall and CPU seconds of this call.
    """
    train, val, test = sets["train"], sets["val"], sets["test"]
    seed_everything(seed)
    model_config = unet_config(settings, train)
    ds = _wrap(build_model(model_config), variant, train.label_mode)
    config = TrainConfig(
        max_epochs=settings.epochs,
        min_epochs=settings.min_epochs,
        batch_size=settings.batch,
        lr=LR,
        seed=seed,
        amp="off",
        channels_last=False,
        val_batch_size=EVAL_BATCH,
        progress=progress,
        tensorboard=False,
        plots=False,
    )
    trainer = Trainer(
        ds, train, val, out=folder, config=config, model_config=model_config, device=device
    )
    resumed = (folder / "last.pt").is_file()
    wall, cpu = time.perf_counter(), time.process_time()
    summary = trainer.fit(resume=resumed)
    metrics = trainer.evaluate(test)  # the best-epoch weights (fit restored them)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    names = class_names(test)
    return {
        "schema": SCHEMA_VERSION,
        "variant": asdict(variant),
        "seed": seed,
        "settings": settings.run_key(),
        "model": model_config,
        "history": trainer.history,
        "efficiency": summary["efficiency"],
        "best_val": summary["best_val"],
        "test": {
            "summary": metrics.summary(),
            "classes": names,
            "per_case": metrics.per_case(),
            "per_case_class": metrics.per_case_class(),
        },
        "resumed": resumed,
        "call_wall_s": wall,
        "call_cpu_s": cpu,
    }


def class_names(data: Any) -> list[str]:
    """Foreground class names (``class1``, ... where the data set names none)."""
    names = list(getattr(data.labels, "names", ())[1:])
    if data.label_mode != "multiclass":
        return names or ["foreground"] * data.classes
    return names or [f"class{k}" for k in range(1, data.classes)]
