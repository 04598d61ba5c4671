"""``dsplug evaluate``: per-case metrics of a checkpoint on a split of its run's data or on
a folder, written beside the run (never into it)."""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from ..._checks import non_negative_int
from ...data import dataset_from_config
from ...data.base import fingerprint_changes
from ..evaluation import overlay_samples
from ..native import case_rows, score_dataset
from ..paths import check_writes
from ..plots import plot_overlays
from ..predict import load_model
from ..runlog import write_csv, write_json
from ..sliding import sliding_window_logits
from ..threads import set_threads
from ._common import EVALUATE_FILES, _report_folder
from .arguments import cache_options, checkpoint_options, debug_option, nsd_option, tta_option

__all__ = ["add_parser", "evaluate_command"]


def _check_recorded_data(config: dict[str, Any], split: str) -> None:
    """The run's own data is still what it was (evaluate without --data).

    Raises:
        ValueError: the folder is gone, or its files differ from the checkpoint's record.
    """
    root = config.get("root")
    if root is None:  # synthetic data: generated, nothing to check
        return
    if not os.path.isabs(root):  # a checkpoint of an older dsplug
        here = Path(root).resolve()
        if not here.is_dir():
            raise ValueError(
                f"the run's data folder {root!r} was given relative to the folder training ran "
                f"in; from here it is {here}, which does not exist; run evaluate from that "
                "folder, or pass --data DIR."
            )
        warnings.warn(
            f"the run's data folder {root!r} was given relative to the folder training ran in; "
            f"it is read from {here}, which this checkpoint cannot confirm is the same data.",
            stacklevel=3,
        )
        return
    if not Path(root).is_dir():
        raise ValueError(
            f"the run's data folder {root} no longer exists; if it moved, pass --split {split} "
            "--data NEW_FOLDER (its files are checked against the run's record), or --data DIR "
            "alone to evaluate a whole folder."
        )
    changes = fingerprint_changes(root, config.get("fingerprint") or {})
    if changes:
        raise ValueError(
            f"the run's {split} data in {root} changed since training: {'; '.join(changes)}; "
            f"restore it, or evaluate the folder as it is now with --data {root}."
        )


def _moved_split(configs: dict[str, Any], split: str, root: str) -> dict[str, Any]:
    """The run's ``split`` read from ``root``, where its data set moved (``--split --data``).

    Raises:
        ValueError: no such split or folder, data without a folder or a recorded fingerprint,
            or files under ``root`` that differ from the run's record.
    """
    if split not in configs:
        raise ValueError(
            f"The checkpoint's data has no {split!r} split; available: {sorted(configs)}."
        )
    config = configs[split]
    if "root" not in config or not config.get("fingerprint"):
        what = "records no fingerprint of its files" if "root" in config else "has no folder"
        raise ValueError(
            f"--split {split} --data {root}: the run's data ({config.get('kind')!r}) {what}, so "
            "a moved copy cannot be checked; evaluate the whole folder with --data alone."
        )
    if not Path(root).is_dir():
        raise ValueError(f"--data {root!r}: no such folder.")
    changes = fingerprint_changes(root, config["fingerprint"])
    if changes:
        raise ValueError(
            f"--data {root} is not the run's {split} data (recorded in {config['root']}): "
            f"{'; '.join(changes)}; give the folder the run's data moved to, or --data alone "
            "to evaluate a whole folder."
        )
    return {**config, "root": str(Path(root).resolve())}


def _evaluation_dataset(args: argparse.Namespace, ckpt: dict[str, Any]) -> Any:
    configs = ckpt.get("data_config") or {}
    if not configs:
        raise ValueError(f"{args.checkpoint!r} holds no data configuration to evaluate on.")
    if args.data is None:
        split = args.split or "test"
        if split not in configs:
            raise ValueError(
                f"The checkpoint's data has no {split!r} split; available: {sorted(configs)}."
            )
        config = configs[split]
        _check_recorded_data(config, split)
    elif args.split is not None:
        config = _moved_split(configs, args.split, args.data)
    else:
        if not Path(args.data).is_dir():
            raise ValueError(f"--data {args.data!r}: no such folder.")
        template = configs.get("val") or next(iter(configs.values()))
        if "root" not in template:
            raise ValueError(
                f"--data needs a checkpoint trained on a folder dataset; its data is "
                f"{template.get('kind')!r}."
            )
        config = {**template, "root": str(args.data), "cases": None, "split": None}
    return dataset_from_config(config, cache_dir=args.cache_dir, cache=not args.no_cache)


