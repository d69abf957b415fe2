"""validated_data's core: a stored batch validated where it lies in DuckDB, chunk by chunk, its valid and
quarantined rows written as they are judged, all in one transaction. Pure Python (duckdb, no Dagster).

The batch is never one frame: chunks of ``_row`` are read from its raw table (rows per chunk from
``storage.memory_limit_mb``, :class:`~retrain_assets.core.memory_budget.MemoryBudget`), judged by
:func:`~retrain_assets.core.validation.judge_batch`, and appended to ``validated`` and
``quarantine``; ids are counted in a DuckDB temporary table to find duplicates across chunks. When
the verdict is known, a held-back batch's rows leave ``validated`` again and ``batch_validation``
records the outcome; a failure anywhere undoes the whole transaction. The result equals
:func:`~retrain_assets.core.validation.validate_batch` on the whole batch.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Callable, Iterable

import duckdb
import pandas as pd

from retrain_assets.core import storage
from retrain_assets.core.columns import ROW_COLUMN
from retrain_assets.core.memory_budget import MemoryBudget
from retrain_assets.core.schema import DatasetSchema, normalise_label, with_classes
from retrain_assets.core.validation import ValidationReport, held_back_rows, judge_batch
from retrain_assets.core.validation_rules import Limits

PREVIEW_ROWS = 10
"""Valid and quarantined rows a stored report keeps (the rest are in the warehouse)."""

SCHEMA_SAMPLE_SEED = 0


def schema_for_batch(conn: duckdb.DuckDBPyConnection, cfg, stored: DatasetSchema | None, batch_id: str, *,
                     memory_limit_mb: int, sample_rows: int | None = None) -> tuple[DatasetSchema, bool]:
    """The schema a stored batch is validated with, and whether the batch teaches it its classes.

    The stored schema with the config's hints; before any batch was accepted, one inferred from this
    batch (``cfg.schema_for``) — from a seeded sample of as many rows as one chunk holds when the
    batch is larger, its target classes then counted over every row. A classification schema without
    classes learns them from the labels of the whole batch.

    Args:
        conn: The warehouse.
        cfg: The settings (:class:`retrain_assets.settings.Settings`).
        stored: The stored schema, or None.
        batch_id: The batch.
        memory_limit_mb: ``storage.memory_limit_mb`` (bounds the sample).
        sample_rows: Rows of the sample (default: one chunk's, from ``memory_limit_mb``).
    """
    MemoryBudget(memory_limit_mb).apply(conn)
    columns = storage.raw_columns(conn, batch_id)
    sample, total = None, 0
    if stored is None:
        rows = sample_rows or MemoryBudget(memory_limit_mb).chunk_rows(len(columns))
        sample, total = storage.raw_sample(conn, batch_id, rows, SCHEMA_SAMPLE_SEED)
    schema = cfg.schema_for(stored, sample, batch_id)
    target = schema.target
    limit = 100 * (schema.max_classes + 1)
    if sample is not None and len(sample) < total:
        schema = replace(schema, source=f"{schema.source} (a seeded sample of {len(sample):,} of its {total:,} rows)")
        if schema.task == "classification" and cfg.schema_hints.classes is None and target in columns:
            found = {normalise_label(v) for v in storage.raw_distinct(conn, batch_id, target, limit)} - {None}
            classes = tuple(sorted(found, key=lambda v: (isinstance(v, str), v)))
            schema = replace(schema, classes=classes if 0 < len(found) <= schema.max_classes else None)
    learns_classes = schema.task == "classification" and schema.classes is None and target in columns
    if learns_classes:
        schema = with_classes(schema, storage.raw_distinct(conn, batch_id, target, limit))
    return schema, learns_classes


def validate_stored_batch(
    conn: duckdb.DuckDBPyConnection,
    schema: DatasetSchema,
    *,
    batch_id: str,
    fingerprint: str | None,
    run_id: str | None = None,
    max_invalid_fraction: float = 0.05,
    examples: int = 5,
    limits: Limits | None = None,
    memory_limit_mb: int,
    chunk_rows: int | None = None,
    before_commit: Callable[[ValidationReport], None] | None = None,
    now: datetime | None = None,
) -> tuple[ValidationReport, int]:
    """Validate a stored batch chunk by chunk and store its outcome, in one transaction.

    Args:
        conn: The warehouse (its raw table for ``batch_id`` exists).
        schema: The enforced schema.
        batch_id: The batch.
        fingerprint: The landed file's SHA-256, recorded with the outcome.
        run_id: The Dagster run, recorded with the outcome.
        max_invalid_fraction: Largest share of quarantined rows for the batch to pass.
        examples: Failing values kept per rule.
        limits: How far values may stray from the reference.
        memory_limit_mb: ``storage.memory_limit_mb``: sets the chunk size and DuckDB's memory_limit.
        chunk_rows: Rows per chunk (default: from ``memory_limit_mb``; tests pass small ones).
        before_commit: Called with the report before the transaction commits (e.g. to store the
            schema the batch taught); if it raises, nothing is stored.
        now: When the outcome is recorded (default: now).

    Returns:
        ``(report, rows published to validated)``; the report's ``valid`` and ``quarantine`` hold
        their first rows, ``stored_counts`` how many there are.
    """
    budget = MemoryBudget(memory_limit_mb)
    budget.apply(conn)
    storage.ensure_tables(conn)
    columns = storage.raw_columns(conn, batch_id)
    rows_per_chunk = chunk_rows or budget.chunk_rows(len(columns))
    now = now or datetime.now(timezone.utc)
    sink = _WarehouseSink(conn, batch_id, schema, now)

    def chunks(wanted: list[str] | None) -> Iterable[pd.DataFrame]:
        return storage.raw_chunks(conn, batch_id, rows_per_chunk, wanted)

    with storage.transaction(conn, f"storing the validation of batch {batch_id!r}"):
        storage.clear_validation(conn, batch_id)
        report = judge_batch(
            chunks, columns, schema, batch_id=batch_id, sink=sink, ids=_WarehouseIdCounter(conn),
            max_invalid_fraction=max_invalid_fraction, examples=examples, limits=limits, keep_failed_rows=False,
        )
        if not report.passed:
            storage.unpublish(conn, batch_id)
        published = report.valid_rows if report.passed else 0
        storage.log_validation(conn, report, published=published, fingerprint=fingerprint, run_id=run_id, now=now)
        if before_commit is not None:
            before_commit(report)
    return report, published


class _WarehouseIdCounter:
    """Ids counted in DuckDB temporary tables (spilled to disk beyond DuckDB's memory_limit)."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn
        self.tables: dict[str, str] = {}

    def add(self, column: str, values: pd.Series) -> None:
        if column not in self.tables:
            self.tables[column] = f"_batch_ids_{len(self.tables)}"
            self.conn.execute(f"CREATE OR REPLACE TEMP TABLE {self.tables[column]} (id VARCHAR)")
        incoming_ids = pd.DataFrame({"id": values.dropna().astype(str)})  # noqa: F841 - read by name
        self.conn.execute(f"INSERT INTO {self.tables[column]} SELECT id FROM incoming_ids")

    def duplicated(self, column: str) -> set:
        table = self.tables.get(column)
        if table is None:
            return set()
        found = {r[0] for r in self.conn.execute(f"SELECT id FROM {table} GROUP BY id HAVING count(*) > 1").fetchall()}
        self.conn.execute(f"DROP TABLE {table}")
        return found


class _WarehouseSink:
    """:class:`~retrain_assets.core.validation.ValidationSink` writing each chunk to ``validated`` and
    ``quarantine`` inside the caller's transaction."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, batch_id: str, schema: DatasetSchema, now: datetime) -> None:
        self.conn, self.batch_id, self.schema, self.now = conn, batch_id, schema, now
        self.valid_rows = self.quarantined_rows = 0
        self.preview: pd.DataFrame | None = None

    def add(self, valid: pd.DataFrame, quarantine: pd.DataFrame) -> None:
        if self.preview is None:
            self.preview = valid.head(PREVIEW_ROWS)
        if len(valid):
            storage.append_valid(self.conn, self.batch_id, self._typed(valid))
            self.valid_rows += len(valid)
        if len(quarantine):
            storage.append_quarantine(self.conn, self.batch_id, quarantine, self.now)
            self.quarantined_rows += len(quarantine)

    def _typed(self, valid: pd.DataFrame) -> pd.DataFrame:
        """A chunk whose text column holds no value at all still gets its type (DuckDB would call it NULL,
        and a table created from it would refuse every later value)."""
        empty = [c for c in valid.columns if valid[c].dtype == object and valid[c].isna().all()]
        if not empty:
            return valid
        schema = self.schema
        int_classes = bool(schema.classes) and all(isinstance(c, int) for c in schema.classes)
        return valid.assign(**{
            c: valid[c].astype("Int64" if c == schema.target and int_classes else "string") for c in empty
        })

    def hold_back_all(self, reason: str, raw_chunks: Iterable[pd.DataFrame]) -> None:
        storage.unpublish(self.conn, self.batch_id)
        self.valid_rows = self.quarantined_rows = 0
        self.preview = self.preview.iloc[0:0] if self.preview is not None else None
        for raw in raw_chunks:
            if raw.empty:
                continue
            low, high = int(raw[ROW_COLUMN].min()), int(raw[ROW_COLUMN].max())
            where = f"batch_id = ? AND {ROW_COLUMN} BETWEEN ? AND ?"
            earlier = self.conn.execute(
                f"SELECT {ROW_COLUMN}, failed_rules, reasons, row_json FROM quarantine WHERE {where}",
                [self.batch_id, low, high]).df()
            rows = held_back_rows(reason, raw, earlier)
            self.conn.execute(f"DELETE FROM quarantine WHERE {where}", [self.batch_id, low, high])
            storage.append_quarantine(self.conn, self.batch_id, rows, self.now)
            self.quarantined_rows += len(rows)

    def result(self) -> tuple[pd.DataFrame, pd.DataFrame, tuple[int, int]]:
        quarantine = self.conn.execute(
            f"SELECT {ROW_COLUMN}, failed_rules, reasons, row_json FROM quarantine WHERE batch_id = ? "
            f"ORDER BY {ROW_COLUMN} LIMIT {PREVIEW_ROWS}", [self.batch_id]).df()
        valid = self.preview if self.preview is not None else pd.DataFrame()
        return valid, quarantine, (self.valid_rows, self.quarantined_rows)

