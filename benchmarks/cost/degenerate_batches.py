"""Encoder-gradient ratio of hyb's auxiliary terms to L_image on degenerate batches (issue 18).

The ratio ||∇θ(total - α L_image)|| / ||∇θ α L_image|| on the encoder θ of one training step
(measured on a copy, so the balance measures as that step would), for an all-empty first batch
and again after 20 steps of half-empty batches (AdamW 1e-3), on dsplug's U-Net (base 16) and an
smp Unet/resnet18; healthy: 0.05-2. Prints JSON.

Run:
    python benchmarks/cost/degenerate_batches.py --json runs/degenerate_batches.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

from dsplug import DeepSupervised, UNet
from dsplug.losses.terms import bce_dice


def _flat(grads) -> torch.Tensor:
    return torch.cat([g.flatten() for g in grads if g is not None])


def ratio(ds: DeepSupervised, x: torch.Tensor, y: torch.Tensor) -> tuple[float, dict]:
    """The auxiliary / image encoder-gradient ratio of one step, and the raw terms."""
    ds = copy.deepcopy(ds)
    torch.manual_seed(1)
    out = ds(x, y)
    loss = ds.loss(out, y)
    params = [p for p in ds._adapter.encoder().parameters() if p.requires_grad]
    total = _flat(torch.autograd.grad(loss.total, params, retain_graph=True, allow_unused=True))
    image = ds.criterion.weights.alpha * bce_dice(out.logits, y, False)
    alone = _flat(torch.autograd.grad(image, params, allow_unused=True))
    return float((total - alone).norm() / alone.norm()), {
        k: round(v, 4) for k, v in loss.raw.items()
    }


def run(name: str, net: torch.nn.Module, size: int = 64, steps: int = 20) -> dict:
    torch.manual_seed(0)
    x = torch.randn(4, 1, size, size)
    empty = torch.zeros(4, 1, size, size)
    half = empty.clone()
    half[:2, :, 16:40, 20:44] = 1
    ds = DeepSupervised(net, mode="hyb", aux_every=1).train()
    first, raw_first = ratio(ds, x, empty)
    opt = torch.optim.AdamW(ds.parameters(), lr=1e-3)
    for step in range(steps + 1):
        y, xx = (empty, x) if step == 0 else (half, torch.randn(4, 1, size, size))
        opt.zero_grad()
        ds.loss(ds(xx, y), y).total.backward()
        opt.step()
    later, raw_later = ratio(ds, torch.randn(4, 1, size, size), half)
    return {
        "model": name,
        "ratio_step0_all_empty": round(first, 3),
        "terms_step0": raw_first,
        f"ratio_after_{steps}_half_empty": round(later, 3),
        f"terms_after_{steps}": raw_later,
        "scales": {k: round(float(v), 4) for k, v in ds.criterion.balancer.scales().items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import segmentation_models_pytorch as smp

    results = [
        run("own-unet-base16", UNet(1, 1, base_channels=16, depth=4)),
        run("smp-unet-resnet18", smp.Unet("resnet18", encoder_weights=None, in_channels=1)),
    ]
    text = json.dumps(results, indent=1)
    if args.json:
        args.json.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
