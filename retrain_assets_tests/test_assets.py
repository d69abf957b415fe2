"""raw_data and validated_data materialized in-process against temp DuckDB/Dagster instances,
including every kind of bad input: a clear message naming the file/column/row, nothing lost."""

from __future__ import annotations

import hashlib
import json

import duckdb
import numpy as np
import pandas as pd
import pytest

from retrain_assets.constants import DRIFT_REPORT, PRODUCTION_METRICS, RAW_DATA, VALIDATED_DATA
from retrain_assets.core import storage
from retrain_assets.core.schema import SchemaStore
from retrain_assets_tests.conftest import (
    assert_file_refused,
    assert_held_back,
    check_evaluation,
    clean_batch,
    failed_partitions,
    failure_text,
    ingest,
    materialized,
    run_log,
)


def _db(workspace):
    return duckdb.connect(str(workspace.settings.duckdb_path))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _kept_in_rejected(workspace, batch_id: str, original: bytes) -> dict:
    """The original bytes lie in the rejected area with a reason file; returns the reason record."""
    files = workspace.rejected_files(batch_id)
    assert len(files) == 1, f"expected the file kept under rejected/{batch_id}, found {files}"
    assert files[0].read_bytes() == original
    assert not (workspace.landing / files[0].name.split("__", 1)[1]).exists(), "file should be moved, not copied"
    record = json.loads(files[0].with_name(files[0].name + ".reason.json").read_text())
    assert record["fingerprint"] == _sha(original)
    return record


def test_clean_batch_is_ingested_validated_and_published(workspace, defs, instance):
    df = clean_batch(1)
    workspace.land("batch_0001", df)
    result = ingest(defs, instance, "batch_0001")
    assert result.success, failure_text(result)

    raw_meta = result.asset_materializations_for_node(RAW_DATA)[0].metadata
    assert raw_meta["dagster/row_count"].value == len(df)
    assert raw_meta["sha256"].value == _sha((workspace.landing / "batch_0001.csv").read_bytes())
    assert raw_meta["labelled"].value is True
    assert raw_meta["columns"].value == list(df.columns)

    evaluation = check_evaluation(result)
    assert evaluation.passed
    assert evaluation.metadata["quarantined_rows"].value == 0

    with _db(workspace) as conn:
        assert len(storage.read_validated(conn, ["batch_0001"])) == len(df)
        raw = storage.read_raw_batch(conn, "batch_0001")
    assert raw["customer_id"].tolist() == df["customer_id"].tolist()
    schema = SchemaStore(workspace.settings.schema_path).load()
    assert schema is not None and "batch_0001" in schema.source
    assert (workspace.landing / "batch_0001.csv").exists(), "an accepted file stays where the user put it"


def test_parquet_batch_is_ingested(workspace, defs, instance):
    df = clean_batch(2)
    workspace.land("batch_0002", df, ext=".parquet")
    result = ingest(defs, instance, "batch_0002")
    assert result.success, failure_text(result)
    with _db(workspace) as conn:
        valid = storage.read_validated(conn, ["batch_0002"])
    assert len(valid) == len(df)
    np.testing.assert_allclose(valid["monthly_charges"].to_numpy(), df["monthly_charges"].to_numpy())


def test_rematerializing_a_batch_replaces_it(workspace, defs, instance):
    workspace.land("batch_0001", clean_batch(1, corrupt_fraction=0.02, scenario="corrupt"))
    first = ingest(defs, instance, "batch_0001")
    second = ingest(defs, instance, "batch_0001")
    assert first.success and second.success
    with _db(workspace) as conn:
        assert conn.execute("select count(*) from validated").fetchall()[0][0] == len(
            storage.read_validated(conn, ["batch_0001"])
        )
        counts = conn.execute("select count(*), count(distinct _row) from quarantine").fetchall()[0]
    assert counts[0] == counts[1] > 0


