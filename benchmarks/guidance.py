"""The results sections of the README and the docs pages, generated from the benchmarks' JSON.

One row per (regime, mode) measurement (the rows: ``guidance_rows.py``): the test Dice difference
from ``none`` with its seeds ("k/n" beat ``none``, the t-test over seeds), the step time and memory
(``cost/step_time.py``), the validation Dice at ``none``'s compute and the compute to reach
``none``'s best (the equal-compute figures of ``convergence/analysis.py``), and a verdict that
follows from those figures by the rule in :func:`verdict` (nothing typed by hand). :func:`sections`
lists every generated section, each between its markers in its file: the headline table of README.md
(``<!-- headline:start -->``), and in ``docs/results/``: the full table (``guidance``), the
label-efficiency plots and tables (``label-efficiency``), the recipe ablation
(``convergence_hippocampus_recipe.json``: each term family of hyb left out, against hyb and none
seed by seed; ``recipe``), the semi-supervised runs (``semi``), the native-resolution tables
(``native-3d``, ``isbi-patches``), the field recipe's rows (``field``, also in README.md) and
``report.py``'s step time, inference and convergence tables (``results``). Each study's
``report.py`` renders its tables; this module knows where each JSON is (:func:`result_file`: in
its study's ``results/`` folder) and which page shows it.

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import report
from benchmarks._sections import Section, rendered, stale
from benchmarks._tables import diff_cell
from benchmarks.convergence.report import render_recipe as recipe_report
from benchmarks.field.report import render_field as field_report
from benchmarks.guidance_cells import (
    GAIN,
    LEVEL,
    best_cell,
    cost_cell,
    display_mode,
    equal_cell,
    verdict,
    versus,
)
from benchmarks.guidance_rows import ROWS, SEMI_STEPS, SEMI_WHOLE_STEPS, Row
from benchmarks.label_efficiency.report import render_label_efficiency as label_efficiency_report
from benchmarks.native.report import render_isbi_patches as isbi_patches_report
from benchmarks.native.report import render_native_3d as native_3d_report
from benchmarks.semi.report import render_semi as semi_report
from dsplug.metrics.paired import compare_seeds

# Row and ROWS (now in benchmarks/guidance_rows.py) stay importable from here.
__all__ = [
    "HEADLINE",
    "ROWS",
    "Row",
    "Section",
    "main",
    "plot_link",
    "render",
    "render_headline",
    "render_isbi_patches",
    "render_label_efficiency",
    "render_native_3d",
    "render_recipe",
    "render_results",
    "render_semi",
    "result_file",
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
    """A result JSON; ``file.json#key`` is the part of it under ``epochs[key]``,
    ``file.json@n`` (a label-efficiency table) its rows for ``n`` training cases, and
    ``file.json%n`` (a semi-supervised table) its arms at ``n`` labelled cases, and
    ``file.json&row`` (the field benchmark) that row's hyb - none (``&row:paper``: of the arms
    trained with the paper's recipe)."""
    name, _, part = name.partition("#")
    name, _, cases = name.partition("@")
    name, _, labelled = name.partition("%")
    name, _, family = name.partition("&")
    path = result_file(name)
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    if family:  # a row of the field benchmark, ``row`` or ``row:paper`` (the paper's arms)
        family, _, recipe = family.partition(":")
        suffix = "-paper" if recipe == "paper" else ""
        entry = result["summary"].get(family) or {}
        return {"field": entry.get(f"hyb{suffix}_minus_none{suffix}")}
    if cases:
        return {"size": {r["variant"]: r for r in result["rows"] if r["cases"] == int(cases)}}
    if labelled:  # a semi-supervised table: its arms at ``labelled`` labelled cases
        return {"semi": result["table"].get(labelled, {})}
    return {**result, **result["epochs"][part]} if part else result


