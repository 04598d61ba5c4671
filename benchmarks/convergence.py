"""Convergence ablation on real data (SPEC §8; the paper's Tables 4-5), sized for a CPU.

Task04_Hippocampus (Medical Segmentation Decathlon, ``../shared/data``), dsplug's own U-Net, and
the variants ``none``, ``deep``, ``auto``, ``seg``, ``rec``, ``hyb``, ``up``, ``down``, plus ``hyb``
with the paper's ``brats`` loss weights (``hyb-brats``) and with the ``linear`` deep-supervision
schedule (``hyb-linear``), each trained from the same seeded weights with several seeds.

What it measures, per run: validation metrics every epoch; Epoch (best epoch by validation
avg.m, the Trainer's rule), Avg.T (training seconds per epoch) and Tot.T = Avg.T x Epoch; the
epochs until validation Dice first reaches the best validation Dice of ``none`` with the same
seed, converted to time with the step-time ratios measured interleaved in one process on a real
training batch (so that machine noise between separate runs does not decide it); test DICE,
PPV, SEN, IoU per case and foreground class with the best-epoch weights. Across seeds: means,
standard deviations, and paired p-values (Wilcoxon, t-test) of per-case test Dice (the mean over
seeds per case) against ``none``. The test split is never used for any choice.

Splits are by case: a seeded 70/10/20 split of all 200 cases (``splits.json``), from which a
seeded sample of ``--train-cases`` / ``--val-cases`` / ``--test-cases`` is used. Training drops
slices without foreground; validation and test keep every slice. Slices are padded to 48 x 64.
Optimiser and schedule are the paper's (Adam 3e-4, x0.9 every 3 epochs); every run trains a
fixed number of epochs (so all cost the same), and Epoch is its best epoch by validation avg.m.

Settings:
    --quick: base 8, depth 3, batch 8, 6 / 3 / 4 cases, 2 epochs, every variant, seed 0, one
        thread (about a minute on 2 cores).
    default (full): base 16, depth 5, batch 4, 12 / 8 / 40 cases (292 / 285 / 1438 slices), 10
        epochs (730 steps), seeds 0, 1, 2, every variant (30 runs), two single-threaded runs at
        a time; sized for about 1.4 hours on 2 idle cores (from measured CPU times per step).

Resumable: every run writes ``runs/<variant>_seed<k>.json`` when it finishes and is skipped when
that file exists (with the same settings); an interrupted run resumes from its ``last.pt``. The
step-time ratios are kept in ``step_time.json``. The result is ``convergence.json`` (also printed
to stdout); ``benchmarks/report.py`` turns it into the README table.

Usage:
    python benchmarks/convergence.py --quick --out runs/convergence_quick
    mkdir -p runs && nohup .venv/bin/python benchmarks/convergence.py --out runs/convergence \\
        > runs/convergence.log 2>&1 &
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from torch.utils.data import DataLoader

from benchmarks._common import (
    emit,
    format_table,
    interleaved,
    machine_info,
    median,
    time_once,
)
from benchmarks.step_time import ModeCase, measure_flops
from dsplug import DeepSupervised
from dsplug.data import (
    LabelRule,
    MSDDataset,
    Preprocessing,
    build_datasets,
    default_cache_dir,
    make_splits,
)
from dsplug.data.msd import read_msd_json
from dsplug.data.nifti import nifti_case_id
from dsplug.metrics import METRIC_NAMES, paired_tests
from dsplug.train import TrainConfig, Trainer, build_model, seed_everything
from dsplug.train.runlog import write_json

__all__ = [
    "FULL",
    "PAPER_ORDER",
    "QUICK",
    "VARIANTS",
    "ConvergenceSettings",
    "Variant",
    "analyse",
    "build_sets",
    "default_source",
    "estimate_seconds",
    "main",
    "measure_step_ratios",
    "run_convergence",
    "run_variant",
    "setting_name",
]

LR = 3e-4  # the paper's Adam learning rate (§4.3); the Trainer's default schedule
#: The paper's accuracy ordering of its ablation (Table 4, ascending).
PAPER_ORDER = ("none", "deep", "auto", "seg", "rec", "hyb")
SCHEMA_VERSION = 1
EVAL_BATCH = 32  # validation and test batch size


@dataclass(frozen=True)
class Variant:
    """One trained configuration: a mode with its loss recipe, weights and schedule
    (``schedule=None``: the recipe's default)."""

    name: str
    mode: str
    weights: str = "equal"
    schedule: str | None = None
    balance: str = "auto"


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        *(Variant(m, m) for m in ("none", "deep", "auto", "seg", "rec", "hyb", "up", "down")),
        Variant("hyb-paper", "hyb", balance="paper"),
        Variant("hyb-paper-brats", "hyb", weights="brats", balance="paper"),
    )
}
#: The data sets the benchmark knows, in ``../shared/data``.
DATASETS = ("hippocampus", "isbi2012")


