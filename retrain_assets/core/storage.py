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
from dataclasses import dataclass, replace as dataclass_replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

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
    """Store a batch held as one frame and its ingestion record, replacing any earlier copy, atomically."""

    def fill(table: str) -> None:
        incoming_raw = frame  # noqa: F841 - read by name (see append_valid)
        conn.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM incoming_raw")

    write_raw_stream(conn, record, fill, count=False)


def write_raw_stream(conn: duckdb.DuckDBPyConnection, record: IngestionRecord,
                     fill: Callable[[str], None], *, count: bool = True) -> IngestionRecord:
    """Store a batch and its ingestion record, replacing any earlier copy, in one transaction.

    ``fill(table)`` creates the raw table and fills it (at once, or chunk by chunk from a file DuckDB
    or pandas reads); what it raises undoes everything. With ``count``, the record's ``rows`` and
    ``columns`` (``_row`` aside) are counted from the stored table; else it is logged as given.

    Returns:
        The record as logged.
    """
    ensure_tables(conn)
    table = raw_table(record.batch_id)
    with transaction(conn, f"storing batch {record.batch_id!r} from {record.file_name}"):
        fill(table)
        if count:
            rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            columns = [name for name, *_ in conn.execute(f"DESCRIBE {table}").fetchall() if name != ROW_COLUMN]
            record = dataclass_replace(record, rows=int(rows), columns=columns)
        conn.execute("DELETE FROM ingestion_log WHERE batch_id = ?", [record.batch_id])
        conn.execute(
            "INSERT INTO ingestion_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                record.batch_id, record.file_name, record.file_path, record.file_format, record.fingerprint,
                record.size_bytes, record.rows, record.columns, record.arrived_at, record.ingested_at,
                record.dagster_run_id,
            ],
        )
    return record


def _raw_query(conn: duckdb.DuckDBPyConnection, batch_id: str, sql: str, params: list | None = None) -> pd.DataFrame:
    """``sql`` (``{table}`` standing for the batch's raw table) as a frame, NULL text as None like the reader."""
    try:
        frame = conn.execute(sql.format(table=raw_table(batch_id)), params or []).df()
    except duckdb.CatalogException:
        raise LookupError(
            f"batch {batch_id!r} has no raw data in DuckDB; materialize raw_data for this partition first"
        ) from None
    # DuckDB gives NaN for NULL text; keep None like the reader does.
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].where(frame[column].notna(), None)
    return frame


def read_raw_batch(conn: duckdb.DuckDBPyConnection, batch_id: str) -> pd.DataFrame:
    """A batch exactly as it was stored by :func:`write_raw_batch`, in file order."""
    return _raw_query(conn, batch_id, f"SELECT * FROM {{table}} ORDER BY {ROW_COLUMN}")


def raw_columns(conn: duckdb.DuckDBPyConnection, batch_id: str) -> list[str]:
    """A stored batch's columns, ``_row`` first."""
    return list(_raw_query(conn, batch_id, "SELECT * FROM {table} LIMIT 0").columns)


def raw_chunks(conn: duckdb.DuckDBPyConnection, batch_id: str, chunk_rows: int,
               columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
    """A stored batch in file order, ``chunk_rows`` rows at a time (one empty chunk when it has none).

    Each chunk is one query on a range of ``_row`` (DuckDB skips the row groups outside it), read
    whole before it is yielded, so the connection is free between chunks.

    Args:
        conn: The warehouse.
        batch_id: The batch.
        chunk_rows: Rows per chunk.
        columns: The columns wanted besides ``_row`` (all when None).
    """
    selected = "*" if columns is None else ", ".join(quote_identifier(c) for c in [ROW_COLUMN, *columns])
    low, high = _raw_query(conn, batch_id, f"SELECT min({ROW_COLUMN}) AS low, max({ROW_COLUMN}) AS high FROM {{table}}"
                           ).iloc[0].tolist()
    if pd.isna(low):
        yield _raw_query(conn, batch_id, f"SELECT {selected} FROM {{table}} LIMIT 0")
        return
    start = int(low)
    while start <= int(high):
        yield _raw_query(conn, batch_id, f"SELECT {selected} FROM {{table}} WHERE {ROW_COLUMN} >= ? AND {ROW_COLUMN} < ? "
                         f"ORDER BY {ROW_COLUMN}", [start, start + chunk_rows])
        start += chunk_rows


def raw_sample(conn: duckdb.DuckDBPyConnection, batch_id: str, rows: int, seed: int = 0) -> tuple[pd.DataFrame, int]:
    """At most ``rows`` rows of a stored batch, in file order: all of them when it has no more, else a
    seeded sample (the rows with the smallest ``hash(_row, seed)``: the same rows every time).

    Returns:
        ``(rows, rows in the batch)``.
    """
    total = int(_raw_query(conn, batch_id, "SELECT count(*) AS n FROM {table}").iloc[0, 0])
    if total <= rows:
        return read_raw_batch(conn, batch_id), total
    return _raw_query(conn, batch_id, f"SELECT * FROM {{table}} WHERE {ROW_COLUMN} IN ({_sampled_rows('{table}')}) "
                      f"ORDER BY {ROW_COLUMN}", [seed, rows]), total


def _sampled_rows(table: str, where: str = "") -> str:
    """A query for the ``_row`` of the rows with the smallest ``hash(_row, seed)`` (parameters: seed, how
    many): only that column is ranked, so the sample costs little more memory than the rows it keeps."""
    return f"SELECT {ROW_COLUMN} FROM {table} {where} ORDER BY hash({ROW_COLUMN}, ?) LIMIT ?"


def raw_distinct(conn: duckdb.DuckDBPyConnection, batch_id: str, column: str, limit: int) -> list[Any]:
    """Up to ``limit`` distinct non-null values of one column of a stored batch."""
    frame = _raw_query(conn, batch_id, f"SELECT DISTINCT {quote_identifier(column)} AS v FROM {{table}} "
                       f"WHERE {quote_identifier(column)} IS NOT NULL LIMIT ?", [limit])
    return frame["v"].tolist()


def table_exists(conn: duckdb.DuckDBPyConnection, name: str, schema: str = "main") -> bool:
    return bool(conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [schema, name]
    ).fetchall()[0][0])


