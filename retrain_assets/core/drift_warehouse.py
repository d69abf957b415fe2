"""Data drift of a batch in the warehouse against a cached reference, in bounded memory.
Pure Python (duckdb, no Dagster).

:func:`batch_drift` is what drift_report calls. The reference is prepared once per reference
(:mod:`~retrain_assets.core.drift_reference`) and kept in the drift reference cache under
``storage.root`` (:mod:`~retrain_assets.core.drift_cache`), keyed by :func:`reference_key`. Then:

* a batch and reference whose frames fit three times over in what ``storage.memory_limit_mb``
  leaves for data (:class:`~retrain_assets.core.memory_budget.MemoryBudget`: the limit less a base
  and DuckDB's share) are read whole, as before (the rest of the monitoring, prediction and
  concept drift, reads them too);
* larger ones are read one column at a time (a numeric column: its finite values streamed into
  one buffer and sorted in place; a categorical column: counted in chunks), compared exactly and
  released, and the domain classifier, prediction drift, concept drift and plots get seeded
  samples of rows sized to the limit. The cached reference's sorted columns are mapped from disk
  (a check touches a few of their pages), DuckDB gets a small share (:data:`COLUMNWISE_DUCKDB_MB`)
  and the rows sampled are picked as the row numbers stream by: what the check holds is
  :func:`columnwise_bytes`, within :func:`data_budget_bytes`. Both ways give the same data-drift
  result.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import duckdb
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from retrain_assets.core import storage
from retrain_assets.core.columns import BATCH_COLUMN, ROW_COLUMN
from retrain_assets.core.drift import BatchColumns, DriftResult, FrameColumns, drift_against
from retrain_assets.core.drift_cache import FORMAT, CacheEntryInvalid, EntryWriter, ReferenceCache
from retrain_assets.core.drift_columns import (
    CategoryCounts,
    SortedColumn,
    add_category_counts,
    category_counts,
    numeric_values,
    sorted_column,
)
from retrain_assets.core.drift_reference import DomainSample, PreparedReference, reference_sample_positions, sample_frame
from retrain_assets.core.drift_settings import DriftSettings
from retrain_assets.core.memory_budget import MemoryBudget

CACHE_FOLDER = Path("cache") / "drift_reference"
"""The drift reference cache, under storage.root."""
MB = 1 << 20
TEXT_BYTES = 64  # a text value in a pandas frame: its pointer and a short str object
COLUMNWISE_DUCKDB_MB = 64
"""DuckDB's memory_limit while a batch is read column by column: it streams one column at a time and
sorts the row numbers of a batch (spilling to disk beyond it); the blocks it keeps cached up to its
limit count in the process's memory."""
CHUNK_VECTORS = 256  # DuckDB vectors (2,048 rows each) per fetched chunk of numbers: ~0.5M rows, 4 MB
CATEGORY_VECTORS = 32  # per fetched chunk of categories: ~65k Python objects, ~10 MB with value_counts' work
_NUMBER_TYPES = ("DOUBLE", "FLOAT", "REAL", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT",
                 "UINTEGER", "USMALLINT", "UTINYINT", "BOOLEAN", "DECIMAL", "TIMESTAMP", "DATE")


def _ids_clause() -> str:
    return f"{BATCH_COLUMN} IN (SELECT unnest(?))"


def table_columns(conn: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The ``validated`` table's columns and their DuckDB types ({} before the first batch)."""
    return dict(conn.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'validated' AND schema_name = 'main' "
        "ORDER BY column_index").fetchall())


def batch_rows(conn: duckdb.DuckDBPyConnection, batch_ids: Sequence[str]) -> list[tuple[str, int]]:
    """Rows per batch in the order :func:`storage.read_validated` returns them (by batch id)."""
    if not batch_ids:
        return []
    return [(b, int(n)) for b, n in conn.execute(
        f"SELECT {BATCH_COLUMN}, count(*) FROM validated WHERE {_ids_clause()} GROUP BY 1 ORDER BY 1",
        [list(batch_ids)]).fetchall()]


