"""The results sections of the README and the docs pages are generated from the benchmarks'
JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import guidance
from benchmarks._sections import replace_section

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("diffs", "equal", "expected"),
    [
        ([-0.011, -0.011, -0.040], None, "**no**: use `none`"),
        ([0.001, -0.004, 0.008], None, "level with `none`: not worth its cost"),
        ([0.02, 0.03, 0.009], None, "yes, for accuracy"),
        ([0.02, 0.03, -0.002], None, "for accuracy (not in every seed)"),
        ([0.008, 0.009, 0.002], None, "for a small gain (under 0.01)"),
        ([0.02, 0.03, 0.009], [-0.1, -0.2, 0.1], "yes, for accuracy; not at equal compute"),
        ([0.02, 0.03, 0.009], [0.1, -0.2, 0.1], "yes, for accuracy"),
    ],
)
def test_verdict_follows_the_figures(diffs, equal, expected):
    assert guidance.verdict({"diffs": diffs, "at_none_compute": equal}) == expected


def test_every_row_reads_its_json():
    """Each listed JSON that is stored yields its row's figures (a renamed key fails here)."""
    stored = [row for row in guidance.ROWS if guidance.row_figures(row) is not None]
    assert len(stored) >= 10
    for row in stored:
        figures = guidance.row_figures(row)
        assert len(figures["diffs"]) == 3, row
        if row.step is not None:
            time, memory = figures["step"]
            assert time >= 1.0 and memory >= 1.0, row


@pytest.mark.parametrize(
    "section",
    guidance.sections(),
    ids=lambda s: f"{s.path.relative_to(ROOT)}:{s.start[5:-4]}",
)
def test_each_section_is_the_generated_one(section):
    """README.md and docs/results/*.md hold what `python benchmarks/guidance.py` writes from
    benchmarks/<study>/results/ (regenerate after a run); a hand edit of a generated table fails
    here."""
    text = section.path.read_text(encoding="utf-8")
    assert replace_section(text, section.render(), section.start, section.end) == text


def test_every_page_with_markers_is_generated():
    """No page holds generated markers that guidance.py does not fill (a table left to rot)."""
    markers = {s.start for s in guidance.sections()}
    known = {(s.path, s.start) for s in guidance.sections()}
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for start in markers:
            if start in text:
                assert (page, start) in known, f"{page.relative_to(ROOT)} holds {start}"


