"""Learning from images without masks (issue 27): test Dice against labelled cases, per arm.

Task04_Hippocampus 2D slices (empty slices kept, the loaders' default): a seeded permutation of
the 200 cases gives ``--val`` validation and ``--test`` test cases (the same at every size) and a
training pool; the first n cases of the pool keep their masks, every other pool case is
unlabelled (its mask is never read into training). One recipe for every arm: dsplug's own U-Net
(base 8, depth 4, batch norm), Adam(3e-4) x0.9 every tenth of the budget, a labelled batch of 8
per step, equal optimiser steps for every arm, validation every ``--eval-every`` steps with the
paper's early stopping in evaluations (stop after evaluation e when e >= max(min, 2 x best)),
the best validation state tested. The semi-supervised arms add an unlabelled batch of 8 per
step, weighted by a sigmoid ramp-up over the first quarter of the budget; their teacher is an
EMA of the student (decay 0.99). Unlabelled batches come from their own generator, so every
arm of a seed sees the same labelled batches in the same order: a difference between arms is
their loss's, not a different draw's (``--shared-draws``: one generator, as the first runs).

Arms:
    none, up, hyb: supervised, labelled cases only (``up`` is the strongest mask-only mode).
    mean-teacher: ``none`` + mean teacher's consistency (MSE of probabilities under noise and
        flips, weight 0.1 as SSL4MIS; ``mean-teacher-1``: weight 1).
    pseudo-none, pseudo-up: ``none`` / ``up`` on the EMA teacher's confident pseudo-masks
        (``ds.unlabeled(x, teacher)``): the teacher's share, without a tied decoder.
    hyb-semi: ``hyb`` on the same pseudo-masks: the G pass and the tied decoder on unlabelled
        images too (dsplug's μ-Net recipe).
    hyb-rei: ``hyb`` with the tied decoder reconstructing unlabelled X (no teacher).
    up-mt: ``up`` + mean teacher's consistency (weight 0.1): the strongest mask-only mode with
        the field's semi-supervised baseline.
    up-cons, up-cons-01: ``up`` + its side outputs' consistency on unlabelled X (URPC,
        ``ds.loss(ds.unlabeled(x))``), weight 1 / 0.1; ``up-cons-0``: weight 0, the control
        (the unlabelled forward pass and its draws without their loss).
    up-cons-0-ks, up-cons-01-ks, up-mt-ks: the same with batch norm's running statistics left
        as the labelled batches make them (the unlabelled pass normalises with its own batch).
    full, full-up: ``none`` / ``up`` with every pool case labelled (the upper line).

Test metrics: per case (slices' counts summed, the two classes averaged), mean over cases; the
seed is the unit of every p-value (a t-test of per-seed differences), with "better in k of n".

Usage:
    python benchmarks/semi/semi.py --labeled 4 --seeds 0,1,2 --jobs 2 --out runs/semi \\
        --json benchmarks/semi/results/semi_hippocampus.json \\
        --plot benchmarks/semi/results/semi_hippocampus.png
    python benchmarks/semi/semi.py --quick   # a few steps on 2 labelled cases (smoke test)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dsplug import DeepSupervised, UNet
from dsplug.data import LabelRule, MSDDataset, build_datasets, default_cache_dir
from dsplug.data.msd import read_msd_json
from dsplug.data.nifti import nifti_case_id
from dsplug.data.preprocess import Preprocessing
from dsplug.metrics.paired import compare_seeds
from dsplug.semi import EMATeacher, mean_teacher_loss, sigmoid_rampup

__all__ = ["ARMS", "Arm", "main", "run_arm", "summarise"]

SOURCE = Path(__file__).resolve().parents[3] / "shared" / "data" / "Task04_Hippocampus"
ISBI = "isbi2012_em_membrane/train"


@dataclass(frozen=True)
class Arm:
    """One arm: the wrapper's mode, how it uses unlabelled images, and its unlabelled weight."""

    mode: str
    semi: str | None = None  # None, "mean-teacher", "pseudo" or "rei"
    weight: float = 1.0
    all_labeled: bool = False
    keep_stats: bool = False  # the unlabelled pass leaves batch norm's running statistics