def reference_key(conn: duckdb.DuckDBPyConnection, reference_ids: Sequence[str], numeric: Sequence[str],
                  categorical: Sequence[str], settings: DriftSettings) -> str:
    """What a prepared reference is made of, hashed: each batch's validation (fingerprint, rows,
    time) and row count, the columns compared and their types, the cache format, and the seed and
    size of the domain-classifier sample. Re-validating, adding or dropping a batch changes it.
    """
    ids = sorted(reference_ids)
    validations = conn.execute(
        "SELECT batch_id, fingerprint, valid_rows, CAST(validated_at AS VARCHAR) FROM batch_validation "
        "WHERE batch_id IN (SELECT unnest(?)) ORDER BY batch_id", [ids]).fetchall()
    types = table_columns(conn)
    payload = {
        "format": FORMAT, "validations": validations, "rows": batch_rows(conn, ids),
        "numeric": [[c, types.get(c)] for c in numeric], "categorical": [[c, types.get(c)] for c in categorical],
        "seed": int(settings.seed), "sample_rows": int(settings.domain_max_rows),
    }
    return hashlib.sha256(json.dumps(payload, default=str).encode()).hexdigest()


def read_numeric(conn: duckdb.DuckDBPyConnection, batch_ids: Sequence[str], column: str, rows: int,
                 name: str) -> SortedColumn:
    """One numeric column of some batches, read in chunks into one buffer and sorted in place.

    Only the finite values are kept in the buffer (NaN and ±inf are counted as they are read), so
    the column costs one buffer of ``rows`` float64 at most: no filtered copy of it is made.
    """
    result = conn.execute(f"SELECT {storage.quote_identifier(column)} FROM validated WHERE {_ids_clause()}",
                          [list(batch_ids)])
    out = np.empty(rows, dtype=np.float64)
    seen = kept = missing = infinite = 0
    while len(chunk := result.fetch_df_chunk(CHUNK_VECTORS)):
        values = numeric_values(chunk.iloc[:, 0], name)
        del chunk
        seen += len(values)
        if seen > rows:
            break
        finite = np.isfinite(values)
        if finite.all():
            out[kept:kept + len(values)] = values
            kept += len(values)
        else:
            nan = int(np.isnan(values).sum())
            good = int(finite.sum())
            missing, infinite = missing + nan, infinite + len(values) - good - nan
            out[kept:kept + good] = values[finite]
            kept += good
        del values, finite
    if seen != rows:
        raise RuntimeError(f"column {column!r} has {'more' if seen > rows else seen} rows where {rows} were counted: "
                           f"the batches changed while being read; run again")
    summary = sorted_column(out[:kept], name, grid=name == "reference", in_place=True)
    return dataclasses.replace(summary, missing=missing, infinite=infinite)


def read_counts(conn: duckdb.DuckDBPyConnection, batch_ids: Sequence[str], column: str, name: str) -> CategoryCounts:
    """One categorical column of some batches, counted chunk by chunk."""
    result = conn.execute(f"SELECT {storage.quote_identifier(column)} FROM validated WHERE {_ids_clause()}",
                          [list(batch_ids)])
    parts = []
    while len(chunk := result.fetch_df_chunk(CATEGORY_VECTORS)):
        parts.append(category_counts(chunk.iloc[:, 0], name))
    return add_category_counts(parts)


def _row_numbers(conn: duckdb.DuckDBPyConnection, batch: str, inside: np.ndarray) -> np.ndarray:
    """The ``_row`` of the rows at positions ``inside`` (ascending) of one batch in row order, picked
    as the row numbers stream by (never all of them in memory at once)."""
    result = conn.execute(f"SELECT {ROW_COLUMN} FROM validated WHERE {BATCH_COLUMN} = ? ORDER BY {ROW_COLUMN}",
                          [batch])
    picked, offset, i = [], 0, 0
    while i < len(inside) and len(chunk := result.fetch_df_chunk(CHUNK_VECTORS)):
        rows = chunk.iloc[:, 0].to_numpy()
        end = i + int(np.searchsorted(inside[i:], offset + len(rows), "left"))
        picked.append(rows[inside[i:end] - offset].astype(np.int64))
        offset, i = offset + len(rows), end
        del chunk, rows
    if i < len(inside):
        raise RuntimeError(f"batch {batch!r} has {offset} rows, fewer than were counted: it changed while being read; "
                           f"run again")
    return np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)