def _evaluate_out(args: argparse.Namespace) -> Path:
    """``--out``, or by default ``RUN/evaluate-<checkpoint>-<split or folder>`` (a subfolder)."""
    ckpt = Path(args.checkpoint)
    what = args.split or (Path(args.data).resolve().name if args.data else "test")
    default = ckpt.parent / f"evaluate-{ckpt.stem}-{what}"
    out = Path(args.out) if args.out else default
    _report_folder(out, EVALUATE_FILES, args.overwrite, str(default))
    return out


def evaluate_command(args: argparse.Namespace) -> int:
    """``dsplug evaluate``: per-case metrics of a checkpoint on a split or a folder."""
    out = _evaluate_out(args)
    check_writes(
        [(out / name, f"evaluate's {name}") for name in EVALUATE_FILES],
        [(args.checkpoint, "the checkpoint")],
    )
    threads = set_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    print(f"dsplug evaluate: device {device}, {threads} CPU thread(s)")
    model, ckpt = load_model(args.checkpoint, device)
    label_mode = ckpt["wrapper_config"]["label_mode"]
    dataset = _evaluation_dataset(args, ckpt)
    train_config = ckpt.get("train_config") or {}
    patch = train_config.get("patch")
    tolerance = args.nsd_tolerance
    if tolerance is None:  # the run's own, so that evaluate and the run report one NSD
        tolerance = float(train_config.get("nsd_tolerance", 1.0))
    started = time.perf_counter()
    metrics = score_dataset(
        model,
        dataset,
        label_mode,
        device,
        patch=patch,
        tta=args.tta,
        tolerance=tolerance,
        batch_size=args.batch_size,
        workers=args.workers,
    )
    summary = {
        "checkpoint": str(args.checkpoint),
        "epoch": ckpt["epoch"],
        "split": args.split or ("folder" if args.data else "test"),
        "data": str(args.data) if args.data else None,
        "patch": patch,
        "tta": args.tta,
        "nsd_tolerance_mm": metrics.tolerance,
        "threads": threads,
        "seconds": round(time.perf_counter() - started, 3),
        **metrics.summary(),
    }
    write_csv(out / "cases.csv", case_rows(metrics))
    write_json(out / "summary.json", summary)
    samples = []
    if patch is None:
        samples = overlay_samples(model, dataset, label_mode, device, count=4)
    elif len(patch) == getattr(dataset, "spatial_dims", 2):  # items shown whole, tiled

        def tiled(x: torch.Tensor) -> torch.Tensor:
            return sliding_window_logits(model, x, patch, batch_size=args.batch_size)

        samples = overlay_samples(tiled, dataset, label_mode, device, count=4)
    if samples:
        plot_overlays(samples, out / "overlays.png")
    print(
        f"{summary['split']}: {summary['cases']} cases  "
        + "  ".join(f"{k} {summary[k]:.4f}" for k in metrics.metric_names)
    )
    print(f"wrote {out / 'cases.csv'} and {out / 'summary.json'}")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``dsplug evaluate`` and its options."""
    p = commands.add_parser(
        "evaluate",
        help="per-case metrics of a checkpoint on a split or a folder",
        description="Writes cases.csv (per case), summary.json and overlays.png to --out: by "
        "default a subfolder of the checkpoint's run folder, never the run folder itself (its "
        "own summary.json and overlays.png stay). An existing report is replaced only with "
        "--overwrite.",
        allow_abbrev=False,
    )
    checkpoint_options(p, None, "RUN/evaluate-<checkpoint>-<split or folder>")
    p.add_argument(
        "--split",
        choices=("train", "val", "test"),
        default=None,
        help="which split of the run's data (default: test)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="evaluate on this folder instead of a split (same layout and preprocessing as "
        "the run); with --split: where the run's data set moved (its files are checked "
        "against the run's record)",
    )
    p.add_argument(
        "--workers", type=non_negative_int, default=0, help="DataLoader workers (default: 0)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace a report in --out")
    cache_options(p)
    g = p.add_argument_group(
        "scoring",
        "Dice, PPV, sensitivity, IoU and avg.m per case; HD95 and NSD per case and class "
        "(slices of a case are stacked into its volume; a checkpoint trained with --patch is "
        "scored on whole cases at native resolution by Gaussian sliding windows of its patch).",
    )
    tta_option(g)
    nsd_option(g)
    debug_option(p)
    return p
