"""What the CLI subcommands do, given their parsed settings (``dsplug.cli`` only parses).

Every function here takes an ``argparse.Namespace`` built by ``dsplug.cli`` and returns an exit
status; errors are raised (ValueError and friends) for the CLI to print.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..data import Augment, Preprocessing, build_datasets, dataset_from_config, detect_kind
from ..data.base import fingerprint_changes
from ..wrapper import DeepSupervised
from .compare import compare_runs
from .config import TrainConfig
from .distributed import DistInfo, all_gather_objects, barrier, setup_distributed, teardown
from .evaluation import evaluate_loader, overlay_samples
from .lock import RunLock, RunLockedError
from .loop import NonFiniteLossError, TrainingInterrupted
from .models import SMP_ARCHS, build_model, check_encoder
from .paths import check_writes
from .plots import plot_overlays
from .predict import load_model, mask_paths, predict_file
from .runlog import write_csv, write_json
from .runtime import seed_everything
from .trainer import Trainer

__all__ = [
    "DEFAULT_ENCODER",
    "EXPECTED_FAILURES",
    "OWN_NET_DEFAULTS",
    "RUN_FILES",
    "check_applicable",
    "compare_command",
    "demo_command",
    "evaluate_command",
    "model_settings",
    "parse_options",
    "predict_command",
    "resume_hint",
    "train_command",
]

#: Own nets' settings when their options are not given (the paper's U-Net).
OWN_NET_DEFAULTS: dict[str, Any] = {"base_channels": 64, "depth": 5, "norm": "batch"}
DEFAULT_ENCODER = "resnet34"


class PredictFailures(RuntimeError):
    """Some ``predict`` inputs were skipped (each named on stderr); the others are written."""


#: Failures while running whose message says it all (printed without the exception's name).
EXPECTED_FAILURES: tuple[type[Exception], ...] = (
    NonFiniteLossError,
    OSError,
    RunLockedError,
    PredictFailures,
)
#: What a training run writes into its folder (``--overwrite`` deletes exactly these).
RUN_FILES = (
    "last.pt",
    "best.pt",
    "log.csv",
    "curves.png",
    "overlays.png",
    "summary.json",
    "val_cases.csv",
    "test_cases.csv",
    "splits.json",
    "config.json",
    "tb",
)
# Written before the first epoch ends: a folder holding only these holds no run yet.
_STARTUP_FILES = frozenset({"splits.json", "config.json", "tb"})
# File-data options (flag, dest): the preprocessing of volumes and images, and the slice cache.
_FILE_DATA_OPTIONS = (
    ("--size", "size"),
    ("--fit", "fit"),
    ("--slice-range", "slice_range"),
    ("--axis", "axis"),
    ("--no-zscore", "no_zscore"),
    ("--drop-empty", "drop_empty"),
    ("--cache-dir", "cache_dir"),
    ("--no-cache", "no_cache"),
)


def _listed(flags: list[str], one: str, many: str) -> str:
    """``"--size does"`` / ``"--size, --fit do"``."""
    return f"{', '.join(flags)} {one if len(flags) == 1 else many}"


def _given(args: argparse.Namespace, pairs: tuple[tuple[str, str], ...]) -> list[str]:
    """The flags of ``pairs`` given on the command line (their value is not None / False)."""
    values = [(flag, getattr(args, dest, None)) for flag, dest in pairs]
    return [flag for flag, value in values if value is not None and value is not False]


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


def _synthetic(args: argparse.Namespace) -> bool:
    return args.data == "synthetic" or args.kind == "synthetic"


def check_applicable(args: argparse.Namespace) -> None:
    """Refuse ``dsplug train`` options that the chosen data or model would silently ignore.

    Raises:
        ValueError: the first such combination, naming the options and why they do not apply.
    """
    if _synthetic(args):
        if args.data != "synthetic" or args.kind not in ("auto", "synthetic"):
            raise ValueError(
                f"--data {args.data} with --kind {args.kind}: synthetic phantoms read no "
                "folder; give --data synthetic alone, or a folder with its --kind."
            )
        extra = sorted(_given(args, _FILE_DATA_OPTIONS))
        if extra:
            raise ValueError(
                f"{_listed(extra, 'does', 'do')} not apply to --data synthetic: its phantoms are "
                "generated ready-made in memory (no files, preprocessing or cache; their size "
                "is --option size=N); drop them."
            )
    if args.model in SMP_ARCHS:
        extra = _given(
            args, (("--base-channels", "base_channels"), ("--depth", "depth"), ("--norm", "norm"))
        )
        if extra:
            raise ValueError(
                f"{_listed(extra, 'applies', 'apply')} to dsplug's own nets (--model unet / "
                f"unetpp); {args.model} takes its widths and depth from --encoder; drop them."
            )
    elif args.encoder is not None:
        raise ValueError(
            f"--encoder applies to smp models (--model smp-unet, ...); dsplug's own "
            f"{args.model} has no encoder to choose (use --base-channels / --depth); drop it."
        )
    if args.splits is not None:
        extra = _given(args, (("--split-seed", "split_seed"), ("--contiguous", "contiguous")))
        if extra:
            raise ValueError(
                f"{_listed(extra, 'chooses', 'choose')} how cases are split, but --splits "
                "gives the split itself; drop one."
            )
    if not _synthetic(args) and Path(args.data).is_dir():
        kind = args.kind
        if kind == "auto":
            try:
                kind = detect_kind(args.data, parse_options(args.option))
            except ValueError:
                return  # build_datasets reports it
        extra = _given(args, (("--slice-range", "slice_range"), ("--axis", "axis")))
        if kind == "folder" and extra:
            raise ValueError(
                f"{_listed(extra, 'applies', 'apply')} to 3D volumes; --kind folder reads 2D "
                "images; drop them."
            )


def model_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The model config without the data-dependent ``in_channels`` / ``classes``.

    Raises:
        ValueError: unknown encoder (smp), or own-net settings out of range.
    """
    if args.model in SMP_ARCHS:
        return {"arch": args.model, "encoder_name": check_encoder(args.encoder or DEFAULT_ENCODER)}
    settings = {
        name: default if getattr(args, name, None) is None else getattr(args, name)
        for name, default in OWN_NET_DEFAULTS.items()
    }
    if settings["depth"] < 2:
        raise ValueError(f"--depth must be >= 2, got {settings['depth']}.")
    return {"arch": args.model, **settings}


