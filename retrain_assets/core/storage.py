"""The warehouse (DuckDB): its tables, the one transaction helper, and the batches behind raw_data
and validated_data. Pure Python (duckdb, no Dagster).

Tables (created from ``warehouse.sql``; keyed by ``batch_id``; re-running a batch replaces its rows
in one transaction):

* ``raw.<batch_id>`` — the batch exactly as read (CSV values as text), plus ``_row``.
* ``ingestion_log`` — one row per ingested batch: file, fingerprint, rows, columns, times.
* ``validated`` — typed rows of batches that passed validation, plus ``_batch_id`` and ``_row``.
* ``quarantine`` — every rejected row with the rules it broke, the reasons and the row as JSON.
* ``batch_validation`` — one row per validated batch: status, counts, failed rules.
* ``label_files``, ``label_reviews`` — labels delivered later and suspect labels
  (:mod:`retrain_assets.core.label_store`).
* ``drift_reports``, ``production_metrics``, ``shadow_scores`` — per-batch measurements
  (:mod:`retrain_assets.core.metrics_store`).
* ``promotion_ledger`` — every move of the ``champion`` alias and approval request
  (:mod:`retrain_assets.core.ledger`).

Connections are opened by the caller and kept short (DuckDB allows one writer per file).
"""

from __future__ import annotations

import functools
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import duckdb
import pandas as pd

from retrain_assets.core import files
from retrain_assets.core.columns import BATCH_COLUMN, ROW_COLUMN

if TYPE_CHECKING:  # the report is written here, never built: storage sits below validation
    from retrain_assets.core.validation import ValidationReport


DDL_PATH = Path(__file__).with_name("warehouse.sql")
"""The warehouse's tables (CREATE ... IF NOT EXISTS), run by :func:`ensure_tables`."""


@functools.cache
def _ddl() -> tuple[str, tuple[str, ...]]:
    """The DDL and the tables it creates."""
    ddl = DDL_PATH.read_text(encoding="utf-8")
    return ddl, tuple(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", ddl))


def quote_identifier(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class StorageUnavailable(files.StorageUnavailable):
    """The warehouse cannot be opened or written now: its disk is full, or another process holds
    the DuckDB file. An outside cause (never a ``dagster.Failure``): nothing was half-written and
    the same run succeeds once the cause is gone, so the batch is retried."""


def database_path(conn: duckdb.DuckDBPyConnection) -> str:
    """The file behind a connection (for messages), or ``"the DuckDB file"`` if it cannot be told."""
    try:
        found = conn.execute(
            "SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
    except duckdb.Error:
        found = None
    return str(found[0]) if found and found[0] else "the DuckDB file"


_UNDONE = ("Nothing was half-written: DuckDB undid the whole transaction, so what was stored before it (earlier "
           "batches, this batch's earlier state) is intact.")


def disk_full_error(path: str, doing: str, safe: str = _UNDONE) -> StorageUnavailable:
    """The error a person reads when the disk holding the DuckDB file filled up while ``doing``
    (``safe``: what is intact, in words)."""
    return StorageUnavailable(files.disk_full_message(
        path, doing, safe,
        "Free space on that disk (or move storage.root to a larger one); the batch is retried once there is room "
        "(re-execute other runs).",
    ))


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection, doing: str) -> Iterator[None]:
    """Run the block in one DuckDB transaction: committed whole, or undone whole.

    A failing ``ROLLBACK`` never hides why the block failed: when ``COMMIT`` itself fails (a full
    disk fails the write-ahead log there), DuckDB has already undone the transaction and the
    rollback's own complaint ("no transaction is active") is dropped; the original error is raised,
    as :class:`StorageUnavailable` with a plain message when the disk is full.

    Args:
        conn: The warehouse.
        doing: What the block stores, for the message (``"storing batch '2024-05-01'"``).
    """
    conn.execute("BEGIN TRANSACTION")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException as error:
        try:
            conn.execute("ROLLBACK")
        except duckdb.Error as rollback_error:
            if "no transaction is active" not in str(rollback_error):
                error.add_note(f"the rollback that followed failed too: {rollback_error}")
        if files.disk_full(error) and not isinstance(error, StorageUnavailable):
            raise disk_full_error(database_path(conn), doing) from error
        raise


def raw_table(batch_id: str) -> str:
    """The qualified name of a batch's raw table."""
    return f"raw.{quote_identifier(batch_id)}"


def ensure_tables(conn: duckdb.DuckDBPyConnection) -> None:
    """Create the platform's tables if they do not exist (and add columns newer releases need).

    When they all exist already, nothing is executed but one catalog query: a reader (a sensor tick,
    a read-only connection) never runs DDL, so it never needs the write lock.
    """
    present = {name for (name,) in conn.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()}
    ddl, tables = _ddl()
    if set(tables) <= present and not _missing_columns(conn):
        return
    conn.execute(ddl)
    _migrate(conn)


_ADDED_COLUMNS = (
    ("promotion_ledger", "approver", "VARCHAR"),
    ("drift_reports", "ci_low", "DOUBLE"),
    ("drift_reports", "ci_high", "DOUBLE"),
    ("drift_reports", "holdout_metric", "DOUBLE"),
    ("drift_reports", "detectors_fired", "VARCHAR[]"),
)
"""Columns added after a table's first release: (table, column, type)."""


def _missing_columns(conn: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str]]:
    present = set(conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'main' "
        "AND table_name IN (SELECT unnest(?))", [sorted({t for t, _, _ in _ADDED_COLUMNS})]
    ).fetchall())
    return [(t, c, d) for t, c, d in _ADDED_COLUMNS if (t, c) not in present]


