"""How much faster a second model with the same encoder is wrapped: the trace cache at work.

For each encoder (smp ``resnet18`` and timm's ``tu-resnet18`` by default) and each ``balance``
setting, a fresh process builds ``smp.Unet(encoder, encoder_weights=None, in_channels=1,
classes=1)`` twice and times, for each of the two models, ``DeepSupervised(model, "hyb")``
(wrap) and its first training step: ``ds(x, y)`` (forward), ``ds.loss(out, y)`` (loss; with
``balance="auto"`` it measures the terms' gradient norms at step 0) and ``.backward()``.
Model construction is not timed. The first wrap traces the encoder with ``torch.export``; the
second reuses the cached trace. Medians over ``--repeats`` fresh processes; prints JSON.

    python benchmarks/cost/wrap_time.py --json benchmarks/cost/results/wrap_time.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks._common import emit, machine_info

__all__ = ["main", "one_process"]

SIZE = 64
PHASES = ("wrap", "forward", "loss", "backward")


def _time_wrap_and_step(encoder: str, balance: str) -> dict[str, float]:
    """Seconds of each phase for one newly built model."""
    import segmentation_models_pytorch as smp

    from dsplug import DeepSupervised

    torch.manual_seed(0)
    model = smp.Unet(encoder, encoder_weights=None, in_channels=1, classes=1)
    x = torch.randn(2, 1, SIZE, SIZE)
    y = (torch.rand(2, 1, SIZE, SIZE) > 0.5).float()
    times: dict[str, float] = {}
    start = time.perf_counter()
    ds = DeepSupervised(model, mode="hyb", balance=balance).train()
    times["wrap"] = time.perf_counter() - start
    start = time.perf_counter()
    out = ds(x, y)
    times["forward"] = time.perf_counter() - start
    start = time.perf_counter()
    loss = ds.loss(out, y)
    times["loss"] = time.perf_counter() - start
    start = time.perf_counter()
    loss.total.backward()
    times["backward"] = time.perf_counter() - start
    times["total"] = sum(times[p] for p in PHASES)
    return times


def one_process(encoder: str, balance: str) -> dict[str, Any]:
    """The first and the second wrap in this process (which must not have wrapped before)."""
    from dsplug.tied.graph import trace_cache_info

    torch.set_num_threads(1)
    first = _time_wrap_and_step(encoder, balance)
    second = _time_wrap_and_step(encoder, balance)
    return {"first": first, "second": second, "cache": trace_cache_info()}


def _child(encoder: str, balance: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", encoder, "--balance", balance]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for which in ("first", "second"):
        out[which] = {
            k: round(statistics.median(r[which][k] for r in runs), 3) for k in (*PHASES, "total")
        }
    # The figure: construction (wrap) plus the first training forward ``ds(x, y)``.
    wrap_forward = {
        which: statistics.median(r[which]["wrap"] + r[which]["forward"] for r in runs)
        for which in ("first", "second")
    }
    out["ratio_wrap_forward"] = round(wrap_forward["first"] / wrap_forward["second"], 1)
    out["ratio_total"] = round(out["first"]["total"] / out["second"]["total"], 2)
    out["ratio_wrap"] = round(out["first"]["wrap"] / out["second"]["wrap"], 1)
    out["cache_hits_in_second_wrap"] = [r["cache"]["hits"] for r in runs]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--encoders", nargs="*", default=["resnet18", "tu-resnet18"])
    parser.add_argument("--balance", nargs="*", default=["auto", "paper"])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per setting")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(one_process(args.child, args.balance[0])))
        return 0
    results: dict[str, Any] = {}
    for encoder in args.encoders:
        for balance in args.balance:
            runs = [_child(encoder, balance) for _ in range(args.repeats)]
            results[f"{encoder}/balance={balance}"] = {**_summary(runs), "runs": runs}
            print(
                f"{encoder} balance={balance}: {results[f'{encoder}/balance={balance}']['first']}"
                f" -> {results[f'{encoder}/balance={balance}']['second']}",
                file=sys.stderr,
            )
    emit(
        {
            "results": results,
            "config": {
                "model": "smp.Unet(encoder, encoder_weights=None, in_channels=1, classes=1)",
                "mode": "hyb",
                "size": SIZE,
                "batch": 2,
                "repeats": args.repeats,
                "threads": 1,
                "machine": machine_info(torch.device("cpu")),
            },
        },
        args.json,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