@pytest.mark.parametrize("scenario, held_back", [("clean", False), ("corrupt", True)])
def test_a_held_back_batch_stops_what_follows_without_painting_anything_red(workspace, defs, instance, scenario,
                                                                          held_back):
    workspace.land("batch_0001", clean_batch(1, scenario=scenario))
    result = ingest(defs, instance, "batch_0001")
    assert result.success, failure_text(result)
    assert materialized(result, VALIDATED_DATA)
    if held_back:
        gate = assert_held_back(result)
        assert "held back" in gate.description and "above the 5.0% limit" in gate.description
        # drift_report says why it skipped; production_metrics, after it, is skipped by Dagster.
        assert ("batch 'batch_0001' has not passed validation (held back: the batch_passes_validation check on "
                "validated_data says why): nothing to compare") in run_log(instance, result.run_id)
    else:
        assert check_evaluation(result).passed
        assert materialized(result, DRIFT_REPORT) and materialized(result, PRODUCTION_METRICS)
    for key in (RAW_DATA, VALIDATED_DATA, DRIFT_REPORT, PRODUCTION_METRICS):  # what the UI reads to paint red
        assert failed_partitions(instance, key) == set(), key
    # A run that fails for a real cause is still red: the contrast that makes the test mean something.
    failing = ingest(defs, instance, "batch_0404")  # no such file
    assert not failing.success and "batch_0404" in failed_partitions(instance, RAW_DATA)


def test_corrupt_batch_quarantines_rows_with_reasons_and_publishes_nothing(workspace, defs, instance):
    df = clean_batch(1, n_rows=600, scenario="corrupt")  # ~12% defects, limit is 5%
    path = workspace.land("batch_0001", df)
    original = path.read_bytes()
    result = ingest(defs, instance, "batch_0001")
    evaluation = check_evaluation(result)
    assert not evaluation.passed
    explanation = evaluation.metadata["explanation"].value
    assert "above the 5.0% limit" in explanation
    for column in ("tenure_months", "age", "contract", "customer_id"):  # a missing label is a late one, not a defect
        assert f"`{column}`" in explanation, column
    assert "row " in explanation and "e.g." in explanation
    with _db(workspace) as conn:
        quarantine = storage.read_quarantine(conn, "batch_0001")
        assert storage.read_validated(conn, ["batch_0001"]).empty
    corrupted = {int(r) + 1 for r, kind in df.attrs["corrupted_rows"].items() if kind != "missing_target"}
    assert corrupted <= set(quarantine["_row"])
    assert quarantine["reasons"].str.len().min() > 0
    assert all(json.loads(j) for j in quarantine["row_json"])
    record = _kept_in_rejected(workspace, "batch_0001", original)
    assert record["stage"] == VALIDATED_DATA and "held back" in record["reason"]
    assert SchemaStore(workspace.settings.schema_path).load() is None, "a failed first batch must not define the schema"


def _first_ok_then(workspace, defs, instance, bad: pd.DataFrame | bytes | str, ext: str = ".csv"):
    """Ingest a clean first batch (defines the schema), then land and ingest the bad one."""
    workspace.land("batch_0001", clean_batch(1))
    assert ingest(defs, instance, "batch_0001").success
    path = workspace.land("batch_0002", bad, ext=ext)
    original = path.read_bytes()
    return ingest(defs, instance, "batch_0002"), original


UNREADABLE = {
    "empty file": (b"", ".csv", "is empty (0 bytes)"),
    "header only": ("customer_id,event_time,tenure_months\n", ".csv", "has a header (3 columns) but no data rows"),
    "non-UTF-8": ("customer_id,region\nC1,S\xe3o Paulo\n".encode("latin-1"), ".csv", "is not valid utf-8 text"),
    "binary garbage": (bytes(range(256)) * 4, ".csv", "batch_0002.csv"),
    "corrupt parquet": (b"PAR1" + b"\x00\x13garbage" * 50, ".parquet", "is not a readable Parquet file"),
    "ragged csv": ("a,b\n1,2\n3,4,5\n", ".csv", "is not a well-formed CSV"),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(UNREADABLE))
