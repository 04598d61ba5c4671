"""The results sections of the README and the docs pages, generated from the benchmarks' JSON.

One row per (regime, mode) measurement: the test Dice difference from ``none`` with its seeds
("k/n" beat ``none``, the t-test over seeds), the step time and memory (``step_time.py``), the
validation Dice at ``none``'s compute and the compute to reach ``none``'s best (the
equal-compute figures of ``convergence/analysis.py``), and a verdict that follows from those figures
by the rule in :func:`verdict` (nothing typed by hand). :func:`sections` lists every generated
section, each between its markers in its file: the headline table of README.md
(``<!-- headline:start -->``), and in ``docs/results/``: the full table (``guidance``), the
label-efficiency plots and tables (``label-efficiency``), the recipe ablation
(``convergence_hippocampus_recipe.json``: each term family of hyb left out, against hyb and
none seed by seed; ``recipe``), the semi-supervised runs (``semi``), the native-resolution
tables (``native-3d``, ``isbi-patches``) and ``report.py``'s step time, inference and
convergence tables (``results``).

Usage:
    python benchmarks/guidance.py            # rewrite every section
    python benchmarks/guidance.py --check    # exit 1, naming them, if any section is stale
    python benchmarks/guidance.py --print    # print them
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import report
from dsplug.metrics.paired import compare_seeds

__all__ = [
    "HEADLINE",
    "ROWS",
    "Row",
    "Section",
    "main",
    "render",
    "render_headline",
    "render_isbi_patches",
    "render_label_efficiency",
    "render_native_3d",
    "render_recipe",
    "render_results",
    "render_semi",
    "row_figures",
    "sections",
    "stale_sections",
    "verdict",
]

#: The benchmarks: each study's package keeps its JSON and plots in ``<study>/results/``.
RESULTS = Path(__file__).resolve().parent
ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs" / "results"  # the results pages of the docs site
#: How a page in ``DOCS`` links a plot in ``RESULTS`` (the site serves a copy: docs/_hooks).
DOCS_PLOTS = "../../benchmarks/"
START, END = "<!-- guidance:start -->", "<!-- guidance:end -->"
HEADLINE_START, HEADLINE_END = "<!-- headline:start -->", "<!-- headline:end -->"
LE_START, LE_END = "<!-- label-efficiency:start -->", "<!-- label-efficiency:end -->"
RECIPE_START, RECIPE_END = "<!-- recipe:start -->", "<!-- recipe:end -->"
LEVEL = 0.005  # a mean difference smaller than this is "level"
GAIN = 0.01  # the gain issue 19 asks of a regime with scarce labels


@dataclass(frozen=True)
class Row:
    """One measurement: a regime, the JSON it comes from, the mode and its step-time entry."""

    regime: str
    file: str
    variant: str
    step: tuple[str, str] | None  # (step-time JSON, its variant), or None for wall-clock


ROWS: tuple[Row, ...] = (
    Row(
        "scarce labels, own U-Net: Task04, 6 training cases",
        "convergence_hippocampus_aux.json",
        "hyb",
        ("step_time_aux.json", "hyb"),
    ),
    Row(
        "same", "convergence_hippocampus_aux.json", "hyb-aux50", ("step_time_aux.json", "hyb-aux50")
    ),
    Row(
        "same", "convergence_hippocampus_aux.json", "hyb-aux25", ("step_time_aux.json", "hyb-aux25")
    ),
    Row("same", "convergence_hippocampus_recipe.json", "rec", ("step_time.json", "rec")),
    Row("same", "convergence_hippocampus.json", "up", ("step_time.json", "up")),
    Row("same", "convergence_hippocampus.json", "down", ("step_time.json", "down")),
    Row("same", "convergence_hippocampus.json", "deep", ("step_time.json", "deep")),
    Row(
        "same, up to 80 epochs",
        "convergence_hippocampus_long.json",
        "hyb",
        ("step_time.json", "hyb"),
    ),
    Row(
        "thin structures: ISBI 2012, 15 training slices",
        "convergence_isbi2012.json",
        "hyb",
        ("step_time.json", "hyb"),
    ),
    Row("same", "convergence_isbi2012.json", "deep", ("step_time.json", "deep")),
    Row("same, `rec` beside them", "isbi2012_rec.json@15", "rec", ("step_time.json", "rec")),
    *(
        Row(regime if mode == "hyb" else "same", f"label_efficiency_{data}.json@{n}", mode, step)
        for data, what, sizes in (
            ("hippocampus", "Task04, {} training cases", (2, 4, 8)),
            ("isbi2012", "ISBI 2012, {} training slices", (4, 8, 15)),
        )
        for n in sizes
        for regime in [f"label efficiency, own U-Net: {what.format(n)} (equal steps)"]
        for mode, step in (("hyb", ("step_time.json", "hyb")), ("up", ("step_time.json", "up")))
    ),
    Row(
        "your own loop: smp Unet/resnet18 from scratch, Task04 with empty slices kept, "
        "8 training cases, 6 epochs",
        "own_loop_hippocampus.json",
        "hyb",
        None,
    ),
    Row("same, 12 epochs", "own_loop_hippocampus_12epochs.json", "hyb", None),
    Row("same, 20 epochs", "own_loop_hippocampus_20epochs.json", "hyb", None),
    Row(
        "plentiful labels, an easy task: `dsplug demo`'s synthetic phantoms, 42 training "
        "cases, 12 epochs",
        "demo_seeds.json#12",
        "hyb",
        ("step_time.json", "hyb"),
    ),
    Row("same, 30 epochs", "demo_seeds.json#30", "hyb", ("step_time.json", "hyb")),
)


def result_file(name: str) -> Path:
    """The stored result ``name`` in its study's folder, ``RESULTS/<study>/results/`` (names
    are unique across studies); a path that does not exist when no study holds it."""
    found = sorted(RESULTS.glob(f"*/results/{name}"))
    return found[0] if found else RESULTS / "results" / name


def plot_link(path: Path, plots: str) -> str:
    """How a page links the plot stored beside ``path`` (``plots``: the page's way to
    ``RESULTS``)."""
    return plots + path.relative_to(RESULTS).with_suffix(".png").as_posix()


def _load(name: str) -> dict[str, Any] | None:
    """A result JSON; ``file.json#key`` is the part of it under ``epochs[key]``, and
    ``file.json@n`` (a label-efficiency table) its rows for ``n`` training cases."""
    name, _, part = name.partition("#")
    name, _, cases = name.partition("@")
    path = result_file(name)
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    if cases:
        return {"size": {r["variant"]: r for r in result["rows"] if r["cases"] == int(cases)}}
    return {**result, **result["epochs"][part]} if part else result


def row_figures(row: Row) -> dict[str, Any] | None:
    """The figures of one row from its JSON (None when the file or the row is absent)."""
    result = _load(row.file)
    if result is None:
        return None
    if "size" in result:  # one training-set size of a label-efficiency table
        r = result["size"].get(row.variant)
        if r is None:
            return None
        figures = {k: r[k] for k in ("at_none_compute", "to_best", "to_best_none", "reached")}
        figures.update(diffs=r["per_seed_diff"], p=r["p"])
    elif "variants" in result:  # a convergence benchmark
        v = result["variants"][row.variant]
        p = v["p_vs_none"]
        equal = v.get("equal_compute", {}).get("at_none_budget_none_epochs") or {}
        figures = {
            "diffs": p["per_seed_diff"],
            "p": p["p"],
            "at_none_compute": equal.get("per_seed_diff"),
            "to_best": v["time_to_target_none_epochs"]["mean"],
            "to_best_none": result["variants"]["none"]["time_to_target_none_epochs"]["mean"],
            "reached": v["seeds_reaching_target"],
        }
    else:  # the own loop (the last epoch's model) or the demo: test Dice per seed only
        seeds = sorted(result["per_seed"])
        reference = result.get("reference", "bare")
        compared = compare_seeds(
            [result["per_seed"][s][row.variant] for s in seeds],
            [result["per_seed"][s][reference] for s in seeds],
        )
        figures = {
            "diffs": compared["per_seed_diff"],
            "p": compared["p"],
            "at_none_compute": None,
            "to_best": None,
            "to_best_none": None,
            "reached": None,
            "wall": result.get("time_ratio")
            or statistics.median(result.get("time_ratio_per_seed") or [None]),
        }
    if row.step is not None:
        step = (_load(row.step[0]) or {}).get("ratios", {}).get(row.step[1])
        figures["step"] = None if step is None else (step["time"], step["memory"])
    return figures


def verdict(f: Mapping[str, Any]) -> str:
    """The "use it?" cell, from the figures alone.

    Worse than ``none`` on average: no. Within ``LEVEL`` of it: level, not worth its cost.
    Better: "for accuracy" ("yes" with a gain of >= ``GAIN`` in every seed; a smaller gain in
    every seed is called small) and, when its validation Dice at ``none``'s compute is below
    ``none``'s in most seeds, "not for time"; a gain of >= ``GAIN`` in every seed is said so.
    """
    diffs = f["diffs"]
    mean = sum(diffs) / len(diffs)
    if mean <= -LEVEL:
        return "**no**: use `none`"
    if mean < LEVEL:
        return "level with `none`: not worth its cost"
    if not all(d > 0 for d in diffs):
        text = "for accuracy (not in every seed)"
    else:
        text = "yes, for accuracy" if mean >= GAIN else f"for a small gain (under {GAIN})"
    equal = f.get("at_none_compute")
    if equal is not None and sum(d < 0 for d in equal) > len(equal) / 2:
        text += "; not at equal compute"
    return text


def _diff_cell(f: Mapping[str, Any], per_seed: bool = True) -> str:
    diffs = f["diffs"]
    mean = sum(diffs) / len(diffs)
    better = sum(d > 0 for d in diffs)
    p = "" if f["p"] is None else f", p = {f['p']:.2g}"
    if not per_seed:
        return f"{mean:+.3f} ({better}/{len(diffs)}{p})"
    seeds = ", ".join(f"{d:+.3f}" for d in diffs)
    return f"{mean:+.3f} ({better}/{len(diffs)}{p}; {seeds})"


def _equal_cell(f: Mapping[str, Any]) -> str:
    equal = f.get("at_none_compute")
    if not equal:
        return ""
    mean = sum(equal) / len(equal)
    return f"{mean:+.3f} ({sum(d > 0 for d in equal)}/{len(equal)})"


def _cost_cell(f: Mapping[str, Any], memory: bool = True) -> str:
    step = f.get("step")
    if step is not None:
        return f"{step[0]:.2f}x / {step[1]:.2f}x" if memory else f"{step[0]:.2f}x"
    return "" if f.get("wall") is None else f"{f['wall']:.1f}x (wall)"


def _best_cell(f: Mapping[str, Any]) -> str:
    if f["reached"] is None:
        return ""
    if not f["reached"]:
        return "never (0 seeds)"
    seeds = "seed" if f["reached"] == 1 else "seeds"
    return f"{f['to_best']:.1f} vs {f['to_best_none']:.1f} ({f['reached']} {seeds})"


def render() -> str:
    """The section: a caption and one table row per measurement found."""
    lines = [
        "Measured, per regime (3 seeds each). Test Dice vs `none`: the mean difference, in how "
        "many seeds the mode beat `none`, the t-test over seeds and each seed's difference. Step "
        "time / memory: `benchmarks/cost/step_time.py`, own U-Net base 16, depth 5, batch 8 of "
        "96². "
        "At `none`'s compute: validation Dice after the training compute `none` used (in epochs "
        "of `none`), minus `none`'s. To `none`'s best: compute, in epochs of `none`, until "
        "validation Dice first reaches `none`'s best. The verdict follows from the figures "
        f"(`benchmarks/guidance.py`: worse by {LEVEL} or more: no; within {LEVEL}: level; a gain "
        f"of {GAIN} or more in every seed: yes). Generated by `python benchmarks/guidance.py` "
        "from the studies' results (`benchmarks/<study>/results/`).",
        "",
        "| regime (JSON) | mode | test Dice vs `none` | step time / memory | at `none`'s compute "
        "| to `none`'s best | use it? |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in ROWS:
        f = row_figures(row)
        if f is None:
            continue
        source = row.file.replace("#", ", ") + (" epochs" if "#" in row.file else "")
        regime = row.regime if row.regime == "same" else f"{row.regime} (`{source}`)"
        mode = row.variant.replace("hyb-aux50", "hyb, aux_fraction=0.5").replace(
            "hyb-aux25", "hyb, aux_fraction=0.25"
        )
        cells = (
            regime,
            f"`{mode}`",
            _diff_cell(f),
            _cost_cell(f),
            _equal_cell(f),
            _best_cell(f),
            verdict(f),
        )
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("| plentiful labels on real data | any | not measured yet | | | | |")
    return "\n".join(lines)


#: The README's headline rows: (regime, JSON, mode), each a row of ``ROWS``.
HEADLINE: tuple[tuple[str, str, str], ...] = (
    ("scarce labels: Task04, 6 training cases", "convergence_hippocampus_aux.json", "hyb"),
    ("same", "convergence_hippocampus.json", "up"),
    ("thin structures: ISBI 2012, 15 training slices", "convergence_isbi2012.json", "hyb"),
    ("fewest labels: Task04, 2 training cases", "label_efficiency_hippocampus.json@2", "hyb"),
    ("same", "label_efficiency_hippocampus.json@2", "up"),
    ("fewest labels: ISBI 2012, 4 training slices", "label_efficiency_isbi2012.json@4", "hyb"),
    ("same", "label_efficiency_isbi2012.json@4", "up"),
    ("your own loop: smp Unet, Task04, 20 epochs", "own_loop_hippocampus_20epochs.json", "hyb"),
    ("plentiful labels, an easy task: the demo's phantoms", "demo_seeds.json#12", "hyb"),
)


def render_headline() -> str:
    """The README's headline table: the rows of ``HEADLINE`` (figures as in :func:`render`)."""
    lines = [
        "| regime | mode | test Dice vs `none` (seeds better, p) | step time | use it? |",
        "|---|---|---|---|---|",
    ]
    rows = {(row.file, row.variant): row for row in ROWS}
    for regime, file, mode in HEADLINE:
        f = row_figures(rows[file, mode])
        if f is None:
            continue
        cells = (regime, f"`{mode}`", _diff_cell(f, per_seed=False), _cost_cell(f, False))
        lines.append("| " + " | ".join((*cells, verdict(f))) + " |")
    return "\n".join(lines)