def _migrate(conn: duckdb.DuckDBPyConnection) -> None:
    """Add the columns of :data:`_ADDED_COLUMNS` that a warehouse created by an older release lacks."""
    for table, column, dtype in _missing_columns(conn):
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {quote_identifier(column)} {dtype}")


@dataclass(frozen=True)
class IngestionRecord:
    """What is known about an ingested batch file."""

    batch_id: str
    file_name: str
    file_path: str
    file_format: str
    fingerprint: str
    size_bytes: int
    rows: int
    columns: list[str]
    arrived_at: datetime
    ingested_at: datetime
    dagster_run_id: str | None = None


def ingested_record(conn: duckdb.DuckDBPyConnection, batch_id: str) -> IngestionRecord | None:
    """The ingestion record of a batch, or None if it was never ingested."""
    ensure_tables(conn)
    rows = conn.execute("SELECT * FROM ingestion_log WHERE batch_id = ?", [batch_id]).fetchall()
    if not rows:
        return None
    row = rows[0]
    names = [d[0] for d in conn.description]
    values = dict(zip(names, row))
    values["columns"] = list(values["columns"])
    return IngestionRecord(**values)


def write_raw_batch(conn: duckdb.DuckDBPyConnection, record: IngestionRecord, frame: pd.DataFrame) -> None:
    """Store a batch as read and its ingestion record, replacing any earlier copy, atomically."""
    ensure_tables(conn)
    with transaction(conn, f"storing batch {record.batch_id!r} ({record.rows} rows from {record.file_name})"):
        conn.register("_incoming_raw", frame)
        conn.execute(f"CREATE OR REPLACE TABLE {raw_table(record.batch_id)} AS SELECT * FROM _incoming_raw")
        conn.unregister("_incoming_raw")
        conn.execute("DELETE FROM ingestion_log WHERE batch_id = ?", [record.batch_id])
        conn.execute(
            "INSERT INTO ingestion_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                record.batch_id, record.file_name, record.file_path, record.file_format, record.fingerprint,
                record.size_bytes, record.rows, record.columns, record.arrived_at, record.ingested_at,
                record.dagster_run_id,
            ],
        )


