"""Prepared drift references kept on disk, so that separate runs sort a reference once. Pure Python.

One folder per reference, named by its key (what the reference is made of: see
:func:`~retrain_assets.core.drift_warehouse.reference_key`), under the cache folder
(``<storage.root>/cache/drift_reference``, derived data the platform owns)::

    <key>/manifest.json          columns, summaries, counts, sampled categories, a checksum per file
    <key>/numeric_<i>.npy        sorted finite values of numeric column i
    <key>/grid_<i>.npy           its search grid (drift_grid.ReferenceGrid.to_array)
    <key>/sample_positions.npy   the domain-classifier sample: positions and numeric values
    <key>/sample_numeric.npy

Nothing is trusted: the manifest carries its own checksum and the key it was built for, each array
file its dtype, shape and checksum, checked when the file is read. A damaged or mismatching entry
raises :class:`CacheEntryInvalid`; the caller discards it and builds it again. An entry is written
under a hidden temporary name and renamed into place whole, so a crash or a concurrent writer never
leaves half of one; the least recently used entries beyond :data:`KEEP` are removed. Only folders
named like an entry (or a temporary one) inside the cache folder are ever removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd

from retrain_assets.core import files
from retrain_assets.core.drift_columns import CategoryCounts, SortedColumn
from retrain_assets.core.drift_grid import ReferenceGrid
from retrain_assets.core.drift_reference import DomainSample, PreparedReference

FORMAT = 1
KEEP = 3
"""Entries kept: the references of the last few champions (or of the first batches)."""
_ENTRY = re.compile(r"[0-9a-f]{64}")
_TEMP = re.compile(r"\.(tmp|trash)-[0-9a-f]{64}-[0-9a-f]+")
_STALE_TEMP_SECONDS = 24 * 3600


class CacheEntryInvalid(ValueError):
    """A cache entry is damaged, incomplete or not the reference it is asked for: rebuild it."""


class NotCacheable(ValueError):
    """A category value has a type the cache cannot store faithfully (only text, numbers, booleans,
    dates and timestamps)."""


def checksum(array: np.ndarray) -> str:
    """``dtype:shape:sum of the 64-bit words`` (wrapping): any flipped bit or lost value changes it."""
    words = np.ascontiguousarray(array).view(np.uint64).ravel()
    total = int(np.add.reduce(words, dtype=np.uint64)) if len(words) else 0
    return f"{array.dtype.str}:{'x'.join(map(str, array.shape))}:{total:016x}"


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, pd.Timestamp):
        return {"timestamp": value.isoformat()}
    if isinstance(value, date) and not isinstance(value, datetime):
        return {"date": value.isoformat()}
    raise NotCacheable(f"category value {value!r} of type {type(value).__name__} cannot be cached")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "timestamp" in value:
            return pd.Timestamp(value["timestamp"])
        return date.fromisoformat(value["date"])
    return value


def _digest(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=True).encode()).hexdigest()


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not _ENTRY.fullmatch(key):
        raise ValueError(f"a cache key is 64 lower-case hex digits (a sha256), got {key!r}")
    return key


class _StoredColumns(Mapping):
    """The numeric columns of an entry, each read (and checked) from disk when asked for."""

    def __init__(self, folder: Path, columns: dict[str, dict]) -> None:
        self.folder, self.columns = folder, columns

    def __getitem__(self, name: str) -> SortedColumn:
        meta = self.columns[name]
        values = _load_mapped(self.folder / meta["file"], meta["checksum"])
        grid = None
        if meta["grid_file"] is not None:
            grid = ReferenceGrid.from_array(_load(self.folder / meta["grid_file"], meta["grid_checksum"]))
        return SortedColumn(values, int(meta["missing"]), int(meta["infinite"]), float(meta["mean"]),
                            float(meta["std"]), tuple(float(q) for q in meta["quantiles"]), grid)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[str]:
        return iter(self.columns)

    def __len__(self) -> int:
        return len(self.columns)


_CHECK_BYTES = 8 << 20
"""Bytes read at a time while a mapped column's checksum is computed."""