ARMS: dict[str, Arm] = {
    "none": Arm("none"),
    "up": Arm("up"),
    "hyb": Arm("hyb"),
    "mean-teacher": Arm("none", "mean-teacher", 0.1),
    "mean-teacher-1": Arm("none", "mean-teacher", 1.0),
    "pseudo-none": Arm("none", "pseudo"),
    "pseudo-up": Arm("up", "pseudo"),
    "hyb-semi": Arm("hyb", "pseudo"),
    "hyb-rei": Arm("hyb", "rei"),
    "up-mt": Arm("up", "mean-teacher", 0.1),
    "up-cons": Arm("up", "rei", 1.0),
    "up-cons-01": Arm("up", "rei", 0.1),
    "up-cons-0": Arm("up", "rei", 0.0),
    "up-cons-0-ks": Arm("up", "rei", 0.0, keep_stats=True),
    "up-cons-01-ks": Arm("up", "rei", 0.1, keep_stats=True),
    "up-mt-ks": Arm("up", "mean-teacher", 0.1, keep_stats=True),
    "full": Arm("none", all_labeled=True),
    "full-up": Arm("up", all_labeled=True),
}


@dataclass(frozen=True)
class Setting:
    labeled: int
    seed: int
    steps: int
    eval_every: int
    min_evals: int
    val: int
    test: int
    size: tuple[int, int] = (48, 64)
    base: int = 8
    depth: int = 4
    batch: int = 8
    split_seed: int = 0
    confidence: float = 0.8  # the teacher's confidence a pseudo-label pixel needs
    ramp_start: float = 0.0  # the unlabelled loss is off before this share of the steps
    ramp: float = 0.25  # then its sigmoid ramp-up over this share
    data: str = "hippocampus"  # or "isbi2012": the contiguous training block of the stack
    # unlabelled batches drawn from their own generator, so that every arm of a seed sees the
    # same labelled batches in the same order (False: one generator, as the first runs did)
    paired_draws: bool = True


def _cases(source: Path, val: int, test: int, split_seed: int) -> dict[str, list[str]]:
    """A seeded permutation of every case: validation, test, then the training pool."""
    ids = sorted(nifti_case_id(e["image"]) for e in read_msd_json(source)["training"])
    order = np.random.default_rng(split_seed).permutation(len(ids))
    ids = [ids[i] for i in order]
    return {"val": ids[:val], "test": ids[val : val + test], "pool": ids[val + test :]}


def _slices(data: MSDDataset, cases: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Every slice of ``cases``: images (N, 1, H, W), masks (N, H, W) int64, case of each."""
    items = [data[data.index(c, k)] for c in cases for k in data.slices_of(c)]
    images = torch.stack([item["image"] for item in items])
    masks = torch.stack([item["mask"].long() for item in items])
    return images, masks, [item["case"] for item in items]


def _isbi_sets(
    source: Path, s: Setting, out: Path
) -> dict[str, tuple[torch.Tensor, torch.Tensor, list]]:
    """ISBI 2012 as benchmarks/convergence/convergence.py reads it: contiguous 15 / 3 / 12
    slices of the stack, membranes (raw 0) the foreground, resized to 128 px; the training block
    is the pool (its first ``s.labeled`` slices keep their masks)."""
    sets = build_datasets(
        source,
        kind="folder",
        preprocessing=Preprocessing(fit="resize", size=(128, 128), multiple=2 ** (s.depth - 1)),
        contiguous=True,
        fractions=(0.5, 0.1, 0.4),
        splits_path=out / "isbi_splits.json",
        cache_dir=default_cache_dir(),
        options={
            "image": "image/{id}.png",
            "mask": "label/{id}.png",
            "labels": LabelRule.binary((0, 255), foreground=(0,)),
        },
    )
    names = {"pool": "train", "val": "val", "test": "test"}
    result = {}
    for key, split in names.items():
        items = [sets[split][i] for i in range(len(sets[split]))]
        images = torch.stack([item["image"] for item in items])
        masks = torch.stack([item["mask"].float().reshape(1, *images.shape[2:]) for item in items])
        result[key] = (images, masks, [item["case"] for item in items])
    return result


@contextlib.contextmanager
def _running_stats_kept(model: torch.nn.Module) -> Iterator[None]:
    """Batch norm's running statistics as they were before the block (momentum 0 inside; the
    block's forward passes still normalise with their own batch's statistics)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [
        (m.momentum, None if m.num_batches_tracked is None else int(m.num_batches_tracked))
        for m in norms
    ]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.fill_(tracked)