@dataclass(frozen=True)
class ConvergenceSettings:
    """What a convergence benchmark trains and on which cases.

    Attributes:
        variants: names from :data:`VARIANTS`; ``none`` first (the reference).
        seeds: training seeds (weights and data order); every variant runs every seed.
        train_cases: cases sampled (seeded) from the training split.
        val_cases: cases sampled from the validation split (best epoch, early stopping).
        test_cases: cases sampled from the test split (reported only).
        epochs: the most epochs a run may train (the paper's early stopping ends most runs
            before: after epoch e when e >= max(min_epochs, 2 x best epoch)).
        min_epochs: no early stop before this epoch.
        batch: slices per optimiser step.
        base: channels of the U-Net's level 0.
        depth: U-Net levels (the padded size must be a multiple of 2^(depth-1)).
        size: the padded slice size (H, W).
        split_seed: seed of the 70/10/20 case split and of the case samples.
        drop_empty: leave training slices without foreground out (validation and test keep all).
        step_repeats: timed rounds of the interleaved step-time measurement.
        step_warmup: untimed rounds before them.
        threads: torch intra-op threads per run; 0: torch's default with one job, else the
            CPU count divided by ``jobs``.
        jobs: runs trained at the same time, each in its own process (1: in this process).
        dataset: ``hippocampus`` (Task04, multiclass) or ``isbi2012`` (EM membranes, thin
            structures: membrane is the foreground, images resized to ``size``, contiguous
            15 / 3 / 12 slices; ``*_cases`` are not used).
    """

    variants: tuple[str, ...]
    seeds: tuple[int, ...]
    train_cases: int
    val_cases: int
    test_cases: int
    epochs: int
    batch: int
    base: int
    depth: int
    size: tuple[int, int] = (48, 64)
    split_seed: int = 0
    drop_empty: bool = True
    step_repeats: int = 10
    step_warmup: int = 2
    threads: int = 0
    jobs: int = 1
    min_epochs: int = 1
    dataset: str = "hippocampus"

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            raise ValueError(
                f"unknown variant(s) {unknown or list(self.variants)}; expected names from "
                f"{list(VARIANTS)}."
            )
        if self.variants[0] != "none" or len(set(self.variants)) != len(self.variants):
            raise ValueError(
                f"variants must start with 'none' (the reference) and not repeat, got "
                f"{list(self.variants)}."
            )
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {list(self.seeds)}.")
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; expected one of {DATASETS}.")
        names = ("train_cases", "val_cases", "test_cases", "epochs", "min_epochs", "batch")
        for name in (*names, "base", "jobs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}.")
        if self.test_cases < 2:
            raise ValueError(f"test_cases must be >= 2 for paired tests, got {self.test_cases}.")
        divisor = 2 ** (self.depth - 1)
        if self.depth < 2 or any(s % divisor for s in self.size):
            raise ValueError(
                f"size {tuple(self.size)} with depth {self.depth}: the depth must be >= 2 and "
                f"each side a multiple of 2^(depth-1) = {divisor}."
            )

    def as_dict(self) -> dict[str, Any]:
        """Plain-typed fields (JSON)."""
        d = asdict(self)
        d.update(variants=list(self.variants), seeds=list(self.seeds), size=list(self.size))
        return d

    def run_key(self) -> dict[str, Any]:
        """The fields that change what a single run computes (checked when a run is reused)."""
        d = self.as_dict()
        for name in ("variants", "seeds", "step_repeats", "step_warmup", "threads", "jobs"):
            d.pop(name)
        return d


