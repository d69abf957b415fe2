"""Tests for the DuckDB tables behind raw_data and validated_data."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from retrain_assets.core.columns import BATCH_COLUMN, ROW_COLUMN
from retrain_assets.core import metrics_store, storage
from retrain_assets.core.ingestion import read_batch
from retrain_assets.core.schema import infer_schema
from retrain_assets.core.storage import (
    IngestionRecord,
    batch_statuses,
    ingested_record,
    passed_batches,
    read_quarantine,
    read_raw_batch,
    read_validated,
    write_raw_batch,
    write_validation,
)
from retrain_assets.core.synthetic import CATEGORIES, ID_COLUMN, TARGET, TIME_COLUMN
from retrain_assets.core.synthetic_batches import make_batch, write_batch
from retrain_assets.core.validation import ValidationReport, validate_batch

HINTS = dict(
    id_columns=[ID_COLUMN],
    categorical=list(CATEGORIES),
    categories=CATEGORIES,
    ranges={"tenure_months": (0, 120), "monthly_charges": (0, 500), "support_calls": (0, 50), "age": (18, 110)},
    classes=[0, 1],
)
WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture()
def conn(tmp_path):
    connection = duckdb.connect(str(tmp_path / "w.duckdb"))
    yield connection
    connection.close()


def _usable(conn: duckdb.DuckDBPyConnection) -> None:
    """The connection takes further statements (nothing left pending or in a transaction)."""
    assert conn.execute("SELECT 42").fetchall() == [(42,)]
    conn.execute("BEGIN TRANSACTION")  # fails if a transaction were left open
    conn.execute("ROLLBACK")


def _record(batch_id: str, frame: pd.DataFrame, **changes) -> IngestionRecord:
    record = IngestionRecord(
        batch_id=batch_id,
        file_name=f"{batch_id}.csv",
        file_path=f"/landing/{batch_id}.csv",
        file_format="csv",
        fingerprint="ab" * 32,
        size_bytes=1234,
        rows=len(frame),
        columns=list(frame.columns),
        arrived_at=WHEN,
        ingested_at=WHEN + timedelta(seconds=5),
        dagster_run_id="run-1",
    )
    return replace(record, **changes)


@pytest.fixture(scope="module")
def landed(tmp_path_factory):
    """Batches as read from their CSV files, and a schema inferred from the first."""
    folder = tmp_path_factory.mktemp("storage")

    def land(df: pd.DataFrame, batch_id: str) -> pd.DataFrame:
        return read_batch(write_batch(df, folder / f"{batch_id}.csv"))

    frames = {
        "b1": land(make_batch(60, seed=1, batch_index=1), "b1"),
        "b2": land(make_batch(500, seed=2, batch_index=2, scenario="corrupt", corrupt_fraction=0.01), "b2"),
        "b3": land(make_batch(100, seed=3, batch_index=3, scenario="corrupt", corrupt_fraction=0.2), "b3"),
        "b4": land(make_batch(40, seed=4, batch_index=4, scenario="unlabelled"), "b4"),
        "b5": land(make_batch(30, seed=5, batch_index=5).rename(columns={"age": "years"}), "b5"),
    }
    schema = infer_schema(frames["b1"], target=TARGET, task="classification", time_column=TIME_COLUMN, **HINTS)
    return frames, schema


@pytest.fixture(scope="module")
def reports(landed) -> dict[str, ValidationReport]:
    frames, schema = landed
    out = {batch_id: validate_batch(frame, schema, batch_id=batch_id) for batch_id, frame in frames.items()}
    assert out["b1"].passed and out["b1"].quarantined_rows == 0
    assert out["b2"].passed and out["b2"].quarantined_rows > 0
    assert not out["b3"].passed
    assert out["b4"].passed and not out["b4"].labelled
    assert not out["b5"].passed and out["b5"].valid.empty  # schema broken: every row quarantined
    return out


# --------------------------------------------------------------------------
# Raw batches
# --------------------------------------------------------------------------


def test_raw_batch_round_trip_keeps_text_and_none(conn):
    frame = pd.DataFrame(
        {ROW_COLUMN: [1, 2, 3], "id": ["007", "012", None], "age": ["41", None, "twelve"], "note": [None, None, None]}
    ).astype({"id": object, "age": object, "note": object})
    write_raw_batch(conn, _record("b1", frame), frame)
    _usable(conn)
    back = read_raw_batch(conn, "b1")
    _usable(conn)
    assert list(back.columns) == list(frame.columns)
    assert back[ROW_COLUMN].tolist() == [1, 2, 3]
    assert back["id"].tolist() == ["007", "012", None]  # leading zeros and None survive
    assert back["age"].tolist() == ["41", None, "twelve"]
    assert back["note"].tolist() == [None, None, None]


def test_raw_batch_round_trip_of_a_landed_file(conn, landed):
    frames, _ = landed
    raw = frames["b2"]
    write_raw_batch(conn, _record("b2", raw), raw)
    back = read_raw_batch(conn, "b2")
    pd.testing.assert_frame_equal(back, raw, check_dtype=False)
    assert all(v is None or isinstance(v, str) for v in back["age"])


def test_raw_batch_is_read_in_file_order(conn):
    frame = pd.DataFrame({ROW_COLUMN: [3, 1, 2], "v": ["c", "a", "b"]})
    write_raw_batch(conn, _record("b1", frame), frame)
    assert read_raw_batch(conn, "b1")["v"].tolist() == ["a", "b", "c"]


def test_rewriting_a_raw_batch_replaces_it(conn):
    first = pd.DataFrame({ROW_COLUMN: [1, 2, 3], "v": ["a", "b", "c"]})
    write_raw_batch(conn, _record("b1", first), first)
    second = pd.DataFrame({ROW_COLUMN: [1, 2], "v": ["x", "y"], "w": ["1", "2"]})
    write_raw_batch(conn, _record("b1", second, fingerprint="cd" * 32), second)
    _usable(conn)
    back = read_raw_batch(conn, "b1")
    assert back["v"].tolist() == ["x", "y"] and list(back.columns) == [ROW_COLUMN, "v", "w"]
    assert conn.execute("SELECT count(*) FROM ingestion_log").fetchall() == [(1,)]
    assert ingested_record(conn, "b1").fingerprint == "cd" * 32


def test_batch_ids_with_dots_and_dashes_are_table_names(conn):
    frame = pd.DataFrame({ROW_COLUMN: [1], "v": ["a"]})
    for batch_id in ("2024-05-01", "v1.2", "batch_0007"):
        write_raw_batch(conn, _record(batch_id, frame), frame)
        assert read_raw_batch(conn, batch_id)["v"].tolist() == ["a"]


def test_ingested_record_round_trip(conn):
    frame = pd.DataFrame({ROW_COLUMN: [1, 2], "v": ["a", "b"]})
    record = _record("b1", frame)
    assert ingested_record(conn, "b1") is None
    _usable(conn)
    write_raw_batch(conn, record, frame)
    stored = ingested_record(conn, "b1")
    _usable(conn)
    assert stored == record
    assert stored.columns == [ROW_COLUMN, "v"] and stored.arrived_at == WHEN


def test_reading_a_batch_never_stored_says_what_to_do(conn):
    with pytest.raises(LookupError, match="materialize raw_data"):
        read_raw_batch(conn, "nope")
    _usable(conn)


def test_a_failed_raw_write_leaves_nothing_behind(conn):
    frame = pd.DataFrame({ROW_COLUMN: [1], "v": ["a"]})
    write_raw_batch(conn, _record("b1", frame), frame)
    with pytest.raises(duckdb.Error):
        # the table is replaced, then the log insert breaks (rows must be an integer)
        write_raw_batch(conn, _record("b1", frame, rows="many"), pd.DataFrame({ROW_COLUMN: [1], "v": ["changed"]}))
    _usable(conn)
    assert read_raw_batch(conn, "b1")["v"].tolist() == ["a"]
    assert ingested_record(conn, "b1").rows == 1


# --------------------------------------------------------------------------
# Validation outcomes
# --------------------------------------------------------------------------


def _counts(conn: duckdb.DuckDBPyConnection) -> tuple[int, int, int]:
    return tuple(
        conn.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
        for table in ("validated", "quarantine", "batch_validation")
    )


def test_passed_batch_publishes_its_valid_rows(conn, reports):
    report = reports["b2"]
    published = write_validation(conn, report, fingerprint="f2", run_id="run-7", now=WHEN)
    _usable(conn)
    assert published == len(report.valid) == report.rows - report.quarantined_rows
    valid = read_validated(conn)
    _usable(conn)
    assert list(valid.columns) == [BATCH_COLUMN, *report.valid.columns]
    assert set(valid[BATCH_COLUMN]) == {"b2"}
    assert valid[ROW_COLUMN].tolist() == report.valid[ROW_COLUMN].tolist()
    assert valid[TARGET].dtype == np.int64 and valid["age"].dtype == np.float64
    assert pd.api.types.is_datetime64_any_dtype(valid[TIME_COLUMN])

    row = conn.execute("SELECT passed, rows, valid_rows, quarantined_rows, fingerprint, dagster_run_id "
                       "FROM batch_validation WHERE batch_id = 'b2'").fetchall()
    assert row == [(True, report.rows, len(report.valid), report.quarantined_rows, "f2", "run-7")]


def test_quarantined_rows_are_stored_with_reasons(conn, reports):
    report = reports["b2"]
    write_validation(conn, report, fingerprint="f2", now=WHEN)
    stored = read_quarantine(conn, "b2")
    _usable(conn)
    assert len(stored) == report.quarantined_rows
    assert stored[ROW_COLUMN].tolist() == sorted(report.quarantine[ROW_COLUMN].tolist())
    assert (stored["batch_id"] == "b2").all()
    expected = report.quarantine.set_index(ROW_COLUMN)
    for _, row in stored.iterrows():
        assert row["failed_rules"] == expected.loc[row[ROW_COLUMN], "failed_rules"]
        assert row["reasons"] == expected.loc[row[ROW_COLUMN], "reasons"] and row["reasons"]
        assert json.loads(row["row_json"]) == json.loads(expected.loc[row[ROW_COLUMN], "row_json"])
    assert len(read_quarantine(conn)) == len(stored)


def test_failed_batch_publishes_nothing_but_is_recorded(conn, reports):
    report = reports["b3"]
    assert write_validation(conn, report, fingerprint="f3", now=WHEN) == 0
    _usable(conn)
    assert read_validated(conn).empty
    assert len(read_quarantine(conn, "b3")) == report.quarantined_rows
    [(passed, valid_rows, summary, failed)] = conn.execute(
        "SELECT passed, valid_rows, summary, failed_rules FROM batch_validation WHERE batch_id = 'b3'"
    ).fetchall()
    assert passed is False and valid_rows == 0
    assert summary == report.summary and "held back" in summary
    assert failed == [o.sentence() for o in report.failed_rules] and failed
    assert passed_batches(conn) == []


def test_rerunning_validation_replaces_not_duplicates(conn, reports):
    write_validation(conn, reports["b1"], fingerprint="f1", now=WHEN)
    write_validation(conn, reports["b2"], fingerprint="f2", now=WHEN)
    once = _counts(conn)
    write_validation(conn, reports["b2"], fingerprint="f2", now=WHEN + timedelta(hours=1))
    write_validation(conn, reports["b2"], fingerprint="f2", now=WHEN + timedelta(hours=2))
    _usable(conn)
    assert _counts(conn) == once == (
        len(reports["b1"].valid) + len(reports["b2"].valid),
        reports["b2"].quarantined_rows,
        2,
    )


def test_a_batch_that_fails_on_rerun_is_withdrawn(conn, reports):
    write_validation(conn, reports["b1"], fingerprint="f1", now=WHEN)
    assert passed_batches(conn) == ["b1"]
    failing = replace(reports["b1"], max_invalid_fraction=-1.0)  # same rows, now held back
    assert not failing.passed
    assert write_validation(conn, failing, fingerprint="f1", now=WHEN) == 0
    assert read_validated(conn).empty
    assert passed_batches(conn) == []


def test_unlabelled_batch_after_labelled_ones(conn, reports):
    write_validation(conn, reports["b1"], fingerprint="f1", now=WHEN)
    write_validation(conn, reports["b4"], fingerprint="f4", now=WHEN)
    valid = read_validated(conn, ["b4"])
    assert len(valid) == len(reports["b4"].valid)
    assert valid[TARGET].isna().all()  # the column exists for labelled batches; null here
    assert read_validated(conn, ["b1"])[TARGET].notna().all()


def test_held_back_batch_does_not_shape_the_validated_table(conn, reports):
    # an unlabelled batch creates the table without the target; a held-back labelled batch (no valid
    # rows) must not add a target column of unknown type that later labelled batches cannot fill
    write_validation(conn, reports["b4"], fingerprint="f4", now=WHEN)
    assert write_validation(conn, reports["b5"], fingerprint="f5", now=WHEN) == 0
    assert write_validation(conn, reports["b1"], fingerprint="f1", now=WHEN) == len(reports["b1"].valid)
    _usable(conn)
    types = dict(conn.execute("SELECT column_name, data_type FROM information_schema.columns "
                              "WHERE table_name = 'validated'").fetchall())
    assert types[TARGET] == "BIGINT"
    assert read_validated(conn, ["b1"])[TARGET].tolist() == reports["b1"].valid[TARGET].tolist()
    assert passed_batches(conn) == ["b1", "b4"]


def test_new_columns_are_added_to_validated(conn, reports):
    write_validation(conn, reports["b1"], fingerprint="f1", now=WHEN)
    wider = replace(reports["b1"], batch_id="b9", valid=reports["b1"].valid.assign(discount=0.5))
    write_validation(conn, wider, fingerprint="f9", now=WHEN)
    valid = read_validated(conn)
    assert valid.loc[valid[BATCH_COLUMN] == "b9", "discount"].eq(0.5).all()
    assert valid.loc[valid[BATCH_COLUMN] == "b1", "discount"].isna().all()


def test_a_failed_validation_write_rolls_back(conn, reports):
    write_validation(conn, reports["b1"], fingerprint="f1", now=WHEN)
    before = _counts(conn)
    broken = replace(reports["b2"], valid=reports["b2"].valid.assign(age="not a number"))
    with pytest.raises(duckdb.Error):
        write_validation(conn, broken, fingerprint="f2", now=WHEN)
    _usable(conn)
    assert _counts(conn) == before
    assert passed_batches(conn) == ["b1"]


def test_read_validated_filters_by_batch_ids(conn, reports):
    assert read_validated(conn).empty  # nothing stored yet
    _usable(conn)
    for batch_id in ("b2", "b1", "b4"):
        write_validation(conn, reports[batch_id], fingerprint=None, now=WHEN)
    everything = read_validated(conn)
    assert everything[BATCH_COLUMN].tolist() == sorted(everything[BATCH_COLUMN].tolist())
    assert len(everything) == sum(len(reports[b].valid) for b in ("b1", "b2", "b4"))
    some = read_validated(conn, ["b1", "b4"])
    _usable(conn)
    assert set(some[BATCH_COLUMN]) == {"b1", "b4"}
    assert len(some) == len(reports["b1"].valid) + len(reports["b4"].valid)
    assert read_validated(conn, ["zz"]).empty
    assert read_validated(conn, []).empty
    assert list(read_validated(conn, ["zz"]).columns) == list(everything.columns)


def test_batch_statuses_join_ingestion_and_validation(conn, landed, reports):
    frames, _ = landed
    for batch_id in ("b1", "b2", "b3"):
        write_raw_batch(conn, _record(batch_id, frames[batch_id]), frames[batch_id])
    write_validation(conn, reports["b1"], fingerprint="f1", now=WHEN)
    write_validation(conn, reports["b3"], fingerprint="f3", now=WHEN)
    statuses = batch_statuses(conn)
    _usable(conn)
    assert statuses["batch_id"].tolist() == ["b1", "b2", "b3"]
    by_id = statuses.set_index("batch_id")
    assert by_id.loc["b1", "passed"] == True  # noqa: E712 - a numpy/pandas bool
    assert by_id.loc["b3", "passed"] == False  # noqa: E712
    assert pd.isna(by_id.loc["b2", "passed"]) and pd.isna(by_id.loc["b2", "summary"])  # not validated yet
    assert by_id.loc["b1", "rows"] == len(frames["b1"]) and by_id.loc["b1", "file_name"] == "b1.csv"
    assert by_id.loc["b3", "quarantined_rows"] == reports["b3"].quarantined_rows
    # validated without an ingestion record: not listed (statuses follow ingestion)
    write_validation(conn, reports["b4"], fingerprint="f4", now=WHEN)
    assert batch_statuses(conn)["batch_id"].tolist() == ["b1", "b2", "b3"]


def test_passed_batches_in_arrival_order(conn, reports):
    assert passed_batches(conn) == []
    for batch_id in ("b4", "b3", "b2", "b1"):
        write_validation(conn, reports[batch_id], fingerprint=None, now=WHEN)
    _usable(conn)
    assert passed_batches(conn) == ["b1", "b2", "b4"]


def test_tables_persist_in_the_file(tmp_path, reports):
    path = tmp_path / "w.duckdb"
    with duckdb.connect(str(path)) as first:
        write_validation(first, reports["b1"], fingerprint="f1", now=WHEN)
    with duckdb.connect(str(path)) as second:
        assert passed_batches(second) == ["b1"]
        assert len(read_validated(second)) == len(reports["b1"].valid)


def test_jsonable():
    value = {"when": WHEN, "path": Path("/x"), "n": 3, "items": (1, 2)}
    assert storage.jsonable(value) == {"when": str(WHEN), "path": "/x", "n": 3, "items": [1, 2]}


def _filled(conn, table: str, **values) -> dict:
    """A record with a plausible value in every column of ``table``, then ``values``."""
    sample = {"VARCHAR": "x", "DOUBLE": 0.5, "BOOLEAN": False, "BIGINT": 1, "INTEGER": 1,
              "TIMESTAMP WITH TIME ZONE": datetime(2026, 1, 1, tzinfo=timezone.utc),
              "TIMESTAMP": datetime(2026, 1, 1), "VARCHAR[]": ["a"], "DOUBLE[]": [0.1, 0.9]}
    record = {name: sample.get(kind, None) for name, kind, *_ in conn.execute(f"DESCRIBE {table}").fetchall()}
    record.update(values)
    return record


@pytest.mark.parametrize("table, write, keys", [
    ("drift_reports", metrics_store.write_drift_report, {"batch_id": "b1"}),
    ("production_metrics", metrics_store.write_production_metrics, {"batch_id": "b1"}),
    ("shadow_scores", metrics_store.write_shadow_scores, {"batch_id": "b1", "challenger_version": "3"}),
])
def test_monitoring_rows_are_replaced_per_key(tmp_path, table, write, keys):
    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        storage.ensure_tables(conn)
        write(conn, _filled(conn, table, **keys, dagster_run_id="first"))
        write(conn, _filled(conn, table, **keys, dagster_run_id="second"))  # a re-materialization
        other = {**keys, "batch_id": "b2"}
        write(conn, _filled(conn, table, **other, dagster_run_id="other"))
        rows = conn.execute(f"SELECT batch_id, dagster_run_id FROM {table} ORDER BY batch_id").fetchall()
        assert rows == [("b1", "second"), ("b2", "other")]
        with pytest.raises(ValueError, match=f"{table} record lacks"):
            write(conn, {"batch_id": "b3"})