def read_raw_batch(conn: duckdb.DuckDBPyConnection, batch_id: str) -> pd.DataFrame:
    """A batch exactly as it was stored by :func:`write_raw_batch`, in file order."""
    try:
        frame = conn.execute(f"SELECT * FROM {raw_table(batch_id)} ORDER BY {ROW_COLUMN}").df()
    except duckdb.CatalogException:
        raise LookupError(
            f"batch {batch_id!r} has no raw data in DuckDB; materialize raw_data for this partition first"
        ) from None
    # DuckDB gives NaN for NULL text; keep None like the reader does.
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].where(frame[column].notna(), None)
    return frame


def table_exists(conn: duckdb.DuckDBPyConnection, name: str, schema: str = "main") -> bool:
    return bool(conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [schema, name]
    ).fetchall()[0][0])


def _add_missing_columns(conn: duckdb.DuckDBPyConnection, table: str, frame_name: str) -> None:
    existing = {r[0] for r in conn.execute(f"DESCRIBE {table}").fetchall()}
    described = conn.execute(f"DESCRIBE {frame_name}").fetchall()
    for name, dtype, *_ in described:
        if name not in existing:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {quote_identifier(name)} {dtype}")


def write_validation(
    conn: duckdb.DuckDBPyConnection,
    report: ValidationReport,
    *,
    fingerprint: str | None,
    run_id: str | None = None,
    now: datetime | None = None,
) -> int:
    """Store a batch's outcome atomically: valid rows (only if it passed), quarantine and status.

    Returns:
        How many rows were published to ``validated``.
    """
    ensure_tables(conn)
    now = now or datetime.now(timezone.utc)
    batch_id = report.batch_id
    published = report.valid if report.passed else report.valid.iloc[0:0]
    with transaction(conn, f"storing the validation of batch {batch_id!r}"):
        if table_exists(conn, "validated"):
            conn.execute(f"DELETE FROM validated WHERE {BATCH_COLUMN} = ?", [batch_id])
        # Only rows shape the table: an empty frame's text columns have no type (DuckDB "NULL"), and a
        # column added with that type would refuse every later value.
        if len(published):
            frame = published.assign(**{BATCH_COLUMN: batch_id})
            frame = frame[[BATCH_COLUMN, *[c for c in frame.columns if c != BATCH_COLUMN]]]
            conn.register("_incoming_valid", frame)
            conn.execute("CREATE TABLE IF NOT EXISTS validated AS SELECT * FROM _incoming_valid LIMIT 0")
            _add_missing_columns(conn, "validated", "_incoming_valid")
            conn.execute("INSERT INTO validated BY NAME SELECT * FROM _incoming_valid")
            conn.unregister("_incoming_valid")
        conn.execute("DELETE FROM quarantine WHERE batch_id = ?", [batch_id])
        if len(report.quarantine):
            q = report.quarantine.assign(batch_id=batch_id, quarantined_at=now)
            q = q[["batch_id", ROW_COLUMN, "failed_rules", "reasons", "row_json", "quarantined_at"]]
            conn.register("_incoming_quarantine", q)
            conn.execute("INSERT INTO quarantine SELECT * FROM _incoming_quarantine")
            conn.unregister("_incoming_quarantine")
        conn.execute("DELETE FROM batch_validation WHERE batch_id = ?", [batch_id])
        conn.execute(
            "INSERT INTO batch_validation VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                batch_id, fingerprint, report.passed, report.labelled, report.rows, len(published),
                report.quarantined_rows, report.invalid_fraction, report.max_invalid_fraction,
                report.schema_problems, [o.sentence() for o in report.failed_rules], report.summary, now, run_id,
            ],
        )
    return len(published)


