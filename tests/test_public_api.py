"""The public API stays where it is: each package's ``__all__`` as it was when this test was
written (issue 30, from main at 2f2dfcc), name by name, so a move that drops a public name fails.

A package may add names (the sets here are a floor, not the whole list); it may not lose one, or
export a name it does not have. Every package of dsplug declares ``__all__``. Modules split
along their jobs keep re-exporting what moved (``SPLIT``).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from tests.test_layers import SOURCES, modules


def _names(text: str) -> set[str]:
    return set(text.split())


PUBLIC: dict[str, set[str]] = {
    "dsplug": _names(
        "DSOutput DeepSupervised LossBreakdown LossWeights MODES Mode Trainer UNet UNetPlusPlus "
    ),
    "dsplug.adapters": _names(
        "ALL_MODES DecoderStage ModelAdapter UnsupportedModelError adapter_for register_adapter "
        "registered_families "
    ),
    "dsplug.data": _names(
        "Augment BRATS_FILES BRATS_REGIONS BraTSDataset CaseInfo DataError Header "
        "ImageFolderDataset KINDS LabelRule MSDDataset NiftiPairsDataset PatchAugment "
        "PatchDataset Preprocessing SliceCache SliceDataset SlicedVolume SyntheticDataset "
        "build_datasets check_splits contiguous_splits dataset_from_config default_cache_dir "
        "detect_kind load_splits make_item make_splits pair_files prediction_input "
        "slices_to_volume volume_to_slices "
    ),
    "dsplug.export": _names("EXPORT_FORMATS export_checkpoint export_model load_exported"),
    "dsplug.lightning": _names("DeepSupervisedModule"),
    "dsplug.losses": _names(
        "AutoLoss DeepLoss DeepSupervisionLoss DownLoss HybLoss LOSSES LossBreakdown "
        "LossWeights NoneLoss PRESETS RecLoss SegLoss Term UpLoss VAELoss bce_dice "
        "cross_entropy epoch_progress feature_mse schedule_factor soft_dice "
    ),
    "dsplug.metrics": _names(
        "CaseMetrics METRIC_NAMES SURFACE_METRIC_NAMES confusion_counts foreground_masks hd95 "
        "paired_tests predict scores surface_dice surface_scores "
    ),
    "dsplug.nets": _names("ConvBlock ConvNormAct Ops UNet UNetEncoder UNetPlusPlus resolve_ops"),
    "dsplug.nets.unet": _names("UNet UNetDecoder UpBlock"),
    "dsplug.nets.unetpp": _names("NestedBlock UNetPlusPlus UNetPlusPlusDecoder"),
    "dsplug.semi": _names(
        "CONFIDENCE EMATeacher RECIPES check_recipe flip_noise mean_teacher_loss pseudo_target "
        "sigmoid_rampup "
    ),
    "dsplug.tied": _names("OwnTiedDecoder ReconstructionOutput VariationalBottleneck"),
    "dsplug.train": _names(
        "CheckpointError EarlyStopping MODEL_ARCHS NonFiniteLossError TrainConfig Trainer "
        "TrainingInterrupted build_model efficiency load_checkpoint model_config model_divisor "
        "paper_optimizer paper_scheduler save_checkpoint seed_everything "
    ),
    "dsplug.train.commands": _names(
        "COMPARE_FILES DEFAULT_ENCODER EVALUATE_FILES EXPECTED_FAILURES OWN_NET_DEFAULTS "
        "PredictFailures RUN_FILES check_applicable compare_command demo_command "
        "evaluate_command export_command model_settings parse_options predict_command "
        "resume_hint train_command "
    ),
}

#: Modules split in issue 30: what moved out stays importable from its first home.
SPLIT = {
    "dsplug.losses.base": _names(
        "CONFIDENCE DeepSupervisionLoss LossBreakdown SegLossFn Term TermFn _levels "
        "deep_ae_term deep_rec_term deep_term image_term kl_term mask_term pseudo_label "
        "rei_term rem_term seg_loss_vs_target seg_loss_vs_teacher seg_rec_term seg_term"
    ),
    "dsplug.wrapper": _names("DeepSupervised SegLoss"),
    "dsplug.data.base": _names(
        "CaseInfo CaseSpec RawCase SliceDataset fingerprint_changes make_item"
    ),
    "dsplug.train.trainer": _names("Trainer _train_record"),
    "dsplug.tied._graph_steps": _names(
        "Arg CatT ConvT FanOut LinearT MatmulConstT NormT PadT PixelShuffleT PointwiseT "
        "ReplayT ReshapeT ResizeT RollT RunState ScaleT SelectT SelfGateT SliceT SplitT Step "
        "TokenMapT TransposeT UnreduceT"
    ),
}

OPTIONAL = {"dsplug.lightning": "pytorch_lightning"}


def _import(name: str) -> ModuleType:
    extra = OPTIONAL.get(name)
    if extra and importlib.util.find_spec(extra) is None:
        pytest.skip(f"{name} needs {extra}")
    return importlib.import_module(name)


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_names_are_still_exported(name: str) -> None:
    module = _import(name)
    exported = set(getattr(module, "__all__", ()))
    dropped = sorted(PUBLIC[name] - exported)
    assert not dropped, f"{name}.__all__ lost {dropped}; keep them importable (re-export)"
    missing = sorted(n for n in exported if not hasattr(module, n))
    assert not missing, f"{name}.__all__ names what it does not have: {missing}"


@pytest.mark.parametrize("name", sorted(SPLIT))
def test_names_of_split_modules_stay_importable(name: str) -> None:
    module = importlib.import_module(name)
    missing = sorted(n for n in SPLIT[name] if not hasattr(module, n))
    assert not missing, f"{name} no longer has {missing}; re-export them from it"


def _declares_all(path: Path) -> bool:
    for node in ast.parse(path.read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return True
    return False


def test_every_package_declares_all() -> None:
    packages = {m: p for m, p in modules(SOURCES).items() if p.name == "__init__.py"}
    assert {"dsplug", "dsplug.adapters", "dsplug.train.commands"} <= set(packages)
    lacking = sorted(m for m, p in packages.items() if not _declares_all(p))
    assert not lacking, f"packages without __all__: {lacking}"
