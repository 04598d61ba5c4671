"""Convergence benchmark: what it trains (the variants, the settings, the presets) and where
the data is."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from dsplug.options import Mode

__all__ = [
    "DATASETS",
    "EVAL_BATCH",
    "FOLDERS",
    "FULL",
    "LR",
    "PAPER_ORDER",
    "QUICK",
    "SCHEMA_VERSION",
    "THIN",
    "TITLES",
    "VARIANTS",
    "ConvergenceSettings",
    "Variant",
    "default_source",
    "setting_name",
]

LR = 3e-4  # the paper's Adam learning rate (§4.3); the Trainer's default schedule
#: The paper's accuracy ordering of its ablation (Table 4, ascending).
PAPER_ORDER = ("none", "deep", "auto", "seg", "rec", "hyb")
SCHEMA_VERSION = 1
EVAL_BATCH = 32  # validation and test batch size


@dataclass(frozen=True)
class Variant:
    """One trained configuration: a mode with its loss recipe, weights and schedule
    (``schedule=None``: the recipe's default)."""

    name: str
    mode: str
    weights: str | tuple[tuple[str, float], ...] = "equal"  # a preset, or (field, value) pairs
    schedule: str | None = None
    balance: str = "auto"
    aux_fraction: float = 1.0
    aux_scale: float = 1.0
    aux_every: int = 1


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (  # every strategy of the paper's tables, then the paper-literal sums
        *(Variant(m.value, m.value) for m in Mode if m is not Mode.VAE),
        Variant("hyb-paper", "hyb", balance="paper"),
        Variant("hyb-paper-brats", "hyb", weights="brats", balance="paper"),
        # the cheaper hyb: its auxiliary branches on part of each batch (issue 19)
        Variant("hyb-aux50", "hyb", aux_fraction=0.5),
        Variant("hyb-aux25", "hyb", aux_fraction=0.25),
        # the cheaper hyb of issue 28: its branches on X and G pooled 2x, or every 2nd step
        Variant("hyb-scale50", "hyb", aux_scale=0.5),
        Variant("hyb-every2", "hyb", aux_every=2),
        Variant("hyb-scale50-every2", "hyb", aux_scale=0.5, aux_every=2),
        # the schedule's ablation (issue 19)
        Variant("hyb-constant", "hyb", schedule="constant"),
        Variant("hyb-linear", "hyb", schedule="linear"),
        # the recipe's ablation, one term family off (issue 19; "rec" is hyb without the G pass)
        Variant("hyb-no-rec-x", "hyb", weights=(("b", 0.0),)),
        Variant("hyb-no-rec-g", "hyb", weights=(("a", 0.0),)),
        Variant("hyb-no-pseudo", "hyb", weights=(("gamma", 0.0), ("xi", 0.0))),
        Variant("hyb-no-features", "hyb", weights=(("lam", 0.0), ("eta", 0.0))),
    )
}
#: Variants of hyb's recipe (issue 19), measured on demand (--variants), not in the presets.
ABLATIONS = (
    "hyb-aux50",
    "hyb-aux25",
    "hyb-scale50",
    "hyb-every2",
    "hyb-scale50-every2",
    "hyb-constant",
    "hyb-linear",
    "hyb-no-rec-x",
    "hyb-no-rec-g",
    "hyb-no-pseudo",
    "hyb-no-features",
)
#: The data sets the benchmark knows, in ``../shared/data``.
DATASETS = ("hippocampus", "isbi2012")


