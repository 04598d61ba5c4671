"""``dsplug train --patch``: the options of patch training checked, and the training set of
random native-resolution patches (a third centred on foreground, augmented with --augment)."""

from __future__ import annotations

import argparse
import warnings
from typing import Any

from ..._checks import positive_int
from ...data import PatchAugment, PatchDataset
from ...data.volumes import native_cases
from ..models import SMP_ARCHS
from ._common import _given, _listed
from .arguments import nsd_option

__all__ = ["add_options", "check_patch", "patch_dataset"]

#: The share of patches centred on a foreground voxel (nnU-Net's third).
FOREGROUND_FRACTION = 1 / 3


def check_patch(args: argparse.Namespace, settings: dict[str, Any], divisor: int) -> None:
    """Refuse patch options that do not fit together (before any data is read).

    Raises:
        ValueError: --patches-per-image without --patch; a patch of other than 2 or 3
            sizes, or not a multiple of the network's stride; slice-size options with a
            patch; a 3D patch for an smp (2D) model; a patch whose bottleneck is one voxel
            under instance norm, or under batch norm in batches of one patch.
    """
    patch = getattr(args, "patch", None)
    if patch is None:
        extra = _given(args, (("--patches-per-image", "patches_per_image"),))
        if extra:
            raise ValueError(
                f"{_listed(extra, 'applies', 'apply')} to patch training; add --patch H W "
                "(2D) or --patch D H W (3D), or drop it."
            )
        return
    if len(patch) not in (2, 3):
        raise ValueError(
            f"--patch takes 2 sizes (H W, 2D patches) or 3 (D H W, 3D patches of volumes), "
            f"got {len(patch)}: {' '.join(map(str, patch))}."
        )
    if len(patch) == 3 and settings["arch"] in SMP_ARCHS:
        side = -(-max(patch) // divisor) * divisor
        raise ValueError(
            f"--patch {' '.join(map(str, patch))}: 3 sizes train a 3D network, but "
            f"{settings['arch']} is 2D only; pass a 2D patch, --patch H W (each a multiple "
            f"of {divisor}, e.g. --patch {side} {side}), or use --model unet / unetpp "
            "(dsplug's own nets, built in 3D) or monai-dynunet / monai-basicunet for 3D patches."
        )
    bad = [p for p in patch if p % divisor]
    if bad:
        fixed = " ".join(str(-(-p // divisor) * divisor) for p in patch)
        raise ValueError(
            f"--patch {' '.join(map(str, patch))}: each size must be a multiple of "
            f"{divisor}, the stride of {settings['arch']}; pass e.g. --patch {fixed}."
        )
    extra = _given(args, (("--size", "size"), ("--fit", "fit")))
    if extra:
        raise ValueError(
            f"{_listed(extra, 'does', 'do')} not apply with --patch: patches are cut from "
            "the images at native resolution (no resize); drop them."
        )
    if all(p == divisor for p in patch):  # a one-voxel bottleneck
        _check_one_voxel(args, settings, divisor)
    if len(patch) == 3:
        extra = _given(args, (("--slice-range", "slice_range"), ("--drop-empty", "drop_empty")))
        if extra:
            raise ValueError(
                f"{_listed(extra, 'selects', 'select')} slices, but 3D patches take whole "
                "volumes; drop them."
            )


def _norm(settings: dict[str, Any]) -> str | None:
    """The net's normalisation: own nets' ``norm``, MONAI's ``norm(_name)``; smp encoders
    normalise by batch."""
    if settings["arch"] in SMP_ARCHS:
        return "batch"
    norm = settings.get("norm", settings.get("norm_name"))
    name = norm if isinstance(norm, str) else norm[0] if norm else None
    return name.lower() if isinstance(name, str) else None


def _check_one_voxel(args: argparse.Namespace, settings: dict[str, Any], divisor: int) -> None:
    """Refuse a one-voxel bottleneck that the net's norm cannot normalise: instance norm
    never (one value per channel), batch norm in a batch of one patch. (A last batch of one
    patch is left out of each epoch by the training loader.)"""
    patch = " ".join(map(str, args.patch))
    larger = " ".join(str(2 * p) for p in args.patch)
    head = f"--patch {patch}: {settings['arch']}'s bottleneck would be one voxel (stride {divisor})"
    norm = _norm(settings)
    if norm == "instance":
        raise ValueError(
            f"{head}, which instance norm cannot normalise; pass a larger patch (e.g. --patch "
            f"{larger}) or --norm batch."
        )
    if norm == "batch" and getattr(args, "batch_size", 2) == 1:
        raise ValueError(
            f"{head}, which batch norm cannot normalise in a batch of one patch (--batch-size "
            f"1); pass --batch-size 2 or more, or a larger patch (e.g. --patch {larger})."
        )


def _warn_if_padded(patch: list[int], shapes: list[tuple[int, ...]]) -> None:
    """One warning line when the patch is larger than every training image along an axis:
    then part of every patch is zero padding, which training would not say otherwise."""
    largest = [max(shape[axis] for shape in shapes) for axis in range(len(patch))]
    if any(p > n for p, n in zip(patch, largest)):
        warnings.warn(
            f"--patch {' '.join(map(str, patch))} is larger than every training image (the "
            f"largest is {' x '.join(map(str, largest))}): each patch is zero-padded to it, "
            "so part of every patch is padding; a patch no larger than the images (each size a "
            "multiple of the net's stride) trains on image only.",
            UserWarning,
            stacklevel=3,
        )


def patch_dataset(args: argparse.Namespace, train: Any) -> PatchDataset:
    """Random patches of the training cases at native resolution.

    Each epoch draws ``--patches-per-image`` patches of every image (2D patches: every
    served slice or image; 3D: every volume), a third of them centred on foreground. A patch
    larger than every image along an axis is said in one warning line (it is zero-padded).
    """
    dims = len(args.patch)
    cases = native_cases(train, dims)
    _warn_if_padded(args.patch, [tuple(c.image.shape[1:]) for c in cases])
    binary = train.label_mode == "binary"
    return PatchDataset(
        [c.image for c in cases],
        [c.mask[0] if binary else c.mask for c in cases],
        args.patch,
        label_mode=train.label_mode,
        patches_per_image=args.patches_per_image or 4,
        foreground_fraction=FOREGROUND_FRACTION,
        transform=PatchAugment(dims) if args.augment else None,
        cases=[c.case for c in cases],
    )


def add_options(p: argparse.ArgumentParser) -> None:
    """``dsplug train``'s patch options (read here and by ``dsplug train``'s scoring)."""
    g = p.add_argument_group(
        "patches at native resolution",
        "Train on random patches cut from the images at their own size (no resize), then "
        "validate and test whole cases by Gaussian sliding windows of the patch, with HD95 "
        "and surface Dice (NSD) per case; evaluate and predict of the checkpoint do the same.",
    )
    g.add_argument(
        "--patch",
        type=positive_int,
        nargs="+",
        metavar="SIZE",
        default=None,
        help="patch size: H W (2D: images, or the slices of volumes) or D H W (3D: whole "
        "volumes, axes in the files' order; own and MONAI nets built in 3D); each a multiple "
        "of the network's stride (default: no patches, whole slices at --size)",
    )
    g.add_argument(
        "--patches-per-image",
        type=positive_int,
        default=None,
        metavar="N",
        help="--patch with --recipe paper: random patches per image and epoch, a third "
        "centred on foreground (default: 4; the field recipe, the default of 2D patches, draws "
        "--iterations batches per epoch instead); --augment (paper) flips, rotates, scales and "
        "changes intensities (MONAI, else torchvision)",
    )
    nsd_option(g)