def test_check_names_a_stale_section_and_writing_fixes_it(tmp_path, monkeypatch, capsys):
    """`guidance.py --check` fails on a hand-edited table and passes once it is rewritten."""
    readme, docs = tmp_path / "README.md", tmp_path / "docs" / "results"
    docs.mkdir(parents=True)
    readme.write_text((ROOT / "README.md").read_text(encoding="utf-8"), encoding="utf-8")
    for page in (ROOT / "docs" / "results").glob("*.md"):
        (docs / page.name).write_text(page.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(guidance, "ROOT", tmp_path)
    monkeypatch.setattr(guidance, "README", readme)
    monkeypatch.setattr(guidance, "DOCS", docs)
    assert guidance.main(["--check"]) == 0
    page = docs / "modes.md"
    edited = page.read_text(encoding="utf-8").replace("| `up` |", "| `up` (edited) |", 1)
    page.write_text(edited, encoding="utf-8")
    assert guidance.main(["--check"]) == 1
    assert "docs/results/modes.md: <!-- guidance:start -->" in capsys.readouterr().err
    assert guidance.main([]) == 0 and guidance.main(["--check"]) == 0
    assert "(edited)" not in page.read_text(encoding="utf-8")
    native = docs / "native.md"
    native.write_text(native.read_text(encoding="utf-8").replace(guidance.NATIVE_END, ""))
    assert guidance.main(["--check"]) == 1
    assert "native-3d:start --> (its markers are missing)" in capsys.readouterr().err


def test_the_headline_rows_are_rows_of_the_full_table():
    """The README's headline repeats rows of the full table, with the same figures."""
    rows = {(row.file, row.variant) for row in guidance.ROWS}
    assert all((file, mode) in rows for _, file, mode in guidance.HEADLINE)
    full = guidance.render()
    for line in guidance.render_headline().splitlines()[2:]:
        cells = line.split(" | ")
        assert cells[2].split(";")[0].rstrip(")") in full, line


def test_label_efficiency_rows_and_section(tmp_path, monkeypatch):
    """A label-efficiency table feeds one guidance row per (size, mode) and the README
    section (plot link and table) for its data set."""
    import json

    def row(cases: int, variant: str, diffs: list[float] | None) -> dict:
        return {
            "cases": cases,
            "variant": variant,
            "dice_mean": 0.7,
            "dice_sd": 0.01,
            "seeds": 3,
            "diff_vs_none": None if diffs is None else sum(diffs) / 3,
            "per_seed_diff": diffs,
            "better_seeds": None if diffs is None else sum(d > 0 for d in diffs),
            "p": None if diffs is None else 0.1,
            "at_none_compute": None if diffs is None else [-0.1, -0.2, 0.1],
            "to_best": 30.0,
            "to_best_none": 20.0,
            "reached": 2,
            "epochs_cap": 120 if cases == 2 else 30,
            "epochs_run": [30, 30, 30],
        }

    table = {
        "dataset": "Task04_Hippocampus",
        "equal_steps": True,
        "rows": [row(2, "none", None), row(2, "hyb", [0.02, 0.01, 0.03]), row(8, "none", None)],
    }
    results = tmp_path / "label_efficiency" / "results"
    results.mkdir(parents=True)
    (results / "label_efficiency_hippocampus.json").write_text(json.dumps(table))
    monkeypatch.setattr(guidance, "RESULTS", tmp_path)
    figures = guidance.row_figures(
        guidance.Row("r", "label_efficiency_hippocampus.json@2", "hyb", None)
    )
    assert figures["diffs"] == [0.02, 0.01, 0.03] and figures["at_none_compute"][1] == -0.2
    assert guidance.verdict(figures) == "yes, for accuracy; not at equal compute"
    absent = guidance.Row("r", "label_efficiency_hippocampus.json@8", "hyb", None)
    assert guidance.row_figures(absent) is None
    section = guidance.render_label_efficiency()
    plot = "label_efficiency/results/label_efficiency_hippocampus.png"
    assert f"({guidance.DOCS_PLOTS}{plot})" in section
    assert "2 cases: 120, 8 cases: 30; 3 of 9 runs ended at the cap" in section
    assert "| 2 | 0.700 ± 0.010 | 0.700 (+0.020; 3/3, p = 0.1) |" in section


def test_replace_section_needs_its_markers():
    with pytest.raises(ValueError, match="guidance:start"):
        replace_section("no markers", "x", guidance.START, guidance.END)


def test_recipe_table_compares_each_variant_with_hyb_seed_by_seed(tmp_path, monkeypatch):
    """The recipe ablation's rows: per-seed differences from hyb and from none."""
    import json

    def variant(dice: list[float]) -> dict:
        return {"seeds": [{"seed": s, "test": {"dice": d}} for s, d in enumerate(dice)]}

    result = {
        "variants": {
            "none": variant([0.70, 0.71, 0.72]),
            "hyb": variant([0.72, 0.73, 0.73]),
            "hyb-no-pseudo": variant([0.71, 0.74, 0.73]),
        },
        "step_time": {
            "ratios": {n: {"time": t} for n, t in [("hyb", 2.8), ("hyb-no-pseudo", 2.5)]}
        },
    }
    (tmp_path / "convergence" / "results").mkdir(parents=True)
    (tmp_path / "convergence" / "results" / guidance.RECIPE).write_text(json.dumps(result))
    monkeypatch.setattr(guidance, "RESULTS", tmp_path)
    rows = guidance.render_recipe().splitlines()[2:]
    assert len(rows) == 2 and rows[0].startswith("| nothing (the default) | `hyb` | 0.7267 |")
    pseudo = rows[1].split(" | ")
    assert pseudo[1] == "`hyb-no-pseudo`"
    assert pseudo[3].startswith("+0.000 (1/3") and "-0.010, +0.010, +0.000" in pseudo[3]
    assert pseudo[4].startswith("+0.017 (3/3") and pseudo[5] == "2.50x |"


def test_semi_section_reads_the_runs_and_states_the_target(tmp_path, monkeypatch):
    """The semi-supervised rows come from benchmarks/semi/semi.py's runs: differences per seed, k of
    n, and the target's verdict (>= +0.03 over `up` in every seed) from the same numbers."""
    import json

    from benchmarks.semi.semi import summarise

    def run(arm: str, seed: int, dice: float) -> dict:
        setting = {"labeled": 4, "seed": seed}
        return {
            "arm": arm,
            "setting": setting,
            "test_dice": dice,
            "seconds_per_step": 1.0,
            "steps_run": 100,
        }

    dice = {"none": [0.70, 0.71, 0.72], "up": [0.71, 0.72, 0.73], "hyb-semi": [0.75, 0.76, 0.75]}
    runs = [run(a, s, d) for a, values in dice.items() for s, d in enumerate(values)]
    table = summarise(runs, against=("none", "up", "mean-teacher"))
    config = {"val": 10, "test": 30, "steps": 100, "eval_every": 10, "seeds": "0,1,2"}
    (tmp_path / "semi" / "results").mkdir(parents=True)
    (tmp_path / "semi" / "results" / guidance.SEMI).write_text(
        json.dumps({"config": config, "table": table})
    )
    monkeypatch.setattr(guidance, "RESULTS", tmp_path)
    text = guidance.render_semi()
    row = next(line for line in text.splitlines() if "pseudo-masks (G pass" in line)
    assert "0.7533" in row and row.split(" | ")[4].startswith("+0.033 (3/3")
    assert "`hyb-semi`, +0.0333 over `up` (3/3 seeds)" in text and "is not met" in text


def test_every_listed_json_is_stored_once_in_its_studys_results():
    """Each study keeps its results in benchmarks/<study>/results/; a name is in one study only
    (guidance finds a JSON by its name), and every JSON the sections list is stored."""
    stored = [p.name for p in guidance.RESULTS.glob("*/results/*")]
    assert len(stored) == len(set(stored)) and not (guidance.RESULTS / "results").exists()
    listed = {
        row.file.partition("#")[0].partition("@")[0].partition("%")[0].partition("&")[0]
        for row in guidance.ROWS
    }
    listed |= {row.step[0] for row in guidance.ROWS if row.step is not None}
    listed |= {name for names in guidance.REPORT.values() for name in names}
    listed |= {guidance.RECIPE, guidance.SEMI, guidance.SEMI_DESIGNS, guidance.NATIVE_3D}
    listed |= {guidance.SEMI_ISBI, *guidance.SEMI_FIRST}
    listed |= {guidance.ISBI_PATCHES, guidance.FIELD, *guidance.LABEL_EFFICIENCY}
    missing = sorted(name for name in listed if not guidance.result_file(name).exists())
    assert not missing, missing


def test_the_docs_site_serves_each_studys_plots():
    """docs/_hooks/results_images.py: a page's link to benchmarks/<study>/results/NAME.png
    points to the copy the site serves, and every stored plot is served."""
    import importlib.util
    from types import SimpleNamespace

    spec = importlib.util.spec_from_file_location(
        "results_images", ROOT / "docs" / "_hooks" / "results_images.py"
    )
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    page = SimpleNamespace(file=SimpleNamespace(src_uri="results/semi.md"))
    markdown = "![a](../../benchmarks/semi/results/a.png) ![b](../../benchmarks/x.png)"
    served = "![a](../assets/results/semi/a.png) ![b](../../benchmarks/x.png)"
    assert hook.on_page_markdown(markdown, page) == served
    plots = sorted(guidance.RESULTS.glob("*/results/*.png"))
    assert plots and all(p.relative_to(hook.BENCHMARKS).parts[1] == "results" for p in plots)


def test_the_demo_says_what_its_few_mask_benchmark_measured():
    """`dsplug demo`'s last line is benchmarks/semi/demo_semi.py's result, as generated from
    the stored JSON (a new measurement without a new line fails here)."""
    from benchmarks.semi.report import demo_line
    from dsplug.train.commands.demo import FEW_MASKS

    stored = json.loads(guidance.result_file("demo_semi.json").read_text())
    assert demo_line(stored) == FEW_MASKS
    assert "3/3 seeds" in FEW_MASKS or "nothing paid" in FEW_MASKS