def _divisor(settings: dict[str, Any]) -> int:
    if settings["arch"] in SMP_ARCHS:
        return 32  # smp encoders of depth 5: output stride 32
    return 2 ** (settings["depth"] - 1)


def _preprocessing(args: argparse.Namespace, divisor: int) -> Preprocessing:
    return Preprocessing(
        axis=-1 if args.axis is None else args.axis,
        zscore=not args.no_zscore,
        drop_empty=args.drop_empty,
        slice_range=tuple(args.slice_range) if args.slice_range else None,
        fit=args.fit or "pad",
        size=tuple(args.size) if args.size else None,
        multiple=divisor,
    )


_SPLIT_ADVICE = (
    "give the split yourself with --splits FILE.json (lists of case ids under train, val and "
    "test), use --contiguous for the consecutive slices of one stack"
)


def _datasets(
    args: argparse.Namespace, settings: dict[str, Any], out: Path, info: DistInfo
) -> dict:
    synthetic = _synthetic(args)
    if not synthetic and not Path(args.data).is_dir():
        raise ValueError(
            f"--data {args.data!r}: no such folder (give a dataset folder, e.g. "
            "../shared/data/Task04_Hippocampus, or 'synthetic')."
        )
    options = parse_options(args.option)
    if args.kind == "folder" and not {"image", "mask"} <= set(options):
        raise ValueError(
            "--kind folder needs the file names of its images and masks as templates, e.g. "
            "--option image='images/{id}.png' --option mask='masks/{id}.png'."
        )
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
    kwargs: dict[str, Any] = {
        "kind": "synthetic" if synthetic else args.kind,
        "preprocessing": None if synthetic else _preprocessing(args, divisor),
        "augment": Augment() if args.augment else None,
        "splits": args.splits,
        "seed": args.split_seed or 0,
        "splits_path": None if args.splits else out / "splits.json",
        "contiguous": args.contiguous,
        "cache_dir": args.cache_dir,
        "cache": not args.no_cache,
        "options": options,
    }
    try:
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            sets = build_datasets(args.data, **kwargs)
        barrier(info)  # rank 0 wrote the splits and the cache; the others reuse them
        if not info.is_main:
            sets = build_datasets(args.data, **kwargs)
    except ValueError as exc:
        if "too few for a random" not in str(exc):
            raise
        count = str(exc).split(" cases", 1)[0]
        more = ", or generate more phantoms with --option num_cases=10" if synthetic else ""
        raise ValueError(
            f"--data {args.data}: {count} cases are too few for the default random 70/10/20 "
            f"split (at least 10); {_SPLIT_ADVICE}{more}."
        ) from exc
    for split in ("train", "val"):
        if split not in sets:
            raise ValueError(
                f"--data {args.data}: the split leaves no {split} cases; {_SPLIT_ADVICE}."
            )
    return sets