def _dice(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, owner: list) -> float:
    """Mean over cases of the classes' Dice (slices' counts summed per case); a binary model
    (one output channel): the foreground's Dice per case."""
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(x[i : i + 64]) for i in range(0, len(x), 64)])
    binary = logits.shape[1] == 1
    pred = (logits[:, 0] > 0).long() if binary else logits.argmax(1)
    y = y[:, 0].long() if binary and y.dim() == 4 else y
    cases = sorted(set(owner))
    index = {c: i for i, c in enumerate(cases)}
    rows = torch.tensor([index[c] for c in owner])
    scores = []
    for k in (1,) if binary else (1, 2):
        p, t = (pred == k).flatten(1).sum(1), (y == k).flatten(1).sum(1)
        inter = ((pred == k) & (y == k)).flatten(1).sum(1)
        sums = [torch.zeros(len(cases)).index_add_(0, rows, v.float()) for v in (inter, p, t)]
        scores.append(2 * sums[0] / (sums[1] + sums[2]).clamp(min=1))
    return float(torch.stack(scores).mean(0).mean())


def run_arm(name: str, s: Setting, source: Path, out: Path) -> dict[str, Any]:
    """Train one arm on one setting; the result is written to ``out`` (and reused)."""
    # an all-labelled arm does not depend on the labelled count: one run per seed serves all
    size = "all" if ARMS[name].all_labeled else f"n{s.labeled}"
    path = out / f"{name}_{size}_seed{s.seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    torch.set_num_threads(1)
    arm = ARMS[name]
    if s.data == "isbi2012":
        sets = _isbi_sets(source, s, out)
        pool_x, pool_y, pool_ids = sets["pool"]
        n = len(pool_x) if arm.all_labeled else s.labeled
        x_l, y_l, labeled = pool_x[:n], pool_y[:n], pool_ids[:n]
        unlabeled = pool_ids[s.labeled :]
        x_u = pool_x[s.labeled :] if arm.semi else None  # masks never used
        (x_v, y_v, o_v), (x_t, y_t, o_t) = sets["val"], sets["test"]
    else:
        split = _cases(source, s.val, s.test, s.split_seed)
        labeled = split["pool"] if arm.all_labeled else split["pool"][: s.labeled]
        unlabeled = split["pool"][s.labeled :]
        prep = Preprocessing(size=s.size, multiple=2 ** (s.depth - 1))
        needed = labeled + split["val"] + split["test"] + (unlabeled if arm.semi else [])
        data = MSDDataset(source, preprocessing=prep, cases=needed, cache_dir=default_cache_dir())
        x_l, y_l, _ = _slices(data, labeled)
        x_u = _slices(data, unlabeled)[0] if arm.semi else None  # masks never used
        x_v, y_v, o_v = _slices(data, split["val"])
        x_t, y_t, o_t = _slices(data, split["test"])
    torch.manual_seed(s.seed)
    classes = 1 if s.data == "isbi2012" else 3
    model = UNet(1, classes, base_channels=s.base, depth=s.depth, norm="batch")
    ds = DeepSupervised(model, arm.mode, aux_every=1)  # the paper's step, as measured
    teacher = EMATeacher(ds) if arm.semi in ("pseudo", "mean-teacher") else None
    opt = torch.optim.Adam(ds.parameters(), lr=3e-4)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, s.steps // 10), gamma=0.9)
    rng = torch.Generator().manual_seed(s.seed)
    rng_u = torch.Generator().manual_seed(s.seed + 10_000) if s.paired_draws else rng
    best, best_eval, best_state, evals, curve = -1.0, 0, None, 0, []
    start = time.perf_counter()
    step = 0
    for step in range(s.steps):
        ds.train()
        ds.set_progress(step / max(1, s.steps - 1))
        i = torch.randint(len(x_l), (s.batch,), generator=rng)
        x, y = x_l[i], y_l[i]
        loss = ds.loss(ds(x, y), y).total
        if arm.semi:
            u = x_u[torch.randint(len(x_u), (s.batch,), generator=rng_u)]
            first = int(s.ramp_start * s.steps)
            w = arm.weight * sigmoid_rampup(step - first, s.ramp * s.steps) * (step >= first)
            kept = _running_stats_kept(ds) if arm.keep_stats else contextlib.nullcontext()
            with kept:
                if arm.semi == "mean-teacher":
                    loss = loss + w * mean_teacher_loss(ds, teacher, u, ds.label_mode)
                elif arm.semi == "pseudo":
                    branches = ds.unlabeled(u, teacher, confidence=s.confidence)
                    loss = loss + w * ds.loss(branches).total
                else:
                    loss = loss + w * ds.loss(ds.unlabeled(u)).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if teacher is not None:
            teacher.update()
        if (step + 1) % s.eval_every == 0:
            evals += 1
            dice = _dice(ds.model, x_v, y_v, o_v)
            curve.append(dice)
            if dice > best:
                best, best_eval = dice, evals
                best_state = {k: v.clone() for k, v in ds.model.state_dict().items()}
            if evals >= max(s.min_evals, 2 * best_eval):
                break
    seconds = time.perf_counter() - start
    ds.model.load_state_dict(best_state)
    result = {
        "arm": name,
        **asdict(arm),
        "setting": asdict(s),
        "labeled_cases": len(labeled),
        "unlabeled_cases": len(unlabeled) if arm.semi else 0,
        "labeled_slices": len(x_l),
        "unlabeled_slices": 0 if x_u is None else len(x_u),
        "steps_run": step + 1,
        "best_step": best_eval * s.eval_every,
        "stopped_early": step + 1 < s.steps,
        "seconds_per_step": seconds / (step + 1),
        "val_dice_best": best,
        "val_curve": curve,
        "test_dice": _dice(ds.model, x_t, y_t, o_t),
    }
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(path)
    return result


