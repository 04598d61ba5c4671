"""``dsplug train``'s settings: the options that do not apply, the model settings, and the
train / val / test datasets (slices) built from the options."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..._checks import integer, non_negative_int, positive_int
from ...data import KINDS, Augment, Preprocessing, build_datasets, detect_kind
from ..distributed import DistInfo, barrier
from ..models import (
    MODEL_ARCHS,
    MONAI_ARCHS,
    MONAI_NET_DEFAULTS,
    SMP_ARCHS,
    check_encoder,
    config_divisor,
    monai_settings,
)
from ._common import _given, _listed, _synthetic, check_synthetic_options, parse_options
from .arguments import cache_options

__all__ = [
    "DEFAULT_ENCODER",
    "OWN_NET_DEFAULTS",
    "add_data_options",
    "add_model_options",
    "check_applicable",
    "model_settings",
]


#: Own nets' settings when their options are not given (the paper's U-Net).
OWN_NET_DEFAULTS: dict[str, Any] = {"base_channels": 64, "depth": 5, "norm": "batch"}
DEFAULT_ENCODER = "resnet34"


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
            f"--encoder applies to smp models (--model smp-unet, ...); {args.model} has no "
            "encoder to choose (use --base-channels / --depth); drop it."
        )
    if args.model == "monai-basicunet" and args.depth is not None:
        raise ValueError(
            "--depth does not apply to monai-basicunet: its five levels are fixed (stride 16); "
            "drop it, or use --model monai-dynunet for another depth."
        )
    if args.model == "monai-dynunet" and args.depth is not None and args.depth < 3:
        raise ValueError(
            f"--depth {args.depth}: monai-dynunet needs --depth 3 or more (MONAI's DynUNet "
            "builds at least three levels); pass --depth 3, or --model unet for two levels."
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
                raise ValueError(
                    f"--data {args.data}: cannot tell its layout (no dataset.json of an MSD "
                    "task, no BraTS label files, no image / mask templates); pass --kind msd or "
                    "brats, or --kind folder with --option image='images/{id}.png' --option "
                    "mask='masks/{id}.png'."
                ) from None
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
    if args.model in MONAI_ARCHS:
        return monai_settings(
            args.model,
            base_channels=getattr(args, "base_channels", None),
            depth=getattr(args, "depth", None),
            norm=getattr(args, "norm", None),
        )
    settings = {
        name: default if getattr(args, name, None) is None else getattr(args, name)
        for name, default in OWN_NET_DEFAULTS.items()
    }
    if settings["depth"] < 2:
        raise ValueError(f"--depth must be >= 2, got {settings['depth']}.")
    return {"arch": args.model, **settings}


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


def _splits_path(
    args: argparse.Namespace, out: Path, info: DistInfo, scratch: Path | None
) -> Path | None:
    """Where the splits are saved (and reused from): none for --splits; in ``scratch`` on rank
    0 and nowhere on the others (they make the same seeded splits) while a resume is pending."""
    if args.splits:
        return None
    if scratch is None:
        return out / "splits.json"
    return scratch / "splits.json" if info.is_main else None


_SPLIT_ADVICE = (
    "give the split yourself with --splits FILE.json (lists of case ids under train, val and "
    "test), use --contiguous for the consecutive slices of one stack"
)


def _datasets(
    args: argparse.Namespace, settings: dict[str, Any], out: Path, info: DistInfo
) -> tuple[dict, dict[str, Any] | None]:
    """The train / val / test datasets, and the splits a resume writes once it is accepted.

    A new run writes ``out/splits.json`` now; a resume into a folder without one writes
    nothing before its checkpoint is accepted: the splits are made in a scratch folder and
    returned (rank 0) to be saved into ``out`` then (:func:`dsplug.data.splits.save_splits`).
    """
    staged = bool(args.resume or args.resume_from) and not (out / "splits.json").exists()
    scratch = Path(tempfile.mkdtemp(prefix="dsplug-splits-")) if staged else None
    try:
        sets = _build(args, settings, out, info, scratch)
        pending = None
        if scratch is not None and (scratch / "splits.json").is_file():
            pending = json.loads((scratch / "splits.json").read_text())
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return sets, pending


def _build(
    args: argparse.Namespace,
    settings: dict[str, Any],
    out: Path,
    info: DistInfo,
    scratch: Path | None,
) -> dict:
    """The datasets; the splits saved in ``out``, or in ``scratch`` (rank 0) when given."""
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
    divisor = config_divisor(settings)
    if synthetic:
        check_synthetic_options(args.option)
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
        # --patch augments its patches (PatchAugment), never the slices patches are cut from
        "augment": Augment() if args.augment and getattr(args, "patch", None) is None else None,
        "splits": args.splits,
        "seed": args.split_seed or 0,
        "splits_path": _splits_path(args, out, info, scratch),
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


def add_model_options(p: argparse.ArgumentParser) -> None:
    """``dsplug train``'s model options (read by :func:`model_settings`)."""
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        choices=MODEL_ARCHS,
        default="unet",
        help="dsplug's own unet / unetpp, an smp architecture (2D), or MONAI's "
        "monai-dynunet / monai-basicunet (2D and 3D, with the monai extra) (default: unet)",
    )
    g.add_argument(
        "--encoder",
        default=None,
        help="smp models only: the encoder, e.g. resnet34 or tu-<timm model>; never downloads "
        f"weights (default: {DEFAULT_ENCODER})",
    )
    g.add_argument(
        "--base-channels",
        type=positive_int,
        default=None,
        help="own and MONAI nets: channels of level 0 "
        f"(default: {OWN_NET_DEFAULTS['base_channels']}, the paper; MONAI nets "
        f"{MONAI_NET_DEFAULTS['base_channels']})",
    )
    g.add_argument(
        "--depth",
        type=positive_int,
        default=None,
        help="own nets and monai-dynunet: levels "
        f"(default: {OWN_NET_DEFAULTS['depth']}, the paper)",
    )
    g.add_argument(
        "--norm",
        choices=("batch", "instance"),
        default=None,
        help=f"own and MONAI nets (default: {OWN_NET_DEFAULTS['norm']}; MONAI nets "
        f"{MONAI_NET_DEFAULTS['norm']})",
    )


