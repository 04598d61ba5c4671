"""Import time: ``import dsplug`` against ``import torch`` alone, in fresh processes.

Each repeat starts one process per variant, interleaved, and times the import inside it; the
median over repeats is reported, with the ratio to ``import torch`` (dsplug's own share is the
difference). ``--ref DIR`` adds an older checkout (its root, put first on ``sys.path``) for a
before/after figure. It also lists which heavy optional packages each import loaded.

Usage:
    python benchmarks/cost/import_time.py --repeats 7
    git worktree add /tmp/before <commit>; python benchmarks/cost/import_time.py --ref /tmp/before
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

__all__ = ["HEAVY", "main", "time_import"]

HEAVY = ("matplotlib", "scipy", "tqdm", "pandas", "tensorboard", "sympy")
_PROBE = """
import sys, time
start = time.perf_counter()
import {module}
seconds = time.perf_counter() - start
print(seconds, ",".join(m for m in {heavy!r} if m in sys.modules))
"""


def time_import(module: str, path: Path | None = None) -> tuple[float, list[str]]:
    """Seconds to import ``module`` in a fresh interpreter, and the heavy packages it loaded."""
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = f"{path}{os.pathsep}{env.get('PYTHONPATH', '')}"
    code = _PROBE.format(module=module, heavy=HEAVY)
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=path,  # `-c` puts the working folder first on sys.path
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), (out[1].split(",") if len(out) > 1 else [])


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Run the interleaved repeats and print the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="fresh processes per variant")
    parser.add_argument("--ref", type=Path, help="an older checkout's root to compare with")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    variants = {"torch": ("torch", None), "dsplug": ("dsplug", None)}
    if args.ref is not None:
        variants["dsplug_ref"] = ("dsplug", args.ref.resolve())
    times: dict[str, list[float]] = {name: [] for name in variants}
    loaded: dict[str, list[str]] = {}
    for _ in range(args.repeats):
        for name, (module, path) in variants.items():
            seconds, heavy = time_import(module, path)
            times[name].append(seconds)
            loaded[name] = heavy
    med = {name: statistics.median(values) for name, values in times.items()}
    result: dict[str, object] = {
        "repeats": args.repeats,
        "median_s": med,
        "dsplug_over_torch_s": med["dsplug"] - med["torch"],
        "heavy_modules_loaded": loaded,
    }
    if args.ref is not None:
        result["ref"] = str(args.ref)
        result["speedup_total"] = med["dsplug_ref"] / med["dsplug"]
        result["speedup_own"] = (med["dsplug_ref"] - med["torch"]) / max(
            med["dsplug"] - med["torch"], 1e-3
        )
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