def _holds_run(folder: Path) -> list[str]:
    """The files of a run in ``folder`` (those a start writes first, or user files, are not)."""
    if not folder.is_dir():
        return []
    run = set(RUN_FILES) - _STARTUP_FILES
    return sorted(p.name for p in folder.iterdir() if p.name in run)


def _new_folder(mode: str) -> Path:
    """A fresh ``runs/<mode>-<date>-<time>`` (suffix -2, -3, ... when taken), created now so
    that two runs started in the same second never share it."""
    stem = Path("runs") / f"{mode}-{time.strftime('%Y%m%d-%H%M%S')}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        folder = stem if n == 1 else stem.with_name(f"{stem.name}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise FileExistsError(f"{stem}-*: no free run folder name left; give --out.")


def _clear_run(folder: Path) -> None:
    for name in RUN_FILES:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _out_path(args: argparse.Namespace) -> Path:
    """Where ``dsplug train`` runs (a new default folder is created now); nothing is changed.

    Raises:
        ValueError: ``--out`` is a file, ``--resume`` comes without ``--out``, or
            ``--resume-from`` would continue a checkpoint inside its own run folder.
    """
    if args.out is None:
        if args.resume:
            raise ValueError(
                "--resume continues the run in --out: give --out RUN_FOLDER (or --resume-from "
                "CKPT --out NEW_FOLDER to fork a run)."
            )
        out = Path(args.resume_from).parent if args.resume_from else _new_folder(args.mode)
    else:
        out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: a file, not a folder.")
    if args.resume_from:
        source = Path(args.resume_from)
        if source.resolve().parent == out.resolve() and source.name != "last.pt":
            raise ValueError(
                f"--resume-from {source} continues in its own run folder {out}, which would "
                "discard the later epochs (last.pt, log rows); fork it into another folder "
                f"with --out NEW_FOLDER, or continue the run itself with --out {out} --resume."
            )
    return out


def _run_folder(args: argparse.Namespace, out: Path) -> Path:
    """Check (and with ``--overwrite`` clear) the run folder; called while holding its lock.

    Raises:
        ValueError: ``out`` holds a run and neither ``--resume``, ``--resume-from`` nor
            ``--overwrite`` is given.
    """
    if args.resume:
        return out
    if args.resume_from and Path(args.resume_from).resolve().parent == out.resolve():
        return out  # RUN/last.pt into RUN: the run itself continues
    held = _holds_run(out)
    if held and not args.overwrite:
        shown = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
        raise ValueError(
            f"--out {out} already holds a run ({shown}); continue it with --resume, replace "
            "it with --overwrite, or choose another --out."
        )
    if args.overwrite:
        _clear_run(out)
    return out


