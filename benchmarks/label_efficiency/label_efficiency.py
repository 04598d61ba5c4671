"""Label efficiency: test Dice of each mode against the number of training cases (issue 19).

A thin driver over ``benchmarks/convergence/convergence.py``: one convergence run per
training-set size (the same settings otherwise, the same seeds; each size in its own folder,
resumable), then one table and one plot of mean test Dice (± sd over seeds) per mode and size,
with each mode's per-seed differences from ``none``, "better in k of n seeds" and the t-test
over seeds (``dsplug.metrics.paired.compare_seeds``). Every size is tested on the same cases and
validated on the same cases (the samples are drawn from one seeded permutation per split), and
the training sets are nested: the cases of a smaller size are among those of a larger one. ISBI
2012 trains on the first n slices of its contiguous training block.

With ``--equal-steps`` the epoch cap and the minimum epochs of a size are scaled by (largest
size / size): at equal epochs a quarter of the data would also be a quarter of the optimiser
steps, and the smallest sets would stop before they converge.

Usage (the stored results, 3 seeds each):
    python benchmarks/label_efficiency/label_efficiency.py --cases 2,4,8 \\
        --variants none,up,hyb --equal-steps --out runs/le_hippocampus \\
        --json benchmarks/label_efficiency/results/label_efficiency_hippocampus.json \\
        --plot benchmarks/label_efficiency/results/label_efficiency_hippocampus.png
    python benchmarks/label_efficiency/label_efficiency.py --thin --cases 4,8,15 --jobs 2 \\
        --equal-steps ...  # ISBI
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.convergence import convergence

__all__ = ["collect", "main", "markdown", "plot", "scaled_epochs"]


def collect(results: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """``{cases: convergence result}`` -> ``{"rows": [...]}``: one row per size and mode."""
    rows = []
    for cases, result in sorted(results.items()):
        none = result["variants"]["none"]
        for name, v in result["variants"].items():
            dice = v["test_over_seeds"]["dice"]
            p = v.get("p_vs_none") or {}
            equal = (v.get("equal_compute") or {}).get("at_none_budget_none_epochs") or {}
            rows.append(
                {
                    "cases": cases,
                    "variant": name,
                    "dice_mean": dice["mean"],
                    "dice_sd": dice["sd"],
                    "seeds": dice["n"],
                    "diff_vs_none": p.get("mean_diff"),
                    "per_seed_diff": p.get("per_seed_diff"),
                    "better_seeds": p.get("better_seeds"),
                    "p": p.get("p"),
                    "at_none_compute": equal.get("per_seed_diff"),
                    "to_best": (v.get("time_to_target_none_epochs") or {}).get("mean"),
                    "to_best_none": (none.get("time_to_target_none_epochs") or {}).get("mean"),
                    "reached": v.get("seeds_reaching_target"),
                    "epochs_cap": result.get("config", {}).get("epochs"),
                    "epochs_run": [s.get("epochs_run") for s in v.get("seeds", [])],
                }
            )
    return {"rows": rows}


def markdown(table: Mapping[str, Any]) -> str:
    """The README table: one row per size, one column per mode (Dice, and vs none)."""
    rows = table["rows"]
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    lines = [
        "| training cases | " + " | ".join(variants) + " |",
        "|---|" + "---|" * len(variants),
    ]
    for cases in sorted({r["cases"] for r in rows}):
        cells = []
        for name in variants:
            r = next((r for r in rows if r["cases"] == cases and r["variant"] == name), None)
            if r is None:
                cells.append("")
            elif r["diff_vs_none"] is None:
                cells.append(f"{r['dice_mean']:.3f} ± {r['dice_sd'] or 0:.3f}")
            else:
                p = "" if r["p"] is None else f", p = {r['p']:.2g}"
                cells.append(
                    f"{r['dice_mean']:.3f} ({r['diff_vs_none']:+.3f}; "
                    f"{r['better_seeds']}/{r['seeds']}{p})"
                )
        lines.append(f"| {cases} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(table: Mapping[str, Any], path: Path, title: str) -> None:
    """Mean test Dice ± sd over seeds against the number of training cases (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name in dict.fromkeys(r["variant"] for r in table["rows"]):
        rows = sorted((r for r in table["rows"] if r["variant"] == name), key=lambda r: r["cases"])
        ax.errorbar(
            [r["cases"] for r in rows],
            [r["dice_mean"] for r in rows],
            yerr=[r["dice_sd"] or 0 for r in rows],
            marker="o",
            capsize=3,
            label=name,
        )
    ax.set_xscale("log", base=2)
    sizes = sorted({r["cases"] for r in table["rows"]})
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()
    ax.set_xlabel("training cases")
    ax.set_ylabel("test Dice (mean ± sd over seeds)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def scaled_epochs(epochs: int, min_epochs: int, cases: int, largest: int) -> tuple[int, int]:
    """The epoch cap and minimum for ``cases`` training cases that give about the optimiser
    steps ``epochs`` (and ``min_epochs``) give the ``largest`` size: a small training set is
    not also a short training run.

    Example:
        >>> scaled_epochs(40, 8, 4, 15)
        (150, 30)
    """
    factor = largest / cases
    return round(epochs * factor), round(min_epochs * factor)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", required=True, help="comma-separated training-set sizes")
    parser.add_argument("--out", type=Path, default=Path("runs/label_efficiency"))
    parser.add_argument("--plot", type=Path, help="write the PNG here")
    parser.add_argument("--markdown", type=Path, help="write the README table here")
    parser.add_argument("--json", type=Path, help="write the table's JSON here")
    parser.add_argument(
        "--equal-steps",
        action="store_true",
        help="scale the epoch cap and the minimum epochs by (largest size / size), so that "
        "every size may take about as many optimiser steps as the largest",
    )
    args, rest = parser.parse_known_args(argv)
    sizes = [int(c) for c in args.cases.split(",")]
    preset = convergence.settings_from_args(convergence.build_parser().parse_args(rest))
    results = {}
    for n in sizes:
        out = args.out / f"cases_{n}"
        cap = []
        if args.equal_steps:
            epochs, least = scaled_epochs(preset.epochs, preset.min_epochs, n, max(sizes))
            cap = ["--epochs", str(epochs), "--min-epochs", str(least)]
        where = ["--out", str(out), "--json", str(out / "result.json")]
        code = convergence.main([*rest, *cap, "--train-cases", str(n), *where])
        if code:
            return code
        results[n] = json.loads((out / "result.json").read_text())
    table = collect(results)
    dataset = next(iter(results.values()))["config"]["dataset"]
    table.update(dataset=dataset, equal_steps=args.equal_steps, arguments=list(rest))
    text = markdown(table)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))
    if args.plot:
        budget = "equal optimiser steps" if args.equal_steps else "equal epochs"
        plot(table, args.plot, f"Label efficiency: {dataset}\n({budget})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