def test_unreadable_files_are_refused_by_raw_data_clearly_and_kept(workspace, defs, instance, kind):
    content, ext, message = UNREADABLE[kind]
    result, original = _first_ok_then(workspace, defs, instance, content, ext)
    text = assert_file_refused(result)  # a failed check (WARN) in a run that succeeds
    assert f"batch_0002{ext}" in text and message in text
    assert "moved to" in text
    assert not materialized(result, RAW_DATA) and not materialized(result, VALIDATED_DATA)
    record = _kept_in_rejected(workspace, "batch_0002", original)
    assert record["stage"] == RAW_DATA
    with _db(workspace) as conn:  # the first batch is untouched
        assert len(storage.read_validated(conn, ["batch_0001"])) == 400


def _renamed(df):
    return df.rename(columns={"tenure_months": "tenure_mnths"})


def _missing(df):
    return df.drop(columns=["region"])


def _extra(df):
    return df.assign(coupon_code="X1")


def _text_in_numeric(df):
    return df.assign(age=["old"] * len(df))


def _nan_flood(df):
    out = df.copy()
    out.loc[out.index[: int(len(out) * 0.7)], "monthly_charges"] = np.nan
    return out


def _inf_flood(df):
    out = df.copy()
    out.loc[out.index[: int(len(out) * 0.3)], "monthly_charges"] = np.inf
    return out


def _target_renamed(df):
    return df.rename(columns={"churned": "churn"})


def _target_continuous(df):
    return df.assign(churned=np.linspace(0, 1, len(df)))


def _target_unknown_labels(df):
    return df.assign(churned=["maybe"] * len(df))


BROKEN = {
    "column renamed": (_renamed, ["'tenure_months' is missing", "'tenure_mnths' arrived instead (renamed?)"]),
    "column missing": (_missing, ["column 'region' is missing"]),
    "extra column": (_extra, ["unexpected column 'coupon_code'"]),
    "wrong dtype": (_text_in_numeric, ["column 'age' should hold numbers", "'old'"]),
    "NaN flood": (_nan_flood, ["`monthly_charges`", "at most 50% of values may be missing"]),
    "inf flood": (_inf_flood, ["`monthly_charges`", "values must be finite"]),
    "target renamed": (_target_renamed, ["target 'churned' is missing but 'churn' arrived"]),
    "target of the wrong kind": (_target_continuous, ["target 'churned' has 400 distinct values"]),
    "target labels unknown": (_target_unknown_labels, ["`churned`", "known classes \\[0, 1\\]", "'maybe'"]),  # brackets escaped: Markdown shows [0, 1]
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(BROKEN))
def test_broken_batches_fail_the_gate_with_reasons_and_are_kept(workspace, defs, instance, kind):
    transform, phrases = BROKEN[kind]
    result, original = _first_ok_then(workspace, defs, instance, transform(clean_batch(2)))
    assert materialized(result, RAW_DATA), "the raw batch is stored whatever its content"
    evaluation = check_evaluation(result)
    assert not evaluation.passed
    explanation = evaluation.metadata["explanation"].value
    for phrase in phrases:
        assert phrase in explanation, f"{phrase!r} not in:\n{explanation}"
    assert evaluation.description.startswith("batch batch_0002 held back")
    with _db(workspace) as conn:
        assert storage.read_validated(conn, ["batch_0002"]).empty
        assert len(storage.read_raw_batch(conn, "batch_0002")) == 400, "raw data is kept"
        status = conn.execute("select passed from batch_validation where batch_id='batch_0002'").fetchall()
    assert status == [(False,)]
    _kept_in_rejected(workspace, "batch_0002", original)


def test_unlabelled_batch_passes_as_unlabelled(workspace, defs, instance):
    result, _ = _first_ok_then(workspace, defs, instance, clean_batch(2, scenario="unlabelled"))
    assert result.success, failure_text(result)
    meta = result.asset_materializations_for_node(VALIDATED_DATA)[0].metadata
    assert meta["labelled"].value is False
    assert meta["dagster/row_count"].value == 400


def test_extra_columns_allowed_by_config_are_dropped_with_a_note(tmp_path, instance):
    from retrain_assets.definitions import build_definitions
    from retrain_assets_tests.conftest import Workspace, write_config

    ws = Workspace(tmp_path, write_config(tmp_path, **{"schema.allow_extra_columns": True}))
    defs = build_definitions(ws.config_path)
    result, _ = _first_ok_then(ws, defs, instance, _extra(clean_batch(2)))
    assert result.success, failure_text(result)
    explanation = check_evaluation(result).metadata["explanation"].value
    assert "unexpected column 'coupon_code' dropped" in explanation


