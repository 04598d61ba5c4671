"""``dsplug train``: build data, model and wrapper from the options, fit, print the summary."""

from __future__ import annotations

import argparse
import shlex
import shutil
from functools import partial
from pathlib import Path
from typing import Any

import torch

from ..._checks import (
    integer,
    non_negative_int,
    positive_float,
    positive_int,
    unit_fraction,
    unit_interval,
)
from ...cost import aux_every_of, check_aux_every
from ...data.splits import save_splits
from ...losses import PRESETS
from ...modes import mode_spec
from ...options import Amp, Balance, LabelMode, Mode, Schedule
from ...semi import default_recipe
from ...wrapper import DeepSupervised
from ..checkpoint import CheckpointError, load_checkpoint
from ..config import DEFAULT_RECIPE, TrainConfig, task_family
from ..distributed import DistInfo, all_gather_objects, barrier, setup_distributed, teardown
from ..lock import RunLock
from ..models import SMP_ARCHS, build_model, config_divisor
from ..runtime import seed_everything
from ..threads import set_threads
from ..trainer import Trainer
from ..unlabeled import describe_unlabeled
from . import patches, run_folder, semi
from ._common import _given, _holds_run, _listed
from .arguments import debug_option, device_options, values
from .patches import check_patch, patch_dataset
from .run_folder import _out_path, _run_folder
from .semi import check_semi, semi_data, semi_line
from .setup import (
    _datasets,
    add_data_options,
    add_model_options,
    check_applicable,
    model_settings,
)

__all__ = ["add_parser", "train_command"]


def _parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _print_start(
    args: argparse.Namespace, sets: dict, ds: DeepSupervised, trainer: Trainer
) -> None:
    train = sets["train"]
    names = ("train", "val", "test")
    cases = " / ".join(str(len(getattr(sets[n], "cases", []))) if n in sets else "0" for n in names)
    slices = " / ".join(str(len(sets[n])) if n in sets else "0" for n in names)
    model = {k: v for k, v in trainer.model_config.items() if k not in ("arch", "encoder_weights")}
    bare, extra = _parameters(ds.model), _parameters(ds) - _parameters(ds.model)
    prog = "dsplug train:"
    print(
        f"{prog} data {args.data} ({train.label_mode}, {train.in_channels} channel(s), "
        f"{train.classes} class(es)); cases train / val / test {cases}; slices {slices}"
    )
    print(
        f"{prog} model {trainer.model_config['arch']} "
        f"({', '.join(f'{k}={v}' for k, v in model.items())}), {bare:,} parameters "
        f"(+{extra:,} used in training only); mode {args.mode}, weights {args.weights}, "
        f"balance {args.balance}, schedule {ds.criterion.schedule}, aux_every {ds.aux_every}"
    )
    start = "resuming" if args.resume or args.resume_from else "new run"
    if getattr(args, "patch", None):
        cfg = trainer.config
        drawn = (
            cfg.iterations * cfg.batch_size if cfg.recipe == "field" else len(trainer.train_data)
        )
        print(
            f"{prog} {drawn} random {len(args.patch)}D patches of "
            f"{' x '.join(map(str, args.patch))} per epoch at native resolution (a third on "
            f"foreground{', augmented' if args.augment else ''}); validation and test by "
            "Gaussian sliding windows, with HD95 and NSD"
        )
    cfg = trainer.config
    if cfg.recipe == "field":
        print(
            f"{prog} recipe field: Adam lr {cfg.lr:g} after {cfg.warmup_epochs} warm-up "
            f"epoch(s), poly decay; {cfg.iterations} steps per epoch; flips, rotations, "
            "scaling, intensity, gamma and noise"
        )
    print(
        f"{prog} device {trainer.device}, amp {trainer.amp}, {torch.get_num_threads()} CPU "
        f"thread(s); {args.epochs} epochs at most, "
        f"batch {args.batch_size}; {start} in {trainer.out}"
    )


