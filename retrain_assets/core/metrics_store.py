"""Per-batch measurements in the warehouse: drift reports, the champion's production metrics and
the challenger's shadow scores (one row per batch, replaced when the batch is measured again).
Pure Python (duckdb, no Dagster); the tables are created by :mod:`retrain_assets.core.storage`.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pandas as pd

from retrain_assets.core.storage import ensure_tables, replace_row


DRIFT_REPORT_COLUMNS = (
    "batch_id", "drift_detected", "data_drift", "prediction_drift", "concept_drift", "drift_score",
    "drifted_features", "domain_auc", "labelled", "metric", "batch_metric", "estimated_metric",
    "champion_version", "reference_batches", "summary", "features_json", "report_path", "created_at",
    "dagster_run_id", "ci_low", "ci_high", "holdout_metric", "detectors_fired",
)


def write_drift_report(conn: duckdb.DuckDBPyConnection, record: dict[str, Any]) -> None:
    """Store (or replace) one batch's drift report; ``record`` has every DRIFT_REPORT_COLUMNS key."""
    replace_row(conn, "drift_reports", DRIFT_REPORT_COLUMNS, record)


def read_drift_reports(conn: duckdb.DuckDBPyConnection, batch_id: str | None = None) -> pd.DataFrame:
    """Every stored drift report in batch order, or only ``batch_id``'s."""
    ensure_tables(conn)
    if batch_id is not None:
        return conn.execute("SELECT * FROM drift_reports WHERE batch_id = ?", [batch_id]).df()
    return conn.execute("SELECT * FROM drift_reports ORDER BY batch_id").df()


def write_production_metrics(conn: duckdb.DuckDBPyConnection, record: dict[str, Any]) -> None:
    """Store (or replace) one batch's production metrics (``ProductionMetrics.as_record()`` plus
    ``created_at`` and ``dagster_run_id``)."""
    ensure_tables(conn)
    columns = [r[0] for r in conn.execute("DESCRIBE production_metrics").fetchall()]
    replace_row(conn, "production_metrics", columns, record)


def read_production_metrics(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every batch's production metrics, in batch order."""
    ensure_tables(conn)
    return conn.execute("SELECT * FROM production_metrics ORDER BY batch_id").df()


def write_shadow_scores(conn: duckdb.DuckDBPyConnection, record: dict[str, Any]) -> None:
    """Store (or replace) the shadow scores of one batch and challenger (``ShadowScores.as_record()``
    plus ``created_at`` and ``dagster_run_id``), in one transaction."""
    ensure_tables(conn)
    columns = [r[0] for r in conn.execute("DESCRIBE shadow_scores").fetchall()]
    replace_row(conn, "shadow_scores", columns, record, keys=("batch_id", "challenger_version"))


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
