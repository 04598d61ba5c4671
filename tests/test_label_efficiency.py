"""benchmarks/label_efficiency/label_efficiency.py: the table and plot from convergence results
(no training)."""

from __future__ import annotations

from benchmarks.label_efficiency.label_efficiency import collect, markdown, plot


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


def test_equal_steps_scales_the_epoch_cap_by_size(tmp_path, monkeypatch) -> None:
    """``--equal-steps``: a quarter of the data trains for four times the epochs (about the
    same optimiser steps), and without it every size keeps the preset's cap."""
    import json

    from benchmarks.convergence import convergence
    from benchmarks.label_efficiency import label_efficiency

    calls: dict[str, list[str]] = {}

    def fake_main(argv: list[str]) -> int:
        out = argv[argv.index("--out") + 1]
        calls[out] = argv
        result = _result(0.7, 0.72, [0.01, 0.02, 0.03])
        result["config"] = {"dataset": "test"}
        (tmp_path / "r.json").write_text(json.dumps(result))
        json_path = argv[argv.index("--json") + 1]
        from pathlib import Path

        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result))
        return 0

    monkeypatch.setattr(convergence, "main", fake_main)
    args = ["--cases", "4,8,16", "--out", str(tmp_path / "a"), "--epochs", "20"]
    assert label_efficiency.main([*args, "--min-epochs", "6", "--equal-steps"]) == 0

    def cap(folder: str, name: str) -> int:
        argv = calls[str(tmp_path / folder)]
        return int(argv[len(argv) - 1 - argv[::-1].index(name) + 1])  # the last occurrence

    assert [cap(f"a/cases_{n}", "--epochs") for n in (4, 8, 16)] == [80, 40, 20]
    assert [cap(f"a/cases_{n}", "--min-epochs") for n in (4, 8, 16)] == [24, 12, 6]
    assert label_efficiency.main([*args[:3], str(tmp_path / "b"), *args[4:]]) == 0
    assert [cap(f"b/cases_{n}", "--epochs") for n in (4, 8, 16)] == [20, 20, 20]
