"""ISBI 2012 membranes: native-resolution patches with sliding-window evaluation against
today's resize path, at the same number of optimiser steps, modes none and hyb, 3 seeds.

Data as the convergence benchmark's ISBI runs (``benchmarks/convergence/runs.py``): the
30-slice stack split into contiguous 15 / 3 / 12 slices (train / val / test), membrane (raw
value 0) as the foreground, per-image z-score. Two paths train the same U-Net with dsplug's
Trainer:

- ``resize``: slices resized to ``--size`` (bilinear, antialiased; masks nearest), whole
  resized slices per step, validated at that size (today's ``--fit resize`` path);
- ``patch``: random ``--patch`` patches of the 512 x 512 slices (a third centred on
  foreground), ``--patches-per-image`` per slice and epoch, validated by Gaussian sliding
  windows at native resolution (``TrainConfig(patch=...)``, as ``dsplug train --patch``).

With the patch equal to the resize size and one patch per slice and epoch, both paths take the
same optimiser steps of the same tensor size per epoch, for the same epochs: the same training
compute. The measured training times (validation included) and their ratio are reported.

Both are scored the same way on the 12 native test slices at 512 x 512 with the checkpoint of
the best validation epoch: the patch model by sliding windows, the resize model on the slice
resized to ``--size`` with its logits resized back (bilinear), as the issue describes today's
path. Dice, HD95 and NSD (1 px tolerance) per slice. Statistics
(:func:`dsplug.metrics.paired.compare_seeds`): patch - resize per mode, and hyb - none
per path, per seed, "better in k of n seeds", the t-test over seeds and the seeds x slices
bootstrap.

Run (one CPU thread):
    OMP_NUM_THREADS=1 python benchmarks/native/isbi_patches.py \\
        --data ../shared/data/isbi2012_em_membrane/train \\
        --json benchmarks/native/results/isbi_patches.json
    python benchmarks/native/isbi_patches.py --quick   # 4 tiny runs: the path works
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from benchmarks._common import emit, machine_info
from benchmarks.native.native_3d import compare_metric

ROOT = Path(__file__).resolve().parents[2]
METRICS = ("dice", "hd95", "nsd")
PATHS = ("resize", "patch")
#: The share of patches centred on foreground (as ``dsplug train --patch``).
FOREGROUND_FRACTION = 1 / 3

QUICK = {"epochs": 1, "size": 64, "base_channels": 4, "depth": 3, "seeds": [0]}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/isbi2012_em_membrane/train"))
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    p.add_argument("--out-dir", type=Path, default=None, help="run folders (default: a tmp dir)")
    p.add_argument("--size", type=int, default=128, help="resize size = patch size (square)")
    p.add_argument("--patches-per-image", type=int, default=1)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--base-channels", type=int, default=16)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--modes", nargs=2, default=["none", "hyb"], metavar=("REF", "MODE"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    p.add_argument("--quick", action="store_true", help="4 tiny runs (a smoke test)")
    return p


def build_sets(data: Path, size: int | None, divisor: int) -> dict[str, Any]:
    """The contiguous 15 / 3 / 12 split, membrane foreground; resized to ``size`` or native."""
    from dsplug.data import LabelRule, Preprocessing, build_datasets

    fit = {"fit": "resize", "size": (size, size)} if size else {"fit": "pad", "size": None}
    return build_datasets(
        data,
        kind="folder",
        preprocessing=Preprocessing(multiple=divisor, **fit),
        contiguous=True,
        fractions=(0.5, 0.1, 0.4),
        cache=False,
        options={
            "image": "image/{id}.png",
            "mask": "label/{id}.png",
            "labels": LabelRule.binary((0, 255), foreground=(0,)),
        },
    )


class ResizeBack(nn.Module):
    """A resize-trained model on native slices: resize in (bilinear, antialiased, as the
    loader), predict, resize the logits back (bilinear)."""

    def __init__(self, model: nn.Module, size: int) -> None:
        super().__init__()
        self.model, self.size = model, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        small = F.interpolate(
            x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True
        )
        logits = self.model(small)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _patches(args: argparse.Namespace, native_train: Any) -> Any:
    from dsplug.data import PatchDataset
    from dsplug.data.volumes import native_cases

    cases = native_cases(native_train, 2)
    return PatchDataset(
        [c.image for c in cases],
        [c.mask[0] for c in cases],
        (args.size, args.size),
        label_mode="binary",
        patches_per_image=args.patches_per_image,
        foreground_fraction=FOREGROUND_FRACTION,
        cases=[c.case for c in cases],
    )


def run_one(
    args: argparse.Namespace, sets: dict, path: str, mode: str, seed: int, out: Path
) -> dict[str, Any]:
    """Train one (path, mode, seed); score the best-validation checkpoint on native test."""
    from dsplug import DeepSupervised
    from dsplug.train import TrainConfig, Trainer, build_model
    from dsplug.train.native import case_rows, score_dataset
    from dsplug.train.predict import load_model
    from dsplug.train.runtime import seed_everything

    native, small = sets["native"], sets["resize"]
    config = {
        "arch": "unet",
        "in_channels": 1,
        "classes": 1,
        "base_channels": args.base_channels,
        "depth": args.depth,
        "norm": "batch",
    }
    seed_everything(seed)
    ds = DeepSupervised(build_model(config), mode, label_mode="binary", aux_every=1)
    patch = [args.size, args.size] if path == "patch" else None
    train_config = TrainConfig(
        max_epochs=args.epochs,
        min_epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=seed,
        progress=False,
        tensorboard=False,
        plots=False,
        patch=patch,
        recipe="paper",  # the stored runs' (patches default to the field recipe now)
        amp="off",
    )
    train = _patches(args, native["train"]) if patch else small["train"]
    val = native["val"] if patch else small["val"]
    trainer = Trainer(
        ds, train, val, out=out, config=train_config, model_config=config, device="cpu"
    )
    t0 = time.perf_counter()
    summary = trainer.fit()
    fit_s = time.perf_counter() - t0
    model, _ = load_model(out / "best.pt", torch.device("cpu"))
    scored = model if patch else ResizeBack(model, args.size).eval()
    metrics = score_dataset(
        scored, native["test"], "binary", torch.device("cpu"), patch=patch, batch_size=4
    )
    test = metrics.summary()
    with open(out / "log.csv", newline="") as f:
        log = list(csv.DictReader(f))
    return {
        "test": {k: test[k] for k in (*METRICS, "hd95_nan", "nsd_nan", "cases")},
        "cases": {r["case"]: {k: float(r[k]) for k in METRICS} for r in case_rows(metrics)},
        "best_epoch": summary["efficiency"]["epoch"],
        "epochs_run": len(log),
        "train_s": sum(float(r["train_s"]) for r in log),  # the optimiser steps
        "val_s": sum(float(r["val_s"]) for r in log),
        "fit_wall_s": fit_s,
        "steps_per_epoch": math.ceil(len(train) / args.batch_size),
        "train_items_per_epoch": len(train),
    }


def _compare(a_runs: list[dict], b_runs: list[dict]) -> dict[str, Any]:
    """a - b per seed for each metric (HD95: better means lower), from per-slice values."""
    cases = sorted(a_runs[0]["cases"])
    out = {}
    for metric in METRICS:
        a = np.array([[r["cases"][c][metric] for c in cases] for r in a_runs])
        b = np.array([[r["cases"][c][metric] for c in cases] for r in b_runs])
        out[metric] = compare_metric(a, b, lower=metric == "hd95")
    return out


def summarize(runs: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    ref, mode = args.modes
    seeds = [
        s for s in args.seeds if all(f"{p}/{m}/{s}" in runs for p in PATHS for m in (ref, mode))
    ]
    if not seeds:
        return {}

    def of(path: str, m: str) -> list[dict]:
        return [runs[f"{path}/{m}/{s}"] for s in seeds]

    table: dict[str, Any] = {"seeds": seeds, "means": {}}
    for path in PATHS:
        for m in (ref, mode):
            rs = of(path, m)
            table["means"][f"{path}/{m}"] = {
                **{k: float(np.mean([r["test"][k] for r in rs])) for k in METRICS},
                "train_s": float(np.mean([r["train_s"] for r in rs])),
                "val_s": float(np.mean([r["val_s"] for r in rs])),
                "dice_per_seed": [r["test"]["dice"] for r in rs],
            }
    table["patch_minus_resize"] = {
        m: _compare(of("patch", m), of("resize", m)) for m in (ref, mode)
    }
    table[f"{mode}_minus_{ref}"] = {p: _compare(of(p, mode), of(p, ref)) for p in PATHS}
    table["train_time_ratio_patch_over_resize"] = {
        m: table["means"][f"patch/{m}"]["train_s"] / table["means"][f"resize/{m}"]["train_s"]
        for m in (ref, mode)
    }
    gains = {m: table["patch_minus_resize"][m]["dice"]["mean_diff"] for m in (ref, mode)}
    table["target_0.03_met"] = {m: bool(g >= 0.03) for m, g in gains.items()}
    return table


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    if not (data / "image").is_dir():
        raise SystemExit(f"isbi_patches: no ISBI 2012 image/ and label/ folders at {data}")
    tmp = None
    if args.out_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="isbi_patches_")
        args.out_dir = Path(tmp.name)
    divisor = 2 ** (args.depth - 1)
    sets = {
        "native": build_sets(data, None, divisor),
        "resize": build_sets(data, args.size, divisor),
    }
    ref, mode = args.modes
    plan = [(s, p, m) for s in args.seeds for m in (ref, mode) for p in PATHS]
    runs: dict[str, Any] = {}
    result: dict[str, Any] = {}
    start = time.perf_counter()
    for seed, path, m in tqdm(plan, desc="isbi_patches runs", unit="run"):
        folder = args.out_dir / path / m / str(seed)
        runs[f"{path}/{m}/{seed}"] = run_one(args, sets, path, m, seed, folder)
        result = {
            "benchmark": "isbi_patches",
            "complete": len(runs) == len(plan),
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "split": {n: list(sets["native"][n].cases) for n in ("train", "val", "test")},
            "machine": machine_info(torch.device("cpu")),
            "wall_s": time.perf_counter() - start,
            "summary": summarize(runs, args),
            "runs": runs,
        }
        if args.json is not None:  # after every run: a partial result survives an interruption
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1) + "\n")
    emit({k: v for k, v in result.items() if k != "runs"}, None)  # stdout; the file has runs
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
