"""Time per image of ``evaluate`` on the retinal-vessel test size: 565 x 584 RGB images, a small
2D patch model (own U-Net, 96 px patches), Gaussian sliding windows, Dice, HD95 and NSD.

Synthetic images and vessel-like masks (no downloads). Each setting scores ``--images`` images
(:func:`dsplug.train.native.evaluate_native`, what ``dsplug evaluate`` runs for a patch model)
``--repeats`` times; the time per image is the median over repeats. Settings:

- ``before``: torch's default threads (every core), one window per forward pass (the old code).
- ``batched``: torch's default threads, ``--window-batch`` windows per pass.
- ``after``: the threads ``dsplug`` now chooses (:func:`dsplug.train.threads.default_threads`,
  the usable CPUs less the load already running), ``--window-batch`` windows per pass.

Each runs quiet and loaded: beside a training (a U-Net fitting random batches, torch's default
threads, as a user would start it) that this script starts as a subprocess and stops at the end.
``surface`` times HD95 and NSD of one image, each metric alone (the old code) and sharing the
distance transforms (now). A setting whose first repeat exceeds ``--cap`` seconds is not
repeated. The load average is recorded beside each setting: on a shared machine "quiet" is only
as quiet as the other users allow.

Usage:
    python benchmarks/cost/eval_speed.py                         # writes results/eval_speed.json
    python benchmarks/cost/eval_speed.py --images 2 --repeats 1 --json /tmp/eval_speed.json
    python benchmarks/cost/eval_speed.py --images 20 --repeats 1 --settings after \
        --json benchmarks/cost/results/eval_speed_20.json     # the issue's twenty images
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import torch

from benchmarks._common import emit, machine_info
from dsplug import UNet
from dsplug._checks import positive_int
from dsplug.data.volumes import NativeCase
from dsplug.metrics.surface import hd95, surface_dice, surface_scores
from dsplug.train.distributed import DistInfo
from dsplug.train.native import evaluate_native
from dsplug.train.threads import default_threads

__all__ = ["main", "vessel_cases"]

RESULT = Path(__file__).resolve().parent / "results" / "eval_speed.json"
HEIGHT, WIDTH, PATCH = 584, 565, (96, 96)

#: A training beside the evaluation: torch's default threads, forever (killed at the end).
TRAINING = """
import torch
from dsplug import UNet
model = UNet(3, 1, base_channels=16, depth=4)
opt = torch.optim.Adam(model.parameters(), 3e-4)
x, y = torch.rand(4, 3, 96, 96), (torch.rand(4, 1, 96, 96) > 0.9).float()
while True:
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
"""


def vessel_cases(count: int, seed: int = 0) -> list[NativeCase]:
    """``count`` RGB images of 584 x 565 with thin, branching, vessel-like binary masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH].astype(np.float32)
    fov = (yy - HEIGHT / 2) ** 2 + (xx - WIDTH / 2) ** 2 < (0.46 * HEIGHT) ** 2
    cases = []
    for i in range(count):
        a, b, c = rng.uniform(6, 14, 3)
        field = np.sin(xx / a + np.cos(yy / b)) * np.cos(yy / c + rng.uniform(0, 6))
        mask = (np.abs(field) < 0.08) & fov
        image = rng.random((3, HEIGHT, WIDTH), dtype=np.float32) * 0.5
        image[1] += 0.5 * mask
        cases.append(
            NativeCase(
                torch.from_numpy(image),
                torch.from_numpy(mask.astype(np.float32))[None],
                f"img{i:02d}",
                0,
                None,
            )
        )
    return cases


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return UNet(3, 1, base_channels=16, depth=4).eval()


def _time_setting(
    model: torch.nn.Module,
    cases: list[NativeCase],
    threads: int,
    window_batch: int,
    repeats: int,
    cap: float,
) -> dict[str, Any]:
    """Seconds per image, the median over repeats (fewer when the first exceeds ``cap``)."""
    torch.set_num_threads(threads)
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    per_image, dice = [], None
    load = os.getloadavg()[0]
    for _ in range(repeats):
        start = time.perf_counter()
        metrics = evaluate_native(
            model, cases, "binary", info, window=PATCH, batch_size=window_batch
        )
        per_image.append((time.perf_counter() - start) / len(cases))
        dice = metrics.summary()["dice"]
        if per_image[0] * len(cases) > cap:
            break
    return {
        "threads": threads,
        "window_batch": window_batch,
        "seconds_per_image": round(statistics.median(per_image), 3),
        "repeats": [round(t, 3) for t in per_image],
        "seconds_for_20_images": round(20 * statistics.median(per_image), 1),
        "load_before": round(load, 2),
        "dice": dice,
    }


def _surface(cases: list[NativeCase], repeats: int) -> dict[str, float]:
    """HD95 + NSD of one image: each metric on its own (old) and sharing the transforms."""
    truth = cases[0].mask.numpy().astype(bool)
    pred = np.roll(truth, 2, axis=-1) | (np.random.default_rng(1).random(truth.shape) > 0.995)

    def alone() -> object:
        return hd95(pred[0], truth[0]), surface_dice(pred[0], truth[0], 1.0)

    def shared() -> object:
        return surface_scores(pred, truth)

    def timed(call: Callable[[], object]) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        return round(statistics.median(times), 4)

    return {"each_alone_s": timed(alone), "shared_s": timed(shared)}


def _settings(args: argparse.Namespace, torch_default: int) -> dict[str, tuple[int, int]]:
    ours = default_threads()
    every = {
        "before": (torch_default, 1),
        "batched": (torch_default, args.window_batch),
        "after": (ours, args.window_batch),
    }
    return {name: every[name] for name in args.settings}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=positive_int, default=4, help="images per repeat")
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--window-batch", type=positive_int, default=16)
    parser.add_argument("--cap", type=float, default=120.0, help="no repeats past this (s)")
    parser.add_argument("--settle", type=float, default=20.0, help="s the training runs first")
    parser.add_argument("--json", type=Path, default=RESULT)
    parser.add_argument("--note", default="", help="what the machine was doing besides")
    parser.add_argument(
        "--settings",
        type=lambda text: text.split(","),
        default=["before", "batched", "after"],
        help="comma-separated subset of before,batched,after (default: all three)",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.settings) - {"before", "batched", "after"})
    if unknown:
        parser.error(f"unknown --settings {unknown}; choose from before, batched, after")
    torch_default = torch.get_num_threads()
    cases, model = vessel_cases(args.images), _model()
    result: dict[str, Any] = {
        "workload": f"{args.images} synthetic {WIDTH}x{HEIGHT} RGB images per repeat, own "
        f"U-Net base 16 depth 4, {PATCH[0]} px windows (50% overlap), Dice + HD95 + NSD",
        "machine": machine_info(torch.device("cpu")),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "note")},
        "note": args.note,
        "surface": _surface(cases, max(3, args.repeats)),
    }
    with torch.no_grad():
        _time_setting(model, cases[:1], 1, args.window_batch, 1, 0.0)  # warm-up
        result["quiet"] = {
            name: _time_setting(model, cases, t, b, args.repeats, args.cap)
            for name, (t, b) in _settings(args, torch_default).items()
        }
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        env.pop("OMP_NUM_THREADS", None)
        training = subprocess.Popen([sys.executable, "-c", TRAINING], env=env)
        try:
            time.sleep(args.settle)
            result["loaded"] = {
                name: _time_setting(model, cases, t, b, args.repeats, args.cap)
                for name, (t, b) in _settings(args, torch_default).items()
            }
        finally:
            training.kill()
            training.wait()
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
