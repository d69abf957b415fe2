"""The landing sensor, evaluated with build_sensor_context against instance_for_test()."""

from __future__ import annotations

import json
import os
import time

import pytest

from retrain_assets.constants import TAG_FILE, TAG_FINGERPRINT, TAG_TRIGGER
from retrain_assets.core.ingestion import fingerprint
from retrain_assets.definitions import build_definitions
from retrain_assets_tests.conftest import (
    Workspace, assert_file_refused, assert_held_back, clean_batch, ingest, tick, write_config,
)


def test_new_files_become_partitions_and_run_requests(workspace, defs, instance):
    first = workspace.land("batch_0001", clean_batch(1))
    second = workspace.land("batch_0002", clean_batch(2), ext=".parquet")
    result = tick(defs, instance)
    assert [r.partition_key for r in result.run_requests] == ["batch_0001", "batch_0002"]
    assert instance.get_dynamic_partitions("batches") == ["batch_0001", "batch_0002"]
    request = result.run_requests[0]
    assert request.run_key == f"batch_0001:{fingerprint(first)[:16]}"
    assert request.tags[TAG_FILE] == str(first)
    assert request.tags[TAG_FINGERPRINT] == fingerprint(first)
    assert request.tags[TAG_TRIGGER] == "new_data"
    assert result.run_requests[1].run_key.startswith("batch_0002:")
    assert second.exists() and first.exists()


def test_a_second_tick_requests_nothing_and_says_why(workspace, defs, instance):
    workspace.land("batch_0001", clean_batch(1))
    first = tick(defs, instance)
    second = tick(defs, instance, cursor=first.cursor)
    assert not second.run_requests
    assert "1 batch file(s) already taken in" in second.skip_reason.skip_message


def test_identical_redrop_is_not_processed_twice(workspace, defs, instance):
    path = workspace.land("batch_0001", clean_batch(1))
    data = path.read_bytes()
    first = tick(defs, instance)
    path.unlink()
    workspace.land("batch_0001", data, age_seconds=30)  # same bytes, new mtime
    second = tick(defs, instance, cursor=first.cursor)
    assert not second.run_requests
    assert path.exists(), "an identical re-drop is left alone"


def test_changed_file_with_the_same_name_is_refused_and_kept(workspace, defs, instance):
    workspace.land("batch_0001", clean_batch(1))
    first = tick(defs, instance)
    changed = workspace.land("batch_0001", clean_batch(1, n_rows=300), age_seconds=30)
    data = changed.read_bytes()
    second = tick(defs, instance, cursor=first.cursor)
    assert not second.run_requests
    kept = workspace.rejected_files("batch_0001")
    assert len(kept) == 1 and kept[0].read_bytes() == data
    reason = json.loads(kept[0].with_name(kept[0].name + ".reason.json").read_text())
    assert "was already ingested" in reason["reason"] and "new batch id" in reason["reason"]
    assert reason["stage"] == "landing_sensor"
    assert not changed.exists()
    third = tick(defs, instance, cursor=second.cursor)
    assert not third.run_requests


@pytest.mark.parametrize("name", ["batch_0001.txt", "batch_0001.xlsx", "batch_0001.CSV", "batch 0001.csv", "README"])
def test_files_that_cannot_be_batches_are_refused_and_kept(workspace, defs, instance, name):
    workspace.landing.mkdir(parents=True)
    path = workspace.landing / name
    path.write_bytes(b"a,b\n1,2\n")
    past = time.time() - 60
    os.utime(path, (past, past))
    result = tick(defs, instance)
    assert not result.run_requests
    assert not path.exists()
    reasons = [json.loads(p.read_text()) for p in workspace.rejected.glob("*/*.reason.json")]
    assert len(reasons) == 1
    assert name in reasons[0]["reason"]
    assert (workspace.rejected / "_unnamed" if " " in name else workspace.rejected).exists()


def test_one_batch_id_as_two_files_is_refused(workspace, defs, instance):
    workspace.land("batch_0001", clean_batch(1))
    workspace.land("batch_0001", clean_batch(1), ext=".parquet")
    result = tick(defs, instance)
    assert not result.run_requests
    kept = workspace.rejected_files("batch_0001")
    assert sorted(p.suffix for p in kept) == [".csv", ".parquet"]
    reason = json.loads(kept[0].with_name(kept[0].name + ".reason.json").read_text())["reason"]
    assert "landed as several files" in reason


def test_hidden_and_partial_files_are_ignored(workspace, defs, instance):
    workspace.landing.mkdir(parents=True)
    for name in (".batch_0001.csv", "batch_0001.csv.part", "~lock.batch_0001.csv", "batch_0002.tmp"):
        (workspace.landing / name).write_text("x")
    result = tick(defs, instance)
    assert not result.run_requests
    assert not workspace.rejected.exists()


def test_files_still_being_written_wait_until_they_settle(tmp_path, instance):
    ws = Workspace(tmp_path, write_config(tmp_path, **{"automation.settle_seconds": 30}))
    defs = build_definitions(ws.config_path)
    ws.land("batch_0001", clean_batch(1), age_seconds=0)
    result = tick(defs, instance)
    assert not result.run_requests
    assert "waiting for 1 file(s) to settle" in result.skip_reason.skip_message
    path = ws.landing / "batch_0001.csv"
    past = time.time() - 60
    os.utime(path, (past, past))
    assert len(tick(defs, instance, cursor=result.cursor).run_requests) == 1


def test_sensor_requests_runs_that_ingest_the_batch(workspace, defs, instance):
    workspace.land("batch_0001", clean_batch(1))
    request = tick(defs, instance).run_requests[0]
    result = ingest(defs, instance, request.partition_key, tags=request.tags)
    assert result.success
    assert request.partition_key == "batch_0001"
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"raw_data", "validated_data", "drift_report"} <= materialized
    validated = next(e for e in result.get_asset_materialization_events()
                     if e.asset_key.to_user_string() == "validated_data").materialization.metadata
    assert validated["valid_rows"].value + validated["quarantined_rows"].value == len(clean_batch(1))


def test_file_changed_between_sensor_and_run_is_not_ingested(workspace, defs, instance):
    workspace.land("batch_0001", clean_batch(1))
    request = tick(defs, instance).run_requests[0]
    workspace.land("batch_0001", clean_batch(1, n_rows=100))
    result = ingest(defs, instance, request.partition_key, tags=request.tags)
    assert "changed after the landing sensor saw it" in assert_file_refused(result)


def test_a_held_back_batch_relanded_corrected_gets_a_new_run(workspace, defs, instance):
    workspace.land("batch_0001", clean_batch(1))
    first = tick(defs, instance)
    assert ingest(defs, instance, "batch_0001", tags=first.run_requests[0].tags).success
    workspace.land("batch_0002", clean_batch(2).drop(columns=["region"]))
    second = tick(defs, instance, cursor=first.cursor)
    assert_held_back(ingest(defs, instance, "batch_0002", tags=second.run_requests[0].tags))
    assert not (workspace.landing / "batch_0002.csv").exists(), "held-back file moved to rejected"
    workspace.land("batch_0002", clean_batch(2))
    third = tick(defs, instance, cursor=second.cursor)
    assert [r.partition_key for r in third.run_requests] == ["batch_0002"]
    assert third.run_requests[0].run_key != second.run_requests[0].run_key
    assert ingest(defs, instance, "batch_0002", tags=third.run_requests[0].tags).success


def test_missing_landing_folder_is_not_an_error(workspace, defs, instance):
    result = tick(defs, instance)
    assert not result.run_requests
    assert "no new batch" in result.skip_reason.skip_message