def read_rows(conn: duckdb.DuckDBPyConnection, batch_ids: Sequence[str], positions: np.ndarray,
              columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The rows at ``positions`` (ascending) of the batches in :func:`storage.read_validated` order."""
    picked_batches, picked_rows, offset = [], [], 0
    for batch, n in batch_rows(conn, batch_ids):
        inside = positions[(positions >= offset) & (positions < offset + n)] - offset
        if len(inside):
            picked_rows.append(_row_numbers(conn, batch, inside))
            picked_batches += [batch] * len(inside)
        offset += n
    select = ", ".join(f"v.{storage.quote_identifier(c)}" for c in columns) if columns is not None else "v.*"
    picks = pd.DataFrame({"b": pd.Series(picked_batches, dtype=object),
                          "r": np.concatenate(picked_rows) if picked_rows else np.zeros(0, dtype=np.int64)})
    conn.register("_drift_picks", picks)
    try:
        return conn.execute(
            f"SELECT {select} FROM validated v JOIN _drift_picks p ON v.{BATCH_COLUMN} = p.b AND v.{ROW_COLUMN} = p.r "
            f"ORDER BY v.{BATCH_COLUMN}, v.{ROW_COLUMN}").df()
    finally:
        conn.unregister("_drift_picks")


class WarehouseColumns:
    """Batches in the warehouse, read one column at a time (``side``: "current" or "reference",
    which also gets the search grid)."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, batch_ids: Sequence[str], side: str = "current") -> None:
        self.conn, self.batch_ids, self.side = conn, list(batch_ids), side
        self.rows = sum(n for _, n in batch_rows(conn, self.batch_ids))

    def numeric(self, column: str) -> SortedColumn:
        return read_numeric(self.conn, self.batch_ids, column, self.rows, self.side)

    def categorical(self, column: str) -> CategoryCounts:
        return read_counts(self.conn, self.batch_ids, column, self.side)

    def sample(self, positions: np.ndarray, numeric: list, categorical: list) -> pd.DataFrame:
        return sample_frame(read_rows(self.conn, self.batch_ids, positions, numeric + categorical), numeric, categorical)


def build_reference(writer: EntryWriter, source: BatchColumns, numeric: list, categorical: list,
                    settings: DriftSettings) -> PreparedReference:
    """Prepare a reference column by column into a cache entry (one column in memory at a time).

    Args:
        writer: The cache entry being written.
        source: The reference rows (``side="reference"``).
        numeric: Its numeric columns.
        categorical: Its categorical columns.
        settings: The drift settings (seed and size of the domain-classifier sample).

    Returns:
        The prepared reference, read back from the entry.
    """
    for col in numeric:
        writer.add_numeric(col, source.numeric(col))
    for col in categorical:
        writer.add_categorical(col, source.categorical(col))
    positions = reference_sample_positions(source.rows, settings)
    order = np.argsort(positions, kind="stable")
    rows = source.sample(positions[order], numeric, categorical)
    drawn = rows.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)
    return writer.finish(DomainSample(positions, drawn), source.rows, settings.seed, settings.domain_max_rows)


@dataclass
class BatchDrift:
    """The data drift of one batch, and the rows the rest of its monitoring reads.

    Attributes:
        result: The data-drift verdict (None without reference rows).
        current: The batch's validated rows, or a seeded sample of them (``sampled``).
        reference: The reference rows, or a seeded sample of them.
        n_current: Rows in the batch.
        n_reference: Rows in the reference.
        sampled: Whether ``current`` and ``reference`` are samples (the batch exceeded the memory limit).
        notes: What a person should know (a rebuilt cache entry, a reference that could not be cached).
    """

    result: DriftResult | None
    current: pd.DataFrame
    reference: pd.DataFrame
    n_current: int
    n_reference: int
    sampled: bool = False
    notes: list[str] = field(default_factory=list)


def _row_bytes(types: dict[str, str]) -> int:
    return sum(8 if t.split("(")[0] in _NUMBER_TYPES else TEXT_BYTES for t in types.values()) or 8


def _sample_positions(n: int, rows: int, seed: int, stream: int) -> np.ndarray:
    if rows >= n:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng([seed, stream]).choice(n, rows, replace=False)).astype(np.int64)