FULL = ConvergenceSettings(
    variants=("none", "deep", "up", "down", "seg", "rec", "hyb", "auto", "hyb-paper"),
    seeds=(0, 1, 2),
    train_cases=6,
    val_cases=4,
    test_cases=30,
    epochs=30,  # generous: the paper's early stopping ends most runs before
    min_epochs=6,
    batch=8,
    base=16,
    depth=4,
    threads=1,
    jobs=2,  # two single-threaded runs at a time: the best use of 2 cores for a net this small
)
#: The second data set: thin structures (ISBI 2012 membranes), fewer variants.
THIN = replace(
    FULL,
    variants=("none", "deep", "hyb", "hyb-paper"),
    dataset="isbi2012",
    size=(128, 128),
    batch=4,
    epochs=40,
    min_epochs=8,
    jobs=1,
)
QUICK = ConvergenceSettings(
    variants=tuple(VARIANTS),
    seeds=(0,),
    train_cases=6,
    val_cases=3,
    test_cases=4,
    epochs=2,
    min_epochs=1,
    batch=8,
    base=8,
    depth=3,
    step_repeats=3,
    step_warmup=1,
    threads=1,  # a smoke run: one thread is robust to a busy machine
)


def setting_name(settings: ConvergenceSettings) -> str:
    """``"full"`` or ``"quick"`` when ``settings`` train what that preset trains, else
    ``"custom"`` (threads, jobs and the step-time repeats do not count)."""

    def trained(s: ConvergenceSettings) -> dict[str, Any]:
        return {**s.run_key(), "variants": list(s.variants), "seeds": list(s.seeds)}

    for name, preset in (("full", FULL), ("thin", THIN), ("quick", QUICK)):
        if trained(settings) == trained(preset):
            return name
    return "custom"


_FOLDERS = {"hippocampus": "Task04_Hippocampus", "isbi2012": "isbi2012_em_membrane/train"}
_TITLES = {"hippocampus": "Task04_Hippocampus", "isbi2012": "ISBI 2012 EM membranes"}


def default_source(dataset: str = "hippocampus") -> Path:
    """``$DSPLUG_DATA/<folder>``, else ``<repo>/../shared/data/<folder>`` (Task04_Hippocampus
    or isbi2012_em_membrane/train)."""
    env = os.environ.get("DSPLUG_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    return (root / _FOLDERS[dataset]).resolve()


# --------------------------------------------------------------------------------- data
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
    value 0) as the foreground, resized to ``settings.size``.
    """
    if settings.dataset == "isbi2012":
        return build_datasets(
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


def _model_config(settings: ConvergenceSettings, data: MSDDataset) -> dict[str, Any]:
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
        weights=variant.weights,
        label_mode=label_mode,
        schedule=variant.schedule,
        balance=variant.balance,
    )


# --------------------------------------------------------------------------- step time
def measure_step_ratios(
    settings: ConvergenceSettings, sets: Mapping[str, MSDDataset], device: torch.device
) -> dict[str, Any]:
    """Train-step time of every variant relative to ``none``, interleaved in one process.

    The step of ``benchmarks/step_time.py`` (forward, loss, backward, Adam) on the first
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
    model = build_model(_model_config(settings, train))
    cases = {}
    for name in settings.variants:
        torch.manual_seed(0)
        ds = _wrap(copy.deepcopy(model), VARIANTS[name], train.label_mode).to(device).train()
        cases[name] = ModeCase(ds, torch.optim.Adam(ds.parameters(), lr=LR), x, y)
    timings = interleaved(
        {name: case.step for name, case in cases.items()},
        settings.step_repeats,
        settings.step_warmup,
        device,
        desc="step_time",
    )
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
        "step": "zero_grad, ds(x, y), ds.loss, backward, Adam step (benchmarks.step_time)",
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


def _external_step_ratios(path: Path, variants: Sequence[str]) -> dict[str, Any]:
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
    model_config = _model_config(settings, train)
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
    names = _class_names(test)
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


def _class_names(data: Any) -> list[str]:
    """Foreground class names (``class1``, ... where the data set names none)."""
    names = list(getattr(data.labels, "names", ())[1:])
    if data.label_mode != "multiclass":
        return names or ["foreground"] * data.classes
    return names or [f"class{k}" for k in range(1, data.classes)]


# ----------------------------------------------------------------------------- analysis
def _mean_sd(values: Sequence[float]) -> dict[str, float | None]:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"mean": None, "sd": None, "n": 0}
    sd = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
    return {"mean": float(np.mean(vals)), "sd": sd, "n": len(vals)}


