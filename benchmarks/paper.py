"""The μ-Net paper's published figures (Yuan et al., 2023, Tables 2-5), shown beside ours by the
cost and convergence reports."""

from __future__ import annotations

__all__ = [
    "DATASETS",
    "PAPER",
    "PAPER_EFFICIENCY",
    "PAPER_NAMES",
    "PAPER_TEST_DICE",
    "paper_ratios",
]

DATASETS = ("BraTS", "Cardiac", "Spleen", "Liver")
#: The paper's Avg.T (h), Epoch and Tot.T (h) per dataset (Table 5; ``up`` and ``down``:
#: Table 3's M-Net and MLDS-Net, the published models the paper's Up / Down variants follow).
PAPER_EFFICIENCY: dict[str, dict[str, tuple[float, int, float]]] = {
    "none": {
        "BraTS": (0.1960, 8, 1.5679),
        "Cardiac": (0.0277, 19, 0.5269),
        "Spleen": (0.0499, 59, 2.9462),
        "Liver": (0.1619, 60, 9.9216),
    },
    "deep": {
        "BraTS": (0.3778, 14, 5.2888),
        "Cardiac": (0.0555, 39, 2.1649),
        "Spleen": (0.1076, 55, 5.9202),
        "Liver": (0.6589, 31, 21.9312),
    },
    "auto": {
        "BraTS": (0.6386, 12, 7.6635),
        "Cardiac": (0.0795, 23, 1.8286),
        "Spleen": (0.1400, 45, 6.2980),
        "Liver": (0.8831, 15, 13.0363),
    },
    "seg": {
        "BraTS": (0.4769, 11, 5.2463),
        "Cardiac": (0.0748, 23, 1.7211),
        "Spleen": (0.1295, 39, 5.0524),
        "Liver": (0.4962, 17, 8.4356),
    },
    "rec": {
        "BraTS": (0.5696, 8, 4.5569),
        "Cardiac": (0.0761, 19, 1.4450),
        "Spleen": (0.1253, 39, 4.8880),
        "Liver": (0.5222, 14, 7.3112),
    },
    "hyb": {
        "BraTS": (0.6470, 7, 4.5289),
        "Cardiac": (0.0841, 13, 1.0934),
        "Spleen": (0.1459, 21, 3.0639),
        "Liver": (0.6145, 10, 6.1450),
    },
    "up": {
        "BraTS": (0.3073, 30, 9.2179),
        "Cardiac": (0.0405, 50, 2.0266),
        "Spleen": (0.0848, 83, 7.0373),
        "Liver": (0.2538, 51, 12.9438),
    },
    "down": {
        "BraTS": (0.2982, 49, 14.6107),
        "Cardiac": (0.0411, 76, 3.1248),
        "Spleen": (0.0831, 115, 9.5576),
        "Liver": (0.2497, 56, 13.9832),
    },
}
#: The paper's test Dice (Table 4; ``up`` / ``down``: Table 2's M-Net and MLDS-Net).
PAPER_TEST_DICE: dict[str, dict[str, float]] = {
    "none": {"BraTS": 0.7145, "Cardiac": 0.9057, "Spleen": 0.8940, "Liver": 0.8530},
    "deep": {"BraTS": 0.7245, "Cardiac": 0.9252, "Spleen": 0.9246, "Liver": 0.8539},
    "auto": {"BraTS": 0.7268, "Cardiac": 0.9307, "Spleen": 0.9291, "Liver": 0.8543},
    "seg": {"BraTS": 0.7319, "Cardiac": 0.9308, "Spleen": 0.9681, "Liver": 0.8546},
    "rec": {"BraTS": 0.7340, "Cardiac": 0.9332, "Spleen": 0.9744, "Liver": 0.8623},
    "hyb": {"BraTS": 0.7384, "Cardiac": 0.9360, "Spleen": 0.9768, "Liver": 0.8926},
    "up": {"BraTS": 0.7163, "Cardiac": 0.9135, "Spleen": 0.9243, "Liver": 0.8310},
    "down": {"BraTS": 0.7232, "Cardiac": 0.9163, "Spleen": 0.9044, "Liver": 0.8385},
}
PAPER_NAMES = {
    "none": "U-Net",
    "deep": "U-Net-Deep",
    "auto": "U-Net-Auto",
    "seg": "μ-Net-Seg",
    "rec": "μ-Net-Rec",
    "hyb": "μ-Net-Hyb",
    "up": "M-Net†",
    "down": "MLDS-Net†",
}
PAPER = "Yuan et al., μ-Net (2023)"


def paper_ratios(mode: str, index: int) -> str:
    """The paper's value of ``mode`` over U-Net's (index 0: Avg.T, 1: Epoch, 2: Tot.T)."""
    if mode not in PAPER_EFFICIENCY:
        return "-"
    values = [
        PAPER_EFFICIENCY[mode][d][index] / PAPER_EFFICIENCY["none"][d][index] for d in DATASETS
    ]
    return " / ".join(f"{v:.2f}" for v in values)