def resume_hint(args: argparse.Namespace, exc: KeyboardInterrupt) -> str:
    """The one line ``dsplug train`` prints on Ctrl-C: what is kept, the command to continue."""
    out = Path(getattr(args, "run_folder", None) or args.out or "")
    if isinstance(exc, TrainingInterrupted):
        checkpoint = exc.checkpoint
    else:  # interrupted outside the training loop, or a second Ctrl-C
        checkpoint = out / "last.pt" if (out / "last.pt").is_file() else None
        if checkpoint is None and args.resume_from:
            checkpoint = Path(args.resume_from)
    if checkpoint is None:
        return "interrupted before the first epoch ended: nothing to keep; run the command again"
    kept = [a for a in _strip_options(args.argv)]
    if Path(checkpoint) == out / "last.pt":
        kept += ["--out", str(out), "--resume"]
    else:
        kept += ["--out", str(out), "--resume-from", str(checkpoint)]
    epoch = f" (epoch {exc.epoch})" if isinstance(exc, TrainingInterrupted) else ""
    return (
        f"interrupted; {checkpoint}{epoch} is kept. Continue with: {shlex.join(['dsplug', *kept])}"
    )


def _strip_options(argv: list[str]) -> list[str]:
    """``argv`` without --out / --resume / --resume-from / --overwrite (and their values)."""
    with_value, flags = ("--out", "--resume-from"), ("--resume", "--overwrite")
    kept: list[str] = []
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif token in with_value:
            skip = True
        elif token in flags or token.startswith(tuple(f"{o}=" for o in with_value)):
            continue
        else:
            kept.append(token)
    return kept


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
        f"balance {args.balance}, schedule {ds.criterion.schedule}"
    )
    start = "resuming" if args.resume or args.resume_from else "new run"
    print(
        f"{prog} device {trainer.device}, amp {trainer.amp}; {args.epochs} epochs at most, "
        f"batch {args.batch_size}; {start} in {trainer.out}"
    )


def train_command(args: argparse.Namespace) -> int:
    """``dsplug train``: build data, model and wrapper; fit; print the summary.

    The run folder is locked (:class:`~dsplug.train.lock.RunLock`) by the main process from
    before it is checked until the run ends: a second ``train`` on it is refused.
    """
    check_applicable(args)
    settings = model_settings(args)
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
    sets = _datasets(args, settings, out, info)
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
        balance=args.balance,
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
        out=out,
        config=config,
        test_data=sets.get("test"),
        model_config=model_config,
        device=info.device,
    )
    if info.is_main:
        _print_start(args, sets, ds, trainer)
    return trainer.fit(resume=args.resume, resume_from=args.resume_from)


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
            f"the run's data folder {root} no longer exists; pass --data DIR to evaluate "
            "another folder."
        )
    changes = fingerprint_changes(root, config.get("fingerprint") or {})
    if changes:
        raise ValueError(
            f"the run's {split} data in {root} changed since training: {'; '.join(changes)}; "
            f"restore it, or evaluate the folder as it is now with --data {root}."
        )


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
    else:
        if args.split is not None:
            raise ValueError(
                f"--split {args.split} picks a split of the run's own data, but --data "
                "evaluates a whole folder instead; drop one."
            )
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


#: What ``evaluate`` writes into its --out.
EVALUATE_FILES = ("cases.csv", "summary.json", "overlays.png")
#: What ``compare`` writes into its --out.
COMPARE_FILES = ("compare.md", "compare_metrics.csv", "compare_efficiency.csv")


def _run_markers(folder: Path) -> list[str]:
    """The files that only a training run writes (a report's summary.json is not one)."""
    markers = ("last.pt", "best.pt", "log.csv", "config.json", "splits.json", "val_cases.csv")
    return [name for name in markers if (folder / name).exists()]