def train_command(args: argparse.Namespace) -> int:
    """``dsplug train``: build data, model and wrapper; fit; print the summary.

    The run folder is locked (:class:`~dsplug.train.lock.RunLock`) by the main process from
    before it is checked until the run ends: a second ``train`` on it is refused.
    """
    check_applicable(args)
    check_semi(args)
    if args.aux_every is not None:  # before any folder or data: mode none has no branches
        check_aux_every(args.aux_every, mode_spec(args.mode))
    settings = model_settings(args)
    check_patch(args, settings, config_divisor(settings))
    set_threads(getattr(args, "threads", None))
    info = setup_distributed(args.device)
    lock: RunLock | None = None
    try:
        created = args.out is None or not Path(args.out).exists()
        out = None
        if info.is_main:
            out = _out_path(args)
            lock = RunLock(out, shlex.join(["dsplug", *(getattr(args, "argv", None) or ["train"])]))
            lock.acquire()
            _run_folder(args, out)
        out = Path(all_gather_objects(out, info)[0])  # rank 0 chose it
        args.run_folder = str(out)
        try:
            summary = _train(args, settings, info, out)
        except BaseException:
            if lock is not None:
                lock.release()
            if info.is_main and created and out.is_dir() and not _holds_run(out):
                shutil.rmtree(out)  # a start that failed leaves no folder behind
            raise
        if info.is_main:
            _print_summary(summary, out)
        barrier(info)  # every rank done with its collectives before the group is destroyed
    finally:
        if lock is not None:
            lock.release()
        teardown()
    return 0


def _train(args: argparse.Namespace, settings: dict[str, Any], info: DistInfo, out: Path) -> dict:
    sets, pending_splits = _datasets(args, settings, out, info)
    splits = out / "splits.json"
    unlabeled = semi_data(args, sets)
    train = sets["train"]
    if args.label_mode is not None and args.label_mode != train.label_mode:
        raise ValueError(
            f"--label-mode {args.label_mode!r} does not match the data, which is "
            f"{train.label_mode!r} (the dataset decides it; drop --label-mode)."
        )
    model_config = {**settings, "in_channels": train.in_channels, "classes": train.classes}
    patch = getattr(args, "patch", None)
    if settings["arch"] not in SMP_ARCHS:
        model_config["spatial_dims"] = len(patch) if patch else train.spatial_dims
    stored = _resumed(args, out)
    seed_everything(args.seed)
    ds = DeepSupervised(
        build_model(model_config),
        args.mode,
        weights=args.weights,
        label_mode=train.label_mode,
        schedule=args.schedule,
        balance=args.balance,
        aux_every=_aux_every(args, stored),
    )
    config = TrainConfig(
        **_recipe_config(args, stored),
        max_epochs=args.epochs,
        min_epochs=min(args.min_epochs, args.epochs),
        batch_size=args.batch_size,
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
        patch=patch,
        nsd_tolerance=1.0 if args.nsd_tolerance is None else args.nsd_tolerance,
        **_semi_config(args, unlabeled),
    )
    data_config = {n: d.config() for n, d in sets.items() if callable(getattr(d, "config", None))}
    if unlabeled is not None:
        data_config["unlabeled"] = describe_unlabeled(unlabeled)
    if patch:  # the slices' datasets stay for validation, test and the data config
        train = patch_dataset(args, train)
    trainer = Trainer(
        ds,
        train,
        sets["val"],
        data_config=data_config,
        out=out,
        config=config,
        test_data=sets.get("test"),
        model_config=model_config,
        device=info.device,
        unlabeled_data=unlabeled,
    )
    if info.is_main:
        _print_start(args, sets, ds, trainer)
        if unlabeled is not None:
            print(semi_line(args, trainer))
    # a resume writes its splits once its checkpoint is accepted
    on_start = None if pending_splits is None else partial(save_splits, pending_splits, splits)
    return trainer.fit(resume=args.resume, resume_from=args.resume_from, on_start=on_start)


