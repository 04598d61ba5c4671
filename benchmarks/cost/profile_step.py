"""Where a training step's time goes: a ``torch.profiler`` table of one step per mode.

A step is ``ds(x, y)``, ``ds.loss``, backward and an Adam step, on the model and batch of
``benchmarks/cost/step_time.py`` (own U-Net base 16, depth 5, batch 8 of 96², one thread, CPU).
Each branch of the wrapper is a labelled range: the pass on X, the G pass, the tied decoder
on X and on G, the loss, backward and the optimiser step; their CPU time is reported per
mode beside the top ops by self CPU time. Rows: ``none``, ``hyb`` and hyb with a design's
options (``--design aux_scale=0.5``).

Usage:
    python benchmarks/cost/profile_step.py                  # none vs hyb, prints JSON + tables
    python benchmarks/cost/profile_step.py --design aux_scale=0.5 --json /tmp/profile.json
"""

from __future__ import annotations

import argparse
import ast
import copy
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from benchmarks._common import build_model, emit, make_batch
from benchmarks.cost.step_time import DEFAULT, LR, ModeCase
from dsplug import DeepSupervised

__all__ = ["BRANCHES", "label_branches", "main", "profile_case"]

#: The labelled ranges of a step, in step order.
BRANCHES = (
    "X pass",
    "G pass",
    "tied decoder on X",
    "tied decoder on G",
    "loss",
    "backward",
    "optimizer",
)


def label_branches(ds: DeepSupervised) -> None:
    """Wrap the wrapper's branch methods (on this instance only) in profiler ranges: the first
    model pass of a step is the X pass, a later one the G pass."""
    tapped, reconstruct, criterion = ds._tapped, ds._reconstruct, ds.criterion.forward
    calls = {"n": 0}

    def _tapped(x: torch.Tensor) -> Any:
        name = "X pass" if calls["n"] == 0 else "G pass"
        calls["n"] += 1
        with record_function(name):
            return tapped(x)

    def _reconstruct(bottleneck: torch.Tensor, x: torch.Tensor, *, image: bool, mask: bool):
        with record_function("tied decoder on X" if image else "tied decoder on G"):
            return reconstruct(bottleneck, x, image=image, mask=mask)

    def _loss(*args: Any) -> Any:
        calls["n"] = 0  # the loss ends a forward: the next model pass is a new step's X pass
        with record_function("loss"):
            return criterion(*args)

    ds._tapped, ds._reconstruct = _tapped, _reconstruct
    ds.criterion.forward = _loss


def _labelled_step(case: ModeCase) -> Callable[[], None]:
    def step() -> None:
        case.optimizer.zero_grad(set_to_none=True)
        loss = case.ds.loss(case.ds(case.x, case.y), case.y)
        with record_function("backward"):
            loss.total.backward()
        with record_function("optimizer"):
            case.optimizer.step()

    return step


def profile_case(case: ModeCase, warmup: int = 2, steps: int = 3, rows: int = 15) -> dict[str, Any]:
    """Profile ``steps`` steps of ``case`` after ``warmup`` steps: the branch times (ms per
    step) and the top ``rows`` ops by self CPU time, as a dict with the table text."""
    step = _labelled_step(case)
    balancer = getattr(case.ds.criterion, "balancer", None)
    for _ in range(warmup):
        step()
    if balancer is not None:  # steady state: a step that does not measure the balance
        balancer.steps.fill_(balancer.every + 1)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    branches = {
        e.key: round(e.cpu_time_total / 1e3 / steps, 1) for e in events if e.key in BRANCHES
    }
    ops = sorted((e for e in events if e.key not in BRANCHES), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events) / 1e3 / steps
    return {
        "total_ms": round(total, 1),
        "branches_ms": {b: branches[b] for b in BRANCHES if b in branches},
        "top_ops_self_ms": {
            e.key: round(e.self_cpu_time_total / 1e3 / steps, 1) for e in ops[:rows]
        },
        "table": events.table(sort_by="self_cpu_time_total", row_limit=rows),
    }


def _design(text: str) -> tuple[str, dict[str, Any]]:
    key, _, value = text.partition("=")
    if not key or not value:
        raise argparse.ArgumentTypeError(f"--design takes option=value, got {text!r}")
    return f"hyb@{text}", {key: ast.literal_eval(value)}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--design", type=_design, action="append", default=[])
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps per mode")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    settings = DEFAULT
    torch.set_num_threads(settings.threads)
    model = build_model(settings)
    x, y = make_batch(settings, torch.device("cpu"))
    rows = [("none", "none", {}), ("hyb", "hyb", {})]
    rows += [(name, "hyb", options) for name, options in args.design]
    result: dict[str, Any] = {"config": {**settings.as_dict(), "device": "cpu"}, "modes": {}}
    for name, mode, options in rows:
        torch.manual_seed(settings.seed)
        ds = DeepSupervised(copy.deepcopy(model), mode, **{"aux_every": 1, **options}).train()
        label_branches(ds)
        case = ModeCase(ds, torch.optim.Adam(ds.parameters(), lr=LR), x, y)
        result["modes"][name] = profile_case(case, steps=args.steps, rows=args.rows)
    ref = result["modes"]["none"]["total_ms"]
    for name, r in result["modes"].items():
        r["x_none"] = round(r["total_ms"] / ref, 2)
        print(f"== {name}: {r['total_ms']} ms/step ({r['x_none']}x none)", file=sys.stderr)
        print("   " + ", ".join(f"{b} {t}" for b, t in r["branches_ms"].items()), file=sys.stderr)
        print(r["table"], file=sys.stderr)
    emit(
        {
            **result,
            "modes": {
                n: {k: v for k, v in r.items() if k != "table"} for n, r in result["modes"].items()
            },
        },
        args.json,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