def row_figures(row: Row) -> dict[str, Any] | None:
    """The figures of one row from its JSON (None when the file or the row is absent)."""
    result = _load(row.file)
    if result is None:
        return None
    if "semi" in result:  # one labelled size of the semi-supervised runs, against `none`
        r = result["semi"].get(row.variant)
        if r is None or "vs_none" not in r:
            return None
        figures = dict.fromkeys(("at_none_compute", "to_best", "to_best_none", "reached"))
        mode, unlabelled = SEMI_STEPS.get(row.variant, (None, None))
        # an arm that adds unlabelled images to `up` is compared with `up` alone (its baseline)
        reference = "up" if mode == "up" and unlabelled and "vs_up" in r else "none"
        versus = r[f"vs_{reference}"]
        figures.update(
            diffs=versus["per_seed_diff"],
            p=versus["p"],
            semi_step=_semi_step(row),
            reference=reference,
        )
        if unlabelled is None:  # a supervised arm: its mode's labelled step
            row = Row(row.regime, row.file, row.variant, ("step_time.json", mode))
    elif "field" in result:  # a row of the field benchmark: hyb - none per seed
        if result["field"] is None:
            return None
        versus = result["field"]["dice"]
        figures = dict.fromkeys(("at_none_compute", "to_best", "to_best_none", "reached"))
        figures.update(diffs=versus["per_seed_diff"], p=versus["p"])
    elif "size" in result:  # one training-set size of a label-efficiency table
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


def _semi_step(row: Row) -> float | None:
    """A semi-supervised arm's step over a labelled ``none`` step, timed interleaved: its whole
    step where ``step_time_semi.json`` times it as one, else its mode's labelled step
    (``step_time.json``) plus its unlabelled batch (``step_time_semi.json``)."""
    semi = (_load("step_time_semi.json") or {}).get("unlabeled", {})
    whole = semi.get(SEMI_WHOLE_STEPS.get(row.variant, ""))
    if whole is not None:
        return whole["time"]
    mode, unlabelled = SEMI_STEPS.get(row.variant, (None, None))
    labelled = (_load("step_time.json") or {}).get("ratios", {}).get(mode)
    extra = semi.get(unlabelled)
    if labelled is None or extra is None:
        return None
    return labelled["time"] + extra["time"]


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
        "from the studies' results (`benchmarks/<study>/results/`). An arm that adds unlabelled "
        'images to `up` is compared with `up` on the labelled cases alone ("vs `up`"). Rows '
        "of `hyb` are the paper's step (`aux_every=1`), measured before `hyb` ran its branches "
        "every other step by default (`aux_every=2`, named as such).",
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
        mode = display_mode(row.variant)
        cells = (
            regime,
            f"`{mode}`",
            versus(f, diff_cell(f)),
            cost_cell(f),
            equal_cell(f),
            best_cell(f),
            verdict(f),
        )
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("| plentiful labels on real data | any | not measured yet | | | | |")
    return "\n".join(lines)