def _first_epoch_reaching(history: Sequence[Mapping[str, Any]], target: float) -> int | None:
    return next((int(row["epoch"]) for row in history if row["val_dice"] >= target), None)


def _seed_figures(
    run: Mapping[str, Any], none_run: Mapping[str, Any], ratio: float
) -> dict[str, Any]:
    history = run["history"]
    target = max(row["val_dice"] for row in none_run["history"])
    reached = _first_epoch_reaching(history, target)
    none_avg_t = none_run["efficiency"]["avg_t_s"]
    eff = run["efficiency"]
    return {
        "seed": run["seed"],
        "epoch": eff["epoch"],
        "epochs_run": eff["epochs_run"],
        "avg_t_s": eff["avg_t_s"],
        "tot_t_s": eff["tot_t_s"],
        "best_val_dice": max(row["val_dice"] for row in history),
        "best_val": run["best_val"],
        "test": {m: run["test"]["summary"][m] for m in METRIC_NAMES},
        "target_dice": target,
        "epochs_to_target": reached,
        # time in units of one `none` epoch, and in seconds of this seed's `none` epochs
        "time_to_target_none_epochs": None if reached is None else reached * ratio,
        "time_to_target_s": None if reached is None else reached * ratio * none_avg_t,
        "tot_t_ratio_s": eff["epoch"] * ratio * none_avg_t,
        "val_curve": [
            {k: row[k] for k in ("epoch", "val_dice", "val_avg_m", "train_s", "val_s")}
            for row in history
        ],
    }


def _mean_per_case(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    cases = sorted(runs[0]["test"]["per_case"])
    for run in runs:
        if sorted(run["test"]["per_case"]) != cases:
            raise ValueError("runs of one benchmark were scored on different test cases.")
    return {
        c: {m: float(np.mean([r["test"]["per_case"][c][m] for r in runs])) for m in METRIC_NAMES}
        for c in cases
    }


def _mean_per_case_class(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, float]]]:
    first = runs[0]["test"]["per_case_class"]
    return {
        c: [
            {
                m: float(np.mean([r["test"]["per_case_class"][c][k][m] for r in runs]))
                for m in METRIC_NAMES
            }
            for k in range(len(first[c]))
        ]
        for c in sorted(first)
    }


def _variant_summary(
    name: str,
    runs: Sequence[Mapping[str, Any]],
    none_runs: Mapping[int, Mapping[str, Any]],
    ratios: Mapping[str, Any],
    none_cases: Mapping[str, Mapping[str, float]] | None,
) -> dict[str, Any]:
    ratio = float(ratios[name]["time"])
    seeds = [_seed_figures(run, none_runs[run["seed"]], ratio) for run in runs]
    per_case = _mean_per_case(runs)
    per_case_class = _mean_per_case_class(runs)
    classes = runs[0]["test"]["classes"]
    per_class = {
        cls: {
            m: float(np.mean([per_case_class[c][k][m] for c in per_case_class]))
            for m in METRIC_NAMES
        }
        for k, cls in enumerate(classes)
    }
    reached = [s["epochs_to_target"] for s in seeds]
    max_epochs = runs[0].get("settings", {}).get("epochs", math.inf)
    summary: dict[str, Any] = {
        "variant": runs[0]["variant"],
        "seeds_run": [s["seed"] for s in seeds],
        "test": {m: float(np.mean([v[m] for v in per_case.values()])) for m in METRIC_NAMES},
        "test_over_seeds": {m: _mean_sd([s["test"][m] for s in seeds]) for m in METRIC_NAMES},
        "test_per_class": per_class,
        "epoch": _mean_sd([s["epoch"] for s in seeds]),
        "avg_t_s": _mean_sd([s["avg_t_s"] for s in seeds]),
        "tot_t_s": _mean_sd([s["tot_t_s"] for s in seeds]),
        "step_time_ratio": ratio,
        "tot_t_ratio_s": _mean_sd([s["tot_t_ratio_s"] for s in seeds]),
        "best_val_dice": _mean_sd([s["best_val_dice"] for s in seeds]),
        "epochs_to_target": _mean_sd(reached),
        "seeds_stopped_early": sum(s["epochs_run"] < max_epochs for s in seeds),
        "seeds_reaching_target": sum(r is not None for r in reached),
        "time_to_target_none_epochs": _mean_sd([s["time_to_target_none_epochs"] for s in seeds]),
        "time_to_target_s": _mean_sd([s["time_to_target_s"] for s in seeds]),
        "p_vs_none": None,
        "seeds": seeds,
        "test_per_case": per_case,
        "test_per_case_class": per_case_class,
    }
    if none_cases is not None and name != "none":
        cases = sorted(per_case)
        summary["p_vs_none"] = paired_tests(
            [per_case[c]["dice"] for c in cases], [none_cases[c]["dice"] for c in cases]
        )
    return summary