def _add_missing_columns(conn: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    existing = {r[0] for r in conn.execute(f"DESCRIBE {table}").fetchall()}
    incoming = frame  # noqa: F841 - read by name (see append_valid)
    described = conn.execute("DESCRIBE SELECT * FROM incoming").fetchall()
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

    A report whose rows were written as they were judged (``report.stored_counts``) is stored
    already (:func:`retrain_assets.core.validation_store.validate_stored_batch`).

    Returns:
        How many rows were published to ``validated``.
    """
    if report.stored_counts is not None:
        raise ValueError(f"the validation of batch {report.batch_id!r} was stored as it was judged; it holds only "
                         "the first rows, so it cannot be written again")
    ensure_tables(conn)
    now = now or datetime.now(timezone.utc)
    batch_id = report.batch_id
    published = report.valid if report.passed else report.valid.iloc[0:0]
    with transaction(conn, f"storing the validation of batch {batch_id!r}"):
        clear_validation(conn, batch_id)
        # Only rows shape the table: an empty frame's text columns have no type (DuckDB "NULL"), and a
        # column added with that type would refuse every later value.
        if len(published):
            append_valid(conn, batch_id, published)
        if len(report.quarantine):
            append_quarantine(conn, batch_id, report.quarantine, now)
        log_validation(conn, report, published=len(published), fingerprint=fingerprint, run_id=run_id, now=now)
    return len(published)


def clear_validation(conn: duckdb.DuckDBPyConnection, batch_id: str) -> None:
    """Remove a batch's valid and quarantined rows (inside the caller's transaction)."""
    unpublish(conn, batch_id)
    conn.execute("DELETE FROM quarantine WHERE batch_id = ?", [batch_id])


def unpublish(conn: duckdb.DuckDBPyConnection, batch_id: str) -> None:
    """Remove a batch's rows from ``validated`` (inside the caller's transaction)."""
    if table_exists(conn, "validated"):
        conn.execute(f"DELETE FROM validated WHERE {BATCH_COLUMN} = ?", [batch_id])


def append_valid(conn: duckdb.DuckDBPyConnection, batch_id: str, rows: pd.DataFrame) -> None:
    """Add typed valid rows of a batch to ``validated`` (created, or widened, from their columns)."""
    frame = rows.assign(**{BATCH_COLUMN: batch_id})
    # DuckDB reads the frame by its Python name (a replacement scan): a frame register()ed inside a
    # transaction stays referenced until it commits, so a batch appended chunk by chunk would stay in
    # memory whole.
    incoming_valid = frame[[BATCH_COLUMN, *[c for c in frame.columns if c != BATCH_COLUMN]]]
    conn.execute("CREATE TABLE IF NOT EXISTS validated AS SELECT * FROM incoming_valid LIMIT 0")
    _add_missing_columns(conn, "validated", incoming_valid)
    conn.execute("INSERT INTO validated BY NAME SELECT * FROM incoming_valid")


def append_quarantine(conn: duckdb.DuckDBPyConnection, batch_id: str, rows: pd.DataFrame, now: datetime) -> None:
    """Add quarantined rows (``_row``, ``failed_rules``, ``reasons``, ``row_json``) of a batch."""
    q = rows.assign(batch_id=batch_id, quarantined_at=now)
    incoming_quarantine = q[["batch_id", ROW_COLUMN, "failed_rules", "reasons", "row_json", "quarantined_at"]]  # noqa: F841
    conn.execute("INSERT INTO quarantine SELECT * FROM incoming_quarantine")  # read by name (see append_valid)


def log_validation(conn: duckdb.DuckDBPyConnection, report: ValidationReport, *, published: int,
                   fingerprint: str | None, run_id: str | None, now: datetime) -> None:
    """Record a batch's validation outcome in ``batch_validation`` (inside the caller's transaction)."""
    conn.execute("DELETE FROM batch_validation WHERE batch_id = ?", [report.batch_id])
    conn.execute(
        "INSERT INTO batch_validation VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            report.batch_id, fingerprint, report.passed, report.labelled, report.rows, published,
            report.quarantined_rows, report.invalid_fraction, report.max_invalid_fraction,
            report.schema_problems, [o.sentence() for o in report.failed_rules], report.summary, now, run_id,
        ],
    )


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


@dataclass(frozen=True)
class ValidatedSample:
    """Rows read for a retrain, and how they were chosen.

    Attributes:
        rows: The rows, in batch and row order.
        labelled: Labelled rows the batches hold in all.
        sampled: Whether ``rows`` is a sample (the labelled rows exceeded the cap).
    """

    rows: pd.DataFrame
    labelled: int
    sampled: bool

    @property
    def summary(self) -> str | None:
        """One sentence when sampled, else None."""
        if not self.sampled:
            return None
        return (f"a seeded sample of {len(self.rows):,} of {self.labelled:,} labelled rows, each batch in proportion "
                "(training.max_rows)")


def read_validated_sample(conn: duckdb.DuckDBPyConnection, batch_ids: list[str], *, target: str,
                          max_rows: int | None, seed: int) -> ValidatedSample:
    """Valid rows of some batches for training: all of them, or at most ``max_rows`` labelled ones.

    Beyond ``max_rows`` labelled rows, each batch gives a share in proportion to its labelled rows
    (largest remainders, so the shares add up to ``max_rows``): the window's own choice of batches
    and their recency weights keep their meaning. Within a batch the rows with the smallest
    ``hash(_row, seed)`` are taken: uniform, and the same rows every time for a seed. DuckDB picks
    them (a top-N per batch), so the batches are never read whole into memory.

    Args:
        conn: The warehouse.
        batch_ids: The batches.
        target: The label column (unlabelled rows are left out of a sample).
        max_rows: The cap, or None for every row.
        seed: The sample's seed (model.seed).
    """
    ensure_tables(conn)
    if max_rows is None or not batch_ids or not table_exists(conn, "validated") or not _has_column(
            conn, "validated", target):
        frame = read_validated(conn, batch_ids)
        return ValidatedSample(frame, len(frame), False)
    counts = dict(conn.execute(
        f"SELECT {BATCH_COLUMN}, count(*) FROM validated WHERE {BATCH_COLUMN} IN (SELECT unnest(?)) "
        f"AND {quote_identifier(target)} IS NOT NULL GROUP BY {BATCH_COLUMN}", [batch_ids]).fetchall())
    labelled = int(sum(counts.values()))
    if labelled <= max_rows:
        return ValidatedSample(read_validated(conn, batch_ids), labelled, False)
    exact = {b: max_rows * n / labelled for b, n in counts.items()}
    quota = {b: int(share) for b, share in exact.items()}
    for b in sorted(exact, key=lambda b: (quota[b] - exact[b], b))[: max_rows - sum(quota.values())]:
        quota[b] += 1
    labelled_in = f"WHERE {BATCH_COLUMN} = ? AND {quote_identifier(target)} IS NOT NULL"
    parts = [conn.execute(
        f"SELECT * FROM validated {labelled_in} AND {ROW_COLUMN} IN ({_sampled_rows('validated', labelled_in)})",
        [b, b, seed, quota[b]]).df()
        for b in sorted(quota) if quota[b]]
    rows = pd.concat(parts, ignore_index=True).sort_values([BATCH_COLUMN, ROW_COLUMN], ignore_index=True)
    return ValidatedSample(rows, labelled, True)


def read_validated_capped(conn: duckdb.DuckDBPyConnection, batch_id: str, *, max_rows: int | None,
                          seed: int) -> tuple[pd.DataFrame, int]:
    """One batch's valid rows, labelled or not: all of them, or beyond ``max_rows`` the ``max_rows``
    rows with the smallest ``hash(_row, seed)`` (uniform, the same rows for a seed; DuckDB picks them,
    so the batch is never read whole). Returns the rows (in row order) and how many the batch holds."""
    ensure_tables(conn)
    if not table_exists(conn, "validated"):
        return read_validated(conn, [batch_id]), 0
    total = int(conn.execute(f"SELECT count(*) FROM validated WHERE {BATCH_COLUMN} = ?", [batch_id]).fetchone()[0])
    if max_rows is None or total <= max_rows:
        return read_validated(conn, [batch_id]), total
    where = f"WHERE {BATCH_COLUMN} = ?"
    rows = conn.execute(
        f"SELECT * FROM validated {where} AND {ROW_COLUMN} IN ({_sampled_rows('validated', where)}) ORDER BY {ROW_COLUMN}",
        [batch_id, batch_id, seed, max_rows]).df()
    return rows, total


def _has_column(conn: duckdb.DuckDBPyConnection, table: str, column: str) -> bool:
    return column in {r[0] for r in conn.execute(f"DESCRIBE {table}").fetchall()}


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


