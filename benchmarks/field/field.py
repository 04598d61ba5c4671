"""The field recipe on three task families: ISBI 2012 on native 2D patches, Task04 on 3D
patches, Task04 on 2D slices; modes ``none`` and a deep-supervision mode (``hyb``), 3 seeds.

Every run is ``dsplug train --recipe field`` (the CLI's own Trainer, in this process): Adam
after a linear warm-up, poly decay, ``--iterations`` steps per epoch whatever the data set's
size, the field's augmentation, and for patches a third centred on foreground. Each row has a
fixed budget of epochs x iterations (``--min-epochs`` = ``--epochs``: every run takes all its
steps, so ``none`` and the mode get the same optimiser steps; ``BUDGETS``; the JSON records the
measured times). ``--paper ROW:MODE`` also trains MODE with the paper's recipe at about the
row's steps (patch rows), so that the recipe itself is compared. The splits are fixed and
written next to the runs: ISBI's 30-slice stack as contiguous 15 / 3 / 12 slices (as
``benchmarks/native/isbi_patches.py``), Task04 a seeded shuffle of its 200 labelled cases into
150 / 10 / 40 (the same split for 3D and 2D).

Test metrics are the Trainer's at the best validation epoch (patch rows: Gaussian sliding
windows at native resolution, Dice, HD95 and NSD per case; slice rows: Dice per volume of
stacked slices). Each run's validation Dice per epoch is kept (``val_dice_curve``). Per row,
the mode - none comparison per seed is :func:`benchmarks.native_3d.compare_metric`'s.

Run (two runs at a time, one thread each; about 100 minutes on 2 cores; ``--rows`` picks rows):
    python benchmarks/field/field.py --rows task04-3d isbi-patches task04-2d --jobs 2 \\
        --paper task04-3d:none task04-3d:hyb isbi-patches:none --threads 1 --out-dir runs/field
        # writes benchmarks/field/results/field.json
    python benchmarks/field/field.py --quick     # 6 tiny runs, a few minutes: the path works
Finished runs in ``--out-dir`` are read, not retrained (an interrupted call goes on where it
stopped); ``--jobs 2 --threads 1`` trains two runs at a time. The validation curves of every run
are plotted beside the JSON (``field.png``).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import multiprocessing
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmarks._common import emit, machine_info
from benchmarks.field.report import plot_curves
from benchmarks.native.native_3d import compare_metric

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared/data"
RESULT = ROOT / "benchmarks/field/results/field.json"
ROWS = ("isbi-patches", "task04-3d", "task04-2d")
PAPER = "-paper"  # the suffix of the arm trained with the paper's recipe
SPLIT_OF = {"isbi-patches": "isbi", "task04-3d": "task04", "task04-2d": "task04"}
METRICS = ("dice", "hd95", "nsd")

#: Each row's net and budget (full runs): sized so that the three rows and the paper's arms of
#: the command above take about two hours on 2 CPU cores at two runs at a time; the JSON has
#: the measured times.
BUDGETS: dict[str, dict[str, Any]] = {
    "isbi-patches": {
        "patch": [128, 128],
        "base_channels": 8,
        "depth": 4,
        "norm": "batch",
        "batch_size": 4,
        "epochs": 8,
        "iterations": 250,
        "budget": "2,000 steps of 4 x 128^2 patches per run",
    },
    "task04-3d": {
        "patch": [32, 32, 32],
        "base_channels": 8,
        "depth": 4,
        "norm": "instance",
        "batch_size": 2,
        "epochs": 25,
        "iterations": 100,
        "budget": "2,500 steps of 2 x 32^3 patches per run",
    },
    "task04-2d": {
        "patch": None,
        "base_channels": 16,
        "depth": 4,
        "norm": "batch",
        "batch_size": 16,
        "epochs": 6,
        "iterations": 250,
        "budget": "1,500 steps of 16 whole slices per run",
    },
}
#: --quick: tiny nets and splits, two steps per epoch (ISBI: 64 px patches, fewer windows
#: over the 512 x 512 slices than 32 px ones).
QUICK_NET = {"base_channels": 4, "depth": 3, "epochs": 1, "iterations": 2, "batch_size": 2}
QUICK_PATCH = {"isbi-patches": [64, 64], "task04-3d": [16, 16, 16], "task04-2d": None}
QUICK_SPLIT = {"isbi": (2, 1, 1), "task04": (3, 1, 2)}
#: What the rows are read against (sources in the README table).
ANCHORS = {
    "isbi-patches": "dsplug today, paper recipe, 40 epochs, width 8: none Dice 0.743 "
    "(benchmarks/native/results/isbi_patches.json)",
    "task04-3d": "nnU-Net about 0.89-0.90 mean Dice (MSD leaderboard); dsplug today 0.76-0.78 "
    "after 14 short epochs (benchmarks/native/results/native_3d_hippocampus.json)",
    "task04-2d": "nnU-Net 2D about 0.89 mean Dice (Isensee et al. 2021, Task04)",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    p.add_argument("--isbi", type=Path, default=DATA / "isbi2012_em_membrane/train")
    p.add_argument("--task04", type=Path, default=DATA / "Task04_Hippocampus")
    p.add_argument("--modes", nargs=2, default=["none", "hyb"], metavar=("REF", "MODE"))
    p.add_argument(
        "--paper",
        nargs="+",
        default=[],
        metavar="ROW:MODE",
        type=_paper_arm,
        help="also train MODE on ROW (a patch row) with the paper's recipe at the row's steps "
        f"(arm '<MODE>{PAPER}'), e.g. task04-3d:none task04-3d:hyb",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=2, help="torch threads per run (default: 2)")
    p.add_argument(
        "--jobs", type=int, default=1, help="runs trained at the same time, each in its process"
    )
    p.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="run folders (default: a tmp dir); finished runs found there are read, not retrained",
    )
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        help=f"the result file (default: {RESULT}; --quick: none)",
    )
    p.add_argument("--quick", action="store_true", help="6 tiny runs (a smoke test)")
    p.add_argument(
        "--no-train",
        action="store_true",
        help="only read the runs finished in --out-dir (the JSON says which are missing)",
    )
    return p


def _paper_arm(text: str) -> tuple[str, str]:
    """``ROW:MODE`` of ``--paper`` (a patch row: the paper's epoch is patches per image)."""
    row, _, mode = text.partition(":")
    if row not in SPLIT_OF or row == "task04-2d" or not mode:
        patch_rows = [r for r in ROWS if r != "task04-2d"]
        raise argparse.ArgumentTypeError(
            f"expected ROW:MODE with ROW in {patch_rows}, got {text!r}"
        )
    return row, mode


def write_splits(args: argparse.Namespace, folder: Path) -> dict[str, Path]:
    """The fixed splits of both data sets, as ``--splits`` files in ``folder``."""
    isbi = sorted((p.stem for p in (args.isbi / "image").glob("*.png")), key=int)
    task = sorted(p.name[: -len(".nii.gz")] for p in (args.task04 / "labelsTr").glob("*.nii.gz"))
    random.Random(0).shuffle(task)
    if args.quick:
        (a, b, c), (d, e, f) = QUICK_SPLIT["isbi"], QUICK_SPLIT["task04"]
    else:
        (a, b, c), (d, e, f) = (15, 3, 12), (150, 10, 40)
    if len(isbi) < a + b + c or len(task) < d + e + f:
        raise SystemExit(
            f"field: need {a + b + c} ISBI slices and {d + e + f} Task04 cases, found "
            f"{len(isbi)} and {len(task)} (give --isbi / --task04)."
        )
    splits = {
        "isbi": {"train": isbi[:a], "val": isbi[a : a + b], "test": isbi[a + b : a + b + c]},
        "task04": {
            "train": sorted(task[:d]),
            "val": sorted(task[d : d + e]),
            "test": sorted(task[d + e : d + e + f]),
        },
    }
    paths = {}
    for name, split in splits.items():
        paths[name] = folder / f"splits_{name}.json"
        paths[name].write_text(json.dumps(split, indent=1))
    return paths


def row_settings(row: str, quick: bool) -> dict[str, Any]:
    """The net and budget of ``row`` (the quick ones with ``quick``)."""
    settings = dict(BUDGETS[row])
    if quick:
        settings.update(QUICK_NET, patch=QUICK_PATCH[row], budget="--quick smoke test")
    return settings


def paper_epochs(s: dict[str, Any], images: int) -> tuple[int, int]:
    """Patches per image and epochs of the paper's recipe at the row's steps (``images``
    training images): epochs about as long as the field recipe's (so its learning rate decays
    about as often per step), about as many steps in all."""
    per_image = max(1, round(s["iterations"] * s["batch_size"] / images))
    steps = math.ceil(per_image * images / s["batch_size"])
    return per_image, max(1, round(s["epochs"] * s["iterations"] / steps))


def train_argv(
    args: argparse.Namespace, row: str, mode: str, seed: int, splits: dict[str, Path]
) -> list[str]:
    """The ``dsplug train`` command line of one run (``mode`` ending in ``-paper``: the paper's
    recipe)."""
    s = row_settings(row, args.quick)
    if row == "isbi-patches":
        labels = '{"binary": {"values": [0, 255], "foreground": [0]}}'
        data = [
            *("--data", str(args.isbi), "--kind", "folder", "--splits", str(splits["isbi"])),
            *("--option", "image=image/{id}.png", "--option", "mask=label/{id}.png"),
            *("--option", f"labels={labels}"),
        ]
    else:
        data = ["--data", str(args.task04), "--kind", "msd", "--splits", str(splits["task04"])]
    patch = ["--patch", *map(str, s["patch"])] if s["patch"] else []
    if mode.endswith(PAPER):
        split = json.loads(splits[SPLIT_OF[row]].read_text())
        per_image, epochs = paper_epochs(s, len(split["train"]))
        mode = mode.removesuffix(PAPER)
        recipe = ["--recipe", "paper", "--patches-per-image", str(per_image)]
    else:
        epochs = s["epochs"]
        recipe = ["--recipe", "field", "--iterations", str(s["iterations"])]
    return [
        "train",
        *data,
        "--no-cache",
        *("--model", "unet", "--base-channels", str(s["base_channels"])),
        *("--depth", str(s["depth"]), "--norm", s["norm"]),
        *("--mode", mode, "--seed", str(seed), *recipe),
        *patch,
        *("--epochs", str(epochs), "--min-epochs", str(epochs)),
        *("--batch-size", str(s["batch_size"])),
        *("--quiet", "--no-tensorboard", "--no-plots", "--device", "cpu"),
    ]


def _float(value: Any) -> float:
    if value is None or value in ("", "nan"):
        return math.nan
    return float(value)


def read_run(folder: Path) -> dict[str, Any]:
    """Test means, per-case values, the validation Dice curve and times of a finished run."""
    summary = json.loads((folder / "summary.json").read_text())
    with open(folder / "test_cases.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(folder / "log.csv", newline="") as f:
        log = list(csv.DictReader(f))
    test = summary["test"]
    return {
        "test": {k: _float(test.get(k)) for k in (*METRICS, "avg_m")},
        "best_val_dice": summary["best_val"]["dice"],
        "best_epoch": summary["efficiency"]["epoch"],
        "epochs_run": len(log),
        "val_dice_curve": [round(float(r["val_dice"]), 4) for r in log],
        "train_s": sum(float(r["train_s"]) for r in log),
        "val_s": sum(float(r["val_s"]) for r in log),
        "fit_wall_s": summary["efficiency"]["wall_s"],
        "recipe": summary["recipe"],
        "cases": {r["case"]: {k: _float(r.get(k)) for k in METRICS} for r in rows},
        "class_dice": {  # per class (multi-class data): a class no case predicts is a collapse
            k: float(np.nanmean([_float(r[k]) for r in rows]))
            for k in (rows[0] if rows else {})
            if k.startswith("dice_")
        },
    }


def collapsed(run: dict[str, Any]) -> bool:
    """A run whose test Dice, or one class's, is (near) zero: it predicts (that class) nowhere."""
    return min([run["test"]["dice"], *run.get("class_dice", {}).values()]) < 0.05


def _difference(runs: dict[str, Any], row: str, a: str, b: str, seeds: list[int]) -> dict:
    """``a`` - ``b`` per seed for each metric (per-case values, the same test cases)."""
    cases = sorted(runs[f"{row}/{b}/{seeds[0]}"]["cases"])
    diff = {}
    for metric in METRICS:
        x, y = (
            np.array([[runs[f"{row}/{m}/{s}"]["cases"][c][metric] for c in cases] for s in seeds])
            for m in (a, b)
        )
        if not np.isnan(x).all():
            diff[metric] = compare_metric(x, y, lower=metric == "hd95")
    return diff


def summarize(runs: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Per row: the means over seeds per arm, mode - none per seed for each metric, and for
    each mode also trained with the paper's recipe: field - paper (and, with both modes there,
    mode - none under the paper's recipe)."""
    ref, mode = args.modes
    table: dict[str, Any] = {}
    for row in args.rows:
        seeds = [s for s in args.seeds if all(f"{row}/{m}/{s}" in runs for m in (ref, mode))]
        if not seeds:
            continue
        entry: dict[str, Any] = {"seeds": seeds}
        papers = [m for m in (ref, mode) if all(f"{row}/{m}{PAPER}/{s}" in runs for s in seeds)]
        for m in (ref, mode, *(m + PAPER for m in papers)):
            rs = [runs[f"{row}/{m}/{s}"] for s in seeds]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a metric absent: nan
                entry[m] = {k: float(np.nanmean([r["test"][k] for r in rs])) for k in METRICS}
            entry[m]["dice_per_seed"] = [r["test"]["dice"] for r in rs]
            entry[m]["fit_wall_s"] = float(np.mean([r["fit_wall_s"] for r in rs]))
        entry[f"{mode}_minus_{ref}"] = _difference(runs, row, mode, ref, seeds)
        for m in papers:
            entry[f"{m}_minus_{m}{PAPER}"] = _difference(runs, row, m, m + PAPER, seeds)
        if len(papers) == 2:
            both = (mode + PAPER, ref + PAPER)
            entry[f"{both[0]}_minus_{both[1]}"] = _difference(runs, row, *both, seeds)
        entry["collapsed"] = sorted(
            k for k, r in runs.items() if k.startswith(f"{row}/") and collapsed(r)
        )
        table[row] = entry
    return table


def _train(command: list[str], threads: int) -> None:
    """One ``dsplug train`` run in this process, its output on stderr (stdout: the JSON)."""
    from dsplug.cli import main as dsplug_main

    torch.set_num_threads(threads)
    with contextlib.redirect_stdout(sys.stderr):
        status = dsplug_main(command)
    if status != 0:
        raise SystemExit(f"field: dsplug {' '.join(command)} exited with {status}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.json is None and not args.quick:
        args.json = RESULT
    if args.quick:
        args.seeds = args.seeds[:1]
    torch.set_num_threads(args.threads)
    for name, path, marker in (
        ("--isbi", args.isbi, "image"),
        ("--task04", args.task04, "labelsTr"),
    ):
        if not (path / marker).is_dir():
            raise SystemExit(f"field: no {marker}/ at {path} (give {name})")
    tmp = None
    if args.out_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="field_")
        args.out_dir = Path(tmp.name)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    splits = write_splits(args, args.out_dir)
    ref, mode = args.modes
    arms = [(r, m) for r in args.rows for m in (ref, mode)]
    arms += [(r, m + PAPER) for r, m in args.paper if r in args.rows]
    plan = [(r, s, m) for r, m in arms for s in args.seeds]
    runs: dict[str, Any] = {}
    result: dict[str, Any] = {}
    start = time.perf_counter()

    def record(row: str, m: str, seed: int) -> None:
        runs[f"{row}/{m}/{seed}"] = read_run(args.out_dir / row / m / str(seed))
        result.clear()
        result.update(
            {
                "benchmark": "field",
                "complete": len(runs) == len(plan),
                "settings": {
                    "rows": {r: row_settings(r, args.quick) for r in args.rows},
                    "modes": args.modes,
                    "paper": [f"{r}:{m}" for r, m in args.paper],
                    "seeds": args.seeds,
                    "threads": args.threads,
                    "jobs": args.jobs,
                    "quick": args.quick,
                },
                "commands": {
                    r: "dsplug " + " ".join(train_argv(args, r, "<mode>", 0, splits))
                    for r in args.rows
                },
                "splits": {k: json.loads(p.read_text()) for k, p in splits.items()},
                "anchors": {r: ANCHORS[r] for r in args.rows},
                "machine": machine_info(torch.device("cpu")),
                "wall_s": time.perf_counter() - start,
                "summary": summarize(runs, args),
                "runs": dict(sorted(runs.items())),
            }
        )
        if args.json is not None:  # after every run: a partial result survives an interruption
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1) + "\n")
            plot_curves(result, args.json.with_suffix(".png"))

    done = [k for k in plan if (args.out_dir / k[0] / k[2] / str(k[1]) / "summary.json").exists()]
    for row, seed, m in done:  # finished in an earlier call: read, not retrained
        record(row, m, seed)
    pending = sorted(  # row by row, seed by seed (a cut-short call leaves whole pairs), the
        # mode before none, the paper's arms after the pairs
        (k for k in plan if k not in done),
        key=lambda k: (args.rows.index(k[0]), k[2].endswith(PAPER), k[1], k[2] == ref),
    )
    commands = {
        (row, seed, m): [
            *train_argv(args, row, m, seed, splits),
            *("--out", str(args.out_dir / row / m / str(seed))),
        ]
        for row, seed, m in pending
    }
    if args.no_train:
        pending = []
        result["missing"] = [
            f"{row}/{m}/{seed}" for row, seed, m in plan if (row, seed, m) not in done
        ]
        if args.json is not None:
            args.json.write_text(json.dumps(result, indent=1) + "\n")
    bar = tqdm(total=len(plan), initial=len(done), desc="field runs", unit="run")
    if args.jobs <= 1:
        for key in pending:
            _train(commands[key], args.threads)
            record(key[0], key[2], key[1])
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
            futures = {pool.submit(_train, commands[k], args.threads): k for k in pending}
            for future in as_completed(futures):
                future.result()
                row, seed, m = futures[future]
                record(row, m, seed)
                bar.update()
    bar.close()
    emit({k: v for k, v in result.items() if k != "runs"}, None)  # stdout; the file has runs
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