def analyse(
    records: Mapping[tuple[str, int], Mapping[str, Any]], step: Mapping[str, Any]
) -> dict[str, Any]:
    """Per-variant figures over seeds, p-values against ``none``, and the paper's ordering.

    Args:
        records: run records (:func:`run_variant`) keyed by (variant, seed); every variant's
            seeds must include runs of ``none`` with the same seeds.
        step: the step-time result (``ratios`` per variant).

    Returns:
        ``{"variants": {name: {...}}, "ordering": {"paper", "observed", "reproduced"}}``.
    """
    by_variant: dict[str, list[Mapping[str, Any]]] = {}
    for (name, _), run in sorted(records.items(), key=lambda kv: kv[0][1]):
        by_variant.setdefault(name, []).append(run)
    if "none" not in by_variant:
        raise ValueError("analyse needs the runs of 'none' (the reference).")
    none_runs = {run["seed"]: run for run in by_variant["none"]}
    none_cases = _mean_per_case(by_variant["none"])
    variants = {}
    for name in [n for n in VARIANTS if n in by_variant]:
        missing = sorted({r["seed"] for r in by_variant[name]} - set(none_runs))
        if missing:
            raise ValueError(f"variant {name!r} has seeds {missing} without a run of 'none'.")
        variants[name] = _variant_summary(
            name, by_variant[name], none_runs, step["ratios"], none_cases
        )
    present = [m for m in PAPER_ORDER if m in variants]
    observed = sorted(present, key=lambda m: variants[m]["test"]["dice"])
    return {
        "variants": variants,
        "ordering": {
            "metric": "test Dice (per case, mean over seeds)",
            "paper": present,
            "observed": observed,
            "reproduced": observed == present,
        },
    }


def estimate_seconds(
    settings: ConvergenceSettings, step: Mapping[str, Any], slices: Mapping[str, int]
) -> dict[str, float]:
    """Rough duration of all runs from the measured step and evaluation times of ``none``.

    Training: steps per epoch x epochs x seeds x the sum of the variants' time ratios x the
    median step time of ``none``; evaluation: validation slices every epoch and the test
    slices once per run, at the measured eval time per slice; both divided by ``jobs``. Data
    loading and checkpoints are not included.
    """
    none = step["absolute"]["none"]
    steps = math.ceil(slices["train"] / settings.batch)
    ratio_sum = sum(step["ratios"][v]["time"] for v in settings.variants)
    seeds = len(settings.seeds)
    train_s = none["time_median_s"] * steps * settings.epochs * seeds * ratio_sum
    runs = seeds * len(settings.variants)
    per_slice = none.get("eval_s_per_slice", none["time_median_s"] / settings.batch / 3)
    eval_s = per_slice * runs * (slices["val"] * settings.epochs + slices["test"])
    return {
        "train_s": train_s,
        "eval_s": eval_s,
        "total_s": (train_s + eval_s) / settings.jobs,
        "jobs": settings.jobs,
    }


