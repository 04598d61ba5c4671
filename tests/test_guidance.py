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
        ([0.02, 0.03, 0.009], [-0.1, -0.2, 0.1], "yes, for accuracy; not at equal compute"),
        ([0.02, 0.03, 0.009], [0.1, -0.2, 0.1], "yes, for accuracy"),
    ],
)
def test_verdict_follows_the_figures(diffs, equal, expected):
    assert guidance.verdict({"diffs": diffs, "at_none_compute": equal}) == expected


def test_every_row_reads_its_json():
    """Each listed JSON that is stored yields its row's figures (a renamed key fails here)."""
    stored = [row for row in guidance.ROWS if (guidance.RESULTS / row.file).exists()]
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


def test_replace_section_needs_its_markers():
    with pytest.raises(ValueError, match="guidance:start"):
        guidance.replace_section("no markers", "x")