def add_data_options(p: argparse.ArgumentParser) -> None:
    """``dsplug train``'s data options (read by ``_datasets`` and :func:`check_applicable`)."""
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        default="synthetic",
        help="dataset folder (MSD task, BraTS, image folder) or 'synthetic' (default: synthetic); "
        "a resume accepts the folder its data moved to when the files match the run's record",
    )
    g.add_argument("--kind", choices=KINDS, default="auto", help="folder layout (default: auto)")
    g.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="a layout option, repeatable; VALUE is JSON or a string, e.g. num_cases=40, "
        'size=64 (synthetic), modalities=["t1ce","flair"] (BraTS), image=images/{id}.png',
    )
    g.add_argument(
        "--axis",
        type=integer,
        choices=(-3, -2, -1, 0, 1, 2),
        metavar="AXIS",
        default=None,
        help="3D volumes only: slicing axis (default: -1, axial)",
    )
    g.add_argument(
        "--no-zscore", action="store_true", help="file data: skip the per-volume z-score"
    )
    g.add_argument(
        "--drop-empty",
        action="store_true",
        help="file data, training: drop slices without foreground",
    )
    g.add_argument(
        "--slice-range",
        type=non_negative_int,
        nargs=2,
        metavar=("START", "STOP"),
        default=None,
        help="3D volumes only: keep slices START <= i < STOP (BraTS in the paper: 30 125)",
    )
    g.add_argument(
        "--fit",
        choices=("pad", "resize"),
        default=None,
        help="file data: bring slices to one size by padding or resizing (default: pad)",
    )
    g.add_argument(
        "--size",
        type=positive_int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="file data: slice size, a multiple of the network's stride (default: the largest "
        "slice, rounded up; synthetic data: --option size=N)",
    )
    g.add_argument("--augment", action="store_true", help="training: random flips / 90° turns")
    g.add_argument(
        "--splits", default=None, help="JSON file of explicit splits (default: seeded 70/10/20)"
    )
    g.add_argument(
        "--split-seed",
        type=non_negative_int,
        default=None,
        help="seed of the case split (default: 0)",
    )
    g.add_argument(
        "--contiguous",
        action="store_true",
        help="split into contiguous blocks (one stack such as ISBI 2012)",
    )
    cache_options(g)