# ------------------------------------------------------------------------------ driver
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
        return _external_step_ratios(external, settings.variants)
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
                "-" if p is None else f"{p['wilcoxon_p']:.3g}",
                f"{v['epoch']['mean']:.1f}",
                f"{v['avg_t_s']['mean']:.1f}",
                f"{v['step_time_ratio']:.2f}",
                "-"
                if v["epochs_to_target"]["mean"] is None
                else f"{v['epochs_to_target']['mean']:.1f} ({v['seeds_reaching_target']})",
            ]
        )
    headers = ["variant", "Dice", "avg.m", "p(W)", "Epoch", "Avg.T s", "x step", "ep->none"]
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
            f"{source} is not the {_FOLDERS[settings.dataset]} folder (no {expected}); pass "
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
        "dataset": _TITLES[settings.dataset],
        "data": str(source),
        "device": device.type,
        "machine": machine_info(device),
        "cases": {name: list(data.cases) for name, data in sets.items()},
        "slices": slices,
        "classes": _class_names(test_data),
        "label_mode": test_data.label_mode,
        "model": _model_config(settings, test_data),
        "preprocessing": test_data.preprocessing.config(),
        "optimizer": f"Adam(lr={LR}), x0.9 every 3 epochs (the paper's schedule)",
        "epochs_rule": "the paper's early stopping: stop after epoch e when e >= "
        "max(min_epochs, 2 x best epoch), or at epochs; Epoch = best epoch by validation avg.m; "
        "Avg.T = mean training seconds per epoch; Tot.T = Avg.T x Epoch",
        "target_rule": "epochs until validation Dice first reaches the best validation Dice "
        "of 'none' with the same seed; time = epochs x step-time ratio x Avg.T of 'none'",
        "p_values": "paired over test cases (per-case Dice, mean over seeds) against 'none'",
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


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown variant(s) {unknown or [text]}; expected a comma-separated subset of "
            f"{list(VARIANTS)}"
        )
    return names


def _seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line options (explicit flags override the chosen preset)."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Presets: --quick (CI, about a minute) or the full setting (default).",
    )
    parser.add_argument("--quick", action="store_true", help="the quick (CI) setting")
    parser.add_argument(
        "--thin", action="store_true", help="the second data set: ISBI 2012 membranes"
    )
    parser.add_argument(
        "--data", type=Path, default=None, help="Task04_Hippocampus folder (default: shared data)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: runs/convergence, or runs/convergence_quick)",
    )
    parser.add_argument(
        "--variants", type=_names, help=f"comma-separated subset of {','.join(VARIANTS)}"
    )
    parser.add_argument("--seeds", type=_seeds, help="comma-separated training seeds")
    names = ("train-cases", "val-cases", "test-cases", "epochs", "min-epochs", "batch", "base")
    for name in (*names, "depth"):
        parser.add_argument(f"--{name}", type=_positive, help=f"override the preset's {name}")
    parser.add_argument("--size", type=_positive, nargs=2, metavar=("H", "W"), help="padded size")
    parser.add_argument("--split-seed", type=int, help="seed of the case split (default 0)")
    parser.add_argument("--step-repeats", type=_positive, help="timed step-time rounds")
    parser.add_argument("--threads", type=int, help="torch threads per run (0: automatic)")
    parser.add_argument("--jobs", type=_positive, help="runs trained at the same time")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: auto")
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="slice cache (default: $DSPLUG_CACHE)"
    )
    parser.add_argument(
        "--step-time",
        type=Path,
        default=None,
        help="use the ratios of this step_time.py JSON instead of measuring them",
    )
    parser.add_argument(
        "--keep-checkpoints", action="store_true", help="keep each run's checkpoints"
    )
    parser.add_argument(
        "--progress", action="store_true", help="the Trainer's progress output (with --jobs 1)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the result here")
    return parser


def settings_from_args(args: argparse.Namespace) -> ConvergenceSettings:
    """The preset (``--quick`` or full) with the explicitly given flags applied."""
    preset = QUICK if args.quick else THIN if args.thin else FULL
    overrides: dict[str, Any] = {}
    names = {f.name for f in fields(ConvergenceSettings)}
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = tuple(value) if isinstance(value, list) else value
    if "variants" in overrides:
        overrides["variants"] = ("none", *(v for v in overrides["variants"] if v != "none"))
    return replace(preset, **overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    name = "cuda" if args.device is None and torch.cuda.is_available() else args.device or "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was asked for, but CUDA is not available.")
    default = "convergence_quick" if args.quick else "convergence_thin" if args.thin else ""
    out = args.out or Path("runs") / (default or "convergence")
    try:
        result = run_convergence(
            settings,
            (args.data or default_source(settings.dataset)).resolve(),
            out,
            device=torch.device(name),
            cache_dir=args.cache_dir or default_cache_dir(),
            step_time=args.step_time,
            keep_checkpoints=args.keep_checkpoints,
            progress=args.progress,
        )
    except ValueError as exc:  # bad data, or an output folder made with other settings
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