def test_changed_file_under_an_ingested_batch_id_is_refused_and_kept(workspace, defs, instance):
    workspace.land("batch_0001", clean_batch(1))
    assert ingest(defs, instance, "batch_0001").success
    changed = workspace.land("batch_0001", clean_batch(1, n_rows=300))
    original = changed.read_bytes()
    result = ingest(defs, instance, "batch_0001")
    text = assert_file_refused(result)
    assert "was already ingested" in text and "new batch id" in text
    _kept_in_rejected(workspace, "batch_0001", original)
    with _db(workspace) as conn:  # history is intact
        assert len(storage.read_raw_batch(conn, "batch_0001")) == 400
        assert len(storage.read_validated(conn, ["batch_0001"])) == 400


def test_a_held_back_batch_can_be_relanded_corrected_under_the_same_id(workspace, defs, instance):
    workspace.land("batch_0001", clean_batch(1))
    assert ingest(defs, instance, "batch_0001").success
    workspace.land("batch_0002", _missing(clean_batch(2)))
    assert_held_back(ingest(defs, instance, "batch_0002"))
    workspace.land("batch_0002", clean_batch(2))
    result = ingest(defs, instance, "batch_0002")
    assert result.success, failure_text(result)
    with _db(workspace) as conn:
        assert len(storage.read_validated(conn, ["batch_0002"])) == 400
        assert storage.read_quarantine(conn, "batch_0002").empty


def test_missing_landing_file_fails_with_the_paths_looked_at(workspace, defs, instance):
    result = ingest(defs, instance, "batch_0404")
    assert not result.success
    text = failure_text(result)
    assert "no file batch_0404.csv or batch_0404.parquet" in text and str(workspace.landing) in text


def test_schema_from_first_batch_is_enforced_on_later_batches(tmp_path, instance):
    """Without hints, the first batch defines the columns and kinds."""
    from retrain_assets.definitions import build_definitions
    from retrain_assets_tests.conftest import Workspace, write_config

    ws = Workspace(tmp_path, write_config(tmp_path, schema={}))
    defs = build_definitions(ws.config_path)
    ws.land("batch_0001", clean_batch(1))
    assert ingest(defs, instance, "batch_0001").success
    schema = SchemaStore(ws.settings.schema_path).load()
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds["contract"] == "categorical" and kinds["age"] == "numeric" and kinds["event_time"] == "datetime"
    assert schema.classes == (0, 1)
    ws.land("batch_0002", _text_in_numeric(clean_batch(2)))
    result = ingest(defs, instance, "batch_0002")
    assert not check_evaluation(result).passed


def test_regression_dataset_validates_numeric_targets(tmp_path, instance):
    """A regression config: numeric targets pass, text targets are quarantined by row."""
    from retrain_assets.core.synthetic import REGRESSION_TARGET
    from retrain_assets.definitions import build_definitions
    from retrain_assets_tests.conftest import Workspace, write_config

    ws = Workspace(
        tmp_path,
        write_config(tmp_path, **{"dataset.target": REGRESSION_TARGET, "dataset.task": "regression", "schema.classes": None}),
    )
    defs = build_definitions(ws.config_path)
    ws.land("batch_0001", clean_batch(1, task="regression"))
    first = ingest(defs, instance, "batch_0001")
    assert first.success, failure_text(first)
    bad = clean_batch(2, task="regression").astype({REGRESSION_TARGET: object})
    bad.loc[bad.index[:4], REGRESSION_TARGET] = "unknown"
    ws.land("batch_0002", bad)
    second = ingest(defs, instance, "batch_0002")
    assert second.success, failure_text(second)
    with _db(ws) as conn:
        quarantine = storage.read_quarantine(conn, "batch_0002")
        valid = storage.read_validated(conn, ["batch_0002"])
    assert quarantine["_row"].tolist() == [1, 2, 3, 4]
    assert quarantine["reasons"].str.contains(REGRESSION_TARGET).all()
    assert valid[REGRESSION_TARGET].dtype == float and len(valid) == 396