#: The README's headline rows: (regime, JSON, mode), each a row of ``ROWS``.
HEADLINE: tuple[tuple[str, str, str], ...] = (
    ("scarce labels: Task04, 6 training cases", "convergence_hippocampus_aux.json", "hyb"),
    ("same", "convergence_hippocampus_cheap.json", "hyb-every2"),
    ("same", "convergence_hippocampus.json", "up"),
    ("thin structures: ISBI 2012, 15 training slices", "convergence_isbi2012.json", "hyb"),
    ("same, up to 100 epochs", "convergence_isbi2012_cheap_100epochs.json", "hyb-every2"),
    ("fewest labels: Task04, 2 training cases", "label_efficiency_hippocampus.json@2", "hyb"),
    ("same", "label_efficiency_hippocampus.json@2", "up"),
    ("fewest labels: ISBI 2012, 4 training slices", "label_efficiency_isbi2012.json@4", "hyb"),
    ("same", "label_efficiency_isbi2012.json@4", "up"),
    ("your own loop: smp Unet, Task04, 20 epochs", "own_loop_hippocampus_20epochs.json", "hyb"),
    ("plentiful labels, an easy task: the demo's phantoms", "demo_seeds.json#12", "hyb-every2"),
    (
        "few masks, unlabelled images beside them: Task04, 4 labelled cases (short runs)",
        "semi_hippocampus_paired.json%4",
        "up-cons-01",
    ),
    ("same", "semi_hippocampus_paired.json%4", "up-mt"),
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
        cells = (
            regime,
            f"`{display_mode(mode)}`",
            versus(f, diff_cell(f, per_seed=False)),
            cost_cell(f, False),
        )
        lines.append("| " + " | ".join((*cells, verdict(f))) + " |")
    return "\n".join(lines)


def _stored(name: str) -> dict[str, Any] | None:
    """The stored result ``name`` (:func:`result_file`), or None when it is absent."""
    path = result_file(name)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


#: The label-efficiency tables, one per data set, each with its plot beside it.
LABEL_EFFICIENCY = ("label_efficiency_hippocampus.json", "label_efficiency_isbi2012.json")


def render_label_efficiency(plots: str = DOCS_PLOTS) -> str:
    """The label-efficiency section: per data set, its plot and its table (from the JSON);
    ``plots`` is how the page links ``RESULTS``."""
    lines = []
    for name in LABEL_EFFICIENCY:
        table = _stored(name)
        if table is not None:
            lines += label_efficiency_report(table, plot_link(result_file(name), plots))
    return "\n".join(lines).rstrip() or "No label-efficiency result is stored yet."


RECIPE = "convergence_hippocampus_recipe.json"


def render_recipe() -> str:
    """The recipe ablation: each variant's test Dice against hyb and none, seed by seed."""
    result = _stored(RECIPE)
    return "No recipe ablation is stored yet." if result is None else recipe_report(result)


SEMI = "semi_hippocampus_paired.json"
SEMI_DESIGNS = "semi_designs_hippocampus.json"
SEMI_ISBI = "semi_isbi2012_paired.json"
#: The first runs: one generator drew both batches, so an arm with unlabelled images also saw
#: other labelled batches than ``up`` did.
SEMI_FIRST = ("semi_hippocampus.json", "semi_isbi2012.json")
SEMI_START, SEMI_END = "<!-- semi:start -->", "<!-- semi:end -->"


def render_semi(plots: str = DOCS_PLOTS) -> str:
    """The semi-supervised section (``semi/report.py``): the paired runs on Task04 (with the
    pseudo-mask designs tried and the step costs) and ISBI 2012, then the first runs;
    ``plots`` as in :func:`render_label_efficiency`."""
    result = _stored(SEMI)
    if result is None:
        return "No semi-supervised result is stored yet."
    text = semi_report(
        result,
        plot_link(result_file(SEMI), plots),
        _stored(SEMI_DESIGNS),
        _stored("step_time_semi.json"),
    )
    isbi = _stored(SEMI_ISBI)
    if isbi is not None:
        text += "\n\n" + semi_report(isbi, plot_link(result_file(SEMI_ISBI), plots))
    first = [(name, _stored(name)) for name in SEMI_FIRST]
    if any(r is not None for _, r in first):
        text += (
            "\n\n**The first runs** drew the unlabelled batches from the labelled batches' "
            "generator, so each arm with unlabelled images also trained on other labelled "
            "batches than `up`: their differences mix the recipe with the draw (kept for the "
            "record; the control arm `up-cons-0` above shows the size of that effect)."
        )
        for name, r in first:
            if r is not None:
                text += "\n\n" + semi_report(r, plot_link(result_file(name), plots))
    return text


NATIVE_3D = "native_3d_hippocampus.json"
ISBI_PATCHES = "isbi_patches.json"
NATIVE_START, NATIVE_END = "<!-- native-3d:start -->", "<!-- native-3d:end -->"
PATCHES_START, PATCHES_END = "<!-- isbi-patches:start -->", "<!-- isbi-patches:end -->"


def render_native_3d() -> str:
    """The 3D benchmark's tables: means per net and mode, hyb - none."""
    result = _stored(NATIVE_3D)
    return "No 3D result is stored yet." if result is None else native_3d_report(result["summary"])


def render_isbi_patches() -> str:
    """The ISBI native-patch benchmark's tables: means per path and mode, patch - resize per
    mode and hyb - none per path."""
    result = _stored(ISBI_PATCHES)
    if result is None:
        return "No native-patch result is stored yet."
    return isbi_patches_report(result["summary"])


FIELD = "field.json"
FIELD_START, FIELD_END = "<!-- field:start -->", "<!-- field:end -->"


def render_field(plots: str = DOCS_PLOTS) -> str:
    """The field benchmark's table beside the published figures, and its validation curves
    (``plots``: how the page links ``RESULTS``)."""
    result = _stored(FIELD)
    if result is None:
        return "No field result is stored yet."
    curves = plot_link(result_file(FIELD), plots)
    return field_report(result) + f"\n\n![validation Dice per epoch of every run]({curves})"


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
        Section(DOCS / "native.md", FIELD_START, FIELD_END, render_field),
        Section(README, FIELD_START, FIELD_END, lambda: render_field("benchmarks/")),
        Section(DOCS / "benchmarks.md", report.START, report.END, render_results),
    )


def stale_sections() -> list[str]:
    """``file: marker`` of each section whose text differs from what the JSON gives."""
    return stale(sections(), ROOT)


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
        for path, text in rendered(sections(), ROOT).items():
            path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
