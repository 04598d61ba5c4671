"""The native-resolution tables: the 3D benchmark's (``native_3d.py``: means per net and mode,
hyb - none) and the ISBI native-patch benchmark's (``isbi_patches.py``: means per path and mode,
patch - resize per mode, hyb - none per path)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["render_isbi_patches", "render_native_3d"]

#: (key, label, digits) of the native benchmarks' metrics.
_METRICS = (("dice", "Dice", 4), ("hd95", "HD95 (lower is better)", 2), ("nsd", "NSD", 4))


def _means_row(cells: Sequence[str], m: Mapping[str, Any]) -> str:
    figures = (f"{m['dice']:.4f}", f"{m['hd95']:.2f}", f"{m['nsd']:.4f}")
    seconds = (f"{m['train_s']:.0f}", f"{m['val_s']:.0f}")
    return "| " + " | ".join((*cells, *figures, *seconds)) + " |"


def _comparison_rows(cells: Sequence[str], compared: Mapping[str, Any]) -> list[str]:
    rows = []
    for key, label, digits in _METRICS:
        c = compared[key]
        seeds = ", ".join(f"{d:+.{digits}f}" for d in c["per_seed_diff"])
        figures = (seeds, f"{c['mean_diff']:+.{digits}f}", c["better_in"], f"{c['p']:.2f}")
        rows.append("| " + " | ".join((*cells, label, *figures)) + " |")
    return rows


def render_native_3d(summary: Mapping[str, Any]) -> str:
    """The 3D benchmark's tables (its JSON's ``summary``): means per net and mode, hyb - none."""
    names = {"unet": "own U-Net", "monai-dynunet": "MONAI DynUNet"}
    lines = [
        "| net | mode | 3D Dice | HD95 (mm) | NSD (1 mm) | training s / run | validation s / run |",
        "|---|---|---|---|---|---|---|",
    ]
    for net, entry in summary.items():
        lines += [_means_row((names.get(net, net), mode), entry[mode]) for mode in ("none", "hyb")]
    lines += [
        "",
        "| net | metric | hyb - none per seed (0, 1, 2) | mean | hyb better in "
        "| p (t-test over seeds) |",
        "|---|---|---|---|---|---|",
    ]
    for net, entry in summary.items():
        lines += _comparison_rows((names.get(net, net),), entry["hyb_minus_none"])
    return "\n".join(lines)


def render_isbi_patches(summary: Mapping[str, Any]) -> str:
    """The ISBI native-patch benchmark's tables (its JSON's ``summary``): means per path and
    mode, patch - resize per mode and hyb - none per path."""
    lines = [
        "| path | mode | Dice | HD95 (px) | NSD (1 px) | training s / run | validation s / run |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, means in summary["means"].items():
        lines.append(_means_row(key.split("/"), means))
    lines += [
        "",
        "| comparison | metric | per seed (0, 1, 2) | mean | better in | p (t-test over seeds) |",
        "|---|---|---|---|---|---|",
    ]
    for mode, compared in summary["patch_minus_resize"].items():
        lines += _comparison_rows((f"patch - resize, {mode}",), compared)
    for where, compared in summary["hyb_minus_none"].items():
        lines += _comparison_rows((f"hyb - none, {where}",), compared)
    return "\n".join(lines)
