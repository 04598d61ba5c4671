"""Disk cache of preprocessed slices, keyed by the source files (path, size, mtime) and the
preprocessing parameters; entries are written atomically and read back memory-mapped."""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError
from .io import Header

__all__ = ["CACHE_VERSION", "CaseArrays", "SliceCache", "default_cache_dir", "fingerprint"]

CACHE_VERSION = 2


def default_cache_dir() -> Path:
    """``$DSPLUG_CACHE`` if set, else ``.dsplug_cache`` in the working directory."""
    return Path(os.environ.get("DSPLUG_CACHE", ".dsplug_cache"))


def fingerprint(path: str | Path) -> list[Any]:
    """``[absolute path, size, mtime_ns]`` of a source file; a change to any invalidates."""
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        raise DataError(p, "file not found") from exc
    return [os.path.abspath(p), int(st.st_size), int(st.st_mtime_ns)]


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _open(folder: Path | None, name: str, meta: dict[str, Any]) -> np.ndarray:
    """Memory-map a cached raw array (shape and dtype from ``meta``) as a read-only ndarray;
    cheaper to open than ``np.load(mmap_mode="r")``, which parses a header per file."""
    if folder is None:
        raise ValueError("no cache folder to read from.")
    with open(os.path.join(folder, f"{name}.raw"), "rb") as f:
        buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    shape = tuple(meta[f"{name}_shape"])
    return np.frombuffer(buffer, dtype=np.dtype(meta[f"{name}_dtype"])).reshape(shape)


class CaseArrays:
    """The preprocessed slices of one case: ``image (S, C, h, w)`` float32, ``mask`` uint8
    ``(S, h, w)`` or ``(S, K, h, w)``, and ``meta`` (plain types).

    Cached arrays are memory-mapped on first use and dropped when pickled (DataLoader workers
    re-open them), so workers share the page cache instead of copying the data.
    """

    def __init__(
        self,
        meta: dict[str, Any],
        image: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        folder: Path | None = None,
    ) -> None:
        if folder is None and (image is None or mask is None):
            raise ValueError("CaseArrays needs arrays or a cache folder.")
        self.meta = meta
        self.folder = folder
        self._image = image
        self._mask = mask

    @property
    def image(self) -> np.ndarray:
        if self._image is None:
            self._image = _open(self.folder, "image", self.meta)
        return self._image

    @property
    def mask(self) -> np.ndarray:
        if self._mask is None:
            self._mask = _open(self.folder, "mask", self.meta)
        return self._mask

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.folder is not None:
            state["_image"] = state["_mask"] = None
        return state


class SliceCache:
    """A folder of cache entries, one per case and parameter set.

    Example:
        >>> cache = SliceCache(tmp_dir)  # doctest: +SKIP
        >>> key = cache.key(["img.nii.gz", "lbl.nii.gz"], {"zscore": True})  # doctest: +SKIP
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root) / f"v{CACHE_VERSION}"

    def key(self, files: Sequence[str | Path], params: Mapping[str, Any]) -> str:
        """The entry key of a case: its source files' fingerprints and ``params``."""
        return _digest({"files": [fingerprint(f) for f in files], "params": dict(params)})

    def _folder(self, key: str) -> Path:
        return self.root / key[:2] / key

    def load(self, key: str) -> CaseArrays | None:
        """The entry under ``key``, or None (a missing or unreadable entry is a miss)."""
        folder = self._folder(key)
        try:  # entries appear whole (a folder renamed into place), meta.json last
            with open(os.path.join(folder, "meta.json")) as f:
                meta = json.load(f)
        except (OSError, json.JSONDecodeError):
            return None
        return CaseArrays(meta, folder=folder)

    def save(
        self, key: str, image: np.ndarray, mask: np.ndarray, meta: Mapping[str, Any]
    ) -> CaseArrays:
        """Write an entry atomically (a temporary folder renamed into place) and return it."""
        folder = self._folder(key)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{key}."))
        meta = dict(meta)
        for name, array in (("image", image), ("mask", mask)):
            if array.size == 0:
                raise ValueError(f"cannot cache an empty {name} array of shape {array.shape}.")
            meta[f"{name}_shape"] = list(array.shape)
            meta[f"{name}_dtype"] = array.dtype.str
        try:
            for name, array in (("image", image), ("mask", mask)):
                np.ascontiguousarray(array).tofile(tmp / f"{name}.raw")
            (tmp / "meta.json").write_text(json.dumps(meta))
            try:
                os.rename(tmp, folder)
            except OSError:
                if not (folder / "meta.json").is_file():  # not a concurrent writer: a real error
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return CaseArrays(meta, folder=folder)

    def header(self, path: str | Path, reader: Callable[[Path], Header]) -> Header:
        """``reader(path)``, remembered under the file's fingerprint (no re-read when cached)."""
        key = _digest({"header": fingerprint(path)})
        file = self.root / "headers" / f"{key}.json"
        try:
            return Header.from_config(json.loads(file.read_text()))
        except (OSError, json.JSONDecodeError, KeyError):
            pass
        header = reader(Path(path))
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(header.config(), f)
        os.replace(tmp, file)
        return header
