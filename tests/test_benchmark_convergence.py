"""The convergence benchmark (analysis, settings, a smoke run on real data) and report.py."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from benchmarks import paper, report
from benchmarks.convergence import report as convergence_report
from benchmarks.convergence.analysis import analyse, upgrade
from benchmarks.convergence.convergence import build_parser, main, settings_from_args
from benchmarks.convergence.settings import (
    FULL,
    QUICK,
    THIN,
    VARIANTS,
    ConvergenceSettings,
    setting_name,
)
from dsplug.metrics import METRIC_NAMES
from dsplug.options import Mode
from tests.data.conftest import require_data

ROOT = Path(__file__).resolve().parents[1]
CASES = [f"case_{i}" for i in range(6)]


# ------------------------------------------------------------------ synthetic run records
def fake_run(
    name: str, seed: int, val_dice: list[float], case_dice: list[float], avg_t: float
) -> dict:
    """A run record as run_variant writes it, with chosen numbers."""
    history = [
        {"epoch": e, "val_dice": d, "val_avg_m": d, "train_s": avg_t, "val_s": 1.0}
        for e, d in enumerate(val_dice, 1)
    ]
    best = int(np.argmax(val_dice)) + 1
    per_case = {c: dict.fromkeys(METRIC_NAMES, d) for c, d in zip(CASES, case_dice)}
    per_case_class = {
        c: [dict.fromkeys(METRIC_NAMES, d), dict.fromkeys(METRIC_NAMES, d / 2)]
        for c, d in zip(CASES, case_dice)
    }
    summary = {m: float(np.mean(case_dice)) for m in METRIC_NAMES}
    return {
        "variant": {
            "name": name,
            "mode": VARIANTS[name].mode,
            "weights": VARIANTS[name].weights,
            "schedule": VARIANTS[name].schedule,
        },
        "seed": seed,
        "history": history,
        "efficiency": {
            "avg_t_s": avg_t,
            "epoch": best,
            "tot_t_s": avg_t * best,
            "epochs_run": len(val_dice),
        },
        "best_val": {m: max(val_dice) for m in METRIC_NAMES},
        "test": {
            "summary": summary,
            "classes": ["Anterior", "Posterior"],
            "per_case": per_case,
            "per_case_class": per_case_class,
        },
    }


@pytest.fixture
def records() -> dict:
    rng = np.random.default_rng(0)
    out = {}
    for seed in (0, 1):
        base = list(0.7 + 0.1 * rng.random(len(CASES)))
        out[("none", seed)] = fake_run("none", seed, [0.5, 0.7, 0.8, 0.75], base, 10.0 + seed)
        out[("hyb", seed)] = fake_run(
            "hyb",
            seed,
            [0.6, 0.82, 0.81, 0.83],
            [d + 0.01 * (i + 1) for i, d in enumerate(base)],
            25.0,
        )
        out[("deep", seed)] = fake_run(
            "deep",
            seed,
            [0.4, 0.5, 0.6, 0.7],
            [d - 0.02 - 0.003 * i for i, d in enumerate(base)],
            18.0,
        )
    return out


STEP = {"ratios": {"none": {"time": 1.0}, "hyb": {"time": 2.5}, "deep": {"time": 1.8}}}


def test_epochs_to_none_best_and_its_time(records) -> None:
    result = analyse(records, STEP)["variants"]
    hyb = result["hyb"]
    for s in hyb["seeds"]:
        none_avg_t = 10.0 + s["seed"]
        assert s["target_dice"] == 0.8  # none's best validation Dice, same seed
        assert s["epochs_to_target"] == 2  # 0.82 >= 0.8 at epoch 2
        assert s["time_to_target_none_epochs"] == pytest.approx(2 * 2.5)
        assert s["time_to_target_s"] == pytest.approx(2 * 2.5 * none_avg_t)
        assert s["tot_t_ratio_s"] == pytest.approx(4 * 2.5 * none_avg_t)  # best epoch 4
    assert hyb["seeds_reaching_target"] == 2
    assert result["deep"]["seeds_reaching_target"] == 0
    assert result["deep"]["epochs_to_target"]["mean"] is None
    assert result["none"]["epochs_to_target"]["mean"] == 3  # none reaches its own best
    assert result["none"]["p_vs_none"] is None


def test_per_case_means_p_values_and_classes(records) -> None:
    result = analyse(records, STEP)["variants"]
    for name in ("hyb", "deep"):
        mean_case = {
            c: np.mean([records[(name, s)]["test"]["per_case"][c]["dice"] for s in (0, 1)])
            for c in CASES
        }
        none_case = {
            c: np.mean([records[("none", s)]["test"]["per_case"][c]["dice"] for s in (0, 1)])
            for c in CASES
        }
        v = result[name]
        assert v["test"]["dice"] == pytest.approx(np.mean(list(mean_case.values())))
        a, b = [mean_case[c] for c in CASES], [none_case[c] for c in CASES]
        pooled = v["p_vs_none"]["pooled_cases"]  # the former test, kept for reference
        assert pooled["ttest_p"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
        assert pooled["wilcoxon_p"] == pytest.approx(stats.wilcoxon(a, b).pvalue)
        seed_diff = [
            records[(name, s)]["test"]["summary"]["dice"]
            - records[("none", s)]["test"]["summary"]["dice"]
            for s in (0, 1)
        ]
        assert v["p_vs_none"]["per_seed_diff"] == pytest.approx(seed_diff)
        assert v["p_vs_none"]["p"] < 1e-6  # both seeds moved by the same amount
        assert v["test_per_class"]["Posterior"]["dice"] == pytest.approx(
            v["test_per_class"]["Anterior"]["dice"] / 2
        )
        per_seed = [
            np.mean(records[(name, s)]["test"]["per_case"][c]["dice"])
            for s in (0, 1)
            for c in CASES
        ]
        assert v["test_over_seeds"]["dice"]["n"] == 2
        assert np.mean(per_seed) == pytest.approx(v["test_over_seeds"]["dice"]["mean"])


# ------------------------------------------------------- seed-aware comparison (issue 18)
SEED_SHIFTS = {0: 0.03, 1: 0.04, 2: -0.02}  # hyb - none per seed: the seeds disagree in sign


def _disagreeing_seeds() -> dict:
    """3 seeds x 6 cases; within each seed every case moves the same way (tiny case noise)."""
    rng = np.random.default_rng(1)
    base = 0.7 + 0.1 * rng.random(len(CASES))
    out = {}
    for seed, shift in SEED_SHIFTS.items():
        noise = 0.001 * rng.standard_normal(len(CASES))
        out[("none", seed)] = fake_run("none", seed, [0.6, 0.7], list(base), 10.0)
        out[("hyb", seed)] = fake_run("hyb", seed, [0.6, 0.7], list(base + shift + noise), 25.0)
    return out


def test_seeds_that_disagree_in_sign_give_a_large_p() -> None:
    """The former test paired the seed-averaged cases as if independent: every case gains
    about +0.017, so it gave p ~ 1e-7 although one seed of three lost. The seed-aware p (and
    the seeds x cases bootstrap) must see the disagreement."""
    hyb = analyse(_disagreeing_seeds(), STEP)["variants"]["hyb"]["p_vs_none"]
    assert hyb["pooled_cases"]["ttest_p"] < 1e-4  # what the README used to report
    assert hyb["p"] > 0.3
    assert hyb["bootstrap"]["p"] > 0.1
    assert hyb["ci95"][0] < 0.0 < hyb["ci95"][1]
    assert hyb["bootstrap"]["ci95"][0] < 0.0 < hyb["bootstrap"]["ci95"][1]
    assert hyb["better_seeds"] == 2 and hyb["n_seeds"] == 3


def test_better_in_k_of_n_seeds_is_counted_by_seed() -> None:
    """Per-seed differences of the mean test Dice, paired by seed number (not by position);
    a tie is not "better"; the table cell and the sentence say k/n."""
    diffs = {3: 0.02, 5: -0.01, 7: 0.0, 9: 0.005}
    records = {}
    for seed, d in diffs.items():
        base = [0.70 + 0.01 * i + 0.001 * seed for i in range(len(CASES))]
        records[("none", seed)] = fake_run("none", seed, [0.6, 0.7], base, 10.0)
        records[("hyb", seed)] = fake_run("hyb", seed, [0.6, 0.7], [b + d for b in base], 25.0)
    records = dict(reversed(list(records.items())))  # order of the records does not matter
    result = _convergence_json(records)
    p = result["variants"]["hyb"]["p_vs_none"]
    assert p["seeds"] == [3, 5, 7, 9]
    assert p["per_seed_diff"] == pytest.approx(list(diffs.values()), abs=1e-12)
    assert p["better_seeds"] == 2 and p["n_seeds"] == 4
    assert p["mean_diff"] == pytest.approx(np.mean(list(diffs.values())))
    text = convergence_report.render_convergence(result)
    assert "(2/4, p = " in text
    assert "better in 2 of 4 seeds (+0.0200 (seed 3), -0.0100 (seed 5)" in text


def test_stored_results_are_seed_aware() -> None:
    """The shipped JSON holds the seed-aware comparison, and recomputing it changes nothing."""
    results = ROOT / "benchmarks" / "convergence" / "results"
    for path in sorted(results.glob("convergence_*.json")):
        result = json.loads(path.read_text())
        for name, v in result["variants"].items():
            p = v["p_vs_none"]
            if name == "none":
                assert p is None
                continue
            seeds = {s["seed"]: s["test"]["dice"] for s in v["seeds"]}
            none = {s["seed"]: s["test"]["dice"] for s in result["variants"]["none"]["seeds"]}
            diff = [seeds[s] - none[s] for s in p["seeds"]]
            assert p["per_seed_diff"] == pytest.approx(diff), (path.name, name)
            assert p["better_seeds"] == sum(d > 0 for d in diff)
        assert upgrade(json.loads(path.read_text())) == result, path.name


def test_report_refuses_the_former_pooled_p_values(records, tmp_path: Path, capsys) -> None:
    conv = _convergence_json(records)
    for v in conv["variants"].values():
        if v["p_vs_none"] is not None:
            v["p_vs_none"] = v["p_vs_none"]["pooled_cases"]  # the former format
    path = _write(tmp_path, "old.json", conv)
    with pytest.raises(SystemExit) as exc:
        report.main(["--convergence", str(path), "--readme", str(tmp_path / "R.md")])
    assert exc.value.code == 2 and "benchmarks/convergence/analysis.py" in capsys.readouterr().err


def test_ordering_verdict(records) -> None:
    ordering = analyse(records, STEP)["ordering"]
    assert ordering["paper"] == ["none", "deep", "hyb"]
    assert ordering["observed"] == ["deep", "none", "hyb"]  # deep scored below none here
    assert ordering["reproduced"] is False
    kept = {k: v for k, v in records.items() if k[0] != "deep"}
    assert analyse(kept, STEP)["ordering"]["reproduced"] is True


def test_analyse_needs_none(records) -> None:
    with pytest.raises(ValueError, match="none"):
        analyse({k: v for k, v in records.items() if k[0] != "none"}, STEP)


# ------------------------------------------------------------------------------ settings
def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="unknown variant"):
        ConvergenceSettings(("none", "hybb"), (0,), 1, 1, 2, 1, 1, 8, 3)
    with pytest.raises(ValueError, match="start with 'none'"):
        ConvergenceSettings(("hyb", "none"), (0,), 1, 1, 2, 1, 1, 8, 3)
    with pytest.raises(ValueError, match="multiple of 2"):
        ConvergenceSettings(("none",), (0,), 1, 1, 2, 1, 1, 8, 5, size=(40, 64))
    with pytest.raises(ValueError, match="test_cases"):
        ConvergenceSettings(("none",), (0,), 1, 1, 1, 1, 1, 8, 3)


def test_presets_cover_the_issue() -> None:
    modes = set(Mode) - {Mode.VAE}
    assert modes <= set(FULL.variants) and len(FULL.seeds) >= 3
    hyb = [VARIANTS[v] for v in FULL.variants if VARIANTS[v].mode == "hyb"]
    assert {v.balance for v in hyb} == {"auto", "paper"}  # the default beside the paper's sum
    assert FULL.base == 16 and FULL.size == (48, 64)
    assert FULL.min_epochs < FULL.epochs  # the paper's early stopping decides, not a fixed count
    assert THIN.dataset == "isbi2012" and {"none", "hyb", "hyb-paper"} <= set(THIN.variants)
    assert QUICK.epochs <= 2 and len(QUICK.seeds) == 1


def test_setting_names() -> None:
    assert (setting_name(FULL), setting_name(QUICK)) == ("full", "quick")
    assert setting_name(replace(FULL, jobs=1, threads=2, step_repeats=3)) == "full"
    assert setting_name(replace(FULL, epochs=3)) == "custom"
    assert setting_name(replace(QUICK, variants=("none", "hyb"))) == "custom"


def test_flags_override_the_preset() -> None:
    args = build_parser().parse_args(
        ["--quick", "--variants", "hyb,none", "--seeds", "3,4", "--size", "32", "32"]
    )
    settings = settings_from_args(args)
    assert settings.variants == ("none", "hyb")  # the reference first
    assert settings.seeds == (3, 4) and settings.size == (32, 32)
    assert settings.epochs == QUICK.epochs
    assert "threads" not in settings.run_key() and "jobs" not in settings.run_key()


# ---------------------------------------------------------------------------- report.py
def _convergence_json(records: dict) -> dict:
    analysis = analyse(records, STEP)
    config = {
        "setting": "full",
        "dataset": "Task04_Hippocampus",
        "seeds": [0, 1],
        "epochs": 4,
        "size": [48, 64],
        "cases": {"train": ["a"] * 3, "val": ["b"], "test": CASES},
        "slices": {"train": 30, "val": 10, "test": 60},
        "classes": ["Anterior", "Posterior"],
        "machine": {"processor": "testcpu", "cpu_count": 2, "torch": "x", "device": "cpu"},
    }
    return {"config": config, "step_time": STEP, **analysis}


def _write(tmp_path: Path, name: str, data: dict) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_report_renders_json_into_the_readme(records, tmp_path: Path) -> None:
    step = {
        "ratios": {
            "none": {"time": 1.0, "cpu_time": 1.0, "memory": 1.0, "flops": 1.0},
            "hyb": {"time": 2.4567, "cpu_time": 2.5, "memory": 1.9, "flops": 2.7},
        },
        "config": {"model": "unet", "base": 16, "size": 96, "machine": {"cpu_count": 2}},
    }
    inference = {
        "ratios": {"none": {"time": 1.0123}, "hyb": {"time": 0.9987}},
        "outputs_identical": {"none": True, "hyb": True},
        "config": {"repeats": 30},
    }
    conv = _convergence_json(records)
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\n\nIntro.\n\n<!-- results:start -->\nold\n<!-- results:end -->\n\nTail.\n"
    )
    argv = [
        "--step-time",
        str(_write(tmp_path, "s.json", step)),
        "--inference",
        str(_write(tmp_path, "i.json", inference)),
        "--convergence",
        str(_write(tmp_path, "c.json", conv)),
        "--readme",
        str(readme),
    ]
    assert report.main(argv) == 0
    text = readme.read_text()
    assert text.startswith("# Title\n\nIntro.\n\n<!-- results:start -->")
    assert text.endswith("<!-- results:end -->\n\nTail.\n") and "old" not in text
    assert text.count(report.START) == 1 and text.count(report.END) == 1
    assert "| `hyb` | 2.46 | 2.50 | 1.90 | 2.70 |" in text
    paper_hyb = " / ".join(
        f"{paper.PAPER_EFFICIENCY['hyb'][d][0] / paper.PAPER_EFFICIENCY['none'][d][0]:.2f}"
        for d in paper.DATASETS
    )
    assert paper_hyb.startswith(f"{0.6470 / 0.1960:.2f}") and paper_hyb in text
    assert "| `hyb` | 0.999 | yes |" in text
    hyb = conv["variants"]["hyb"]
    dice = hyb["test_over_seeds"]["dice"]
    row = next(
        line for line in text.splitlines() if line.startswith(f"| `hyb` | {dice['mean']:.4f}")
    )
    assert f" {dice['mean']:.4f} ± {dice['sd']:.4f} |" in row
    assert f"| {4 * 2.5 / 3:.2f} |" in row  # Tot.T x none: best epochs 4 vs 3, step ratio 2.5
    assert "**not reproduced**" in text and "`deep` < `none` < `hyb`" in text
    assert "Task04_Hippocampus" in text and "seeds 0, 1" in text and "4 epochs" in text
    assert report.main(argv) == 0 and readme.read_text() == text  # idempotent


def test_report_appends_markers_and_rejects_bad_input(records, tmp_path: Path, capsys) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# Project\n")
    conv = _write(tmp_path, "c.json", _convergence_json(records))
    assert report.main(["--convergence", str(conv), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# Project\n\n" + report.START) and text.rstrip().endswith(report.END)
    assert "Not run yet" in text  # no step_time / inference JSON given
    bad = _write(tmp_path, "bad.json", {"ratios": {}})
    with pytest.raises(SystemExit) as exc:
        report.main(["--convergence", str(bad), "--readme", str(readme)])
    assert exc.value.code == 2 and "lacks" in capsys.readouterr().err
    with pytest.raises(ValueError, match="markers"):
        report.replace_section(f"{report.END}\n{report.START}\n", "x")


# ------------------------------------------------------------------------- smoke run
def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "convergence" / "convergence.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard; a quiet 2-core machine needs well under a minute
    )


@pytest.mark.slow
@pytest.mark.data
def test_quick_run_schema_consistency_and_resume(tmp_path: Path, capsys) -> None:
    data = require_data("Task04_Hippocampus")
    out = tmp_path / "conv"
    args = [
        "--quick",
        "--data",
        str(data),
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--variants",
        "none,hyb",
        "--train-cases",
        "4",
        "--val-cases",
        "2",
        "--test-cases",
        "3",
        "--step-repeats",
        "2",
        "--json",
        str(tmp_path / "result.json"),
    ]
    proc = _run(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert json.loads(proc.stdout) == result
    assert json.loads((out / "convergence.json").read_text()) == result
    config = result["config"]
    assert config["setting"] == "custom"  # the quick preset with fewer variants and cases
    assert config["dataset"] == "Task04_Hippocampus"
    assert config["seeds"] == [0] and config["epochs"] == QUICK.epochs
    assert {"cpu_count", "torch", "device"} <= set(config["machine"])
    # case-level split: the sampled cases come from disjoint splits of splits.json
    splits = json.loads((out / "splits.json").read_text())
    assert [len(config["cases"][k]) for k in ("train", "val", "test")] == [4, 2, 3]
    for name in ("train", "val", "test"):
        assert set(config["cases"][name]) <= set(splits[name])
    assert not set(splits["train"]) & set(splits["test"])
    assert result["step_time"]["ratios"]["none"]["time"] == 1.0
    assert result["step_time"]["ratios"]["hyb"]["flops"] > 1.5  # hyb adds a G pass and a decoder
    assert set(result["variants"]) == {"none", "hyb"}
    for name, v in result["variants"].items():
        run = json.loads((out / "runs" / f"{name}_seed0.json").read_text())
        history = run["history"]
        assert [row["epoch"] for row in history] == list(range(1, QUICK.epochs + 1))
        eff = run["efficiency"]
        assert eff["tot_t_s"] == pytest.approx(eff["avg_t_s"] * eff["epoch"])
        assert eff["avg_t_s"] == pytest.approx(np.mean([r["train_s"] for r in history]))
        avg_m = [row["val_avg_m"] for row in history]
        assert eff["epoch"] == int(np.argmax(avg_m)) + 1  # first strictly-best epoch
        per_case = v["test_per_case"]
        assert sorted(per_case) == sorted(config["cases"]["test"])
        for m in ("dice", "ppv", "sen", "iou"):
            values = [c[m] for c in per_case.values()]
            assert all(0.0 <= x <= 1.0 for x in values)
            assert v["test"][m] == pytest.approx(np.mean(values))
        for case, classes in v["test_per_case_class"].items():
            assert len(classes) == 2  # anterior, posterior
            assert per_case[case]["dice"] == pytest.approx(np.mean([c["dice"] for c in classes]))
    none = json.loads((out / "runs" / "none_seed0.json").read_text())["history"]
    target = max(row["val_dice"] for row in none)
    first = next(row["epoch"] for row in none if row["val_dice"] >= target)
    assert result["variants"]["none"]["seeds"][0]["epochs_to_target"] == first
    p = result["variants"]["hyb"]["p_vs_none"]
    assert p["n_seeds"] == 1 and p["p"] is None and p["better_seeds"] in (0, 1)  # one seed
    assert p["bootstrap"]["cases"] == 3  # per-seed per-case values are stored
    assert 0.0 <= p["pooled_cases"]["wilcoxon_p"] <= 1.0 and p["pooled_cases"]["n"] == 3
    assert not math.isnan(p["pooled_cases"]["ttest_p"])
    assert not any((out / "runs").glob("*/last.pt"))  # checkpoints removed after each run
    # a second call reuses every finished run and the step time
    before = {p.name: p.read_bytes() for p in (out / "runs").glob("*.json")}
    again = _run(args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("done before, skipped") == 2
    assert "reusing" in again.stderr
    assert {p.name: p.read_bytes() for p in (out / "runs").glob("*.json")} == before
    assert json.loads(again.stdout)["variants"] == result["variants"]
    # other settings in the same folder are refused, not mixed in (in-process: fast)
    assert main([*args, "--epochs", "1"]) == 2
    assert "other settings" in capsys.readouterr().err
