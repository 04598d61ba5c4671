"""benchmarks/label_efficiency.py: the table and plot from convergence results (no training)."""

from __future__ import annotations

from benchmarks.label_efficiency import collect, markdown, plot


def _result(none: float, hyb: float, diffs: list[float]) -> dict:
    def variant(dice: float, p: dict | None) -> dict:
        return {
            "test_over_seeds": {"dice": {"mean": dice, "sd": 0.01, "n": len(diffs)}},
            "p_vs_none": p,
        }

    p = {
        "mean_diff": hyb - none,
        "per_seed_diff": diffs,
        "better_seeds": sum(d > 0 for d in diffs),
        "p": 0.2,
    }
    return {"variants": {"none": variant(none, None), "hyb": variant(hyb, p)}}


def test_one_row_per_size_and_mode_with_seed_counts(tmp_path) -> None:
    table = collect({8: _result(0.70, 0.72, [0.03, 0.02, -0.01]), 4: _result(0.5, 0.6, [0.1] * 3)})
    assert [(r["cases"], r["variant"]) for r in table["rows"]] == [
        (4, "none"),
        (4, "hyb"),
        (8, "none"),
        (8, "hyb"),
    ]
    text = markdown(table)
    assert "| 8 | 0.700 ± 0.010 | 0.720 (+0.020; 2/3, p = 0.2) |" in text
    assert "| 4 | 0.500 ± 0.010 | 0.600 (+0.100; 3/3, p = 0.2) |" in text
    plot(table, tmp_path / "le.png", "test")
    assert (tmp_path / "le.png").stat().st_size > 1000
