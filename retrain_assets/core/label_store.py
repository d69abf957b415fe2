"""Labels in the warehouse: which batches are labelled, labels flagged as suspect and a person's
review of them, and labels delivered later in a labels file (attached to earlier rows by id).
Pure Python (duckdb, no Dagster); the tables are created by :mod:`retrain_assets.core.storage`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import duckdb
import pandas as pd

from retrain_assets.core.columns import BATCH_COLUMN, ROW_COLUMN
from retrain_assets.core.storage import NOT_A_LABELS_FILE, ensure_tables, quote_identifier, table_exists, transaction


def labelled_batches(conn: duckdb.DuckDBPyConnection) -> dict[str, bool]:
    """Batches that passed validation (arrival order) → whether they carry labels to learn from
    (a batch whose labels are flagged or rejected as suspect counts as unlabelled: core.labels)."""
    ensure_tables(conn)
    rows = conn.execute(
        f"SELECT batch_id, labelled FROM batch_validation WHERE passed AND {NOT_A_LABELS_FILE} ORDER BY batch_id"
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
        f"SELECT batch_id, valid_rows FROM batch_validation WHERE passed AND labelled AND {NOT_A_LABELS_FILE} "
        "ORDER BY batch_id"
    ).fetchall() if r[0] not in held]
    if target is None or not table_exists(conn, "validated"):
        return [(batch_id, int(valid_rows or 0)) for batch_id, valid_rows in rows]
    columns = {r[0] for r in conn.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = 'validated'").fetchall()}
    if target not in columns:
        return [(batch_id, 0) for batch_id, _ in rows]
    counts = dict(conn.execute(f"SELECT {BATCH_COLUMN}, count({quote_identifier(target)}) FROM validated GROUP BY 1").fetchall())
    return [(batch_id, int(counts.get(batch_id, 0))) for batch_id, _ in rows]


def rows_with_ids(conn: duckdb.DuckDBPyConnection, ids: pd.DataFrame, target: str) -> pd.DataFrame:
    """Validated rows whose id columns (the columns of ``ids``, compared as text) match a row of ``ids``:
    the id columns, ``_batch_id``, ``_row`` and the target (null where no label yet, or absent)."""
    ensure_tables(conn)
    columns = list(ids.columns)
    empty = pd.DataFrame(columns=[*columns, BATCH_COLUMN, ROW_COLUMN, target])
    if not table_exists(conn, "validated"):
        return empty
    present = {r[0] for r in conn.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = 'validated'").fetchall()}
    if not set(columns) <= present:
        return empty
    label = quote_identifier(target) if target in present else "NULL"
    on = " AND ".join(f"trim(CAST(v.{quote_identifier(c)} AS VARCHAR)) = i.{quote_identifier(c)}" for c in columns)
    conn.register("_label_ids", ids.astype(str))
    try:
        return conn.execute(
            f"SELECT {', '.join('v.' + quote_identifier(c) for c in columns)}, v.{BATCH_COLUMN}, v.{ROW_COLUMN}, "
            f"{label if label == 'NULL' else 'v.' + label} AS {quote_identifier(target)} "
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
        if len(updates) and table_exists(conn, "validated"):
            def column_types() -> dict[str, str]:
                return dict(conn.execute(
                    "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'validated'").fetchall())

            if target not in column_types():  # no batch so far carried the target column at all
                values = pd.Series(updates["label"].tolist())
                kind = ("BIGINT" if pd.api.types.is_integer_dtype(values.dtype)
                        else "DOUBLE" if pd.api.types.is_float_dtype(values.dtype) else "VARCHAR")
                conn.execute(f"ALTER TABLE validated ADD COLUMN {quote_identifier(target)} {kind}")
            dtype = column_types()[target]
            frame = pd.DataFrame({BATCH_COLUMN: updates[BATCH_COLUMN].astype(str),
                                  ROW_COLUMN: updates[ROW_COLUMN].astype("int64"),
                                  "label": [str(v) for v in updates["label"].tolist()]})
            conn.register("_late_labels", frame)
            attached = conn.execute(
                f"UPDATE validated AS v SET {quote_identifier(target)} = CAST(l.label AS {dtype}) "
                f"FROM _late_labels l WHERE v.{BATCH_COLUMN} = l.{BATCH_COLUMN} AND v.{ROW_COLUMN} = l.{ROW_COLUMN} "
                f"AND v.{quote_identifier(target)} IS NULL"
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
