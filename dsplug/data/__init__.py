"""dsplug.data: segmentation datasets as 2D slices (NIfTI, MSD, BraTS, image folders) and
synthetic phantoms, with the paper's preprocessing, case-level splits and a disk cache.

Every dataset yields ``{"image", "mask", "case", "slice", "size"}`` dicts (see
:func:`make_item`) and exposes ``label_mode``, ``classes``, ``in_channels`` and ``config()``.

Example:
    >>> from dsplug.data import build_datasets
    >>> sets = build_datasets("synthetic", options={"num_cases": 20, "size": 32})
    >>> item = sets["train"][0]
    >>> item["image"].shape, item["mask"].shape, sets["train"].label_mode
    (torch.Size([1, 32, 32]), torch.Size([1, 32, 32]), 'binary')
"""

from .augment import PatchAugment as PatchAugment
from .base import SliceDataset as SliceDataset
from .brats import BRATS_FILES as BRATS_FILES
from .brats import BRATS_REGIONS as BRATS_REGIONS
from .brats import BraTSDataset as BraTSDataset
from .cache import SliceCache as SliceCache
from .cache import default_cache_dir as default_cache_dir
from .errors import DataError as DataError
from .factory import KINDS as KINDS
from .factory import build_datasets as build_datasets
from .factory import dataset_from_config as dataset_from_config
from .factory import detect_kind as detect_kind
from .factory import prediction_input as prediction_input
from .field_augment import FieldAugment as FieldAugment
from .folders import ImageFolderDataset as ImageFolderDataset
from .io import Header as Header
from .label_rules import LabelRule as LabelRule
from .msd import MSDDataset as MSDDataset
from .nifti import NiftiPairsDataset as NiftiPairsDataset
from .pairing import pair_files as pair_files
from .patches import PatchDataset as PatchDataset
from .preprocess import Augment as Augment
from .preprocess import Preprocessing as Preprocessing
from .preprocess import SlicedVolume as SlicedVolume
from .preprocess import slices_to_volume as slices_to_volume
from .preprocess import volume_to_slices as volume_to_slices
from .records import CaseInfo as CaseInfo
from .records import make_item as make_item
from .splits import check_splits as check_splits
from .splits import contiguous_splits as contiguous_splits
from .splits import load_splits as load_splits
from .splits import make_splits as make_splits
from .synthetic import SyntheticDataset as SyntheticDataset

__all__ = [
    "BRATS_FILES",
    "BRATS_REGIONS",
    "KINDS",
    "Augment",
    "BraTSDataset",
    "CaseInfo",
    "DataError",
    "FieldAugment",
    "Header",
    "ImageFolderDataset",
    "LabelRule",
    "MSDDataset",
    "NiftiPairsDataset",
    "PatchAugment",
    "PatchDataset",
    "Preprocessing",
    "SliceCache",
    "SliceDataset",
    "SlicedVolume",
    "SyntheticDataset",
    "build_datasets",
    "check_splits",
    "contiguous_splits",
    "dataset_from_config",
    "default_cache_dir",
    "detect_kind",
    "load_splits",
    "make_item",
    "make_splits",
    "pair_files",
    "prediction_input",
    "slices_to_volume",
    "volume_to_slices",
]