def summarise(runs: Sequence[dict[str, Any]], against: Sequence[str]) -> dict[str, Any]:
    """Per labelled size and arm: mean test Dice, sd over seeds, per-seed differences from each
    arm of ``against`` (k of n, p over seeds), seconds per step over ``none``'s."""
    table: dict[str, Any] = {}
    for n in sorted({r["setting"]["labeled"] for r in runs}):
        at = [r for r in runs if r["setting"]["labeled"] == n]
        arms = sorted({r["arm"] for r in at}, key=list(ARMS).index)
        by = {a: {r["setting"]["seed"]: r for r in at if r["arm"] == a} for a in arms}
        rows = {}
        for a in arms:
            dice = [by[a][k]["test_dice"] for k in sorted(by[a])]
            row: dict[str, Any] = {
                "test_dice_mean": float(np.mean(dice)),
                "test_dice_sd": float(np.std(dice, ddof=1)) if len(dice) > 1 else 0.0,
                "seeds": sorted(by[a]),
                "per_seed": dice,
                "steps_run": [by[a][k]["steps_run"] for k in sorted(by[a])],
            }
            if "none" in by:
                ratio = [
                    by[a][k]["seconds_per_step"] / by["none"][k]["seconds_per_step"]
                    for k in sorted(by[a])
                    if k in by["none"]
                ]
                row["step_time_vs_none"] = float(np.median(ratio)) if ratio else None
            for b in against:
                if b in by and b != a:
                    seeds = sorted(set(by[a]) & set(by[b]))
                    mine = [by[a][k]["test_dice"] for k in seeds]
                    theirs = [by[b][k]["test_dice"] for k in seeds]
                    row[f"vs_{b}"] = compare_seeds(mine, theirs) | {"seeds": seeds}
            rows[a] = row
        table[str(n)] = rows
    return table


