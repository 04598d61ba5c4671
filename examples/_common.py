"""What every example shares: its argument parser and the hand-over to ``dsplug train``.

An example is a dataset's settings from the paper (batch size, preprocessing, loss-weight
preset) written as ``dsplug train`` options. It parses a few options of its own, adds the
dataset's fixed ones and runs the CLI's training command, so there is one training code path.
Any other ``dsplug train`` option given on the command line is passed through unchanged (see
``dsplug train --help``); a wrong one is reported by ``dsplug train``.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dsplug._checks import positive_int
from dsplug.cli import main as dsplug_main
from dsplug.losses import PRESETS
from dsplug.options import Mode

__all__ = ["Example", "build_parser", "main", "train_argv"]


@dataclass(frozen=True)
class Example:
    """One dataset's recipe.

    Attributes:
        name: the dataset's name (in help texts and the default run folder).
        description: the first line of the example's docstring.
        fixed: ``dsplug train`` options the recipe always sets (layout, preprocessing, split).
        batch_size: the default batch size.
        weights: the default loss-weight preset.
        base_channels: the default width of the own U-Net (the paper: 64).
        epochs: the default maximum number of epochs.
        quick: ``dsplug train`` options of ``--quick`` (a run of about a minute on a CPU that
            shows the recipe works; any option given on the command line still wins); empty:
            the example has no ``--quick``.
    """

    name: str
    description: str
    fixed: tuple[str, ...]
    batch_size: int
    weights: str = "equal"
    base_channels: int = 64
    epochs: int = 100
    quick: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.weights not in PRESETS:
            raise ValueError(f"weights must be one of {list(PRESETS)}, got {self.weights!r}.")
        for name in ("batch_size", "base_channels", "epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}.")


def build_parser(example: Example) -> argparse.ArgumentParser:
    """The example's options; the ones it does not know go to ``dsplug train``."""
    slug = example.name.lower().replace(" ", "_")
    parser = argparse.ArgumentParser(
        description=example.description,
        epilog=f"Always set: {' '.join(example.fixed) or '(nothing)'}. Any other `dsplug "
        "train` option (see `dsplug train --help`) is passed through.",
    )
    parser.add_argument("--data", required=True, metavar="PATH", help="the dataset folder")
    parser.add_argument("--out", default=f"runs/{slug}", help=f"run folder (default: runs/{slug})")
    parser.add_argument(
        "--mode",
        choices=[m.value for m in Mode],
        default="hyb",
        help="strategy (default: hyb, μ-Net-Hyb)",
    )
    parser.add_argument(
        "--weights",
        choices=list(PRESETS),
        default=example.weights,
        help=f"loss-weight preset (default: {example.weights})",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=example.batch_size,
        help=f"(default: {example.batch_size})",
    )
    parser.add_argument(
        "--base-channels",
        type=positive_int,
        default=example.base_channels,
        help=f"U-Net width (default: {example.base_channels})",
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=example.epochs,
        help=f"maximum epochs (default: {example.epochs})",
    )
    parser.add_argument("--seed", type=int, default=0, help="(default: 0)")
    parser.quick = example.quick  # read by the --quick action
    if example.quick:
        parser.add_argument(
            "--quick",
            nargs=0,
            action=_Quick,
            default=False,
            help=f"about a minute on a CPU: {' '.join(example.quick)} (options given on the "
            "command line win)",
        )
    return parser


# The example's own options (flag -> dest) that --quick may set.
_OWN = {"--epochs": "epochs", "--base-channels": "base_channels", "--batch-size": "batch_size"}


def _own_pairs(quick: Sequence[str]) -> tuple[dict[str, int], list[str]]:
    """``--quick``'s settings of the example's own options, and the rest (train options)."""
    own, rest, i = {}, [], 0
    while i < len(quick):
        if quick[i] in _OWN:
            own[_OWN[quick[i]]] = int(quick[i + 1])
            i += 2
        else:
            rest.append(quick[i])
            i += 1
    return own, rest


class _Quick(argparse.Action):
    """``--quick``: the example's own options it names are set unless given (in any order)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        namespace.quick = True
        own, _ = _own_pairs(parser.quick)
        for dest, value in own.items():
            if getattr(namespace, dest) == parser.get_default(dest):
                setattr(namespace, dest, value)


def train_argv(
    example: Example, args: argparse.Namespace, passthrough: Sequence[str] = ()
) -> list[str]:
    """The ``dsplug train`` command line for parsed example options (without ``train``)."""
    quick = _own_pairs(example.quick)[1] if getattr(args, "quick", False) else []
    return [
        "--data",
        str(args.data),
        "--out",
        str(args.out),
        "--mode",
        args.mode,
        "--weights",
        args.weights,
        "--batch-size",
        str(args.batch_size),
        "--base-channels",
        str(args.base_channels),
        "--epochs",
        str(args.epochs),
        "--seed",
        str(args.seed),
        *_override(example.fixed, quick),
        *quick,
        *passthrough,
    ]


def _groups(options: Sequence[str]) -> list[list[str]]:
    """``options`` split into ``[flag, *values]`` groups."""
    groups: list[list[str]] = []
    for item in options:
        if item.startswith("--") or not groups:
            groups.append([item])
        else:
            groups[-1].append(item)
    return groups


def _override(fixed: Sequence[str], quick: Sequence[str]) -> list[str]:
    """``fixed`` without the options ``quick`` sets again (``--option`` adds, never replaces),
    so the printed command names each option once."""
    replaced = {g[0] for g in _groups(quick)} - {"--option"}
    return [item for g in _groups(fixed) if g[0] not in replaced for item in g]


def main(example: Example, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, then train with ``dsplug train``; returns its exit status."""
    args, passthrough = build_parser(example).parse_known_args(argv)
    command = ["train", *train_argv(example, args, passthrough)]
    print("dsplug " + shlex.join(command), flush=True)
    return dsplug_main(command)
