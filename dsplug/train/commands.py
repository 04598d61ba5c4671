"""What the CLI subcommands do, given their parsed settings (``dsplug.cli`` only parses).

Every function here takes an ``argparse.Namespace`` built by ``dsplug.cli`` and returns an exit
status; errors are raised (ValueError and friends) for the CLI to print.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..data import Augment, Preprocessing, build_datasets, dataset_from_config
from ..wrapper import DeepSupervised
from .compare import compare_runs
from .distributed import DistInfo, barrier, setup_distributed, teardown
from .evaluation import evaluate_loader, overlay_samples
from .models import SMP_ARCHS, build_model, check_encoder
from .plots import plot_overlays
from .predict import load_model, predict_file
from .runlog import write_csv, write_json
from .trainer import TrainConfig, Trainer, seed_everything

__all__ = [
    "compare_command",
    "demo_command",
    "evaluate_command",
    "model_settings",
    "parse_options",
    "predict_command",
    "train_command",
]


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``["num_cases=40", "modalities=[\\"t1ce\\"]"]`` -> dict; values are JSON when they parse.

    Raises:
        ValueError: an entry without ``=``.
    """
    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--option expects KEY=VALUE, got {pair!r}.")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def model_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The model config without the data-dependent ``in_channels`` / ``classes``.

    Raises:
        ValueError: unknown encoder (smp), or own-net settings out of range.
    """
    if args.model in SMP_ARCHS:
        return {"arch": args.model, "encoder_name": check_encoder(args.encoder)}
    if args.depth < 2:
        raise ValueError(f"--depth must be >= 2, got {args.depth}.")
    return {
        "arch": args.model,
        "base_channels": args.base_channels,
        "depth": args.depth,
        "norm": args.norm,
    }


def _divisor(settings: dict[str, Any]) -> int:
    if settings["arch"] in SMP_ARCHS:
        return 32  # smp encoders of depth 5: output stride 32
    return 2 ** (settings["depth"] - 1)


def _preprocessing(args: argparse.Namespace, divisor: int) -> Preprocessing:
    return Preprocessing(
        axis=args.axis,
        zscore=not args.no_zscore,
        drop_empty=args.drop_empty,
        slice_range=tuple(args.slice_range) if args.slice_range else None,
        fit=args.fit,
        size=tuple(args.size) if args.size else None,
        multiple=divisor,
    )


def _datasets(args: argparse.Namespace, settings: dict[str, Any], info: DistInfo) -> dict:
    synthetic = args.data == "synthetic" or args.kind == "synthetic"
    if not synthetic and not Path(args.data).is_dir():
        raise ValueError(
            f"--data {args.data!r}: no such folder (give a dataset folder, e.g. "
            "../shared/data/Task04_Hippocampus, or 'synthetic')."
        )
    options = parse_options(args.option)
    if synthetic and args.label_mode is not None:
        options.setdefault("label_mode", args.label_mode)
    divisor = _divisor(settings)
    if synthetic:
        size = options.get("size", 64)
        sizes = [size] if isinstance(size, int) else list(size)
        if any(int(s) % divisor for s in sizes):
            raise ValueError(
                f"synthetic size {size} is not a multiple of {divisor}, the stride of "
                f"{settings['arch']}; pass e.g. --option size={-(-sizes[0] // divisor) * divisor}."
            )
    out = Path(args.out)
    kwargs: dict[str, Any] = {
        "kind": "synthetic" if synthetic else args.kind,
        "preprocessing": None if synthetic else _preprocessing(args, divisor),
        "augment": Augment() if args.augment else None,
        "splits": args.splits,
        "seed": args.split_seed,
        "splits_path": None if args.splits else out / "splits.json",
        "contiguous": args.contiguous,
        "cache_dir": args.cache_dir,
        "cache": not args.no_cache,
        "options": options,
    }
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        sets = build_datasets(args.data, **kwargs)
    barrier(info)  # rank 0 wrote the splits and the cache; the others reuse them
    if not info.is_main:
        sets = build_datasets(args.data, **kwargs)
    for split in ("train", "val"):
        if split not in sets:
            raise ValueError(f"The data has no {split!r} cases; give splits with some.")
    return sets


def train_command(args: argparse.Namespace) -> int:
    """``dsplug train``: build data, model and wrapper; fit; print the summary."""
    settings = model_settings(args)
    info = setup_distributed(args.device)
    try:
        sets = _datasets(args, settings, info)
        train = sets["train"]
        if args.label_mode is not None and args.label_mode != train.label_mode:
            raise ValueError(
                f"--label-mode {args.label_mode!r} does not match the data, which is "
                f"{train.label_mode!r} (the dataset decides it; drop --label-mode)."
            )
        model_config = {**settings, "in_channels": train.in_channels, "classes": train.classes}
        if settings["arch"] not in SMP_ARCHS:
            model_config["spatial_dims"] = train.spatial_dims
        seed_everything(args.seed)
        ds = DeepSupervised(
            build_model(model_config),
            args.mode,
            weights=args.weights,
            label_mode=train.label_mode,
            schedule=args.schedule,
        )
        config = TrainConfig(
            max_epochs=args.epochs,
            min_epochs=min(args.min_epochs, args.epochs),
            batch_size=args.batch_size,
            lr=args.lr,
            lr_step=args.lr_step,
            lr_gamma=args.lr_gamma,
            seed=args.seed,
            num_workers=args.workers,
            amp=args.amp,
            channels_last={"auto": None, "on": True, "off": False}[args.channels_last],
            compile=args.compile,
            deterministic=args.deterministic,
            target_dice=args.target_dice,
            progress=not args.quiet,
            tensorboard=not args.no_tensorboard,
            plots=not args.no_plots,
        )
        trainer = Trainer(
            ds,
            train,
            sets["val"],
            out=args.out,
            config=config,
            test_data=sets.get("test"),
            model_config=model_config,
            device=info.device,
        )
        summary = trainer.fit(resume=args.resume)
        if info.is_main:
            _print_summary(summary, args.out)
    finally:
        teardown()
    return 0


def _print_summary(summary: dict[str, Any], out: str | Path) -> None:
    eff = summary["efficiency"]
    print(
        f"[{summary['mode']}] best epoch {eff['epoch']} of {eff['epochs_run']}; "
        f"Avg.T {eff['avg_t_s']:.2f} s/epoch, Tot.T {eff['tot_t_s']:.1f} s"
    )
    for split, key in (("val (best epoch)", "best_val"), ("test", "test")):
        metrics = summary.get(key)
        if metrics:
            text = "  ".join(
                f"{k} {metrics[k]:.4f}" for k in ("dice", "ppv", "sen", "iou", "avg_m")
            )
            print(f"[{summary['mode']}] {split}: {text}")
    print(f"[{summary['mode']}] run folder: {out}")


def _evaluation_dataset(args: argparse.Namespace, ckpt: dict[str, Any]) -> Any:
    configs = ckpt.get("data_config") or {}
    if not configs:
        raise ValueError(f"{args.checkpoint!r} holds no data configuration to evaluate on.")
    if args.data is None:
        if args.split not in configs:
            raise ValueError(
                f"The checkpoint's data has no {args.split!r} split; available: {sorted(configs)}."
            )
        config = configs[args.split]
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


def evaluate_command(args: argparse.Namespace) -> int:
    """``dsplug evaluate``: per-case metrics of a checkpoint on a split or a folder."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, ckpt = load_model(args.checkpoint, device)
    label_mode = ckpt["wrapper_config"]["label_mode"]
    dataset = _evaluation_dataset(args, ckpt)
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers)
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=device)
    metrics = evaluate_loader(model, loader, label_mode, info, progress=None)
    summary = {
        "checkpoint": str(args.checkpoint),
        "epoch": ckpt["epoch"],
        "split": "folder" if args.data else args.split,
        "data": str(args.data) if args.data else None,
        **metrics.summary(),
    }
    out = Path(args.out)
    write_csv(out / "cases.csv", [{"case": c, **m} for c, m in metrics.per_case().items()])
    write_json(out / "summary.json", summary)
    samples = overlay_samples(model, dataset, label_mode, device, count=4)
    if samples:
        plot_overlays(samples, out / "overlays.png")
    print(
        f"{summary['split']}: {summary['cases']} cases  "
        + "  ".join(f"{k} {summary[k]:.4f}" for k in ("dice", "ppv", "sen", "iou", "avg_m"))
    )
    print(f"wrote {out / 'cases.csv'} and {out / 'summary.json'}")
    return 0