def _report_folder(out: Path, files: tuple[str, ...], overwrite: bool, default: str) -> None:
    """Refuse a run folder as a report's --out, and an existing report without --overwrite.

    Raises:
        ValueError: ``out`` is a file, a run folder, or holds the report (no ``overwrite``).
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: a file, not a folder.")
    held = _run_markers(out)
    if held:
        raise ValueError(
            f"--out {out} is a training run's folder ({', '.join(held[:3])}, ...): reports "
            f"never go into it, where they would replace the run's own files; use the default "
            f"({default}) or another --out."
        )
    existing = [name for name in files if (out / name).exists()]
    if existing and not overwrite:
        raise ValueError(
            f"--out {out} already holds a report ({', '.join(existing)}); replace it with "
            "--overwrite, or choose another --out."
        )


def _evaluate_out(args: argparse.Namespace) -> Path:
    """``--out``, or by default ``RUN/evaluate-<checkpoint>-<split or folder>`` (a subfolder)."""
    ckpt = Path(args.checkpoint)
    what = Path(args.data).resolve().name if args.data else (args.split or "test")
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
        "split": "folder" if args.data else (args.split or "test"),
        "data": str(args.data) if args.data else None,
        **metrics.summary(),
    }
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


def _case_files(text: str) -> list[Path]:
    """One ``predict`` input: a file (its name may hold commas), or one file per channel as
    ``a,b,c``."""
    if Path(text).is_file() or "," not in text:
        return [Path(text)]
    return [Path(p) for p in text.split(",")]


def predict_command(args: argparse.Namespace) -> int:
    """``dsplug predict``: one mask per input case, never two at one path, never over an input.

    A case that cannot be read or segmented is named on stderr and skipped; the others are
    written, and the exit status is 1 at the end.
    """
    cases = [_case_files(case) for case in args.inputs]
    missing = [str(p) for files in cases for p in files if not p.is_file()]
    if missing:
        raise ValueError(f"input file(s) not found: {missing}.")
    targets = mask_paths([files[0] for files in cases], args.out)
    reads = [(args.checkpoint, "the checkpoint")]
    reads += [(p, "an input") for files in cases for p in files]
    if args.roi:
        reads.append((args.roi, "the --roi mask"))
    check_writes([(t, f"the mask of {files[0]}") for files, t in zip(cases, targets)], reads)
    existing = [str(t) for t in targets if t.exists()]
    if existing and not args.overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise ValueError(
            f"{existing[0]} exists already{more}; replace it with --overwrite, or choose "
            "another --out."
        )
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, ckpt = load_model(args.checkpoint, device)
    failed = []
    for files, target in zip(cases, targets):
        try:
            predict_file(
                model,
                ckpt,
                files,
                args.out,
                roi=args.roi,
                batch_size=args.batch_size,
                target=target,
            )
        except (ValueError, OSError) as exc:
            text = " ".join(str(exc).split())
            if str(files[0]) not in text:
                text = f"{files[0]}: {text}"
            print(f"dsplug predict: skipped {text}", file=sys.stderr)
            failed.append(str(files[0]))
            continue
        print(f"{files[0]} -> {target}")
    if failed:
        raise PredictFailures(
            f"{len(failed)} of {len(cases)} input(s) skipped ({', '.join(failed[:3])}"
            f"{', ...' if len(failed) > 3 else ''}); the other masks are written."
        )
    return 0


def export_command(args: argparse.Namespace) -> int:
    """``dsplug export``: the bare model of a checkpoint as safetensors or ONNX."""
    from ..export import export_checkpoint

    ckpt = Path(args.checkpoint)
    out = Path(args.out) if args.out else ckpt.with_suffix(f".{args.format}")
    check_writes([(out, f"the {args.format} export")], [(ckpt, "the checkpoint")])
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it, or --out FILE.")
    print(f"wrote {export_checkpoint(ckpt, out, args.format)}")
    return 0


def _compare_out(args: argparse.Namespace) -> Path:
    """``--out``, or by default ``compare`` in the runs' common folder (beside them)."""
    try:
        common = Path(os.path.commonpath([Path(r).resolve().parent for r in args.runs]))
    except ValueError:  # no common folder (e.g. two drives)
        common = Path("runs")
    default = common / "compare"
    out = Path(args.out) if args.out else default
    _report_folder(out, COMPARE_FILES, args.overwrite, str(default))
    return out


