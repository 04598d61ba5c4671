"""The README's "which mode when" table is generated from the benchmarks' JSON."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import guidance

README = Path(__file__).resolve().parents[1] / "README.md"


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


def test_readme_section_is_the_generated_one():
    """README.md holds what `python benchmarks/guidance.py` writes (regenerate after a run)."""
    text = README.read_text()
    assert guidance.replace_section(text, guidance.render()) == text
    curves = guidance.render_label_efficiency()
    assert guidance.replace_section(text, curves, guidance.LE_START, guidance.LE_END) == text
    recipe = guidance.render_recipe()
    assert (
        guidance.replace_section(text, recipe, guidance.RECIPE_START, guidance.RECIPE_END) == text
    )
    semi = guidance.render_semi()
    assert guidance.replace_section(text, semi, guidance.SEMI_START, guidance.SEMI_END) == text


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
    (tmp_path / "label_efficiency_hippocampus.json").write_text(json.dumps(table))
    monkeypatch.setattr(guidance, "RESULTS", tmp_path)
    figures = guidance.row_figures(
        guidance.Row("r", "label_efficiency_hippocampus.json@2", "hyb", None)
    )
    assert figures["diffs"] == [0.02, 0.01, 0.03] and figures["at_none_compute"][1] == -0.2
    assert guidance.verdict(figures) == "yes, for accuracy; not at equal compute"
    absent = guidance.Row("r", "label_efficiency_hippocampus.json@8", "hyb", None)
    assert guidance.row_figures(absent) is None
    section = guidance.render_label_efficiency()
    assert "(benchmarks/results/label_efficiency_hippocampus.png)" in section
    assert "2 cases: 120, 8 cases: 30; 3 of 9 runs ended at the cap" in section
    assert "| 2 | 0.700 ± 0.010 | 0.700 (+0.020; 3/3, p = 0.1) |" in section


def test_replace_section_needs_its_markers():
    with pytest.raises(ValueError, match="guidance:start"):
        guidance.replace_section("no markers", "x")


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
    (tmp_path / guidance.RECIPE).write_text(json.dumps(result))
    monkeypatch.setattr(guidance, "RESULTS", tmp_path)
    rows = guidance.render_recipe().splitlines()[2:]
    assert len(rows) == 2 and rows[0].startswith("| nothing (the default) | `hyb` | 0.7267 |")
    pseudo = rows[1].split(" | ")
    assert pseudo[1] == "`hyb-no-pseudo`"
    assert pseudo[3].startswith("+0.000 (1/3") and "-0.010, +0.010, +0.000" in pseudo[3]
    assert pseudo[4].startswith("+0.017 (3/3") and pseudo[5] == "2.50x |"


def test_semi_section_reads_the_runs_and_states_the_target(tmp_path, monkeypatch):
    """The semi-supervised rows come from benchmarks/semi.py's runs: differences per seed, k of
    n, and the target's verdict (>= +0.03 over `up` in every seed) from the same numbers."""
    import json

    from benchmarks.semi import summarise

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
    (tmp_path / guidance.SEMI).write_text(json.dumps({"config": config, "table": table}))
    monkeypatch.setattr(guidance, "RESULTS", tmp_path)
    text = guidance.render_semi()
    row = next(line for line in text.splitlines() if "pseudo-masks (G pass" in line)
    assert "0.7533" in row and row.split(" | ")[4].startswith("+0.033 (3/3")
    assert "`hyb-semi`, +0.0333 over `up` (3/3 seeds)" in text and "is not met" in text
