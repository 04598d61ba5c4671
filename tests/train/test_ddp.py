"""torchrun + DDP (gloo on CPU): the same weights as one process over the same batches, and
validation metrics reduced by (case, slice) equal a single-process evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dsplug import DeepSupervised
from dsplug.train import build_model, load_checkpoint

from .conftest import TINY_CLI, run_cli, synthetic_cli, tiny_sets

# 46 phantoms: 32 training (divisible by 2 ranks x 2 and by 4), 5 validation (odd: the
# distributed sampler pads it with a duplicate), 9 test. The paper's step (--aux-every 1): every
# step has the same terms, so the dead parameters found on one step are those of every step.
COMMON = [
    "train",
    "--mode",
    "hyb",
    "--aux-every",
    "1",
    "--norm",
    "instance",
    *synthetic_cli(46),
    *TINY_CLI,
    "--epochs",
    "1",
    "--min-epochs",
    "1",
    "--no-plots",
]


def _dead_parameters(model_config: dict) -> set[str]:
    """Parameters whose true gradient is 0 (e.g. a bias right before a norm layer).

    Their computed gradient is rounding noise, which differs between one process and a DDP
    average; Adam normalises it into steps of about lr, so they are compared against Adam's
    step bound instead of float tolerance.
    """
    data = tiny_sets(46)["train"]
    ds = DeepSupervised(build_model(model_config), "hyb", aux_every=1)
    x = torch.stack([data[i]["image"] for i in range(4)])
    y = torch.stack([data[i]["mask"] for i in range(4)])
    ds.loss(ds(x, y), y).total.backward()
    return {n for n, p in ds.named_parameters() if float(p.grad.abs().max()) < 1e-5}


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process(tmp_path: Path) -> None:
    ddp_out, single_out = tmp_path / "ddp", tmp_path / "single"
    ddp = run_cli(
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "dsplug",
        *COMMON,
        "--batch-size",
        "2",
        "--out",
        str(ddp_out),
        module=False,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = run_cli(*COMMON, "--batch-size", "4", "--out", str(single_out))
    assert single.returncode == 0, single.stderr[-3000:]

    a, b = load_checkpoint(ddp_out / "last.pt"), load_checkpoint(single_out / "last.pt")
    assert a["world_size"] == 2 and b["world_size"] == 1
    dead = _dead_parameters(a["model_config"])
    assert len(dead) < len(b["wrapper_state"]) // 4  # most weights are compared tightly
    steps = 32 // 4
    for key, value in b["wrapper_state"].items():
        if key in dead:  # noise gradients: Adam moves them by at most ~3.2 lr per step
            assert (a["wrapper_state"][key] - value).abs().max() <= 2 * 3.2 * 3e-4 * steps
        else:
            torch.testing.assert_close(a["wrapper_state"][key], value, rtol=1e-4, atol=1e-5)
    assert a["history"][0]["loss"] == pytest.approx(b["history"][0]["loss"], rel=1e-4)

    # Validation under DDP counted each (case, slice) once: it equals a plain evaluation.
    evaluated = run_cli(
        "evaluate", str(ddp_out / "last.pt"), "--split", "val", "--out", str(tmp_path / "ev")
    )
    assert evaluated.returncode == 0, evaluated.stderr
    plain = json.loads((tmp_path / "ev" / "summary.json").read_text())
    logged = a["history"][0]
    assert plain["cases"] == logged["val_cases"] == 5
    for name in ("dice", "ppv", "sen", "iou", "avg_m"):
        assert logged[f"val_{name}"] == pytest.approx(plain[name], abs=1e-9)
