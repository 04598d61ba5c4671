"""``dsplug train``'s images without masks: ``--unlabeled PATH``, ``--labeled-cases N`` and the
recipe options (``--semi``, ``--unlabeled-ratio``, ``--rampup``, ``--unlabeled-weight``,
``--ema-decay``)."""

from __future__ import annotations

import argparse
from typing import Any

from torch.utils.data import Dataset

from ..._checks import positive_int
from ...semi import check_recipe
from ..config import SEMI_RECIPES
from ..unlabeled import join_unlabeled, read_unlabeled, split_labeled
from .arguments import non_negative_float

__all__ = ["add_options", "check_semi", "semi_data", "semi_line"]

_DEFAULTS = (("--unlabeled-ratio", "unlabeled_ratio", 1), ("--rampup", "rampup", 0.25))
_DEFAULTS += (("--ema-decay", "ema_decay", 0.99),)


def _used(args: argparse.Namespace) -> bool:
    return (
        getattr(args, "unlabeled", None) is not None
        or getattr(args, "labeled_cases", None) is not None
    )


def check_semi(args: argparse.Namespace) -> None:
    """Refuse recipe options without images to apply them to, and combinations not built.

    Raises:
        ValueError: one line naming the options.
    """
    given = [flag for flag, dest, default in _DEFAULTS if getattr(args, dest, default) != default]
    given += [
        flag
        for flag, dest in (("--semi", "semi"), ("--unlabeled-weight", "unlabeled_weight"))
        if getattr(args, dest, None) is not None
    ]
    if given and not _used(args):
        raise ValueError(
            f"{', '.join(given)} set(s) how images without masks are learnt from, but none are "
            "given: add --unlabeled PATH (a folder of images) or --labeled-cases N."
        )
    if args.semi == "none":
        if getattr(args, "unlabeled", None) is not None:
            raise ValueError(
                "--semi none learns nothing from images without masks, but --unlabeled gives "
                "some: drop one (--semi none with --labeled-cases N trains on N cases alone)."
            )
    else:
        check_recipe(args.semi, args.mode)
    if _used(args) and getattr(args, "patch", None):
        raise ValueError(
            "--unlabeled / --labeled-cases do not work with --patch yet (whole slices only); "
            "drop one."
        )


def semi_data(args: argparse.Namespace, sets: dict[str, Dataset]) -> Dataset | None:
    """The unlabelled images of the options (``sets["train"]`` keeps only the labelled cases
    with ``--labeled-cases``); None when neither option is given.

    Raises:
        ValueError: ``--labeled-cases`` out of range, unreadable images, or an unlabelled file
            that is a validation or test case (one line naming it).
    """
    if not _used(args):
        return None
    parts: list[Dataset] = []
    if args.labeled_cases is not None:
        sets["train"], rest = split_labeled(sets["train"], args.labeled_cases)
        if args.semi == "none":  # the supervised baseline: the labelled cases alone
            return None
        parts.append(rest)
    if args.unlabeled is not None:
        held_out = {split: sets[split] for split in ("val", "test") if split in sets}
        parts.append(read_unlabeled(args.unlabeled, sets["train"].config(), held_out))
    return parts[0] if len(parts) == 1 else join_unlabeled(parts)


def semi_line(args: argparse.Namespace, trainer: Any) -> str:
    """The start line that says what is learnt without masks."""
    cfg = trainer.config
    data = trainer.unlabeled_data
    cases = len(getattr(data, "cases", []))
    return (
        f"dsplug train: --semi {cfg.semi} on {len(data)} unlabelled image(s) of {cases} case(s) "
        f"({getattr(data, 'source', '')}), {cfg.unlabeled_ratio} per labelled image, weight "
        f"{cfg.semi_weight} ramped up over {cfg.rampup:.0%} of the steps"
    )


def add_options(p: argparse.ArgumentParser) -> None:
    """``dsplug train``'s options for images without masks (read here)."""
    g = p.add_argument_group(
        "images without masks",
        "Learn from unlabelled images too (README: Learning from images without masks).",
    )
    g.add_argument(
        "--unlabeled",
        default=None,
        metavar="PATH",
        help="a folder of images, or an MSD task whose images are read without their labels, "
        "preprocessed as --data; turns on the mode's default --semi (default: none)",
    )
    g.add_argument(
        "--semi",
        choices=(*SEMI_RECIPES, "none"),
        default=None,
        help="the recipe: pseudo (an EMA teacher's confident pseudo-masks, every mode), "
        "mean-teacher, rei (the tied decoder reconstructs them; modes with one), consistency "
        "(the side outputs agree; up, down), none (--labeled-cases N: the N cases alone, the "
        "supervised baseline) (default: consistency for up and down, mean-teacher otherwise: "
        "measured, docs/semi.md)",
    )
    g.add_argument(
        "--labeled-cases",
        type=positive_int,
        default=None,
        metavar="N",
        help="keep the masks of the first N training cases only; the others' images are "
        "used without them (benchmarks) (default: all labelled)",
    )
    g.add_argument(
        "--unlabeled-ratio",
        type=positive_int,
        default=1,
        metavar="N",
        help="unlabelled images per labelled image in a step (default: 1)",
    )
    g.add_argument(
        "--rampup",
        type=float,
        default=0.25,
        metavar="FRACTION",
        help="the unlabelled weight ramps up over this fraction of the steps (default: 0.25)",
    )
    g.add_argument(
        "--unlabeled-weight",
        type=non_negative_float,
        default=None,
        metavar="W",
        help="the unlabelled loss's weight (default: 0.1 with mean-teacher and consistency, "
        "else 1.0)",
    )
    g.add_argument(
        "--ema-decay",
        type=float,
        default=0.99,
        metavar="D",
        help="the EMA teacher's decay (default: 0.99)",
    )