def drift_in_warehouse(conn: duckdb.DuckDBPyConnection, *, batch_id: str, reference_ids: Sequence[str],
                       numeric: list, categorical: list, settings: DriftSettings, cache_dir: Path,
                       memory_limit_mb: int, read_whole: bool | None = None) -> BatchDrift:
    """Data drift of a validated batch against its reference, within ``memory_limit_mb``.

    Args:
        conn: The warehouse.
        batch_id: The batch.
        reference_ids: The batches of its reference.
        numeric: Columns compared as numbers.
        categorical: Columns compared as categories.
        settings: Drift thresholds.
        cache_dir: The drift reference cache folder.
        memory_limit_mb: ``storage.memory_limit_mb``, shared out as :class:`MemoryBudget` does:
            the frames are read whole when three times their size fits in what it leaves for data.
        read_whole: Force reading whole frames (True) or column by column (False); None decides
            from the limit (tests and benchmarks force it).

    Returns:
        The verdict and the rows the rest of the monitoring reads.

    Raises:
        ValueError: Column by column, one numeric column of this batch and reference does not
            fit in the limit (the message says how much it needs).
    """
    types = table_columns(conn)
    n_cur = sum(n for _, n in batch_rows(conn, [batch_id]))
    n_ref = sum(n for _, n in batch_rows(conn, reference_ids))
    budget = MemoryBudget(memory_limit_mb)
    row_bytes, data_bytes = _row_bytes(types), data_budget_bytes(memory_limit_mb)
    # Read whole, a frame costs ~3× its size at the peak: DuckDB's result, the frame, a column's sort.
    if read_whole if read_whole is not None else (n_cur + n_ref) * row_bytes * 3 <= data_bytes:
        with duckdb_memory_limit(conn, budget.duckdb_mb):
            current = storage.read_validated(conn, [batch_id])
            reference = storage.read_validated(conn, list(reference_ids)) if reference_ids else current.iloc[0:0]
            out = BatchDrift(None, current, reference, n_cur, n_ref)
            return _compare(conn, out, batch_id, reference_ids, numeric, categorical, settings, cache_dir)
    rows = sample_rows(memory_limit_mb, row_bytes, settings)  # per side, for the rest of the monitoring
    need = columnwise_bytes(n_cur, n_ref if numeric else 0, rows if n_ref else 0, row_bytes)
    if n_ref and numeric and need > data_bytes:
        raise ValueError(
            f"comparing batch {batch_id!r} ({n_cur:,} rows) with its reference ({n_ref:,} rows) needs ~{need // MB:,} MB "
            f"for one numeric column (its values, sorted in place; the reference's is read from the cache on disk) "
            f"and the sampled rows, more than the {max(data_bytes, 0) // MB:,} MB that storage.memory_limit_mb = "
            f"{memory_limit_mb:,} leaves for data: raise it to at least {memory_limit_mb + (need - data_bytes) // MB + 1:,}")
    with duckdb_memory_limit(conn, min(budget.duckdb_mb, COLUMNWISE_DUCKDB_MB)):
        current = read_rows(conn, [batch_id], _sample_positions(n_cur, rows, settings.seed, 2))
        reference = read_rows(conn, list(reference_ids), _sample_positions(n_ref, rows, settings.seed, 3)) \
            if n_ref else current.iloc[0:0]
        out = BatchDrift(None, current, reference, n_cur, n_ref, sampled=True)
        return _compare(conn, out, batch_id, reference_ids, numeric, categorical, settings, cache_dir)


def data_budget_bytes(memory_limit_mb: int) -> int:
    """What ``storage.memory_limit_mb`` leaves a drift check for data (:class:`MemoryBudget`: the
    limit less the base, the fixed working memory and DuckDB's share)."""
    budget = MemoryBudget(memory_limit_mb)
    return (budget.spare_mb - budget.duckdb_mb) * MB