def read_validated(conn: duckdb.DuckDBPyConnection, batch_ids: list[str] | None = None) -> pd.DataFrame:
    """Valid rows of passed batches (all, or the given ones), in batch and row order."""
    ensure_tables(conn)
    if not table_exists(conn, "validated"):
        return pd.DataFrame()
    if batch_ids is None:
        return conn.execute(f"SELECT * FROM validated ORDER BY {BATCH_COLUMN}, {ROW_COLUMN}").df()
    if not batch_ids:
        return conn.execute("SELECT * FROM validated LIMIT 0").df()
    return conn.execute(
        f"SELECT * FROM validated WHERE {BATCH_COLUMN} IN (SELECT unnest(?)) ORDER BY {BATCH_COLUMN}, {ROW_COLUMN}",
        [batch_ids],
    ).df()


def read_quarantine(conn: duckdb.DuckDBPyConnection, batch_id: str | None = None) -> pd.DataFrame:
    """Quarantined rows (all, or one batch's), with reasons."""
    ensure_tables(conn)
    if batch_id is None:
        return conn.execute(f"SELECT * FROM quarantine ORDER BY batch_id, {ROW_COLUMN}").df()
    return conn.execute(f"SELECT * FROM quarantine WHERE batch_id = ? ORDER BY {ROW_COLUMN}", [batch_id]).df()


def batch_statuses(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every ingested batch with its validation outcome (null when not validated yet)."""
    ensure_tables(conn)
    return conn.execute(
        """
        SELECT i.batch_id, i.file_name, i.rows, v.passed, v.valid_rows, v.quarantined_rows,
               v.invalid_fraction, v.labelled, v.summary
        FROM ingestion_log i LEFT JOIN batch_validation v USING (batch_id)
        ORDER BY i.batch_id
        """
    ).df()


NOT_A_LABELS_FILE = "batch_id NOT IN (SELECT batch_id FROM label_files)"


def passed_batches(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """Ids of data batches that passed validation, in arrival order (labels files are not data batches)."""
    ensure_tables(conn)
    return [r[0] for r in conn.execute(
        f"SELECT batch_id FROM batch_validation WHERE passed AND {NOT_A_LABELS_FILE} ORDER BY batch_id"
    ).fetchall()]


def replace_row(conn: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str], record: dict[str, Any],
                 keys: Sequence[str] = ("batch_id",)) -> None:
    """Replace the row of ``table`` with ``record``'s ``keys`` in one transaction; ``record`` must
    have every column."""
    ensure_tables(conn)
    missing = [c for c in columns if c not in record]
    if missing:
        raise ValueError(f"{table} record lacks {missing}")
    with transaction(conn, f"storing {table} of " + ", ".join(f"{k} {record[k]!r}" for k in keys)):
        conn.execute(f"DELETE FROM {table} WHERE " + " AND ".join(f"{k} = ?" for k in keys),
                     [str(record[k]) for k in keys])
        conn.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
            [record[c] for c in columns],
        )


def jsonable(value: Any) -> Any:
    """Make a value safe for JSON metadata."""
    return json.loads(json.dumps(value, default=str))


def validations_since(conn: duckdb.DuckDBPyConnection, since: datetime | None) -> pd.DataFrame:
    """Batches that passed validation after ``since`` (all when None): id, labelled, valid rows, time."""
    ensure_tables(conn)
    query = (  # a labels file brings no rows but the labels it attached to earlier rows
        "SELECT batch_id, labelled OR l.batch_id IS NOT NULL AS labelled, coalesce(l.attached, valid_rows) AS valid_rows, "
        "validated_at FROM batch_validation LEFT JOIN label_files l USING (batch_id) WHERE passed"
    )
    params: list = []
    if since is not None:
        query += " AND validated_at > ?"
        params.append(since)
    return conn.execute(query + " ORDER BY batch_id", params).df()


# --------------------------------------------------------------------------
# Labels for earlier rows (core.late_labels)
# --------------------------------------------------------------------------


