"""The README's own training loop, run as written on real data: does `hyb` lose anything
against the bare model?

The loop of README "Your own training loop" (smp Unet/resnet18, ``smp.losses.DiceLoss``
as the segmentation loss, AdamW at 1e-3, ``ds.set_epoch``) on Task04_Hippocampus axial slices
with **empty slices kept** (the loaders' default), padded to 64 x 64; the bare model trains in
the same loop with the same loss on ``model(x)``. Test Dice is per case over its volume (classes
1 and 2 averaged), on held-out cases; seeds are paired (same initial weights and data order).

Run (the stored results: 8 training cases, 20 test cases, one thread; ``--seeds 0``, ``1``
and ``2`` side by side for 12 and 20 epochs, then merged):
    python benchmarks/models/own_loop.py --data ../shared/data/Task04_Hippocampus --cases 8 \\
        --epochs 6 --threads 1 --json benchmarks/models/results/own_loop_hippocampus.json
    python benchmarks/models/own_loop.py --cases 8 --epochs 20 --threads 1 --seeds 0 --json s0.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[2]


def _loaders(args: argparse.Namespace, seed: int):
    from dsplug.data import Preprocessing, build_datasets

    sets = build_datasets(
        args.data, kind="msd", preprocessing=Preprocessing(size=(64, 64)), seed=0, cache=False
    )
    train_ids = sorted(sets["train"].cases)[: args.cases]
    test_ids = sorted(sets["test"].cases)[: args.test_cases]
    train = sets["train"].subset(train_ids, split="train")
    test = sets["test"].subset(test_ids, split="test")
    gen = torch.Generator().manual_seed(seed)
    return (
        DataLoader(train, batch_size=args.batch, shuffle=True, generator=gen),
        DataLoader(test, batch_size=64),
        len(train),
    )


def _case_dice(model: torch.nn.Module, loader: DataLoader) -> dict[str, float]:
    """Volume Dice per case, classes 1 and 2 averaged (a class absent from both: Dice 1)."""
    inter, total = defaultdict(lambda: torch.zeros(2)), defaultdict(lambda: torch.zeros(2))
    model.eval()
    with torch.no_grad():
        for batch in loader:
            pred = model(batch["image"]).argmax(1)
            for i, case in enumerate(batch["case"]):
                for k in (1, 2):
                    p, t = pred[i] == k, batch["mask"][i] == k
                    inter[case][k - 1] += float((p & t).sum())
                    total[case][k - 1] += float(p.sum() + t.sum())
    return {
        c: float(torch.where(total[c] > 0, 2 * inter[c] / total[c].clamp(min=1), 1.0).mean())
        for c in inter
    }


def run(args: argparse.Namespace, seed: int, mode: str) -> dict:
    import segmentation_models_pytorch as smp

    from dsplug import DeepSupervised

    train, test, slices = _loaders(args, seed)
    torch.manual_seed(seed)
    model = smp.Unet("resnet18", encoder_weights=None, in_channels=1, classes=3)
    dice = smp.losses.DiceLoss("multiclass")
    kwargs = json.loads(args.kwargs)
    ds = None if mode == "bare" else DeepSupervised(model, mode=mode, seg_loss=dice, **kwargs)
    net = model if ds is None else ds
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    start = time.perf_counter()
    for epoch in tqdm(range(args.epochs), desc=f"{mode} seed {seed}", leave=False):
        net.train()
        if ds is not None:
            ds.set_epoch(epoch, args.epochs)
        for batch in train:
            x, y = batch["image"], batch["mask"]
            optimizer.zero_grad()
            loss = dice(model(x), y) if ds is None else ds.loss(ds(x, y), y).total
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    cases = _case_dice(model, test)
    return {
        "dice": statistics.mean(cases.values()),
        "cases": cases,
        "seconds": seconds,
        "train_slices": slices,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/Task04_Hippocampus"))
    parser.add_argument("--mode", default="hyb")
    parser.add_argument("--cases", type=int, default=20, help="training cases")
    parser.add_argument("--test-cases", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--kwargs", default="{}", help="JSON of extra DeepSupervised arguments (an ablation)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = {s: {m: run(args, s, m) for m in ("bare", args.mode)} for s in seeds}
    diffs = [runs[s][args.mode]["dice"] - runs[s]["bare"]["dice"] for s in seeds]
    result = {
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "per_seed": {str(s): {m: round(r["dice"], 4) for m, r in runs[s].items()} for s in seeds},
        "difference_per_seed": [round(d, 4) for d in diffs],
        "mean_difference": round(statistics.mean(diffs), 4),
        "better_in": f"{sum(d > 0 for d in diffs)} of {len(diffs)} seeds",
        "time_ratio": round(
            statistics.median(
                runs[s][args.mode]["seconds"] / runs[s]["bare"]["seconds"] for s in seeds
            ),
            2,
        ),
        "runs": {str(s): runs[s] for s in seeds},
    }
    text = json.dumps(result, indent=1)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
