"""The measurements of the guidance table: one :class:`Row` per (regime, mode), naming the
result JSON it is read from and its step-time entry. ``guidance.py`` reads and renders them."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ROWS", "SEMI_PAIRED_ARMS", "SEMI_STEPS", "SEMI_WHOLE_STEPS", "Row"]


@dataclass(frozen=True)
class Row:
    """One measurement: a regime, the JSON it comes from, the mode and its step-time entry."""

    regime: str
    file: str
    variant: str
    step: tuple[str, str] | None  # (step-time JSON, its variant), or None for wall-clock


#: The semi-supervised arms in the table: (its mode's labelled row in ``step_time.json``, its
#: unlabelled row in ``step_time_semi.json``, or None for a supervised arm).
SEMI_STEPS: dict[str, tuple[str, str | None]] = {
    "up": ("up", None),
    "up-cons-01": ("up", "up+consistency"),
    "up-cons": ("up", "up+consistency"),
    "up-mt": ("up", "up+mean-teacher"),
    "mean-teacher": ("none", "mean-teacher"),
    "hyb-rei": ("hyb", "hyb+rei"),
    "up-cons-0": ("up", "up+consistency"),
    "up-cons-01-ks": ("up", "up+consistency"),
    "up-mt-ks": ("up", "up+mean-teacher"),
}
#: The arms of the paired semi-supervised runs in the table (unlabelled batches drawn apart).
SEMI_PAIRED_ARMS = ("up", "up-cons-01", "up-mt", "up-cons-0", "up-cons-01-ks", "up-mt-ks")
#: The arms whose whole step (labelled and unlabelled batch, one backward) is timed as one in
#: ``step_time_semi.json``: that row is used instead of the sum above.
SEMI_WHOLE_STEPS: dict[str, str] = {
    "up-cons-01": "step: up + consistency",
    "up-cons": "step: up + consistency",
    "up-cons-01-ks": "step: up + consistency",
    "up-mt": "step: up + mean-teacher",
    "up-mt-ks": "step: up + mean-teacher",
    "up-cons-0": "step: up + consistency",
    "mean-teacher": "step: none + mean-teacher",
}

ROWS: tuple[Row, ...] = (
    Row(
        "scarce labels, own U-Net: Task04, 6 training cases",
        "convergence_hippocampus_aux.json",
        "hyb",
        ("step_time_aux.json", "hyb"),
    ),
    Row(
        "same", "convergence_hippocampus_aux.json", "hyb-aux50", ("step_time_aux.json", "hyb-aux50")
    ),
    Row(
        "same", "convergence_hippocampus_aux.json", "hyb-aux25", ("step_time_aux.json", "hyb-aux25")
    ),
    Row("same", "convergence_hippocampus_recipe.json", "rec", ("step_time.json", "rec")),
    Row(
        "same, a cheaper hyb: aux_scale=0.5 and aux_every=2 (its own run beside none and hyb)",
        "convergence_hippocampus_cheap.json",
        "hyb-scale50-every2",
        ("step_time_designs.json", "hyb@aux_scale=0.5,aux_every=2"),
    ),
    Row(
        "same run",
        "convergence_hippocampus_cheap.json",
        "hyb-every2",
        ("step_time_designs.json", "hyb@aux_every=2"),
    ),
    Row(
        "same run",
        "convergence_hippocampus_cheap.json",
        "hyb-scale50",
        ("step_time_designs.json", "hyb@aux_scale=0.5"),
    ),
    Row(
        "same run",
        "convergence_hippocampus_cheap.json",
        "hyb",
        ("step_time_designs.json", "hyb"),
    ),
    Row("same", "convergence_hippocampus.json", "up", ("step_time.json", "up")),
    Row("same", "convergence_hippocampus.json", "down", ("step_time.json", "down")),
    Row("same", "convergence_hippocampus.json", "deep", ("step_time.json", "deep")),
    Row(
        "same, up to 80 epochs",
        "convergence_hippocampus_long.json",
        "hyb",
        ("step_time.json", "hyb"),
    ),
    Row(
        "thin structures: ISBI 2012, 15 training slices",
        "convergence_isbi2012.json",
        "hyb",
        ("step_time.json", "hyb"),
    ),
    Row("same", "convergence_isbi2012.json", "deep", ("step_time.json", "deep")),
    Row(
        "same, a cheaper hyb: aux_every=2 (its own run beside none and hyb, up to 100 epochs)",
        "convergence_isbi2012_cheap_100epochs.json",
        "hyb-every2",
        ("step_time_designs.json", "hyb@aux_every=2"),
    ),
    Row(
        "same run",
        "convergence_isbi2012_cheap_100epochs.json",
        "hyb",
        ("step_time_designs.json", "hyb"),
    ),
    Row("same, `rec` beside them", "isbi2012_rec.json@15", "rec", ("step_time.json", "rec")),
    *(
        Row(regime if mode == "hyb" else "same", f"label_efficiency_{data}.json@{n}", mode, step)
        for data, what, sizes in (
            ("hippocampus", "Task04, {} training cases", (2, 4, 8)),
            ("isbi2012", "ISBI 2012, {} training slices", (4, 8, 15)),
        )
        for n in sizes
        for regime in [f"label efficiency, own U-Net: {what.format(n)} (equal steps)"]
        for mode, step in (("hyb", ("step_time.json", "hyb")), ("up", ("step_time.json", "up")))
    ),
    *(
        Row(
            f"plentiful labels at each task family's default recipe, own U-Net: {what}",
            f"field.json&{family}",
            "hyb-every2",
            ("step_time_designs.json", "hyb@aux_every=2"),
        )
        for family, what in (
            (
                "isbi-patches",
                "ISBI 2012 at native resolution, 128 px patches, 15 slices, 2,000 steps",
            ),
            ("task04-3d:paper", "Task04 3D, 32^3 patches, 150 training cases, 2,500 steps"),
        )
    ),
    Row(
        "your own loop: smp Unet/resnet18 from scratch, Task04 with empty slices kept, "
        "8 training cases, 6 epochs",
        "own_loop_hippocampus.json",
        "hyb",
        None,
    ),
    Row("same, 12 epochs", "own_loop_hippocampus_12epochs.json", "hyb", None),
    Row("same, 20 epochs", "own_loop_hippocampus_20epochs.json", "hyb", None),
    Row(
        "plentiful labels, an easy task: `dsplug demo`'s synthetic phantoms, 42 training "
        "cases, 12 epochs",
        "demo_seeds.json#12",
        "hyb-every2",
        ("step_time_designs.json", "hyb@aux_every=2"),
    ),
    Row("same, 30 epochs", "demo_seeds.json#30", "hyb", ("step_time.json", "hyb")),
    *(
        Row(regime if i == 0 else "same", f"{file}%4", arm, None)
        for file, what in (
            ("semi_hippocampus_paired.json", "Task04 2D, 4 labelled cases + the unlabelled rest"),
            ("semi_isbi2012_paired.json", "ISBI 2012, 4 labelled slices + the other 11"),
        )
        for regime in [
            f"few masks and unlabelled images beside them: {what} (short runs, the same labelled "
            "batches in every arm)"
        ]
        for i, arm in enumerate(SEMI_PAIRED_ARMS)
    ),
)
