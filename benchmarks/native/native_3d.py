"""Task04_Hippocampus as 3D patches: dsplug's own 3D U-Net and MONAI DynUNet, modes none and
hyb, per-volume 3D Dice, HD95 and surface Dice (NSD), hyb - none over seeds.

Each run is ``dsplug train --patch D H W`` (the CLI's own trainer, in this process): random
native-resolution patches of the training volumes (a third centred on foreground), fixed
epochs, validation by 3D Gaussian sliding windows each epoch, and the test volumes scored by
sliding windows at the best validation epoch (the trainer's rule). Dice, HD95 and NSD are per
volume (classes 1 and 2 averaged; HD95 and NSD as MONAI, nan where a class is empty in both
masks, HD95 nan where one is, skipped in means). Seeds pair the runs: the same seed gives none
and hyb the same initial model weights and the same patches. The case split is fixed (a seeded
shuffle of all cases, then subsets) and the same in every run; settings are in the JSON.

Statistics per net and metric (:func:`dsplug.metrics.paired.compare_seeds`): each seed's
hyb - none of the means over the test volumes, "better in k of n seeds" (for HD95 better means
lower), Student's t-test over seeds, and (Dice, NSD) the seeds x cases bootstrap.

Run (one CPU thread, about an hour for the 12 runs):
    OMP_NUM_THREADS=1 python benchmarks/native/native_3d.py \\
        --data ../shared/data/Task04_Hippocampus \\
        --json benchmarks/native/results/native_3d_hippocampus.json
    python benchmarks/native/native_3d.py --quick   # 4 tiny runs, a minute: the path works
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmarks._common import emit, machine_info
from dsplug.metrics.paired import compare_seeds

ROOT = Path(__file__).resolve().parents[2]
METRICS = ("dice", "hd95", "nsd")
#: CLI options of each net: the own U-Net and MONAI DynUNet at the same widths and depth.
NETS = {"unet": ["--model", "unet"], "monai-dynunet": ["--model", "monai-dynunet"]}

QUICK = {
    "train_cases": 3,
    "val_cases": 1,
    "test_cases": 2,
    "epochs": 1,
    "patch": [16, 16, 16],
    "patches_per_image": 1,
    "base_channels": 4,
    "depth": 3,
    "seeds": [0],
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/Task04_Hippocampus"))
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    p.add_argument("--out-dir", type=Path, default=None, help="run folders (default: a tmp dir)")
    p.add_argument("--train-cases", type=int, default=20)
    p.add_argument("--val-cases", type=int, default=4)
    p.add_argument("--test-cases", type=int, default=25)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=14)
    p.add_argument("--patch", type=int, nargs=3, default=[32, 32, 32])
    p.add_argument("--patches-per-image", type=int, default=2)
    p.add_argument("--base-channels", type=int, default=8)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--norm", default="instance")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--nets", nargs="+", choices=tuple(NETS), default=list(NETS))
    p.add_argument("--modes", nargs=2, default=["none", "hyb"], metavar=("REF", "MODE"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--aux-every",
        type=int,
        default=1,
        help="hyb's aux_every (default 1: the paper's step, as the stored results)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    p.add_argument("--quick", action="store_true", help="4 tiny runs (a smoke test)")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="read runs already finished in --out-dir with the same settings instead of "
        "training them again (the JSON is rebuilt from their folders)",
    )
    return p


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    keys = (
        "train_cases",
        "val_cases",
        "test_cases",
        "split_seed",
        "epochs",
        "patch",
        "patches_per_image",
        "base_channels",
        "depth",
        "norm",
        "batch_size",
        "lr",
        "nets",
        "modes",
        "seeds",
        "threads",
        "quick",
    )
    extra = {} if args.aux_every == 1 else {"aux_every": args.aux_every}  # 1: the stored runs'
    return {k: getattr(args, k) for k in keys} | extra


def write_splits(data: Path, args: argparse.Namespace, path: Path) -> dict[str, list[str]]:
    """A seeded shuffle of all labelled cases, cut into train / val / test subsets."""
    ids = sorted(p.name[: -len(".nii.gz")] for p in (data / "labelsTr").glob("*.nii.gz"))
    need = args.train_cases + args.val_cases + args.test_cases
    if len(ids) < need:
        raise ValueError(f"{data} has {len(ids)} labelled cases; the split needs {need}.")
    random.Random(args.split_seed).shuffle(ids)
    a, b = args.train_cases, args.train_cases + args.val_cases
    splits = {"train": sorted(ids[:a]), "val": sorted(ids[a:b]), "test": sorted(ids[b:need])}
    path.write_text(json.dumps(splits, indent=1))
    return splits


def train_argv(
    args: argparse.Namespace, net: str, mode: str, seed: int | str, splits: Path
) -> list[str]:
    """The ``dsplug train`` command line of one run."""
    return [
        "train",
        *("--data", str(args.data), "--kind", "msd", "--splits", str(splits), "--no-cache"),
        *NETS.get(net, ["--model", net]),
        *("--base-channels", str(args.base_channels), "--depth", str(args.depth)),
        *("--norm", args.norm, "--mode", mode, "--seed", str(seed)),
        *(() if mode == "none" else ("--aux-every", str(args.aux_every))),
        *("--patch", *map(str, args.patch), "--patches-per-image", str(args.patches_per_image)),
        *("--recipe", "paper"),  # the stored runs' (patches default to the field recipe now)
        *("--epochs", str(args.epochs), "--min-epochs", str(args.epochs)),
        *("--batch-size", str(args.batch_size), "--lr", str(args.lr)),
        *("--quiet", "--no-tensorboard", "--no-plots", "--device", "cpu"),
    ]


def _float(text: str) -> float:
    return float(text) if text not in ("", "nan") else math.nan


def read_run(folder: Path) -> dict[str, Any]:
    """Test means, per-volume values, and times of a finished run folder."""
    summary = json.loads((folder / "summary.json").read_text())
    with open(folder / "test_cases.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(folder / "log.csv", newline="") as f:
        log = list(csv.DictReader(f))
    test = summary["test"]
    return {
        "test": {k: test[k] for k in (*METRICS, "hd95_nan", "nsd_nan", "cases")},
        "best_val_dice": summary["best_val"]["dice"],
        "best_epoch": summary["efficiency"]["epoch"],
        "epochs_run": len(log),
        "train_s": sum(float(r["train_s"]) for r in log),  # the optimiser steps
        "val_s": sum(float(r["val_s"]) for r in log),  # sliding-window validation
        "fit_wall_s": summary["efficiency"]["wall_s"],
        "cases": {r["case"]: {k: _float(r[k]) for k in METRICS} for r in rows},
    }


def matches(
    folder: Path, args: argparse.Namespace, net: str, mode: str, seed: int, splits: dict
) -> bool:
    """Whether ``folder`` holds a finished run of exactly these settings (``--reuse``)."""
    if not (folder / "summary.json").exists() or not (folder / "config.json").exists():
        return False
    config = json.loads((folder / "config.json").read_text())
    train, model = config["train_config"], config["model_config"]
    wanted = {
        "arch": (model["arch"], NETS.get(net, ["--model", net])[1]),
        "mode": (config["wrapper_config"]["mode"], mode),
        "seed": (train["seed"], seed),
        "epochs": (train["max_epochs"], args.epochs),
        "patch": (train["patch"], list(args.patch)),
        "lr": (train["lr"], args.lr),
        "batch": (train["batch_size"], args.batch_size),
        "train cases": (sorted(config["data_config"]["train"]["cases"]), splits["train"]),
    }
    return all(a == b for a, b in wanted.values())


def compare_metric(a: np.ndarray, b: np.ndarray, *, lower: bool) -> dict[str, Any]:
    """:func:`compare_seeds` of ``a - b`` (seeds x cases) with "better" in the metric's sense.

    With every value finite: per-seed means, the t-test and the seeds x cases bootstrap. Else
    (HD95 of a volume with an empty class; NSD where both masks are empty) each seed's
    nan-skipping mean, over the seeds where both means exist, and no bootstrap.
    """
    if np.isfinite(a).all() and np.isfinite(b).all():
        result = compare_seeds(a, b)
    else:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-nan rows: nan means
            ma, mb = np.nanmean(a, axis=1), np.nanmean(b, axis=1)
        keep = np.isfinite(ma) & np.isfinite(mb)
        if keep.any():
            result = compare_seeds(ma[keep], mb[keep])
        else:
            result = {"per_seed_diff": [], "n_seeds": 0, "mean_diff": None, "p": None}
            result.update(ci95=None, bootstrap=None)
    diffs = result["per_seed_diff"]
    result["better_seeds"] = int(sum(d < 0 if lower else d > 0 for d in diffs))
    result["better_means"] = "lower" if lower else "higher"
    result["better_in"] = f"{result['better_seeds']} of {result['n_seeds']} seeds"
    result["nan_values_skipped"] = int((~np.isfinite(a)).sum() + (~np.isfinite(b)).sum())
    return result


def _compare(runs: dict, net: str, ref: str, mode: str, seeds: Sequence[int]) -> dict:
    """``mode`` - ``ref`` per seed for each metric (per-volume values, the same test cases)."""
    out = {}
    cases = sorted(runs[f"{net}/{ref}/{seeds[0]}"]["cases"])
    for metric in METRICS:

        def matrix(m: str, metric: str = metric) -> np.ndarray:
            return np.array(
                [[runs[f"{net}/{m}/{s}"]["cases"][c][metric] for c in cases] for s in seeds]
            )

        a, b = matrix(mode), matrix(ref)
        result = compare_metric(a, b, lower=metric == "hd95")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result[f"{mode}_per_seed"] = [float(np.nanmean(r)) for r in a]
            result[f"{ref}_per_seed"] = [float(np.nanmean(r)) for r in b]
        out[metric] = result
    return out


def summarize(runs: dict, args: argparse.Namespace) -> dict[str, Any]:
    """Means over seeds per net and mode, and the paired comparison per net."""
    ref, mode = args.modes
    table: dict[str, Any] = {}
    for net in args.nets:
        seeds = [s for s in args.seeds if all(f"{net}/{m}/{s}" in runs for m in (ref, mode))]
        if not seeds:
            continue
        entry: dict[str, Any] = {"seeds": seeds}
        for m in (ref, mode):
            per_seed = [runs[f"{net}/{m}/{s}"] for s in seeds]
            entry[m] = {
                metric: float(np.mean([r["test"][metric] for r in per_seed])) for metric in METRICS
            }
            for key in ("train_s", "val_s", "fit_wall_s"):
                entry[m][key] = float(np.mean([r[key] for r in per_seed]))
        entry[f"{mode}_minus_{ref}"] = _compare(runs, net, ref, mode, seeds)
        entry["train_time_ratio"] = entry[mode]["train_s"] / entry[ref]["train_s"]
        table[net] = entry
    return table


def _line(net: str, entry: dict, ref: str, mode: str) -> str:
    cmp = entry[f"{mode}_minus_{ref}"]
    parts = [
        f"{metric} {entry[ref][metric]:.4f} -> {entry[mode][metric]:.4f} "
        f"({cmp[metric]['better_in']}, p {cmp[metric]['p']})"
        for metric in METRICS
    ]
    return f"{net}: " + "; ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    torch.set_num_threads(args.threads)
    args.data = Path(args.data)
    if not (args.data / "labelsTr").is_dir():
        raise SystemExit(f"native_3d: no MSD task at {args.data} (give --data)")
    from dsplug.cli import main as dsplug_main

    tmp = None
    if args.out_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="native3d_")
        args.out_dir = Path(tmp.name)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    splits_path = args.out_dir / "splits.json"
    splits = write_splits(args.data, args, splits_path)
    ref, mode = args.modes
    plan = [(s, n, m) for s in args.seeds for n in args.nets for m in (ref, mode)]
    runs: dict[str, Any] = {}
    result: dict[str, Any] = {}
    start = time.perf_counter()
    for seed, net, m in tqdm(plan, desc="native_3d runs", unit="run"):
        folder = args.out_dir / net / m / str(seed)
        reused = args.reuse and matches(folder, args, net, m, seed, splits)
        if not reused:
            command = [*train_argv(args, net, m, seed, splits_path), "--out", str(folder)]
            status = dsplug_main(command)
            if status != 0:
                raise SystemExit(f"native_3d: dsplug {' '.join(command)} exited with {status}")
        runs[f"{net}/{m}/{seed}"] = {**read_run(folder), "reused": reused}
        result = {
            "benchmark": "native_3d",
            "complete": len(runs) == len(plan),
            "settings": _settings(args),
            "command": "dsplug "
            + " ".join(train_argv(args, "<net>", "<mode>", "<seed>", Path("<splits.json>"))),
            "splits": splits,
            "machine": machine_info(torch.device("cpu")),
            "wall_s": time.perf_counter() - start,  # this invocation (reused runs: reading)
            "runs_reused": sum(r["reused"] for r in runs.values()),
            "summary": summarize(runs, args),
            "runs": runs,
        }
        if args.json is not None:  # after every run: a partial result survives an interruption
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1) + "\n")
    for net, entry in result["summary"].items():
        print(_line(net, entry, ref, mode), file=sys.stderr)
    emit({k: v for k, v in result.items() if k != "runs"}, None)  # stdout; the file has runs
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