def _resumed(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """The ``train_config`` and ``wrapper_config`` of the checkpoint a resume continues
    (empty for a new run, or when it cannot be read: the resume itself says why)."""
    if not (args.resume or args.resume_from):
        return {}
    source = Path(args.resume_from) if args.resume_from else out / "last.pt"
    try:
        ckpt = load_checkpoint(source)
        return {name: dict(ckpt[name]) for name in ("train_config", "wrapper_config")}
    except (CheckpointError, KeyError, TypeError, ValueError):
        return {}


def _aux_every(args: argparse.Namespace, stored: dict[str, Any]) -> int | None:
    """``--aux-every``, else the resumed run's (a run of the same mode; its config has no
    ``aux_every`` when it ran the branches on every step), else None: the mode's default."""
    if args.aux_every is not None:
        return args.aux_every
    wrapper = stored.get("wrapper_config", {})
    if wrapper.get("mode") != args.mode:
        return None  # a new run, or another mode: the resume check names the difference
    try:
        return aux_every_of(wrapper)
    except ValueError:
        return None  # a damaged value: the resume check names the difference


def _recipe_config(args: argparse.Namespace, resumed: dict[str, Any]) -> dict[str, Any]:
    """The recipe's TrainConfig fields: ``--recipe``, else the resumed run's (paper when it
    stored none), else the task family's (:data:`~dsplug.train.config.DEFAULT_RECIPE`).

    Raises:
        ValueError: a field-recipe option with the paper's recipe, or --augment with the
            field's (which augments on its own).
    """
    stored = resumed.get("train_config", {})  # the run's recipe and its values, unless given
    default = "paper" if stored else DEFAULT_RECIPE[task_family(args.patch)]
    recipe = args.recipe or stored.get("recipe") or default
    if recipe == "paper":
        extra = _given(args, (("--iterations", "iterations"), ("--warmup-epochs", "warmup_epochs")))
        if extra:
            raise ValueError(
                f"{_listed(extra, 'applies', 'apply')} to --recipe field, but the recipe is "
                "paper; add --recipe field or drop it."
            )
        return {"recipe": recipe, "lr": args.lr, "patience": args.patience}
    if _given(args, (("--patches-per-image", "patches_per_image"),)):
        which = "--recipe field" if args.recipe else "field, the default recipe of 2D patches,"
        raise ValueError(
            f"--patches-per-image sets the paper recipe's epoch; {which} takes --iterations "
            "steps per epoch instead: drop it"
            + (", or add --recipe paper." if not args.recipe else ".")
        )
    if args.augment:
        which = "--recipe field" if args.recipe else "field, the default recipe of 2D patches,"
        raise ValueError(
            f"--augment is the paper recipe's light augmentation; {which} augments on its "
            "own (flips, rotations, scaling, intensity, gamma, noise): drop --augment"
            + ("." if args.recipe else ", or add --recipe paper.")
        )
    return {
        "recipe": recipe,
        "lr": args.lr,
        "patience": args.patience,
        "iterations": args.iterations or stored.get("iterations"),
        "warmup_epochs": (
            stored.get("warmup_epochs") if args.warmup_epochs is None else args.warmup_epochs
        ),
    }


def _semi_config(args: argparse.Namespace, unlabeled: Any) -> dict[str, Any]:
    """The TrainConfig fields of the images without masks (none for a supervised run)."""
    if unlabeled is None:
        return {}
    return {
        "semi": args.semi or default_recipe(args.mode),
        "unlabeled_ratio": args.unlabeled_ratio,
        "rampup": args.rampup,
        "unlabeled_weight": args.unlabeled_weight,
        "ema_decay": args.ema_decay,
    }


def _print_summary(summary: dict[str, Any], out: str | Path) -> None:
    eff = summary["efficiency"]
    print(
        f"[{summary['mode']}] best epoch {eff['epoch']} of {eff['epochs_run']}; "
        f"Avg.T {eff['avg_t_s']:.2f} s/epoch, Tot.T {eff['tot_t_s']:.1f} s"
    )
    for split, key in (("val (best epoch)", "best_val"), ("test", "test")):
        metrics = summary.get(key)
        if metrics:
            names = ("dice", "ppv", "sen", "iou", "avg_m", "hd95", "nsd")
            text = "  ".join(f"{k} {metrics[k]:.4f}" for k in names if k in metrics)
            print(f"[{summary['mode']}] {split}: {text}")
    print(f"[{summary['mode']}] run folder: {out}")


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``dsplug train`` and its options, group by group from the modules that read them."""
    p = commands.add_parser(
        "train",
        help="train a model with a deep-supervision strategy",
        description="Train with the paper's schedule and early stopping; checkpoints every "
        "epoch. Ctrl-C stops at a safe point and prints the command that continues the run. "
        "Under torchrun, trains with DistributedDataParallel.",
        allow_abbrev=False,
    )
    add_model_options(p)
    _supervision_options(p)
    add_data_options(p)
    _training_options(p)
    patches.add_options(p)
    semi.add_options(p)
    _output_options(p)
    run_folder.add_options(p)
    debug_option(p)
    return p


def _supervision_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("deep supervision")
    g.add_argument(
        "--mode", choices=values(Mode), default="hyb", help="strategy (default: hyb, μ-Net-Hyb)"
    )
    g.add_argument(
        "--weights",
        choices=list(PRESETS),
        default="equal",
        help="loss-weight preset (default: equal)",
    )
    g.add_argument(
        "--label-mode",
        choices=values(LabelMode),
        default=None,
        help="synthetic data: its label mode; real data decides its own (default: from the data)",
    )
    g.add_argument(
        "--balance",
        choices=values(Balance),
        default="auto",
        help="how the loss terms add up: auto (scale-free, gradient-balanced, averaged; the "
        "default) or paper (the paper's literal weighted sum)",
    )
    g.add_argument(
        "--schedule",
        choices=values(Schedule),
        default=None,
        help="deep-supervision schedule over training (default: cosine with --balance auto, "
        "constant with --balance paper)",
    )
    g.add_argument(
        "--aux-every",
        type=positive_int,
        default=None,
        metavar="K",
        help="run the auxiliary branches on every K-th training step, their terms weighted K "
        "(default: 2 for hyb, whose gain it nearly keeps at two thirds of the cost; 1 for the "
        "other modes; 1 is the paper's hyb; a resume keeps the run's)",
    )


def _training_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=positive_int, default=100, help="maximum epochs (default: 100)")
    g.add_argument(
        "--min-epochs",
        type=positive_int,
        default=10,
        help="never stop early before this epoch (default: 10)",
    )
    g.add_argument("--batch-size", type=positive_int, default=4, help="per process (default: 4)")
    g.add_argument(
        "--recipe",
        choices=("paper", "field"),
        default=None,
        help="paper: Adam, lr x0.9 every 3 epochs, each item once per epoch; field (nnU-Net's): "
        "linear warm-up then poly decay, --iterations steps per epoch, flips, rotations, "
        "scaling, intensity, gamma and noise (default: the task family's, as "
        "benchmarks/field/field.py measured: field for 2D patches, paper for 3D patches and "
        "whole slices; a resume keeps the run's)",
    )
    g.add_argument(
        "--lr", type=positive_float, default=None, help="Adam (default: 3e-4; field: 1e-3)"
    )
    g.add_argument(
        "--iterations",
        type=positive_int,
        default=None,
        help="--recipe field: optimiser steps per epoch, whatever the data's size (default: 250)",
    )
    g.add_argument(
        "--warmup-epochs",
        type=non_negative_int,
        default=None,
        help="--recipe field: epochs of linear learning-rate warm-up (default: 1)",
    )
    g.add_argument(
        "--patience",
        type=positive_int,
        default=None,
        help="stop after this many epochs without a better validation avg.m (default: stop at "
        "twice the best epoch, the paper's rule)",
    )
    g.add_argument(
        "--lr-step",
        type=positive_int,
        default=3,
        help="decay the lr every this many epochs (default: 3)",
    )
    g.add_argument(
        "--lr-gamma", type=unit_fraction, default=0.9, help="lr decay factor (default: 0.9)"
    )
    g.add_argument("--seed", type=integer, default=0, help="seed of everything (default: 0)")
    g.add_argument(
        "--workers", type=non_negative_int, default=0, help="DataLoader workers (default: 0)"
    )
    g.add_argument(
        "--amp",
        choices=values(Amp),
        default="auto",
        help="mixed precision on CUDA (default: auto: bf16, or fp16 with a grad scaler)",
    )
    g.add_argument(
        "--channels-last",
        choices=("auto", "on", "off"),
        default="auto",
        help="channels-last memory format (default: auto: on CUDA)",
    )
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument(
        "--deterministic", action="store_true", help="deterministic algorithms (slower on GPU)"
    )
    g.add_argument(
        "--target-dice",
        type=unit_interval,
        default=None,
        help="report the wall time until validation Dice reaches this (default: none)",
    )
    device_options(g)


def _output_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output")
    g.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    g.add_argument(
        "--no-tensorboard",
        action="store_true",
        help="no TensorBoard events (they need pip install 'dsplug[tensorboard]')",
    )
    g.add_argument("--no-plots", action="store_true", help="no PNG plots")
