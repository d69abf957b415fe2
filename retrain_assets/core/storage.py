"""The DuckDB tables behind raw_data and validated_data. Pure Python (duckdb, no Dagster).

Tables (all keyed by ``batch_id``; re-running a batch replaces its rows in one transaction):

* ``raw.<batch_id>`` — the batch exactly as read (CSV values as text), plus ``_row``.
* ``ingestion_log`` — one row per ingested batch: file, fingerprint, rows, columns, times.
* ``validated`` — typed rows of batches that passed validation, plus ``_batch_id`` and ``_row``.
* ``label_files`` — one row per labels file (labels for earlier rows, :mod:`retrain_assets.core.late_labels`):
  how many labels it attached and to which batches. A labels file adds no rows of its own.
* ``quarantine`` — every rejected row with the rules it broke, the reasons and the row as JSON.
* ``batch_validation`` — one row per validated batch: status, counts, failed rules.
* ``drift_reports`` — one row per monitored batch: the drift verdict and its numbers.
* ``promotion_ledger`` — every move of the ``champion`` alias (promotion or rollback), written as
  ``pending`` before the alias moves and settled after (read and written by :mod:`retrain_assets.core.ledger`).
* ``production_metrics`` — one row per monitored batch: the champion's metric or estimate.
* ``shadow_scores`` — one row per batch and challenger scored beside the champion (shadow scoring).

Connections are opened by the caller and kept short (DuckDB allows one writer per file).
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import duckdb
import pandas as pd

from retrain_assets.core import files
from retrain_assets.core.columns import BATCH_COLUMN, ROW_COLUMN

if TYPE_CHECKING:  # the report is written here, never built: storage sits below validation
    from retrain_assets.core.validation import ValidationReport


_DDL = """
CREATE SCHEMA IF NOT EXISTS raw;
CREATE TABLE IF NOT EXISTS ingestion_log (
    batch_id VARCHAR PRIMARY KEY,
    file_name VARCHAR NOT NULL,
    file_path VARCHAR NOT NULL,
    file_format VARCHAR NOT NULL,
    fingerprint VARCHAR NOT NULL,
    size_bytes BIGINT NOT NULL,
    rows BIGINT NOT NULL,
    columns VARCHAR[] NOT NULL,
    arrived_at TIMESTAMPTZ NOT NULL,
    ingested_at TIMESTAMPTZ NOT NULL,
    dagster_run_id VARCHAR
);
CREATE TABLE IF NOT EXISTS label_reviews (
    batch_id VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    flagged_at TIMESTAMPTZ NOT NULL,
    reviewer VARCHAR,
    note VARCHAR,
    reviewed_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS label_files (
    batch_id VARCHAR PRIMARY KEY,
    rows BIGINT NOT NULL,
    attached BIGINT NOT NULL,
    already_known BIGINT NOT NULL,
    quarantined BIGINT NOT NULL,
    labelled_batches VARCHAR[] NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL,
    dagster_run_id VARCHAR
);
CREATE TABLE IF NOT EXISTS quarantine (
    batch_id VARCHAR NOT NULL,
    _row BIGINT NOT NULL,
    failed_rules VARCHAR NOT NULL,
    reasons VARCHAR NOT NULL,
    row_json VARCHAR NOT NULL,
    quarantined_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_validation (
    batch_id VARCHAR PRIMARY KEY,
    fingerprint VARCHAR,
    passed BOOLEAN NOT NULL,
    labelled BOOLEAN NOT NULL,
    rows BIGINT NOT NULL,
    valid_rows BIGINT NOT NULL,
    quarantined_rows BIGINT NOT NULL,
    invalid_fraction DOUBLE NOT NULL,
    max_invalid_fraction DOUBLE NOT NULL,
    schema_problems VARCHAR[] NOT NULL,
    failed_rules VARCHAR[] NOT NULL,
    summary VARCHAR NOT NULL,
    validated_at TIMESTAMPTZ NOT NULL,
    dagster_run_id VARCHAR
);
CREATE TABLE IF NOT EXISTS drift_reports (
    batch_id VARCHAR PRIMARY KEY,
    drift_detected BOOLEAN NOT NULL,
    data_drift BOOLEAN NOT NULL,
    prediction_drift BOOLEAN,
    concept_drift BOOLEAN,
    drift_score DOUBLE NOT NULL,
    drifted_features VARCHAR[] NOT NULL,
    domain_auc DOUBLE,
    labelled BOOLEAN NOT NULL,
    metric VARCHAR,
    batch_metric DOUBLE,
    estimated_metric DOUBLE,
    champion_version VARCHAR,
    reference_batches VARCHAR[] NOT NULL,
    summary VARCHAR NOT NULL,
    features_json VARCHAR NOT NULL,
    report_path VARCHAR,
    ci_low DOUBLE,
    ci_high DOUBLE,
    holdout_metric DOUBLE,
    detectors_fired VARCHAR[],
    created_at TIMESTAMPTZ NOT NULL,
    dagster_run_id VARCHAR
);
CREATE TABLE IF NOT EXISTS production_metrics (
    batch_id VARCHAR PRIMARY KEY,
    champion_version VARCHAR,
    labelled BOOLEAN NOT NULL,
    metric VARCHAR NOT NULL,
    batch_metric DOUBLE,
    ci_low DOUBLE,
    ci_high DOUBLE,
    holdout_metric DOUBLE,
    floor DOUBLE,
    below_floor BOOLEAN,
    degraded BOOLEAN,
    detectors_fired VARCHAR[] NOT NULL,
    estimated_metric DOUBLE,
    watch_previous_version VARCHAR,
    watch_difference DOUBLE,
    watch_ci_low DOUBLE,
    rollback_recommended BOOLEAN NOT NULL,
    summary VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    dagster_run_id VARCHAR
);
CREATE TABLE IF NOT EXISTS promotion_ledger (
    entry_id VARCHAR PRIMARY KEY,
    recorded_at TIMESTAMPTZ NOT NULL,
    settled_at TIMESTAMPTZ,
    model_name VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    from_version VARCHAR,
    to_version VARCHAR NOT NULL,
    trigger VARCHAR,
    reason VARCHAR,
    gates_passed BOOLEAN,
    gates_json VARCHAR,
    dagster_run_id VARCHAR,
    mlflow_run_id VARCHAR,
    launched_by VARCHAR,
    note VARCHAR,
    approver VARCHAR
);
CREATE TABLE IF NOT EXISTS shadow_scores (
    batch_id VARCHAR NOT NULL,
    champion_version VARCHAR NOT NULL,
    challenger_version VARCHAR NOT NULL,
    labelled BOOLEAN NOT NULL,
    metric VARCHAR NOT NULL,
    rows BIGINT NOT NULL,
    champion_metric DOUBLE,
    champion_ci_low DOUBLE,
    champion_ci_high DOUBLE,
    challenger_metric DOUBLE,
    challenger_ci_low DOUBLE,
    challenger_ci_high DOUBLE,
    difference DOUBLE,
    difference_ci_low DOUBLE,
    difference_ci_high DOUBLE,
    champion_estimated_metric DOUBLE,
    challenger_estimated_metric DOUBLE,
    champion_mean_score DOUBLE,
    challenger_mean_score DOUBLE,
    champion_positive_rate DOUBLE,
    challenger_positive_rate DOUBLE,
    champion_quantiles DOUBLE[] NOT NULL,
    challenger_quantiles DOUBLE[] NOT NULL,
    agreement DOUBLE NOT NULL,
    mean_abs_score_difference DOUBLE NOT NULL,
    seconds DOUBLE NOT NULL,
    summary VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    dagster_run_id VARCHAR,
    PRIMARY KEY (batch_id, challenger_version)
);
"""


def _q(identifier: str) -> str:
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
    return f"raw.{_q(batch_id)}"


_TABLES = tuple(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", _DDL))


def ensure_tables(conn: duckdb.DuckDBPyConnection) -> None:
    """Create the platform's tables if they do not exist (and add columns newer releases need).

    When they all exist already, nothing is executed but one catalog query: a reader (a sensor tick,
    a read-only connection) never runs DDL, so it never needs the write lock.
    """
    present = {name for (name,) in conn.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()}
    if set(_TABLES) <= present and not _missing_columns(conn):
        return
    conn.execute(_DDL)
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
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {_q(column)} {dtype}")


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


def _table_exists(conn: duckdb.DuckDBPyConnection, name: str, schema: str = "main") -> bool:
    return bool(conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [schema, name]
    ).fetchall()[0][0])


def _add_missing_columns(conn: duckdb.DuckDBPyConnection, table: str, frame_name: str) -> None:
    existing = {r[0] for r in conn.execute(f"DESCRIBE {table}").fetchall()}
    described = conn.execute(f"DESCRIBE {frame_name}").fetchall()
    for name, dtype, *_ in described:
        if name not in existing:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {_q(name)} {dtype}")


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
        if _table_exists(conn, "validated"):
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
    if not _table_exists(conn, "validated"):
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


_NOT_LABEL_FILE = "batch_id NOT IN (SELECT batch_id FROM label_files)"


def passed_batches(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """Ids of data batches that passed validation, in arrival order (labels files are not data batches)."""
    ensure_tables(conn)
    return [r[0] for r in conn.execute(
        f"SELECT batch_id FROM batch_validation WHERE passed AND {_NOT_LABEL_FILE} ORDER BY batch_id"
    ).fetchall()]


DRIFT_REPORT_COLUMNS = (
    "batch_id", "drift_detected", "data_drift", "prediction_drift", "concept_drift", "drift_score",
    "drifted_features", "domain_auc", "labelled", "metric", "batch_metric", "estimated_metric",
    "champion_version", "reference_batches", "summary", "features_json", "report_path", "created_at",
    "dagster_run_id", "ci_low", "ci_high", "holdout_metric", "detectors_fired",
)


def _replace_row(conn: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str], record: dict[str, Any],
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


def write_drift_report(conn: duckdb.DuckDBPyConnection, record: dict[str, Any]) -> None:
    """Store (or replace) one batch's drift report; ``record`` has every DRIFT_REPORT_COLUMNS key."""
    _replace_row(conn, "drift_reports", DRIFT_REPORT_COLUMNS, record)


def read_drift_reports(conn: duckdb.DuckDBPyConnection, batch_id: str | None = None) -> pd.DataFrame:
    """Every stored drift report in batch order, or only ``batch_id``'s."""
    ensure_tables(conn)
    if batch_id is not None:
        return conn.execute("SELECT * FROM drift_reports WHERE batch_id = ?", [batch_id]).df()
    return conn.execute("SELECT * FROM drift_reports ORDER BY batch_id").df()


def jsonable(value: Any) -> Any:
    """Make a value safe for JSON metadata."""
    return json.loads(json.dumps(value, default=str))


def labelled_batches(conn: duckdb.DuckDBPyConnection) -> dict[str, bool]:
    """Batches that passed validation (arrival order) → whether they carry labels to learn from
    (a batch whose labels are flagged or rejected as suspect counts as unlabelled: core.labels)."""
    ensure_tables(conn)
    rows = conn.execute(
        f"SELECT batch_id, labelled FROM batch_validation WHERE passed AND {_NOT_LABEL_FILE} ORDER BY batch_id"
    ).fetchall()
    held = held_label_batches(conn)
    return {batch_id: bool(labelled) and batch_id not in held for batch_id, labelled in rows}


def flag_labels(conn: duckdb.DuckDBPyConnection, batch_id: str, kind: str, reason: str) -> str:
    """Record suspect labels for a batch (once: a person's decision on it is kept). Returns the status."""
    ensure_tables(conn)
    found = conn.execute("SELECT status FROM label_reviews WHERE batch_id = ?", [batch_id]).fetchone()
    if found is not None and found[0] != "flagged":
        return str(found[0])
    conn.execute("DELETE FROM label_reviews WHERE batch_id = ?", [batch_id])
    conn.execute("INSERT INTO label_reviews VALUES (?, ?, ?, 'flagged', ?, NULL, NULL, NULL)",
                 [batch_id, kind, reason, datetime.now(timezone.utc)])
    return "flagged"


def review_labels(conn: duckdb.DuckDBPyConnection, batch_id: str, decision: str, reviewer: str, note: str) -> dict[str, Any]:
    """A person accepts or rejects a batch's flagged labels; returns the review.

    Raises:
        ValueError: the batch has no flagged labels, or the decision is not accept/reject.
    """
    ensure_tables(conn)
    if decision not in ("accept", "reject"):
        raise ValueError(f"decision must be 'accept' or 'reject', got {decision!r}")
    found = conn.execute("SELECT kind, reason, status FROM label_reviews WHERE batch_id = ?", [batch_id]).fetchone()
    if found is None:
        flagged = sorted(held_label_batches(conn))
        raise ValueError(f"batch {batch_id!r} has no suspect labels to review; flagged now: {flagged or 'none'}")
    status = "accepted" if decision == "accept" else "rejected"
    now = datetime.now(timezone.utc)
    conn.execute("UPDATE label_reviews SET status = ?, reviewer = ?, note = ?, reviewed_at = ? WHERE batch_id = ?",
                 [status, reviewer, note, now, batch_id])
    return {"batch_id": batch_id, "kind": found[0], "reason": found[1], "status": status, "reviewer": reviewer,
            "note": note, "reviewed_at": now}


def held_label_batches(conn: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Batches whose labels are kept out of training and triggers (flagged, or rejected) → reason."""
    ensure_tables(conn)
    rows = conn.execute("SELECT batch_id, status, reason FROM label_reviews WHERE status IN ('flagged', 'rejected')").fetchall()
    return {batch_id: f"labels {status}: {reason}" for batch_id, status, reason in rows}


def read_label_reviews(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every batch whose labels were flagged, with its status and review."""
    ensure_tables(conn)
    return conn.execute("SELECT * FROM label_reviews ORDER BY batch_id").df()


def labelled_row_counts(conn: duckdb.DuckDBPyConnection, target: str | None = None) -> list[tuple[str, int]]:
    """(batch id, labelled rows) of each labelled batch that passed validation, in arrival order.

    Rows whose label has not arrived yet are valid but unlabelled: with ``target`` given, only rows
    holding a label count; without it, every valid row of a labelled batch does.
    """
    ensure_tables(conn)
    held = held_label_batches(conn)
    rows = [r for r in conn.execute(
        f"SELECT batch_id, valid_rows FROM batch_validation WHERE passed AND labelled AND {_NOT_LABEL_FILE} "
        "ORDER BY batch_id"
    ).fetchall() if r[0] not in held]
    if target is None or not _table_exists(conn, "validated"):
        return [(batch_id, int(valid_rows or 0)) for batch_id, valid_rows in rows]
    columns = {r[0] for r in conn.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = 'validated'").fetchall()}
    if target not in columns:
        return [(batch_id, 0) for batch_id, _ in rows]
    counts = dict(conn.execute(f"SELECT {BATCH_COLUMN}, count({_q(target)}) FROM validated GROUP BY 1").fetchall())
    return [(batch_id, int(counts.get(batch_id, 0))) for batch_id, _ in rows]


def write_production_metrics(conn: duckdb.DuckDBPyConnection, record: dict[str, Any]) -> None:
    """Store (or replace) one batch's production metrics (``ProductionMetrics.as_record()`` plus
    ``created_at`` and ``dagster_run_id``)."""
    ensure_tables(conn)
    columns = [r[0] for r in conn.execute("DESCRIBE production_metrics").fetchall()]
    _replace_row(conn, "production_metrics", columns, record)


def read_production_metrics(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every batch's production metrics, in batch order."""
    ensure_tables(conn)
    return conn.execute("SELECT * FROM production_metrics ORDER BY batch_id").df()


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


def write_shadow_scores(conn: duckdb.DuckDBPyConnection, record: dict[str, Any]) -> None:
    """Store (or replace) the shadow scores of one batch and challenger (``ShadowScores.as_record()``
    plus ``created_at`` and ``dagster_run_id``), in one transaction."""
    ensure_tables(conn)
    columns = [r[0] for r in conn.execute("DESCRIBE shadow_scores").fetchall()]
    _replace_row(conn, "shadow_scores", columns, record, keys=("batch_id", "challenger_version"))


def read_shadow_scores(
    conn: duckdb.DuckDBPyConnection, *, champion_version: str | None = None, challenger_version: str | None = None
) -> pd.DataFrame:
    """Shadow scores in batch order (all, or of one champion/challenger pair)."""
    ensure_tables(conn)
    query, params = "SELECT * FROM shadow_scores WHERE true", []
    for column, value in (("champion_version", champion_version), ("challenger_version", challenger_version)):
        if value is not None:
            query += f" AND {column} = ?"
            params.append(str(value))
    return conn.execute(query + " ORDER BY batch_id, created_at", params).df()


# --------------------------------------------------------------------------
# Labels for earlier rows (core.late_labels)
# --------------------------------------------------------------------------


def rows_with_ids(conn: duckdb.DuckDBPyConnection, ids: pd.DataFrame, target: str) -> pd.DataFrame:
    """Validated rows whose id columns (the columns of ``ids``, compared as text) match a row of ``ids``:
    the id columns, ``_batch_id``, ``_row`` and the target (null where no label yet, or absent)."""
    ensure_tables(conn)
    columns = list(ids.columns)
    empty = pd.DataFrame(columns=[*columns, BATCH_COLUMN, ROW_COLUMN, target])
    if not _table_exists(conn, "validated"):
        return empty
    present = {r[0] for r in conn.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = 'validated'").fetchall()}
    if not set(columns) <= present:
        return empty
    label = _q(target) if target in present else "NULL"
    on = " AND ".join(f"trim(CAST(v.{_q(c)} AS VARCHAR)) = i.{_q(c)}" for c in columns)
    conn.register("_label_ids", ids.astype(str))
    try:
        return conn.execute(
            f"SELECT {', '.join('v.' + _q(c) for c in columns)}, v.{BATCH_COLUMN}, v.{ROW_COLUMN}, "
            f"{label if label == 'NULL' else 'v.' + label} AS {_q(target)} "
            f"FROM validated v WHERE EXISTS (SELECT 1 FROM _label_ids i WHERE {on}) ORDER BY v.{BATCH_COLUMN}, v.{ROW_COLUMN}"
        ).df()
    finally:
        conn.unregister("_label_ids")


def attach_labels(
    conn: duckdb.DuckDBPyConnection,
    labels_batch_id: str,
    updates: pd.DataFrame,
    *,
    target: str,
    rows: int,
    already_known: int,
    quarantined: int,
    run_id: str | None = None,
) -> int:
    """Give earlier validated rows the labels of a labels file, in one transaction; returns how many.

    ``updates`` has ``_batch_id``, ``_row`` and ``label``. Only rows whose label is still empty
    change (a label is never overwritten); their batches become labelled. Re-applying the same
    file attaches nothing new.
    """
    ensure_tables(conn)
    now = datetime.now(timezone.utc)
    batches = sorted(set(updates[BATCH_COLUMN].tolist())) if len(updates) else []
    attached = 0
    with transaction(conn, f"attaching the labels of labels file {labels_batch_id!r}"):
        if len(updates) and _table_exists(conn, "validated"):
            def column_types() -> dict[str, str]:
                return dict(conn.execute(
                    "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'validated'").fetchall())

            if target not in column_types():  # no batch so far carried the target column at all
                values = pd.Series(updates["label"].tolist())
                kind = ("BIGINT" if pd.api.types.is_integer_dtype(values.dtype)
                        else "DOUBLE" if pd.api.types.is_float_dtype(values.dtype) else "VARCHAR")
                conn.execute(f"ALTER TABLE validated ADD COLUMN {_q(target)} {kind}")
            dtype = column_types()[target]
            frame = pd.DataFrame({BATCH_COLUMN: updates[BATCH_COLUMN].astype(str),
                                  ROW_COLUMN: updates[ROW_COLUMN].astype("int64"),
                                  "label": [str(v) for v in updates["label"].tolist()]})
            conn.register("_late_labels", frame)
            attached = conn.execute(
                f"UPDATE validated AS v SET {_q(target)} = CAST(l.label AS {dtype}) "
                f"FROM _late_labels l WHERE v.{BATCH_COLUMN} = l.{BATCH_COLUMN} AND v.{ROW_COLUMN} = l.{ROW_COLUMN} "
                f"AND v.{_q(target)} IS NULL"
            ).fetchone()[0]
            conn.unregister("_late_labels")
            conn.execute("UPDATE batch_validation SET labelled = TRUE WHERE batch_id IN (SELECT unnest(?))", [batches])
        conn.execute("DELETE FROM label_files WHERE batch_id = ?", [labels_batch_id])
        conn.execute("INSERT INTO label_files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     [labels_batch_id, rows, int(attached), already_known, quarantined, batches, now, run_id])
    return int(attached)


def read_label_files(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every labels file taken in: how many labels it attached, to which batches."""
    ensure_tables(conn)
    return conn.execute("SELECT * FROM label_files ORDER BY batch_id").df()


def label_file_ids(conn: duckdb.DuckDBPyConnection) -> set[str]:
    """Batch ids that were labels files (they hold no rows to monitor or train on)."""
    ensure_tables(conn)
    return {r[0] for r in conn.execute("SELECT batch_id FROM label_files").fetchall()}
