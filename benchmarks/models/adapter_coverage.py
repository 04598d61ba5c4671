"""Which smp encoders work with `DeepSupervised(smp.Unet(encoder), mode="hyb")`.

For every name in `smp.encoders.get_encoder_names()` (encoders over 100 M parameters are skipped
and listed), build `smp.Unet(name, encoder_weights=None)`, run one `hyb` training step at 64x64
(finite loss; a finite gradient on every encoder weight the tied decoder reads and on every
parameter the bare model's own training step trains) and check the eval identity
(`ds.eval(); ds(x)` equals `model(x)`). Prints JSON: which work, which fail and why, the share.

    python benchmarks/models/adapter_coverage.py --json runs/adapter_coverage.json
    python benchmarks/models/adapter_coverage.py --encoders resnet18 mit_b0   # a subset
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import torch
from tqdm.auto import tqdm

from dsplug import DeepSupervised

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks._common import emit, machine_info

MAX_PARAMS = 100_000_000
SIZE = 64


def encoder_parameters(name: str) -> int:
    """Parameters of the bare encoder (built without weights)."""
    encoder = smp.encoders.get_encoder(name, in_channels=1, depth=5, weights=None)
    return sum(p.numel() for p in encoder.parameters())


def bare_trained_parameters(name: str, x: torch.Tensor, y: torch.Tensor) -> set[str]:
    """Parameters that one training step of the bare (unwrapped) model gives a gradient; smp's
    EfficientNet encoders, e.g., keep an unused ``_conv_head`` that no step ever trains."""
    torch.manual_seed(0)
    model = smp.Unet(name, encoder_weights=None, in_channels=1, classes=2).train()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    return {n for n, p in model.named_parameters() if p.grad is not None}


def try_encoder(name: str) -> dict[str, Any]:
    """One hyb training step and the eval identity check; the failure's reason if any."""
    start = time.perf_counter()
    stage = "build model"
    try:
        torch.manual_seed(0)
        model = smp.Unet(name, encoder_weights=None, in_channels=1, classes=2)
        stage = "wrap (hyb)"
        ds = DeepSupervised(model, "hyb", label_mode="multiclass").train()
        x = torch.randn(2, 1, SIZE, SIZE)
        y = torch.randint(0, 2, (2, SIZE, SIZE))
        stage = "training step"
        loss = ds.loss(ds(x, y), y)
        if not torch.isfinite(loss.total):
            raise FloatingPointError(f"non-finite loss terms {loss.terms}")
        loss.total.backward()
        stage = "tied gradients"
        tied = ds.reconstruction.tied_parameters()
        if not tied:
            raise RuntimeError("the reconstruction decoder reads no encoder weight")
        trained = bare_trained_parameters(name, x, y)  # what the bare model's own step trains
        missing = [
            n
            for n, p in model.encoder.named_parameters()
            if (n in tied or f"encoder.{n}" in trained)
            and (p.grad is None or not torch.isfinite(p.grad).all())
        ]
        if missing:
            raise RuntimeError(
                f"{len(missing)} encoder weights without a finite gradient: {missing[:3]}"
            )
        stage = "eval identity"
        ds.eval()
        with torch.no_grad():
            if not torch.equal(ds(x), model(x)):
                raise AssertionError("ds.eval()(x) differs from model(x)")
        return {"ok": True, "seconds": round(time.perf_counter() - start, 2)}
    except Exception as err:
        return {
            "ok": False,
            "stage": stage,
            "error": f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}",
            "where": traceback.extract_tb(err.__traceback__)[-1].filename.split("site-packages/")[
                -1
            ],
            "seconds": round(time.perf_counter() - start, 2),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--encoders", nargs="*", default=None, help="only these encoder names")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.encoders or list(smp.encoders.get_encoder_names())
    unknown = sorted(set(names) - set(smp.encoders.get_encoder_names()))
    if unknown:
        parser.error(f"unknown smp encoders {unknown}")
    results: dict[str, Any] = {}
    skipped: dict[str, int] = {}
    for name in tqdm(names, desc="encoders", file=sys.stderr):
        params = encoder_parameters(name)
        if params > MAX_PARAMS:
            skipped[name] = params
            continue
        results[name] = {"params": params, **try_encoder(name)}
        status = "ok" if results[name]["ok"] else f"FAIL {results[name]['error']}"
        tqdm.write(f"{name}: {status}", file=sys.stderr)
    works = sorted(n for n, r in results.items() if r["ok"])
    fails = {n: r for n, r in results.items() if not r["ok"]}
    emit(
        {
            "tried": len(results),
            "works": works,
            "fails": {n: {k: r[k] for k in ("stage", "error", "where")} for n, r in fails.items()},
            "share": round(len(works) / max(len(results), 1), 4),
            "skipped_over_100M": skipped,
            "results": results,
            "config": {
                "architecture": "Unet",
                "mode": "hyb",
                "size": SIZE,
                "batch": 2,
                "max_params": MAX_PARAMS,
                "machine": machine_info(torch.device("cpu")),
            },
        },
        args.json,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
