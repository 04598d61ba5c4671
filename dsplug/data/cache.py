"""Disk cache of preprocessed slices, keyed by the source files (path, size, mtime) and the
preprocessing parameters; entries are written atomically and read back memory-mapped.

Each entry's ``meta.json`` records the byte size and a CRC-32 of every array file (the whole
file up to 8 MiB, else 256 blocks of 4 KiB spread over it, first and last included). An entry
is checked when it is opened: a damaged one is removed with a one-line warning and rebuilt
from the source files. Failures to write the cache (read-only folder, full disk, no
permission) are :class:`~dsplug.data.errors.CacheError` lines naming the folder and the fix.
"""

from __future__ import annotations

import errno
import hashlib
import json
import mmap
import os
import shutil
import tempfile
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CacheError, DataError
from .io import Header

__all__ = ["CACHE_VERSION", "CaseArrays", "SliceCache", "default_cache_dir", "fingerprint"]

CACHE_VERSION = 3


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


_FULL_CRC = 8 << 20
_BLOCK, _BLOCKS = 4096, 256


def _crc(buffer: Any, size: int) -> int:
    """CRC-32 of ``buffer`` (bytes-like of ``size`` bytes): whole up to 8 MiB, else sampled."""
    if size <= _FULL_CRC:
        return zlib.crc32(buffer[:size])
    crc = 0
    last = size - _BLOCK
    for i in range(_BLOCKS):
        start = last * i // (_BLOCKS - 1)
        crc = zlib.crc32(buffer[start : start + _BLOCK], crc)
    return crc


def _expected_bytes(meta: Mapping[str, Any], name: str) -> int:
    count = int(np.prod(meta[f"{name}_shape"], dtype=np.int64))
    return count * np.dtype(meta[f"{name}_dtype"]).itemsize


def _damage(folder: Path, meta: Mapping[str, Any]) -> str | None:
    """What is wrong with a cache entry's array files, or None when they check out."""
    for name in ("image", "mask"):
        path = folder / f"{name}.raw"
        try:
            expected = _expected_bytes(meta, name)
            size = path.stat().st_size
            if size != expected or meta.get(f"{name}_bytes") != expected:
                return f"{name}.raw holds {size} bytes, {expected} expected"
            with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                crc = _crc(m, size)
        except (OSError, KeyError, TypeError, ValueError) as exc:
            return f"{name}.raw cannot be read ({exc})"
        if crc != meta.get(f"{name}_crc"):
            return f"{name}.raw fails its checksum"
    return None


def _open(folder: Path | None, name: str, meta: dict[str, Any]) -> np.ndarray:
    """Memory-map a cached raw array (shape and dtype from ``meta``) as a read-only ndarray;
    cheaper to open than ``np.load(mmap_mode="r")``, which parses a header per file."""
    if folder is None:
        raise ValueError("no cache folder to read from.")
    path = os.path.join(folder, f"{name}.raw")
    shape = tuple(meta[f"{name}_shape"])
    try:
        with open(path, "rb") as f:
            buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        if len(buffer) != _expected_bytes(meta, name):
            raise ValueError(f"{len(buffer)} bytes for an array of shape {shape}")
    except (OSError, ValueError) as exc:
        raise CacheError(
            path,
            f"the entry changed after it was checked ({exc})",
            f"delete {folder} (it is rebuilt), or run with --no-cache",
        ) from exc
    return np.frombuffer(buffer, dtype=np.dtype(meta[f"{name}_dtype"])).reshape(shape)


def _write_error(path: Path, exc: OSError) -> CacheError:
    """A one-line :class:`CacheError` for a failed cache write."""
    if exc.errno == errno.ENOSPC:
        return CacheError(
            path,
            "cannot write: no space left on the device",
            "free space, use another cache folder (--cache-dir DIR or DSPLUG_CACHE=DIR), or "
            "none (--no-cache)",
        )
    return CacheError(path, f"cannot write ({exc.strerror or exc})")


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
        """The entry under ``key``, or None: a missing entry is a miss, and a damaged one (its
        meta unreadable, an array file of another size or checksum) is removed with a warning
        and is a miss too (the caller rebuilds it)."""
        folder = self._folder(key)
        meta_path = os.path.join(folder, "meta.json")
        if not os.path.isdir(folder):
            return None
        try:  # entries appear whole (a folder renamed into place), meta.json last
            with open(meta_path) as f:
                meta = json.load(f)
            damage = _damage(folder, meta)
        except FileNotFoundError:
            damage = "meta.json is missing"
        except (OSError, json.JSONDecodeError) as exc:
            damage = f"meta.json cannot be read ({exc})"
        if damage is None:
            return CaseArrays(meta, folder=folder)
        warnings.warn(
            f"slice cache entry {folder} is damaged ({damage}); rebuilding it from the source "
            "files.",
            stacklevel=3,
        )
        self._discard(folder)
        return None

    def _discard(self, folder: Path) -> None:
        """Remove an entry (renamed aside first, so it never looks whole while half gone)."""
        aside = folder.with_name(f".{folder.name}.damaged.{os.getpid()}")
        try:
            os.rename(folder, aside)
        except OSError as exc:
            if folder.exists():
                raise _write_error(folder, exc) from exc
            return
        shutil.rmtree(aside, ignore_errors=True)

    def save(
        self, key: str, image: np.ndarray, mask: np.ndarray, meta: Mapping[str, Any]
    ) -> CaseArrays:
        """Write an entry atomically (a temporary folder renamed into place) and return it.

        Raises:
            CacheError: the cache folder cannot be written (read-only, full, no permission).
        """
        folder = self._folder(key)
        meta = dict(meta)
        arrays = {}
        for name, array in (("image", image), ("mask", mask)):
            if array.size == 0:
                raise ValueError(f"cannot cache an empty {name} array of shape {array.shape}.")
            array = np.ascontiguousarray(array)
            arrays[name] = array
            data = memoryview(array).cast("B")
            meta[f"{name}_shape"] = list(array.shape)
            meta[f"{name}_dtype"] = array.dtype.str
            meta[f"{name}_bytes"] = int(array.nbytes)
            meta[f"{name}_crc"] = _crc(data, array.nbytes)
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{key}."))
        except OSError as exc:
            raise _write_error(folder.parent, exc) from exc
        try:
            for name, array in arrays.items():
                array.tofile(tmp / f"{name}.raw")
            (tmp / "meta.json").write_text(json.dumps(meta))
            try:
                os.rename(tmp, folder)
            except OSError:
                if not (folder / "meta.json").is_file():  # not a concurrent writer: a real error
                    raise
        except OSError as exc:
            raise _write_error(folder, exc) from exc
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
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(header.config(), f)
            os.replace(tmp, file)
        except OSError as exc:
            raise _write_error(file.parent, exc) from exc
        return header
