"""Smoke tests of the step-time and inference benchmarks: run --quick, check the JSON schema."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.cost.step_time import AUX_VARIANTS, DESIGNS
from dsplug import MODES

ROOT = Path(__file__).resolve().parents[1]
COST = ROOT / "benchmarks" / "cost"
RATIO_FIELDS = ("time", "cpu_time", "memory", "flops")
CONFIG_FIELDS = ("model", "base", "depth", "batch", "size", "repeats", "warmup", "device")
MACHINE_FIELDS = ("cpu_count", "torch", "device")


def _run(script: str, tmp_path: Path) -> dict:
    """Run ``benchmarks/cost/<script> --quick --json`` in a subprocess; return the JSON it wrote."""
    path = tmp_path / f"{script}.json"
    proc = subprocess.run(
        [sys.executable, str(COST / script), "--quick", "--json", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard; a quiet 2-core machine needs about 20 s
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stderr[-3000:]}"
    result = json.loads(path.read_text())
    assert json.loads(proc.stdout) == result, "stdout and --json differ"
    return result


def _is_positive_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _check_config(config: dict, repeats_key: str = "repeats") -> None:
    for key in CONFIG_FIELDS:
        assert key in config, f"config lacks {key!r}"
    for key in MACHINE_FIELDS:
        assert key in config["machine"], f"config.machine lacks {key!r}"
    assert config["modes"] == list(MODES)
    assert config[repeats_key] >= 1


def _unet_training_flops(config: dict) -> int:
    """FLOPs (2 per multiply-add) of forward + backward of dsplug's U-Net, from its layout.

    Forward: per conv 2 * B * out_pixels * C_in * C_out * k^2 (for the 2x2 stride-2 up-conv,
    input pixels * C_in * C_out * 4). Backward: each conv again for the weight gradient and
    again for the input gradient, except the first conv, whose input (the image) needs none.
    """
    b, s, base, depth = config["batch"], config["size"], config["base"], config["depth"]
    chans = [base * 2**i for i in range(depth)]
    pixels = [(s // 2**i) ** 2 for i in range(depth)]
    macs = 0
    first = pixels[0] * 1 * chans[0] * 9
    c_in = 1
    for c, p in zip(chans, pixels):  # encoder: two 3x3 convs per level
        macs += p * 9 * (c_in * c + c * c)
        c_in = c
    for k in reversed(range(depth - 1)):  # decoder: up-conv, then two 3x3 convs on the concat
        macs += pixels[k + 1] * chans[k + 1] * chans[k] * 4
        macs += pixels[k] * 9 * (2 * chans[k] * chans[k] + chans[k] * chans[k])
    macs += pixels[0] * chans[0] * 1  # 1x1 head to one class
    return 2 * b * (3 * macs - first)


@pytest.mark.slow
def test_step_time_quick_schema(tmp_path: Path) -> None:
    result = _run("step_time.py", tmp_path)
    assert set(result) >= {"ratios", "absolute", "config", "targets"}
    # hyb with aux_fraction < 1, and issue 28's designs
    measured = set(MODES) | {name for name, _ in (*AUX_VARIANTS, *DESIGNS)}
    assert set(result["ratios"]) == measured
    assert set(result["absolute"]) == measured
    for mode, ratios in result["ratios"].items():
        for field in RATIO_FIELDS:
            assert _is_positive_number(ratios[field]), f"{mode}.{field} = {ratios[field]!r}"
    assert all(result["ratios"]["none"][f] == 1.0 for f in RATIO_FIELDS)
    config = result["config"]
    _check_config(config)
    assert config["validate"] is True
    assert config["memory_method"] and config["flops_method"]
    for mode, a in result["absolute"].items():
        assert len(a["times_s"]) == config["repeats"], mode
        assert a["time_min_s"] <= a["time_median_s"] <= a["time_max_s"], mode
        assert a["memory_bytes"] > 0 and a["flops"] > 0 and a["parameters"] > 0, mode
    # The FLOP counter saw exactly one forward and backward of the U-Net in mode none.
    assert result["absolute"]["none"]["flops"] == _unet_training_flops(config)
    # Extra branches cost convolutions and activations; side heads add (almost) none.
    flops = {m: r["flops"] for m, r in result["ratios"].items()}
    assert flops["hyb"] > flops["seg"] > 1.0 and flops["deep"] > 1.0
    assert 1.0 < flops["hyb-aux50"] < flops["hyb"]  # the auxiliary branches on part of the batch
    # the branches pooled 2x, every 2nd step (FLOPs per step, averaged over the period), both
    assert 1.0 < flops["hyb@aux_scale=0.5,aux_every=2"] < flops["hyb@aux_scale=0.5"] < flops["hyb"]
    assert flops["hyb@aux_every=2"] < flops["hyb"]
    # at schedule factor 0 no auxiliary branch runs: a hyb step is none's (FLOPs aside, timed)
    assert (
        result["ratios"]["hyb"]["whole_run_12_epochs"] < result["ratios"]["hyb"]["time_amortised"]
    )
    assert result["ratios"]["hyb"]["memory"] > 1.0
    # Every target of the issue that applies to the measured modes is reported.
    assert {"hyb time", "hyb memory", "up time", "down time"} <= set(result["targets"])
    for name, t in result["targets"].items():
        assert isinstance(t["met"], bool) and _is_positive_number(t["value"]), name


@pytest.mark.slow
def test_inference_quick_schema(tmp_path: Path) -> None:
    result = _run("inference.py", tmp_path)
    assert set(result) >= {"ratios", "outputs_identical", "absolute", "config"}
    assert set(result["ratios"]) == set(MODES)
    assert result["outputs_identical"] == dict.fromkeys(MODES, True)
    for mode, ratios in result["ratios"].items():
        assert _is_positive_number(ratios["time"]), f"{mode}.time = {ratios['time']!r}"
        a = result["absolute"][mode]
        assert _is_positive_number(a["bare_median_s"]) and _is_positive_number(a["ds_median_s"])
        assert len(a["ds_times_s"]) == len(a["bare_times_s"]) == result["config"]["repeats"]
        assert isinstance(a["forward_hooks"], int) and a["forward_hooks"] >= 0
    _check_config(result["config"])