def render_label_efficiency(plots: str = DOCS_PLOTS) -> str:
    """The label-efficiency section: per data set, its plot and its table (from the JSON);
    ``plots`` is how the page links ``RESULTS``."""
    from benchmarks.label_efficiency.label_efficiency import markdown

    lines = []
    for data in ("hippocampus", "isbi2012"):
        path = result_file(f"label_efficiency_{data}.json")
        if not path.exists():
            continue
        table = json.loads(path.read_text())
        caps = sorted({(r["cases"], r["epochs_cap"]) for r in table["rows"]})
        steps = "scaled to equal optimiser steps" if table.get("equal_steps") else "equal"
        runs = [e == r["epochs_cap"] for r in table["rows"] for e in r["epochs_run"]]
        lines += [
            f"**{table['dataset']}** (epoch caps {steps}: "
            + ", ".join(f"{n} cases: {e}" for n, e in caps)
            + f"; {sum(runs)} of {len(runs)} runs ended at the cap, not by early stopping). "
            "Each cell: mean test Dice; for a mode, its difference from `none`, the seeds in "
            "which it beat `none` and the t-test over seeds.",
            "",
            f"![label efficiency, {table['dataset']}]({plot_link(path, plots)})",
            "",
            markdown(table),
            "",
        ]
    return "\n".join(lines).rstrip() or "No label-efficiency result is stored yet."


