"""The field benchmark's table (``field.py``'s JSON): per row the test means of ``none`` and the
deep-supervision mode beside the published figure the row is read against, the mode - none
difference per seed, and the validation Dice curves of every run (PNG)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["PUBLISHED", "plot_curves", "render_field"]

PAPER = "-paper"  # the suffix of an arm trained with the paper's recipe (field.py's)

ROW_NAMES = {
    "isbi-patches": "ISBI 2012, native 2D patches",
    "task04-3d": "Task04, 3D patches",
    "task04-2d": "Task04, 2D slices",
}
#: What each row is read against, with its source (a different protocol: a reading aid, not a
#: paired comparison).
PUBLISHED = {
    "isbi-patches": "no Dice is published for this split (the challenge scores Rand and warping "
    "error); dsplug's paper recipe: `none` 0.743 at 40 epochs, width 8 "
    "(`benchmarks/native/results/isbi_patches.json`)",
    "task04-3d": "nnU-Net 3D full resolution about 0.89-0.90 mean Dice of both structures "
    "(Isensee et al., Nature Methods 2021; MSD leaderboard)",
    "task04-2d": "nnU-Net 2D about 0.89 mean Dice (Isensee et al., Nature Methods 2021)",
}


def _seeds(values: list[float]) -> str:
    return ", ".join(f"{v:.4f}" for v in values)


def _p(c: Mapping[str, Any]) -> str:
    return "n/a" if c["p"] is None or c["p"] != c["p"] else f"{c['p']:.2f}"


def _arm(name: str) -> str:
    """An arm's label: the mode, and the paper's recipe where it trained with it."""
    return f"{name.removesuffix(PAPER)} (paper's recipe)" if name.endswith(PAPER) else name


def render_field(result: Mapping[str, Any]) -> str:
    """Markdown: one line per row and arm (test Dice, HD95, NSD, per-seed Dice, budget, run
    time), then mode - none per seed beside the published anchors, and field - paper's recipe
    per mode where the paper's arm ran."""
    ref, mode = result["settings"]["modes"]
    rows = result["settings"]["rows"]
    lines = [
        "| task family | mode | test Dice | per seed | HD95 | NSD | budget (steps x batch) "
        "| minutes / run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    arms = (ref, mode, ref + PAPER, mode + PAPER)
    for row, entry in result["summary"].items():
        s = rows[row]
        budget = f"{s['epochs'] * s['iterations']:,} x {s['batch_size']}"
        for m in (m for m in arms if m in entry):
            e = entry[m]
            hd95 = "n/a" if e["hd95"] != e["hd95"] else f"{e['hd95']:.2f}"
            nsd = "n/a" if e["nsd"] != e["nsd"] else f"{e['nsd']:.4f}"
            cells = (ROW_NAMES.get(row, row), _arm(m), f"{e['dice']:.4f}")
            cells += (_seeds(e["dice_per_seed"]), hd95, nsd, budget, f"{e['fit_wall_s'] / 60:.0f}")
            lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"| task family | {mode} - {ref}: Dice per seed | mean | {mode} better in | p (t-test) "
        "| collapsed runs | read against |",
        "|---|---|---|---|---|---|---|",
    ]
    for row, entry in result["summary"].items():
        for a, b in ((mode, ref), (mode + PAPER, ref + PAPER)):
            if f"{a}_minus_{b}" not in entry:
                continue
            c = entry[f"{a}_minus_{b}"]["dice"]
            name = ROW_NAMES.get(row, row) + (" (paper's recipe)" if a.endswith(PAPER) else "")
            cells = (name, ", ".join(f"{d:+.4f}" for d in c["per_seed_diff"]))
            cells += (f"{c['mean_diff']:+.4f}", c["better_in"], _p(c))
            cells += (", ".join(entry["collapsed"]) or "none", PUBLISHED.get(row, ""))
            lines.append("| " + " | ".join(cells) + " |")
    recipes = [
        (row, m, entry[f"{m}_minus_{m}{PAPER}"]["dice"])
        for row, entry in result["summary"].items()
        for m in (ref, mode)
        if f"{m}_minus_{m}{PAPER}" in entry
    ]
    if recipes:
        lines += [
            "",
            "| task family | mode | field recipe - paper's recipe: Dice per seed | mean "
            "| field better in | p (t-test) |",
            "|---|---|---|---|---|---|",
        ]
        for row, m, c in recipes:
            diffs = ", ".join(f"{d:+.4f}" for d in c["per_seed_diff"])
            cells = (ROW_NAMES.get(row, row), m, diffs, f"{c['mean_diff']:+.4f}", c["better_in"])
            lines.append("| " + " | ".join((*cells, _p(c))) + " |")
    return "\n".join(lines)


def plot_curves(result: Mapping[str, Any], path: Path) -> None:
    """Validation Dice per epoch of every run, one panel per row (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(result["settings"]["rows"])
    fig, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 3.4), squeeze=False)
    ref, mode = result["settings"]["modes"]
    colours = {
        ref: "tab:blue",
        mode: "tab:orange",
        ref + PAPER: "tab:gray",
        mode + PAPER: "tab:red",
    }
    for ax, row in zip(axes[0], rows, strict=True):
        for key, run in result["runs"].items():
            r, m, seed = key.split("/")
            if r != row:
                continue
            curve = run["val_dice_curve"]
            label = m if seed == str(result["settings"]["seeds"][0]) else None
            ax.plot(range(1, len(curve) + 1), curve, ".-", color=colours[m], alpha=0.8, label=label)
        ax.set_title(ROW_NAMES.get(row, row))
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation Dice")
        if ax.get_legend_handles_labels()[0]:  # a row with runs
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
