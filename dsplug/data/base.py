"""The slice dataset every file layout builds on: load and check each case once (through the
disk cache), index its slices, and serve items in the library-wide format."""

from __future__ import annotations

import copy
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from .cache import CACHE_VERSION, CaseArrays, SliceCache, default_cache_dir
from .errors import DataError
from .fingerprint import _file_print, fingerprint_changes
from .io import Header
from .label_rules import LabelRule
from .preprocess import Augment, Preprocessing, prepare_image, prepare_mask, to_slices
from .records import CaseInfo, CaseSpec, Item, RawCase, make_item
from .splits import SPLITS, natural_key

# CaseInfo, CaseSpec, RawCase, make_item (now in .records) and fingerprint_changes (now in
# .fingerprint) stay importable from here, where they were first defined.
__all__ = [
    "CaseInfo",
    "CaseSpec",
    "RawCase",
    "SliceDataset",
    "fingerprint_changes",
    "make_item",
]


def _threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


class SliceDataset(Dataset):
    """Base of the file layouts: 2D slices of the selected cases, in the item format of
    :func:`make_item`. Subclasses find the cases and read one case (:meth:`_read`).

    Attributes:
        label_mode: ``"binary"``, ``"multilabel"`` or ``"multiclass"``.
        classes: channels of the model's logits.
        in_channels: image channels.
        preprocessing: the preprocessing, its ``size`` resolved.
        cases: the selected case ids (natural order).
        split: ``"train"``, ``"val"``, ``"test"`` or None (drop_empty and augmentation act only
            in ``"train"``).
        dropped: slices left out by rule: ``{"out_of_range": n, "empty": m}``.
    """

    kind: ClassVar[str] = ""
    spatial_dims: ClassVar[int] = 2
    _header_reader: ClassVar[Callable[[Path], Header]]

    # ------------------------------------------------------------------ construction
    def _setup(
        self,
        specs: Sequence[CaseSpec],
        *,
        source: str | Path,
        labels: LabelRule,
        preprocessing: Preprocessing | None,
        augment: Augment | None,
        cases: Sequence[str] | None,
        split: str | None,
        cache_dir: str | Path | None,
        cache: bool,
    ) -> None:
        if not isinstance(labels, LabelRule):
            raise TypeError(f"labels must be a LabelRule, got {type(labels).__name__}.")
        prep = Preprocessing() if preprocessing is None else preprocessing
        if not isinstance(prep, Preprocessing):
            raise TypeError(f"preprocessing must be a Preprocessing, got {type(prep).__name__}.")
        if augment is not None and not isinstance(augment, Augment):
            raise TypeError(f"augment must be an Augment or None, got {type(augment).__name__}.")
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)} or None, got {split!r}.")
        if augment is not None and split != "train":
            raise ValueError(
                f"augmentation applies to the training split only; got augment={augment} with "
                f"split={split!r}. Pass split='train' or augment=None."
            )
        if not specs:
            raise DataError(source, "no cases found (empty dataset)")
        ids = [s.case for s in specs]
        if len(set(ids)) != len(ids):
            dupes = sorted((c for c, k in Counter(ids).items() if k > 1), key=natural_key)
            raise DataError(source, f"case ids are not unique: {dupes[:10]}")
        self.labels = labels
        self.label_mode = labels.label_mode
        self.classes = labels.classes
        self.augment = augment
        self.split = split
        self._source = str(source)
        self._all_specs = {s.case: s for s in sorted(specs, key=lambda s: natural_key(s.case))}
        self._cache = SliceCache(cache_dir or default_cache_dir()) if cache else None
        self._store: dict[str, CaseArrays] = {}
        self._restricted = cases is not None
        self.preprocessing = prep
        self._find_cached()
        self.preprocessing = self._resolve_size(prep)
        self._select(cases)

    def _find_cached(self) -> None:
        """Key every case of the source and pick up the cached ones (reads JSON only)."""
        self._keys: dict[str, str] = {}
        if self._cache is None:
            return
        params = self._content_params()
        for case, spec in self._all_specs.items():
            key = self._cache.key(spec.files, params)
            self._keys[case] = key
            hit = self._cache.load(key)
            if hit is not None:
                self._store[case] = hit

    def _resolve_size(self, prep: Preprocessing) -> Preprocessing:
        """With ``fit="pad"`` and no size: the largest slice of all the source's cases (cached
        ones from their entry, the others from their header) rounded up to ``multiple``."""
        if prep.fit != "pad" or prep.size is not None:
            return prep
        shapes = [tuple(a.meta["slice_shape"]) for a in self._store.values()]
        todo = [spec for case, spec in self._all_specs.items() if case not in self._store]
        with ThreadPoolExecutor(_threads()) as pool:
            shapes.extend(pool.map(self._slice_shape, todo))
        return prep.with_size(prep.auto_size(shapes))

    def _header(self, path: Path) -> Header:
        reader = type(self)._header_reader
        return self._cache.header(path, reader) if self._cache else reader(path)

    def _slice_shape(self, spec: CaseSpec) -> tuple[int, int]:
        shape = self._header(spec.label).shape
        if len(shape) == 2:
            return (shape[0], shape[1])
        axis = self.preprocessing.axis % 3
        kept = [n for i, n in enumerate(shape[:3]) if i != axis]
        return (kept[0], kept[1])

    def _select(self, cases: Sequence[str] | None) -> None:
        if cases is None:
            selected = list(self._all_specs)
        else:
            if isinstance(cases, str):
                raise TypeError(f"cases must be a sequence of case ids, got the string {cases!r}.")
            selected = [str(c) for c in cases]
            unknown = [c for c in selected if c not in self._all_specs]
            if unknown:
                raise ValueError(
                    f"unknown case ids {unknown[:10]}; the dataset at {self._source} has "
                    f"{len(self._all_specs)} cases, e.g. {list(self._all_specs)[:5]}."
                )
            if not selected:
                raise ValueError("cases is empty: select at least one case.")
            if len(set(selected)) != len(selected):
                raise ValueError("cases lists a case twice.")
            selected.sort(key=natural_key)
        self.cases = selected
        self._selected = set(selected)
        self._load(selected)
        self._check_channels(selected)
        self._build_index()

    def _load(self, cases: Sequence[str]) -> None:
        """Read and preprocess the cases not in the cache (threads: nibabel's gzip and numpy
        release the GIL); errors surface in case order."""
        todo = [self._all_specs[c] for c in cases if c not in self._store]
        if not todo:
            return
        with ThreadPoolExecutor(_threads()) as pool:
            for spec, arrays in zip(todo, pool.map(self._prepare, todo)):
                self._store[spec.case] = arrays

    def _content_params(self) -> dict[str, Any]:
        """Every parameter that changes the stored arrays (the cache key, with the files)."""
        prep = self.preprocessing
        return {
            "version": CACHE_VERSION,
            "kind": self.kind,
            "axis": prep.axis % 3,
            "zscore": prep.zscore,
            "fit": prep.fit,
            "resize": list(prep.size) if prep.fit == "resize" and prep.size else None,
            "labels": self.labels.config(),
            "layout": self._layout_params(),
        }

    def _prepare(self, spec: CaseSpec) -> CaseArrays:
        raw = self._read(spec)
        # slice the raw label first: one small integer array to transpose, not K masks
        masks = self.labels.apply(to_slices(raw.label, self.preprocessing.axis, 0), spec.label)
        if self.label_mode == "multilabel":  # (K, S, h, w) -> (S, K, h, w)
            masks = np.ascontiguousarray(np.moveaxis(masks, 0, 1))
        masks = prepare_mask(masks, self.preprocessing)
        try:
            image = prepare_image(raw.image, self.preprocessing, raw.roi)
        except ValueError as exc:
            raise DataError(spec.images[0], f"cannot normalise the image: {exc}") from exc
        fg = masks.reshape(masks.shape[0], -1).any(axis=1)
        header = raw.header
        meta = {
            "case": spec.case,
            "image_files": [str(p) for p in spec.images],
            "label_file": str(spec.label),
            "shape": list(raw.label.shape),
            "spacing": list(header.spacing),
            "affine": [list(r) for r in header.affine],
            "in_channels": int(image.shape[1]),
            "slice_shape": [int(s) for s in image.shape[-2:]],
            "foreground": fg.astype(int).tolist(),
        }
        if self._cache:
            return self._cache.save(self._keys[spec.case], image, masks, meta)
        return CaseArrays(meta, image=image, mask=masks)

    def _check_channels(self, cases: Sequence[str]) -> None:
        first = self._store[cases[0]].meta["in_channels"]
        for c in cases:
            channels = self._store[c].meta["in_channels"]
            if channels != first:
                raise DataError(
                    self._all_specs[c].images[0],
                    f"has {channels} channel(s), but {self._all_specs[cases[0]].images[0]} has "
                    f"{first}; every case must have the same channels",
                )
        self.in_channels = int(first)

    def _build_index(self) -> None:
        prep = self.preprocessing
        size = prep.size
        rows: list[tuple[int, int]] = []
        dropped = {"out_of_range": 0, "empty": 0}
        drop_empty = prep.drop_empty and self.split == "train"
        for ci, case in enumerate(self.cases):
            meta = self._store[case].meta
            h, w = meta["slice_shape"]
            if prep.fit == "pad" and size is not None and (h > size[0] or w > size[1]):
                raise DataError(
                    self._all_specs[case].label,
                    f"slices of size {(h, w)} exceed the dataset's size {tuple(size)}; choose a "
                    "larger size, a multiple of the network's stride (--size H W on the "
                    "command line, Preprocessing(size=...) in Python)",
                )
            volumetric = len(meta["shape"]) == 3
            for s, fg in enumerate(meta["foreground"]):
                if volumetric and not prep.in_range(s):
                    dropped["out_of_range"] += 1
                elif drop_empty and not fg:
                    dropped["empty"] += 1
                else:
                    rows.append((ci, s))
        if not rows:
            raise DataError(
                self._source,
                f"no slice left in the selected {len(self.cases)} case(s) (dropped: {dropped})",
            )
        self._index = np.asarray(rows, dtype=np.int64)
        self._rows = rows
        self._arrays = [self._store[c] for c in self.cases]
        self._mask_dtype = np.int64 if self.label_mode == "multiclass" else np.float32
        self._pad_size = prep.size if prep.fit == "pad" else None
        self.dropped = dropped

    # ------------------------------------------------------------------ subclass hooks
    def _read(self, spec: CaseSpec) -> RawCase:
        raise NotImplementedError

    def _layout_params(self) -> dict[str, Any]:
        """Layout-specific parameters that change the stored arrays."""
        return {}

    def _layout_config(self) -> dict[str, Any]:
        """The subclass constructor's own arguments, as plain types."""
        raise NotImplementedError

    # ------------------------------------------------------------------ public API
    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i: int) -> Item:
        # The hot path of every epoch: plain lists, numpy, one torch call per tensor.
        try:
            ci, s = self._rows[i]
        except (IndexError, TypeError) as exc:
            raise IndexError(f"index {i!r} out of range for {len(self)} slices.") from exc
        arrays = self._arrays[ci]
        image, mask = arrays.image[s], arrays.mask[s]
        if self.augment is not None:
            image, mask = self.augment(np.array(image), np.array(mask))
        h, w = image.shape[-2:]
        mask_dtype = self._mask_dtype
        pad = self._pad_size
        if pad is not None and (h != pad[0] or w != pad[1]):
            img = np.zeros((*image.shape[:-2], *pad), np.float32)
            img[..., :h, :w] = image
            msk = np.zeros((*mask.shape[:-2], *pad), mask_dtype)
            msk[..., :h, :w] = mask
        else:  # copy out of the (read-only) cache
            img, msk = np.array(image, np.float32), np.array(mask, mask_dtype)
        if self.label_mode == "binary":
            msk = msk[None]
        return {
            "image": torch.from_numpy(img),
            "mask": torch.from_numpy(msk),
            "case": self.cases[ci],
            "slice": s,
            "size": torch.from_numpy(np.array((h, w), np.int64)),
        }

    def case_slices(self, case: str) -> tuple[np.ndarray, np.ndarray]:
        """Every preprocessed slice of a selected case, unpadded and read-only: ``image
        (S, C, h, w)`` float32 and ``mask`` uint8 ``(S, h, w)`` or ``(S, K, h, w)``, in the
        order of the slicing axis (slice selection not applied)."""
        if case not in self._selected:
            raise KeyError(f"case {case!r} is not selected in this dataset.")
        arrays = self._store[case]
        return arrays.image, arrays.mask

    def case_info(self, case: str) -> CaseInfo:
        """Geometry and files of a selected case (from the cache: no file is re-read)."""
        if case not in self._selected:
            raise KeyError(
                f"case {case!r} is not selected in this dataset; have {self.cases[:5]}..."
            )
        m, spec = self._store[case].meta, self._all_specs[case]
        return CaseInfo(
            case=case,
            image_files=tuple(str(p) for p in spec.images),
            label_file=str(spec.label),
            shape=tuple(m["shape"]),
            spacing=tuple(m["spacing"]),
            affine=tuple(tuple(r) for r in m["affine"]),
            in_channels=int(m["in_channels"]),
            slices=len(m["foreground"]),
            foreground_slices=int(sum(m["foreground"])),
        )

    def slices_of(self, case: str) -> list[int]:
        """The slice indices of ``case`` that this dataset serves (after slice selection)."""
        if case not in self.cases:
            raise KeyError(f"case {case!r} is not selected in this dataset.")
        ci = self.cases.index(case)
        return self._index[self._index[:, 0] == ci, 1].tolist()

    def index(self, case: str, slice_index: int) -> int:
        """The item index of slice ``slice_index`` of ``case`` (inverse of ``item["case"]``,
        ``item["slice"]``)."""
        if case not in self._selected:
            raise KeyError(f"case {case!r} is not selected in this dataset.")
        ci = self.cases.index(case)
        hits = np.flatnonzero((self._index[:, 0] == ci) & (self._index[:, 1] == slice_index))
        if not len(hits):
            raise KeyError(
                f"slice {slice_index} of case {case!r} is not served (dropped or absent)."
            )
        return int(hits[0])

    def subset(
        self, cases: Sequence[str], split: str | None = None, augment: Augment | None = None
    ) -> SliceDataset:
        """The same dataset restricted to ``cases`` (sharing loaded slices, no re-read).

        Example:
            >>> train = ds.subset(ids, split="train", augment=Augment())  # doctest: +SKIP
        """
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)} or None, got {split!r}.")
        if augment is not None and split != "train":
            raise ValueError(f"augmentation applies to split='train' only, got split={split!r}.")
        out = copy.copy(self)
        out.split, out.augment, out._restricted = split, augment, True
        out._select(cases)
        return out

    def config(self) -> dict[str, Any]:
        """Plain types (JSON) that rebuild this dataset (see ``dataset_from_config``).

        A relative ``root`` is made absolute (a checkpoint is read from other folders), and
        ``fingerprint`` records what was read (:meth:`fingerprint`).
        """
        layout = self._layout_config()
        if "root" in layout and not os.path.isabs(layout["root"]):
            layout["root"] = os.path.abspath(layout["root"])
        return {
            "kind": self.kind,
            **layout,
            "fingerprint": self.fingerprint(),
            "labels": self.labels.config(),
            "preprocessing": self.preprocessing.config(),
            "augment": self.augment.config() if self.augment is not None else None,
            "cases": list(self.cases) if self._restricted else None,
            "split": self.split,
            "info": self.info(),
        }

    def fingerprint(self) -> dict[str, list[int]]:
        """What the selected cases' files were: ``{name: [size, crc32 of the first 64 KiB]}``,
        names relative to the source folder (see :func:`fingerprint_changes`)."""
        prints = self.__dict__.setdefault("_prints", {})  # shared by subsets of one source
        root = os.path.abspath(self._source)
        out: dict[str, list[int]] = {}
        for case in self.cases:
            for path in self._all_specs[case].files:
                full = os.path.abspath(path)
                if full not in prints:
                    prints[full] = _file_print(full)
                name = os.path.relpath(full, root)
                out[Path(name).as_posix() if not name.startswith("..") else full] = prints[full]
        return out

    def info(self) -> dict[str, Any]:
        """Derived facts (not constructor arguments): what a model for this data needs."""
        return {
            "label_mode": self.label_mode,
            "classes": self.classes,
            "in_channels": self.in_channels,
            "spatial_dims": self.spatial_dims,
            **self._layout_info(),
        }

    def _layout_info(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, cache_dir: str | Path | None = None, cache: bool = True
    ) -> SliceDataset:
        """Rebuild a dataset from :meth:`config` (``info`` is ignored)."""
        cfg = {k: v for k, v in config.items() if k not in ("kind", "info", "fingerprint")}
        if config.get("kind") != cls.kind:
            raise ValueError(f"config is for kind {config.get('kind')!r}, not {cls.kind!r}.")
        labels = LabelRule.from_config(cfg.pop("labels"))
        prep = Preprocessing.from_config(cfg.pop("preprocessing"))
        augment = Augment.from_config(cfg.pop("augment"))
        return cls(
            **cfg,
            labels=labels,
            preprocessing=prep,
            augment=augment,
            cache_dir=cache_dir,
            cache=cache,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(source={self._source!r}, cases={len(self.cases)}, "
            f"slices={len(self)}, split={self.split!r}, label_mode={self.label_mode!r}, "
            f"classes={self.classes}, in_channels={self.in_channels}, "
            f"size={self.preprocessing.size}, dropped={self.dropped})"
        )