@dataclass(frozen=True)
class ConvergenceSettings:
    """What a convergence benchmark trains and on which cases.

    Attributes:
        variants: names from :data:`VARIANTS`; ``none`` first (the reference).
        seeds: training seeds (weights and data order); every variant runs every seed.
        train_cases: cases sampled (seeded) from the training split.
        val_cases: cases sampled from the validation split (best epoch, early stopping).
        test_cases: cases sampled from the test split (reported only).
        epochs: the most epochs a run may train (the paper's early stopping ends most runs
            before: after epoch e when e >= max(min_epochs, 2 x best epoch)).
        min_epochs: no early stop before this epoch.
        batch: slices per optimiser step.
        base: channels of the U-Net's level 0.
        depth: U-Net levels (the padded size must be a multiple of 2^(depth-1)).
        size: the padded slice size (H, W).
        split_seed: seed of the 70/10/20 case split and of the case samples.
        drop_empty: leave training slices without foreground out (validation and test keep all).
        step_repeats: timed rounds of the interleaved step-time measurement.
        step_warmup: untimed rounds before them.
        threads: torch intra-op threads per run; 0: torch's default with one job, else the
            CPU count divided by ``jobs``.
        jobs: runs trained at the same time, each in its own process (1: in this process).
        dataset: ``hippocampus`` (Task04, multiclass) or ``isbi2012`` (EM membranes, thin
            structures: membrane is the foreground, images resized to ``size``, contiguous
            15 / 3 / 12 slices; ``*_cases`` are not used).
    """

    variants: tuple[str, ...]
    seeds: tuple[int, ...]
    train_cases: int
    val_cases: int
    test_cases: int
    epochs: int
    batch: int
    base: int
    depth: int
    size: tuple[int, int] = (48, 64)
    split_seed: int = 0
    drop_empty: bool = True
    step_repeats: int = 10
    step_warmup: int = 2
    threads: int = 0
    jobs: int = 1
    min_epochs: int = 1
    dataset: str = "hippocampus"

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            raise ValueError(
                f"unknown variant(s) {unknown or list(self.variants)}; expected names from "
                f"{list(VARIANTS)}."
            )
        if self.variants[0] != "none" or len(set(self.variants)) != len(self.variants):
            raise ValueError(
                f"variants must start with 'none' (the reference) and not repeat, got "
                f"{list(self.variants)}."
            )
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {list(self.seeds)}.")
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; expected one of {DATASETS}.")
        names = ("train_cases", "val_cases", "test_cases", "epochs", "min_epochs", "batch")
        for name in (*names, "base", "jobs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}.")
        if self.test_cases < 2:
            raise ValueError(f"test_cases must be >= 2 for paired tests, got {self.test_cases}.")
        divisor = 2 ** (self.depth - 1)
        if self.depth < 2 or any(s % divisor for s in self.size):
            raise ValueError(
                f"size {tuple(self.size)} with depth {self.depth}: the depth must be >= 2 and "
                f"each side a multiple of 2^(depth-1) = {divisor}."
            )

    def as_dict(self) -> dict[str, Any]:
        """Plain-typed fields (JSON)."""
        d = asdict(self)
        d.update(variants=list(self.variants), seeds=list(self.seeds), size=list(self.size))
        return d

    def run_key(self) -> dict[str, Any]:
        """The fields that change what a single run computes (checked when a run is reused)."""
        d = self.as_dict()
        for name in ("variants", "seeds", "step_repeats", "step_warmup", "threads", "jobs"):
            d.pop(name)
        return d


FULL = ConvergenceSettings(
    variants=("none", "deep", "up", "down", "seg", "rec", "hyb", "auto", "hyb-paper"),
    seeds=(0, 1, 2),
    train_cases=6,
    val_cases=4,
    test_cases=30,
    epochs=30,  # generous: the paper's early stopping ends most runs before
    min_epochs=6,
    batch=8,
    base=16,
    depth=4,
    threads=1,
    jobs=2,  # two single-threaded runs at a time: the best use of 2 cores for a net this small
)
#: The second data set: thin structures (ISBI 2012 membranes), fewer variants.
THIN = replace(
    FULL,
    variants=("none", "deep", "hyb", "hyb-paper"),
    dataset="isbi2012",
    train_cases=15,  # every slice of the contiguous training block
    size=(128, 128),
    batch=4,
    epochs=40,
    min_epochs=8,
    jobs=1,
)
QUICK = ConvergenceSettings(
    variants=tuple(v for v in VARIANTS if v not in ABLATIONS),
    seeds=(0,),
    train_cases=6,
    val_cases=3,
    test_cases=4,
    epochs=2,
    min_epochs=1,
    batch=8,
    base=8,
    depth=3,
    step_repeats=3,
    step_warmup=1,
    threads=1,  # a smoke run: one thread is robust to a busy machine
)


def setting_name(settings: ConvergenceSettings) -> str:
    """``"full"`` or ``"quick"`` when ``settings`` train what that preset trains, else
    ``"custom"`` (threads, jobs and the step-time repeats do not count)."""

    def trained(s: ConvergenceSettings) -> dict[str, Any]:
        return {**s.run_key(), "variants": list(s.variants), "seeds": list(s.seeds)}

    for name, preset in (("full", FULL), ("thin", THIN), ("quick", QUICK)):
        if trained(settings) == trained(preset):
            return name
    return "custom"


#: Each data set's folder in the data root, and its name in the report.
FOLDERS = {"hippocampus": "Task04_Hippocampus", "isbi2012": "isbi2012_em_membrane/train"}
TITLES = {"hippocampus": "Task04_Hippocampus", "isbi2012": "ISBI 2012 EM membranes"}


def default_source(dataset: str = "hippocampus") -> Path:
    """``$DSPLUG_DATA/<folder>``, else ``<repo>/../shared/data/<folder>`` (Task04_Hippocampus
    or isbi2012_em_membrane/train)."""
    env = os.environ.get("DSPLUG_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    return (root / FOLDERS[dataset]).resolve()