def plot(table: dict[str, Any], path: Path, title: str = "Task04 2D") -> None:
    """Test Dice per arm, one panel per labelled size: each seed a dot, the mean a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(int(n) for n in table)
    fig, axes = plt.subplots(1, len(sizes), figsize=(6.5 * len(sizes), 4), squeeze=False)
    for ax, n in zip(axes[0], sizes):
        rows = table[str(n)]
        arms = [a for a in ARMS if a in rows]
        for i, arm in enumerate(arms):
            values = rows[arm]["per_seed"]
            ax.bar(i, rows[arm]["test_dice_mean"], color="0.85")
            ax.scatter([i] * len(values), values, color="C0", zorder=3, s=16)
        ax.set_xticks(range(len(arms)), arms, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("test Dice (mean over cases)")
        ax.set_title(f"{title}: {n} labelled + the unlabelled rest (dots: seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labeled", default="4", help="labelled case counts, e.g. 2,4,8")
    parser.add_argument("--arms", default=",".join(a for a in ARMS if a != "mean-teacher-1"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=1000, help="the step budget of every arm")
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--min-evals", type=int, default=8)
    parser.add_argument("--val", type=int, default=10)
    parser.add_argument("--test", type=int, default=30)
    parser.add_argument("--confidence", type=float, default=0.8)
    parser.add_argument("--ramp-start", type=float, default=0.0)
    parser.add_argument("--ramp", type=float, default=0.25)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--data", choices=("hippocampus", "isbi2012"), default="hippocampus")
    parser.add_argument("--batch", type=int, default=8, help="labelled (and unlabelled) batch")
    parser.add_argument("--source", type=Path, default=None, help="default: ../shared/data/...")
    parser.add_argument("--out", type=Path, default=Path("runs/semi"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument(
        "--shared-draws",
        action="store_true",
        help="draw unlabelled batches from the labelled batches' generator (the first runs)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 cases, few steps")
    parser.add_argument("--reuse", action="store_true", help="summarise the runs in --out only")
    args = parser.parse_args(argv)
    if args.source is None:
        args.source = SOURCE if args.data == "hippocampus" else SOURCE.parent / ISBI
    if args.quick:
        args.labeled, args.seeds, args.steps, args.eval_every, args.min_evals = "2", "0", 6, 3, 1
        args.val, args.test = 2, 2
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        parser.error(f"unknown arm(s) {unknown}; choose from {list(ARMS)}")
    jobs = [
        (
            a,
            Setting(
                int(n),
                int(seed),
                args.steps,
                args.eval_every,
                args.min_evals,
                args.val,
                args.test,
                confidence=args.confidence,
                ramp_start=args.ramp_start,
                ramp=args.ramp,
                batch=args.batch,
                data=args.data,
                paired_draws=not args.shared_draws,
            ),
        )
        for n in args.labeled.split(",")
        for seed in args.seeds.split(",")
        for a in arms
    ]
    if args.reuse:  # only the runs already in --out, no training
        sizes = [("all" if ARMS[a].all_labeled else f"n{s.labeled}") for a, s in jobs]
        paths = [args.out / f"{a}_{n}_seed{s.seed}.json" for (a, s), n in zip(jobs, sizes)]
        runs = [json.loads(p.read_text()) for p in paths if p.is_file()]
    else:
        from tqdm.auto import tqdm

        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(run_arm, a, s, args.source, args.out) for a, s in jobs]
            runs = [f.result() for f in tqdm(futures, desc="semi runs")]
    table = summarise(runs, against=("none", "up", "mean-teacher", "pseudo-none", "pseudo-up"))
    result = {"benchmark": "semi", "config": vars(args) | {"arms": arms}, "table": table}
    text = json.dumps(result, indent=1, default=str)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    if args.plot:
        plot(table, args.plot, "ISBI 2012" if args.data == "isbi2012" else "Task04 2D")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