def sample_rows(memory_limit_mb: int, row_bytes: int, settings: DriftSettings) -> int:
    """Rows per side sampled for the rest of the monitoring when a batch is read column by column:
    an eighth of the data budget each (at least ``domain_max_rows``)."""
    return max(settings.domain_max_rows, data_budget_bytes(memory_limit_mb) // 8 // row_bytes)


def columnwise_bytes(n_current: int, n_reference: int, rows: int, row_bytes: int) -> int:
    """Peak data memory of a column-by-column check: the two sampled frames, and one numeric column
    at a time in one float64 buffer (the batch's, or the reference's while its cache entry is
    built; a cached reference column is mapped from disk, not read) plus the chunk being read
    (``CHUNK_VECTORS`` vectors of 2,048 values, and what pandas and NumPy make of it)."""
    longest = max(n_current, n_reference)
    return 2 * rows * row_bytes + 8 * longest + 4 * 8 * min(CHUNK_VECTORS * 2048, longest)


@contextmanager
def duckdb_memory_limit(conn: duckdb.DuckDBPyConnection, mb: int) -> Iterator[None]:
    """DuckDB's own memory limit set to ``mb`` for a while, then restored (it keeps the table blocks it
    read cached up to its limit, 80% of the machine's memory by default)."""
    before = conn.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    conn.execute(f"SET memory_limit = '{int(mb)}MiB'")
    try:
        yield
    finally:  # the setting reads back rounded ("18.8 GiB"): the default is reset, not set to its rounding
        conn.execute("RESET memory_limit" if before == _default_memory_limit() else f"SET memory_limit = '{before}'")


@functools.cache
def _default_memory_limit() -> str:
    with duckdb.connect() as fresh:
        return fresh.execute("SELECT current_setting('memory_limit')").fetchone()[0]


def _compare(conn, out: BatchDrift, batch_id: str, reference_ids: Sequence[str], numeric: list, categorical: list,
             settings: DriftSettings, cache_dir: Path) -> BatchDrift:
    """The verdict, from the cache entry of this reference (built first if there is none or it is unusable)."""
    if out.n_reference == 0 or not (numeric or categorical):
        return out
    cache = ReferenceCache(cache_dir)
    key = reference_key(conn, reference_ids, numeric, categorical, settings)
    try:
        out.result = _check(conn, cache, key, out, batch_id, reference_ids, numeric, categorical, settings)
    except CacheEntryInvalid as error:
        out.notes.append(f"the drift reference cache entry {key[:12]} was unusable ({error}): rebuilt it")
        cache.discard(key)
        out.result = _check(conn, cache, key, out, batch_id, reference_ids, numeric, categorical, settings)
    return out


def _check(conn, cache: ReferenceCache, key: str, out: BatchDrift, batch_id: str, reference_ids: Sequence[str],
           numeric: list, categorical: list, settings: DriftSettings) -> DriftResult:
    if not out.sampled:
        current, reference = FrameColumns(out.current), FrameColumns(out.reference, "reference")
    else:
        current, reference = WarehouseColumns(conn, [batch_id]), WarehouseColumns(conn, reference_ids, "reference")
    with threadpool_limits(1):  # see monitoring.monitor_batch: OpenMP threads on a busy machine
        prepared = cache.load(key)
        if prepared is not None:
            return drift_against(prepared, current, numeric, categorical, settings)
        with cache.writer(key) as writer:
            prepared = build_reference(writer, reference, numeric, categorical, settings)
            if writer.not_cacheable:
                out.notes.append(f"the drift reference was not cached: {writer.not_cacheable}")
            return drift_against(prepared, current, numeric, categorical, settings)


def batch_drift(conn: duckdb.DuckDBPyConnection, cfg, schema, *, batch_id: str,
                reference_ids: Sequence[str]) -> BatchDrift:
    """:func:`drift_in_warehouse` with the config's settings and the schema's feature columns.

    Args:
        conn: The warehouse.
        cfg: The settings (``retrain_assets.settings.Settings``).
        schema: The dataset schema (feature kinds), or None before one exists.
        batch_id: The batch.
        reference_ids: Its reference batches.

    Returns:
        The verdict and the rows the rest of the monitoring reads.
    """
    from retrain_assets.core.monitoring import drift_settings

    present = table_columns(conn)
    specs = schema.columns if schema is not None else ()
    numeric = [c.name for c in specs if c.kind == "numeric" and c.name in present]
    categorical = [c.name for c in specs if c.kind == "categorical" and c.name in present]
    return drift_in_warehouse(
        conn, batch_id=batch_id, reference_ids=reference_ids, numeric=numeric, categorical=categorical,
        settings=drift_settings(cfg), cache_dir=cfg.storage.root / CACHE_FOLDER,
        memory_limit_mb=cfg.storage.memory_limit_mb)