def _load_mapped(path: Path, expected: str) -> np.ndarray:
    """A 1-D float64 array file mapped read-only (its pages are read from the page cache when
    touched, and are not the process's own memory), its checksum computed first from the file in
    blocks of :data:`_CHECK_BYTES`: a drift check touches a few pages of a sorted reference column
    (quantiles, grid intervals), so holding one costs next to nothing. Any other array is read
    whole by :func:`_load`."""
    try:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise CacheEntryInvalid(f"{path.name} cannot be read ({error})") from None
    if not isinstance(mapped, np.memmap) or mapped.ndim != 1 or mapped.dtype != np.float64:
        del mapped
        return _load(path, expected)
    total = 0
    try:
        with open(path, "rb") as handle:
            handle.seek(mapped.offset)
            block = np.empty(_CHECK_BYTES // 8, dtype=np.uint64)
            left = mapped.nbytes
            while left:
                got = handle.readinto(memoryview(block)[: min(left, _CHECK_BYTES) // 8].cast("B"))
                if not got:
                    raise CacheEntryInvalid(f"{path.name} is shorter than its header says")
                total += int(np.add.reduce(block[: got // 8], dtype=np.uint64))
                left -= got
    except OSError as error:
        raise CacheEntryInvalid(f"{path.name} cannot be read ({error})") from None
    found = f"{mapped.dtype.str}:{mapped.shape[0]}:{total % (1 << 64):016x}"
    if found != expected:
        raise CacheEntryInvalid(f"{path.name} does not match its checksum (damaged or replaced)")
    return mapped.view(np.ndarray)  # a plain array over the mapping (which it keeps open)


def _load(path: Path, expected: str) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise CacheEntryInvalid(f"{path.name} cannot be read ({error})") from None
    if checksum(array) != expected:
        raise CacheEntryInvalid(f"{path.name} does not match its checksum (damaged or replaced)")
    return array


class ReferenceCache:
    """Prepared references on disk, one folder per key (see the module docstring).

    Args:
        folder: The cache folder (created when the first entry is written).
        keep: How many entries to keep.
    """

    def __init__(self, folder: Path, keep: int = KEEP) -> None:
        self.folder, self.keep = Path(folder), keep

    def load(self, key: str) -> PreparedReference | None:
        """The reference cached under ``key``, or None if there is none.

        The manifest is checked now, each array file when its column is read.

        Raises:
            CacheEntryInvalid: The entry is damaged or was built for another key.
        """
        entry = self.folder / _check_key(key)
        manifest_path = entry / "manifest.json"
        if entry.is_symlink() or not manifest_path.is_file():
            if entry.exists() or entry.is_symlink():
                raise CacheEntryInvalid(f"cache entry {entry} has no manifest (a half-written or foreign folder)")
            return None
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            body = manifest["body"]
            if manifest.get("format") != FORMAT or manifest.get("checksum") != _digest(body):
                raise CacheEntryInvalid(f"{manifest_path} is damaged or of another format")
            if body["key"] != key:
                raise CacheEntryInvalid(f"{manifest_path} was built for another reference")
            sample = body["sample"]
            positions = _load(entry / "sample_positions.npy", sample["positions_checksum"])
            numeric = _load(entry / "sample_numeric.npy", sample["numeric_checksum"])
            data: dict[str, np.ndarray] = {col: numeric[:, j] for j, col in enumerate(body["numeric_order"])}
            for col in body["categorical_order"]:
                data[col] = np.array([_decode(v) for v in sample["categorical"][col]], dtype=object)
            frame = pd.DataFrame(data, columns=body["numeric_order"] + body["categorical_order"],
                                 index=pd.RangeIndex(len(positions)))
            categorical = {
                col: CategoryCounts(
                    pd.Series([int(n) for _, n in c["counts"]],
                              index=pd.Index([_decode(v) for v, _ in c["counts"]], dtype=object), dtype=np.int64),
                    int(c["total"]))
                for col, c in body["categorical"].items()
            }
            columns = {col: body["numeric"][col] for col in body["numeric_order"]}
            prepared = PreparedReference(
                numeric=_StoredColumns(entry, columns), categorical=categorical,
                sample=DomainSample(positions, frame), n_rows=int(body["n_rows"]), seed=int(body["seed"]),
                sample_rows=int(body["sample_rows"]), key=key)
        except CacheEntryInvalid:
            raise
        except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
            raise CacheEntryInvalid(f"{manifest_path} cannot be read ({type(error).__name__}: {error})") from None
        with contextlib.suppress(OSError):  # only a hint for pruning (a read-only cache still serves)
            os.utime(manifest_path)
        return prepared

    def discard(self, key: str) -> None:
        """Remove the entry of ``key`` (damaged or stale), if there is one."""
        entry = self.folder / _check_key(key)
        if entry.is_symlink():
            entry.unlink()
        elif entry.exists():
            trash = self.folder / f".trash-{key}-{secrets.token_hex(4)}"
            os.rename(entry, trash)  # out of the way at once; readers of the old files keep them open
            shutil.rmtree(trash, ignore_errors=True)

    def save(self, prepared: PreparedReference, key: str) -> PreparedReference:
        """Store a prepared reference under ``key``; returns it, reading from the stored entry.

        Raises:
            NotCacheable: A category value cannot be stored faithfully (nothing is left behind).
            StorageUnavailable: The disk is full (nothing is left behind).
        """
        with self.writer(key) as writer:
            for col in prepared.numeric:
                writer.add_numeric(col, prepared.numeric[col])
            for col in prepared.categorical:
                writer.add_categorical(col, prepared.categorical[col])
            writer.finish(prepared.sample, prepared.n_rows, prepared.seed, prepared.sample_rows)
            if writer.not_cacheable:
                raise NotCacheable(writer.not_cacheable)
        return self.load(key) or prepared

    def writer(self, key: str) -> EntryWriter:
        """A new entry for ``key``, written column by column (use it as a context manager)."""
        return EntryWriter(self, _check_key(key))

    def prune(self, keep_key: str | None = None) -> None:
        """Remove the least recently used entries beyond ``keep`` and temporary folders a crash left."""
        if not self.folder.is_dir():
            return
        entries, now = [], time.time()
        for path in self.folder.iterdir():
            if path.is_symlink() or not path.is_dir():
                continue
            if _TEMP.fullmatch(path.name):
                if now - path.stat().st_mtime > _STALE_TEMP_SECONDS:
                    shutil.rmtree(path, ignore_errors=True)
            elif _ENTRY.fullmatch(path.name) and path.name != keep_key:
                manifest = path / "manifest.json"
                entries.append((manifest.stat().st_mtime if manifest.is_file() else 0.0, path))
        entries.sort(reverse=True)
        for _, path in entries[max(0, self.keep - (1 if keep_key else 0)):]:
            self.discard(path.name)


class EntryWriter:
    """Writes one entry into a temporary folder; :meth:`finish` renames it into place.

    Used as a context manager: on leaving, the temporary folder is removed unless it was renamed.
    A reference whose category values cannot be stored still gets its numeric columns written (so
    a column-wise check can read them back); :meth:`finish` then returns the reference from the
    temporary folder, which is removed on leaving instead of being kept.
    """

    def __init__(self, cache: ReferenceCache, key: str) -> None:
        self.cache, self.key = cache, key
        self.folder = cache.folder / f".tmp-{key}-{os.getpid():x}{secrets.token_hex(4)}"
        self.numeric: dict[str, dict] = {}
        self.categorical: dict[str, dict] = {}
        self.counts: dict[str, CategoryCounts] = {}
        self.not_cacheable: str | None = None
        self.published = False

    def __enter__(self) -> EntryWriter:
        files.make_folder(self.folder)
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.published:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _save(self, name: str, array: np.ndarray) -> str:
        path = self.folder / name
        try:
            with open(path, "wb") as handle:
                np.save(handle, array, allow_pickle=False)
        except OSError as error:
            if files.disk_full(error):
                raise files.StorageUnavailable(files.disk_full_message(
                    self.folder, "writing the drift reference cache", "Nothing was kept: the entry is removed.",
                    "Free space on that disk and run again.")) from error
            raise
        return checksum(array)

    def add_numeric(self, name: str, column: SortedColumn) -> None:
        """Write one numeric column (its file is final once written)."""
        i = len(self.numeric)
        meta = {"file": f"numeric_{i}.npy", "grid_file": None, "grid_checksum": None,
                "missing": column.missing, "infinite": column.infinite, "mean": column.mean, "std": column.std,
                "quantiles": list(column.quantiles)}
        meta["checksum"] = self._save(meta["file"], np.ascontiguousarray(column.values, dtype=np.float64))
        if column.grid is not None:
            meta["grid_file"] = f"grid_{i}.npy"
            meta["grid_checksum"] = self._save(meta["grid_file"], column.grid.to_array())
        self.numeric[name] = meta

    def add_categorical(self, name: str, column: CategoryCounts) -> None:
        """Record one categorical column's counts."""
        try:
            pairs = [[_encode(v), int(n)] for v, n in column.counts.items()]
        except NotCacheable as error:
            self.not_cacheable = self.not_cacheable or f"column {name!r}: {error}"
            pairs = []
        self.categorical[name] = {"counts": pairs, "total": int(column.total)}
        self.counts[name] = column

    def finish(self, sample: DomainSample, n_rows: int, seed: int, sample_rows: int) -> PreparedReference:
        """Write the sample and the manifest, rename the entry into place and return it.

        The entry stays private (temporary, removed on leaving the ``with`` block) when a category
        value cannot be stored or another process published the same key first.
        """
        numeric_order, categorical_order = list(self.numeric), list(self.categorical)
        values = np.column_stack([sample.frame[c].to_numpy(dtype=np.float64) for c in numeric_order]) \
            if numeric_order else np.zeros((len(sample.positions), 0))
        body: dict[str, Any] = {
            "key": self.key, "n_rows": int(n_rows), "seed": int(seed), "sample_rows": int(sample_rows),
            "numeric_order": numeric_order, "categorical_order": categorical_order,
            "numeric": self.numeric, "categorical": self.categorical,
            "sample": {"positions_checksum": self._save("sample_positions.npy", sample.positions.astype(np.int64)),
                       "numeric_checksum": self._save("sample_numeric.npy", np.ascontiguousarray(values)),
                       "categorical": {}},
        }
        for col in categorical_order:
            try:
                body["sample"]["categorical"][col] = [_encode(v) for v in sample.frame[col].tolist()]
            except NotCacheable as error:
                self.not_cacheable = self.not_cacheable or f"column {col!r}: {error}"
        if self.not_cacheable is None:
            files.write_atomic(self.folder / "manifest.json",
                               json.dumps({"format": FORMAT, "body": body, "checksum": _digest(body)}))
            target = self.cache.folder / self.key
            try:
                os.rename(self.folder, target)
                self.published = True
                self.folder = target
            except OSError:  # another process published this key first: use ours, then drop it
                pass
        if not self.published:
            return PreparedReference(numeric=_StoredColumns(self.folder, self.numeric), categorical=self.counts,
                                     sample=sample, n_rows=int(n_rows), seed=int(seed), sample_rows=int(sample_rows),
                                     key=self.key)
        self.cache.prune(keep_key=self.key)
        return self.cache.load(self.key)  # type: ignore[return-value]
