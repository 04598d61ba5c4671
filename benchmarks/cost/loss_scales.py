"""Each loss term's value and the gradient it sends into the encoder, at initialisation and
late in training (issue 7's measurement), for a small and a wide own U-Net and an smp Unet.

For every term: its raw value, its weighted share of the total (``LossBreakdown.terms``) and
the norm of the gradient that share sends to the encoder's weights, over L_image's; and the
ratio ||g(mode) - g(none)|| / ||g(none)|| of all auxiliary terms together (what the guard tests
bound to 0.2-2). "Late" is after ``--steps`` training steps of the mode on synthetic phantoms.

Usage:
    python benchmarks/cost/loss_scales.py --json runs/bench/loss_scales.json
    python benchmarks/cost/loss_scales.py --balance paper --steps 50
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from benchmarks._common import emit, format_table
from dsplug import DeepSupervised, UNet
from dsplug.data import SyntheticDataset

__all__ = ["MODELS", "main", "measure", "term_gradients"]


def _smp_unet() -> nn.Module:
    import segmentation_models_pytorch as smp

    return smp.Unet("resnet34", encoder_weights=None, in_channels=1, classes=1)


MODELS = {
    "unet-base16": lambda: UNet(1, 1, base_channels=16, depth=4),
    "unet-base64": lambda: UNet(1, 1, base_channels=64, depth=5),
    "smp-unet-resnet34": _smp_unet,
}


def _batches(size: int, seed: int) -> Iterator[dict[str, torch.Tensor]]:
    data = SyntheticDataset(64, size=size, seed=seed)
    while True:
        yield from DataLoader(data, batch_size=4, shuffle=True, drop_last=True)


def _norm(grads: Sequence[torch.Tensor | None]) -> float:
    return float(torch.sqrt(sum((g.pow(2).sum() for g in grads if g is not None), torch.zeros(()))))


def term_gradients(ds: DeepSupervised, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """Raw value, weighted share and the encoder-gradient norm of that share, for each term on
    one batch (the share's weight is a constant: its gradient is weight x the raw term's)."""
    encoder = [p for p in ds._adapter.encoder().parameters() if p.requires_grad]
    out = ds(x, y)
    loss = ds.loss(out, y)
    context = ds.criterion._context(out, y)
    terms: dict[str, Any] = {}
    for term in ds.criterion.terms:
        raw = term.compute(context)
        value = float(raw.detach())
        weight = loss.terms[term.name] / value if value else 0.0
        grads = torch.autograd.grad(raw, encoder, retain_graph=True, allow_unused=True)
        terms[term.name] = {
            "raw": value,
            "weighted": loss.terms[term.name],
            "encoder_grad": abs(weight) * _norm(grads),
        }
    image = terms["image"]["encoder_grad"] or 1.0
    for values in terms.values():
        values["grad_over_image"] = values["encoder_grad"] / image
    return terms


def _encoder_grad(ds: DeepSupervised, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    ds.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    ds.loss(ds(x, y), y).total.backward()
    params = ds._adapter.encoder().parameters()
    return torch.cat([p.grad.flatten() for p in params if p.grad is not None])


def _aux_ratio(ds: DeepSupervised, x: torch.Tensor, y: torch.Tensor) -> float:
    """||g(mode) - g(none)|| / ||g(none)|| on the same weights and batch (balance untouched)."""
    mode_grad = _encoder_grad(copy.deepcopy(ds), x, y)
    none = DeepSupervised(copy.deepcopy(ds.model), "none").train()
    none_grad = _encoder_grad(none, x, y)
    return float((mode_grad - none_grad).norm() / none_grad.norm())


def measure(name: str, mode: str, balance: str, steps: int, size: int) -> dict[str, Any]:
    """Terms and ratio at initialisation and after ``steps`` Adam steps of ``mode``."""
    torch.manual_seed(0)
    ds = DeepSupervised(
        MODELS[name](), mode, balance=balance, schedule="constant", aux_every=1
    ).train()
    batches = _batches(size, seed=0)
    probe = next(batches)
    x, y = probe["image"], probe["mask"]
    result = {"init": {"terms": term_gradients(copy.deepcopy(ds), x, y)}}
    result["init"]["aux_over_image"] = _aux_ratio(ds, x, y)
    opt = torch.optim.Adam(ds.parameters(), lr=3e-4)
    for _ in tqdm(range(steps), desc=f"{name} {mode}", leave=False):
        batch = next(batches)
        opt.zero_grad(set_to_none=True)
        ds.loss(ds(batch["image"], batch["mask"]), batch["mask"]).total.backward()
        opt.step()
    result["late"] = {"terms": term_gradients(copy.deepcopy(ds), x, y)}
    result["late"]["aux_over_image"] = _aux_ratio(ds, x, y)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated")
    parser.add_argument("--mode", default="hyb")
    parser.add_argument("--balance", choices=("auto", "paper"), default="auto")
    parser.add_argument("--steps", type=int, default=150, help="training steps before 'late'")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, metavar="PATH")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result: dict[str, Any] = {"config": vars(args) | {"json": str(args.json)}, "models": {}}
    rows = []
    for name in args.models.split(","):
        r = measure(name, args.mode, args.balance, args.steps, args.size)
        result["models"][name] = r
        for when in ("init", "late"):
            terms = r[when]["terms"]
            raws = ", ".join(
                f"{k} {v['raw']:.3g} ({v['grad_over_image']:.2g}x)" for k, v in terms.items()
            )
            rows.append([name, when, f"{r[when]['aux_over_image']:.2f}", raws])
    headers = ["model", "when", "aux/image grad", "raw terms (weighted gradient / L_image's)"]
    print(format_table(headers, rows), file=sys.stderr)
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