RECIPE = "convergence_hippocampus_recipe.json"
#: What each ablated variant leaves out of hyb's recipe.
LEFT_OUT = {
    "hyb": "nothing (the default)",
    "rec": "the G pass (L_mask, L_seg, L_D: hyb is μ-Net-Rec plus these)",
    "hyb-no-rec-x": "L_rei (reconstruction of X)",
    "hyb-no-rec-g": "L_rem (reconstruction of G)",
    "hyb-no-pseudo": "the pseudo-label terms (L_seg, L_seg')",
    "hyb-no-features": "the feature terms (L_D, L_D')",
}


def render_recipe() -> str:
    """The recipe ablation: each variant's test Dice against hyb and none, seed by seed."""
    path = result_file(RECIPE)
    if not path.exists():
        return "No recipe ablation is stored yet."
    result = json.loads(path.read_text())
    variants, ratios = result["variants"], result["step_time"]["ratios"]

    def per_seed(name: str) -> list[float]:
        return [s["test"]["dice"] for s in sorted(variants[name]["seeds"], key=lambda s: s["seed"])]

    lines = [
        "| left out of `hyb` | variant | test Dice | vs `hyb` | vs `none` | step time |",
        "|---|---|---|---|---|---|",
    ]
    for name in variants:
        if name == "none":
            continue
        dice = per_seed(name)
        cells = [LEFT_OUT.get(name, name), f"`{name}`", f"{statistics.mean(dice):.4f}"]
        for reference in ("hyb", "none"):
            if name == reference or reference not in variants:
                cells.append("")
                continue
            f = compare_seeds(dice, per_seed(reference))
            cells.append(_diff_cell({"diffs": f["per_seed_diff"], "p": f["p"]}))
        cells.append(f"{ratios[name]['time']:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


SEMI = "semi_hippocampus.json"
SEMI_START, SEMI_END = "<!-- semi:start -->", "<!-- semi:end -->"
#: What each arm of ``benchmarks/semi/semi.py`` does with the unlabelled cases.
SEMI_ARMS = {
    "none": "none (labelled cases only)",
    "up": "up (labelled cases only)",
    "hyb": "hyb (labelled cases only)",
    "mean-teacher": "mean teacher on `none`",
    "mean-teacher-1": "mean teacher on `none`, weight 1",
    "pseudo-none": "`none` on the EMA teacher's pseudo-masks",
    "pseudo-up": "`up` on the pseudo-masks",
    "hyb-semi": "`hyb` on the pseudo-masks (G pass and tied decoder too)",
    "hyb-rei": "`hyb`, tied decoder reconstructing unlabelled X (no teacher)",
    "full": "`none` with every pool case labelled (upper line)",
}


def render_semi(plots: str = DOCS_PLOTS) -> str:
    """The semi-supervised section: per labelled size, each arm's test Dice against ``none``,
    ``up`` and mean teacher seed by seed, its step time, and the verdict of the issue's rule
    (the best recipe beats ``up`` by >= 0.03 in every seed); ``plots`` as in
    :func:`render_label_efficiency`."""
    path = result_file(SEMI)
    if not path.exists():
        return "No semi-supervised result is stored yet."
    result = json.loads(path.read_text())
    config = result["config"]
    lines = [
        f"Task04 2D, empty slices kept; {config['val']} validation and {config['test']} test "
        f"cases; at most {config['steps']} optimiser steps per arm (validation every "
        f"{config['eval_every']}, the paper's early stopping); seeds {config['seeds']}.",
        "",
        f"![semi-supervised]({plot_link(path, plots)})",
        "",
        "Step time: each run's wall time per step over `none`'s, median over seeds; the runs "
        "shared the machine with other jobs, so it is rough (`benchmarks/cost/step_time.py` times "
        "the unlabelled steps interleaved).",
        "",
        "| labelled cases | arm | test Dice | vs `none` | vs `up` | vs mean teacher | step time |",
        "|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for n, rows in result["table"].items():
        for arm, row in rows.items():
            cells = [n, SEMI_ARMS.get(arm, arm)]
            cells.append(f"{row['test_dice_mean']:.4f} ± {row['test_dice_sd']:.4f}")
            for ref in ("none", "up", "mean-teacher"):
                f = row.get(f"vs_{ref}")
                cells.append(_diff_cell({"diffs": f["per_seed_diff"], "p": f["p"]}) if f else "")
            ratio = row.get("step_time_vs_none")
            cells.append(f"{ratio:.2f}x" if ratio else "")
            lines.append("| " + " | ".join(cells) + " |")
        supervised = ("none", "up", "hyb", "full")
        semi = {a: r for a, r in rows.items() if a not in supervised and "vs_up" in r}
        if semi:
            best = max(semi, key=lambda a: semi[a]["test_dice_mean"])
            diffs = semi[best]["vs_up"]["per_seed_diff"]
            met = min(diffs) >= 0.03
            verdicts.append(
                f"- {n} labelled cases: the best unlabelled-image arm is `{best}`, "
                f"{statistics.mean(diffs):+.4f} over `up` ({semi[best]['vs_up']['better_seeds']}"
                f"/{len(diffs)} seeds); the target (>= +0.03 in every seed) is "
                f"{'met' if met else 'not met'}."
            )
    return "\n".join([*lines, "", *verdicts, *_semi_designs()])


def _semi_designs() -> list[str]:
    """The pseudo-label designs tried (``semi_designs_hippocampus.json``), seed 0."""
    path = result_file("semi_designs_hippocampus.json")
    if not path.exists():
        return []
    result = json.loads(path.read_text())
    ref = result["reference"]
    lines = [
        "",
        "The pseudo-mask designs tried (`pseudo-none`, seed 0, chosen by validation Dice; "
        f"`none` {ref['none']['val_dice_best']:.3f} validation, {ref['none']['test_dice']:.4f} "
        f"test; `up` {ref['up']['val_dice_best']:.3f}, {ref['up']['test_dice']:.4f}):",
        "",
        "| design | best validation Dice (step) | test Dice |",
        "|---|---|---|",
    ]
    for d in result["designs"]:
        lines.append(
            f"| {d['design']} | {d['val_dice_best']:.3f} ({d['best_step']}) | "
            f"{d['test_dice']:.4f} |"
        )
    return lines


NATIVE_3D = "native_3d_hippocampus.json"
ISBI_PATCHES = "isbi_patches.json"
NATIVE_START, NATIVE_END = "<!-- native-3d:start -->", "<!-- native-3d:end -->"
PATCHES_START, PATCHES_END = "<!-- isbi-patches:start -->", "<!-- isbi-patches:end -->"
#: (key, label, digits) of the native benchmarks' metrics.
_METRICS = (("dice", "Dice", 4), ("hd95", "HD95 (lower is better)", 2), ("nsd", "NSD", 4))


def _means_row(cells: Sequence[str], m: Mapping[str, Any]) -> str:
    figures = (f"{m['dice']:.4f}", f"{m['hd95']:.2f}", f"{m['nsd']:.4f}")
    seconds = (f"{m['train_s']:.0f}", f"{m['val_s']:.0f}")
    return "| " + " | ".join((*cells, *figures, *seconds)) + " |"


def _comparison_rows(cells: Sequence[str], compared: Mapping[str, Any]) -> list[str]:
    rows = []
    for key, label, digits in _METRICS:
        c = compared[key]
        seeds = ", ".join(f"{d:+.{digits}f}" for d in c["per_seed_diff"])
        figures = (seeds, f"{c['mean_diff']:+.{digits}f}", c["better_in"], f"{c['p']:.2f}")
        rows.append("| " + " | ".join((*cells, label, *figures)) + " |")
    return rows


def render_native_3d() -> str:
    """The 3D benchmark's tables (``native_3d.py``): means per net and mode, hyb - none."""
    path = result_file(NATIVE_3D)
    if not path.exists():
        return "No 3D result is stored yet."
    summary = json.loads(path.read_text())["summary"]
    names = {"unet": "own U-Net", "monai-dynunet": "MONAI DynUNet"}
    lines = [
        "| net | mode | 3D Dice | HD95 (mm) | NSD (1 mm) | training s / run | validation s / run |",
        "|---|---|---|---|---|---|---|",
    ]
    for net, entry in summary.items():
        lines += [_means_row((names.get(net, net), mode), entry[mode]) for mode in ("none", "hyb")]
    lines += [
        "",
        "| net | metric | hyb - none per seed (0, 1, 2) | mean | hyb better in "
        "| p (t-test over seeds) |",
        "|---|---|---|---|---|---|",
    ]
    for net, entry in summary.items():
        lines += _comparison_rows((names.get(net, net),), entry["hyb_minus_none"])
    return "\n".join(lines)


def render_isbi_patches() -> str:
    """The ISBI native-patch benchmark's tables (``isbi_patches.py``): means per path and
    mode, patch - resize per mode and hyb - none per path."""
    path = result_file(ISBI_PATCHES)
    if not path.exists():
        return "No native-patch result is stored yet."
    summary = json.loads(path.read_text())["summary"]
    lines = [
        "| path | mode | Dice | HD95 (px) | NSD (1 px) | training s / run | validation s / run |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, means in summary["means"].items():
        lines.append(_means_row(key.split("/"), means))
    lines += [
        "",
        "| comparison | metric | per seed (0, 1, 2) | mean | better in | p (t-test over seeds) |",
        "|---|---|---|---|---|---|",
    ]
    for mode, compared in summary["patch_minus_resize"].items():
        lines += _comparison_rows((f"patch - resize, {mode}",), compared)
    for where, compared in summary["hyb_minus_none"].items():
        lines += _comparison_rows((f"hyb - none, {where}",), compared)
    return "\n".join(lines)


#: The JSON behind ``report.py``'s section (step time, inference, convergence).
REPORT = {
    "step_time": ["step_time.json"],
    "inference": ["inference.json"],
    "convergence": [
        "convergence_hippocampus.json",
        "convergence_hippocampus_long.json",
        "convergence_isbi2012.json",
    ],
}


def render_results() -> str:
    """``report.py``'s section (step time, inference, convergence) from the stored JSON,
    without its markers."""
    keys = {
        "step_time": ("ratios", "config"),
        "inference": ("ratios", "outputs_identical", "config"),
        "convergence": ("config", "variants", "ordering"),
    }
    loaded = {
        kind: [report.load_json(result_file(name), kind, keys[kind]) for name in names]
        for kind, names in REPORT.items()
    }
    sources = {
        kind: "`, `".join(
            result_file(name).relative_to(RESULTS.parent).as_posix() for name in names
        )
        for kind, names in REPORT.items()
    }
    full = report.render(
        loaded["step_time"][0], loaded["inference"][0], loaded["convergence"], sources
    )
    inner = full.split(report.START, 1)[1].rsplit(report.END, 1)[0]
    return inner[1:-1]  # replace_section puts back one newline on each side


@dataclass(frozen=True)
class Section:
    """One generated section: the file, its markers and what renders it."""

    path: Path
    start: str
    end: str
    render: Callable[[], str]


def sections() -> tuple[Section, ...]:
    """Every generated section of the README and the docs' results pages."""
    return (
        Section(README, HEADLINE_START, HEADLINE_END, render_headline),
        Section(DOCS / "modes.md", START, END, render),
        Section(DOCS / "modes.md", RECIPE_START, RECIPE_END, render_recipe),
        Section(DOCS / "modes.md", LE_START, LE_END, render_label_efficiency),
        Section(DOCS / "semi.md", SEMI_START, SEMI_END, render_semi),
        Section(DOCS / "native.md", NATIVE_START, NATIVE_END, render_native_3d),
        Section(DOCS / "native.md", PATCHES_START, PATCHES_END, render_isbi_patches),
        Section(DOCS / "benchmarks.md", report.START, report.END, render_results),
    )


def replace_section(text: str, section: str, start: str = START, end: str = END) -> str:
    """``text`` with the section between ``start`` and ``end`` replaced (both must be there)."""
    if start not in text or end not in text:
        raise ValueError(f"the page has no {start} ... {end} section to replace.")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{section}\n{end}{tail}"


def _rendered() -> dict[Path, str]:
    """Each file's text with every one of its sections as generated now."""
    texts: dict[Path, str] = {}
    for s in sections():
        text = texts.get(s.path) or s.path.read_text(encoding="utf-8")
        try:
            texts[s.path] = replace_section(text, s.render(), s.start, s.end)
        except ValueError as exc:
            raise ValueError(f"{s.path.relative_to(ROOT)}: {exc}") from None
    return texts


def stale_sections() -> list[str]:
    """``file: marker`` of each section whose text differs from what the JSON gives."""
    stale = []
    for s in sections():
        text = s.path.read_text(encoding="utf-8")
        if s.start not in text or s.end not in text:
            stale.append(f"{s.path.relative_to(ROOT)}: {s.start} (its markers are missing)")
        elif replace_section(text, s.render(), s.start, s.end) != text:
            stale.append(f"{s.path.relative_to(ROOT)}: {s.start}")
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--print", action="store_true", help="print instead of writing")
    group.add_argument("--check", action="store_true", help="exit 1 if a section is stale")
    args = parser.parse_args(argv)
    if args.print:
        print(*(s.render() for s in sections()), sep="\n\n")
    elif args.check:
        stale = stale_sections()
        for name in stale:
            print(f"stale: {name} (run python benchmarks/guidance.py)", file=sys.stderr)
        return 1 if stale else 0
    else:
        for path, text in _rendered().items():
            path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
