"""The unlabelled part of a semi-supervised step (issue 27), as a ratio to a labelled ``none``
step: every row of ``step_unlabeled.UNLABELED_ROWS`` with ``step_time.py``'s model and batch
(own U-Net base 16, depth 5, batch 8 of 96², one thread), interleaved, median of the repeats.
The ``step:`` rows time whole steps (labelled batch + unlabelled batch, one backward).

Usage:
    python benchmarks/cost/step_semi.py          # writes results/step_time_semi.json
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch

from benchmarks._common import apply_threads, machine_info
from benchmarks.cost.step_time import DEFAULT
from benchmarks.cost.step_unlabeled import unlabeled_ratios

__all__ = ["main"]

RESULT = Path(__file__).resolve().parent / "results" / "step_time_semi.json"


def main() -> int:
    settings = replace(DEFAULT, repeats=9, warmup=2)
    apply_threads(settings)
    start = time.perf_counter()
    result = {
        "benchmark": "step_time_semi",
        "command": "python benchmarks/cost/step_semi.py",
        "note": "as ratios to a labelled none step (one thread, interleaved, median of 9 "
        "repeats): the unlabelled part of a step alone, and (rows 'step: ...') whole "
        "semi-supervised steps, labelled and unlabelled batch with one backward",
        "unlabeled": unlabeled_ratios(settings, torch.device("cpu")),
        "machine": machine_info(torch.device("cpu")),
        "wall_s": time.perf_counter() - start,
    }
    text = json.dumps(result, indent=1)
    print(text)
    RESULT.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