def predict_command(args: argparse.Namespace) -> int:
    """``dsplug predict``: one mask per input case."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, ckpt = load_model(args.checkpoint, device)
    for case in args.inputs:
        files = [Path(p) for p in case.split(",")]
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise ValueError(f"input file(s) not found: {missing}.")
        target = predict_file(
            model, ckpt, files, args.out, roi=args.roi, batch_size=args.batch_size
        )
        print(f"{files[0]} -> {target}")
    return 0


def compare_command(args: argparse.Namespace) -> int:
    """``dsplug compare``: metric and efficiency tables of two or more runs."""
    print(compare_runs(args.runs, args.out))
    print(f"wrote {Path(args.out) / 'compare.md'} (and CSV tables)")
    return 0


def demo_command(args: argparse.Namespace, train_defaults: argparse.Namespace) -> int:
    """``dsplug demo``: train ``none`` and ``hyb`` on synthetic phantoms, then compare them."""
    out = Path(args.out)
    runs = []
    for mode in ("none", "hyb"):
        run = argparse.Namespace(**vars(train_defaults))
        run.mode, run.out, run.data, run.seed = mode, str(out / mode), "synthetic", args.seed
        run.model, run.base_channels, run.depth = "unet", args.base_channels, args.depth
        run.epochs, run.min_epochs, run.batch_size = args.epochs, args.min_epochs, args.batch_size
        run.option = [f"num_cases={args.cases}", f"size={args.size}"]
        run.target_dice, run.quiet, run.device = args.target_dice, args.quiet, args.device
        print(f"== training {mode!r} on {args.cases} synthetic phantoms ({args.size} px) ==")
        train_command(run)
        runs.append(run.out)
    print("== comparison ==")
    print(compare_runs(runs, out))
    print(f"Plots: {out}/<mode>/curves.png and overlays.png; tables: {out}/compare.md")
    return 0