def compare_command(args: argparse.Namespace) -> int:
    """``dsplug compare``: metric and efficiency tables of two or more runs."""
    out = _compare_out(args)
    reads = [(Path(r) / name, f"a file of run {r}") for r in args.runs for name in RUN_FILES]
    check_writes([(out / name, f"compare's {name}") for name in COMPARE_FILES], reads)
    print(compare_runs(args.runs, out))
    print(f"wrote {out / 'compare.md'} (and CSV tables)")
    return 0


def _dice_gap(out: Path) -> str:
    """``hyb - none test Dice: +0.004`` from the two runs' summaries (validation without test)."""
    summaries = {m: json.loads((out / m / "summary.json").read_text()) for m in ("none", "hyb")}
    split, key = (
        ("test", "test")
        if all(s.get("test") for s in summaries.values())
        else (
            "validation",
            "best_val",
        )
    )
    gap = summaries["hyb"][key]["dice"] - summaries["none"][key]["dice"]
    return f"hyb - none {split} Dice: {gap:+.3f}"


def _check_demo(args: argparse.Namespace) -> None:
    """Refuse demo settings in the demo's own options (train's messages name train's).

    Raises:
        ValueError: too few phantoms, a shallow U-Net, or a size the U-Net cannot divide.
    """
    if args.cases < 10:
        raise ValueError(
            f"--cases {args.cases}: the demo splits its phantoms 70/10/20 and needs at least "
            "10; pass --cases 10 or more."
        )
    if args.depth < 2:
        raise ValueError(f"--depth must be >= 2, got {args.depth}.")
    stride = 2 ** (args.depth - 1)
    if args.size % stride:
        raise ValueError(
            f"--size {args.size} is not a multiple of {stride}, the stride of a {args.depth}-"
            f"level U-Net; pass e.g. --size {-(-args.size // stride) * stride}, or a smaller "
            "--depth."
        )
    if args.min_epochs > args.epochs:
        raise ValueError(
            f"--min-epochs {args.min_epochs} exceeds --epochs {args.epochs}; lower it."
        )


def demo_command(args: argparse.Namespace, train_defaults: argparse.Namespace) -> int:
    """``dsplug demo``: train ``none`` and ``hyb`` on synthetic phantoms, then compare them.

    Raises:
        ValueError: ``--out`` holds an earlier demo and ``--overwrite`` is not given.
    """
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: a file, not a folder.")
    run = _run_markers(out)
    if run:
        raise ValueError(
            f"--out {out} is a training run's folder ({', '.join(run[:3])}, ...); the demo "
            "never writes into one, even with --overwrite; choose another --out."
        )
    held = sorted(name for name in ("none", "hyb", *COMPARE_FILES) if (out / name).exists())
    if held and not args.overwrite:
        raise ValueError(
            f"--out {out} already holds a demo ({', '.join(held[:4])}); replace it with "
            "--overwrite, or choose another --out."
        )
    _check_demo(args)
    runs = []
    for mode in ("none", "hyb"):
        run = argparse.Namespace(**vars(train_defaults))
        run.mode, run.out, run.data, run.seed = mode, str(out / mode), "synthetic", args.seed
        run.model, run.base_channels, run.depth = "unet", args.base_channels, args.depth
        run.epochs, run.min_epochs, run.batch_size = args.epochs, args.min_epochs, args.batch_size
        run.option = [f"num_cases={args.cases}", f"size={args.size}"]
        run.target_dice, run.quiet, run.device = args.target_dice, args.quiet, args.device
        run.overwrite, run.argv = args.overwrite, []
        print(f"== training {mode!r} on {args.cases} synthetic phantoms ({args.size} px) ==")
        train_command(run)
        runs.append(run.out)
    print("== comparison ==")
    print(compare_runs(runs, out))
    print(_dice_gap(out))
    print(f"Plots: {out}/<mode>/curves.png and overlays.png; tables: {out}/compare.md")
    return 0
