"""A batch whose ingest failed for an outside reason is retried by the landing sensor, never dropped.

Outside reasons (a killed worker, a locked DuckDB file, a full disk, a server down) are retried
with a doubling delay; a batch the platform refused or held back is not; after the last retry the
batch is listed in every tick and alerted once.
"""

from __future__ import annotations

import errno
import json

import dagster as dg
import pytest
from dagster._core.storage.tags import PARTITION_NAME_TAG

from retrain_assets.constants import INGEST_JOB, TAG_TRIGGER
from retrain_assets.core import retries, storage, synthetic, synthetic_batches, workers
from retrain_assets.sensors.landing import TAG_RETRY_OF
from retrain_assets_tests.conftest import (
    Workspace, assert_file_refused, assert_held_back, clean_batch, definitions_for, failure_text, ingest, tick,
    write_config,
)
from retrain_assets_tests.test_faults import _dead_pid


def _workspace(tmp_path, **overrides) -> tuple[Workspace, dg.Definitions]:
    ws = Workspace(root=tmp_path, config_path=write_config(tmp_path, **overrides))
    return ws, definitions_for(ws.config_path)


def _full_disk(monkeypatch):
    """Make every raw-batch write fail as a full disk does; returns the undo."""
    def write_raw_stream(*args, **kwargs):  # raw_data (and write_raw_batch) store a batch through it
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(storage, "write_raw_stream", write_raw_stream)
    return lambda: monkeypatch.undo()


def _skip(result: dg.SensorResult) -> str:
    return result.skip_reason.skip_message if result.skip_reason else ""


def _validated(ws: Workspace) -> list[str]:
    import duckdb

    with duckdb.connect(str(ws.settings.duckdb_path), read_only=True) as conn:
        return storage.passed_batches(conn)


def test_an_ingest_that_failed_for_an_outside_reason_is_retried_and_then_succeeds(tmp_path, instance, monkeypatch):
    ws, defs = _workspace(tmp_path, **{"automation.ingest_retry_minutes": 0})
    ws.land("b0001", clean_batch(1))
    request = tick(defs, instance).run_requests[0]
    undo = _full_disk(monkeypatch)
    failed = ingest(defs, instance, "b0001", tags=request.tags)
    assert not failed.success
    undo()

    result = tick(defs, instance, cursor=None)
    retry = [r for r in result.run_requests if r.tags.get(TAG_RETRY_OF)]
    assert len(retry) == 1, _skip(result)
    retry = retry[0]
    assert retry.partition_key == "b0001" and retry.run_key == f"b0001:retry:{failed.run_id}"
    assert retry.tags[TAG_TRIGGER] == "retry" and retry.tags[TAG_RETRY_OF] == failed.run_id
    assert "retry 1 of 5" in retry.tags["retrain/reason"] and "No space left on device" in retry.tags["retrain/reason"]

    assert ingest(defs, instance, "b0001", tags=retry.tags).success
    assert _validated(ws) == ["b0001"]
    again = tick(defs, instance, cursor=result.cursor)
    assert not again.run_requests and "retry" not in _skip(again)


def test_a_retry_waits_for_its_delay_and_the_tick_says_when(tmp_path, instance, monkeypatch):
    ws, defs = _workspace(tmp_path, **{"automation.ingest_retry_minutes": 30})
    ws.land("b0001", clean_batch(1))
    first = tick(defs, instance)
    _full_disk(monkeypatch)
    assert not ingest(defs, instance, "b0001", tags=first.run_requests[0].tags).success
    result = tick(defs, instance, cursor=first.cursor)
    assert not [r for r in result.run_requests if r.tags.get(TAG_RETRY_OF)]
    assert "batch 'b0001' failed for an outside reason, retry 1 in 30.0 min" in _skip(result)


def test_a_refused_or_held_back_batch_is_never_retried(tmp_path, instance):
    ws, defs = _workspace(tmp_path, **{"automation.ingest_retry_minutes": 0})
    ws.land("b0001", clean_batch(1))
    first = tick(defs, instance)
    assert ingest(defs, instance, "b0001", tags=first.run_requests[0].tags).success
    corrupt = synthetic_batches.make_batch(400, seed=7, batch_index=2, scenario="corrupt", corrupt_fraction=0.3)
    ws.land("b0002", corrupt)
    second = tick(defs, instance, cursor=first.cursor)
    held = ingest(defs, instance, "b0002", tags=second.run_requests[0].tags)
    assert_held_back(held)  # a decision, not a fault: the run succeeds and the check says why
    # A refusal by raw_data: the file changed after the sensor saw it.
    ws.land("b0003", clean_batch(3))
    third = tick(defs, instance, cursor=second.cursor)
    tags = dict(third.run_requests[0].tags)
    ws.land("b0003", clean_batch(3, n_rows=300))
    assert "changed after the landing sensor saw it" in assert_file_refused(ingest(defs, instance, "b0003", tags=tags))
    # A refusal that fails its run: the file the sensor saw is gone before the run reads it.
    ws.land("b0004", clean_batch(4))
    fourth = tick(defs, instance, cursor=third.cursor)
    (ws.landing / "b0004.csv").unlink()
    request = next(r for r in fourth.run_requests if r.partition_key == "b0004")
    refused = ingest(defs, instance, "b0004", tags=request.tags)
    assert not refused.success and "now gone" in failure_text(refused)

    result = tick(defs, instance, cursor=fourth.cursor)
    assert not result.run_requests, [r.run_key for r in result.run_requests]
    assert "outside reason" not in _skip(result) and "NOT ingested" not in _skip(result)

    # Each failed run's events are read once, not on every tick (a refused batch stays failed for good).
    read = []
    real_all_logs = instance.all_logs
    def all_logs(run_id, *args, **kwargs):
        read.append(run_id)
        return real_all_logs(run_id, *args, **kwargs)
    instance.all_logs = all_logs
    try:
        again = tick(defs, instance, cursor=result.cursor)
    finally:
        del instance.all_logs
    assert not again.run_requests
    assert refused.run_id not in read, read


def test_an_ingest_whose_worker_was_killed_is_failed_and_retried_in_the_same_tick(tmp_path, instance):
    ws, defs = _workspace(tmp_path, **{"automation.ingest_retry_minutes": 0})
    ws.land("b0001", clean_batch(1))
    request = tick(defs, instance).run_requests[0]
    instance.add_dynamic_partitions("batches", ["b0001"])
    dead = workers.this_worker().rsplit(":", 1)[0] + f":{_dead_pid()}"
    killed = instance.create_run_for_job(
        defs.resolve_job_def(INGEST_JOB), status=dg.DagsterRunStatus.STARTED,
        tags={**request.tags, PARTITION_NAME_TAG: "b0001", workers.WORKER_TAG: dead},
    )
    result = tick(defs, instance, cursor=None)
    assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
    retry = [r for r in result.run_requests if r.tags.get(TAG_RETRY_OF) == killed.run_id]
    assert len(retry) == 1
    assert "is gone" in retry[0].tags["retrain/reason"]
    assert ingest(defs, instance, "b0001", tags=retry[0].tags).success
    assert _validated(ws) == ["b0001"]


def test_after_the_last_retry_the_batch_is_listed_every_tick_and_alerted_once(tmp_path, instance, monkeypatch):
    ws, defs = _workspace(tmp_path, **{"automation.ingest_retry_minutes": 0, "automation.ingest_retries": 1})
    alerts = []
    monkeypatch.setattr("retrain_assets.sensors.landing._alert", lambda cfg, ctx, title, details: alerts.append((title, details)))
    ws.land("b0001", clean_batch(1))
    request = tick(defs, instance).run_requests[0]
    _full_disk(monkeypatch)
    assert not ingest(defs, instance, "b0001", tags=request.tags).success
    first = tick(defs, instance, cursor=None)
    retry = [r for r in first.run_requests if r.tags.get(TAG_RETRY_OF)]
    assert len(retry) == 1
    last = ingest(defs, instance, "b0001", tags=retry[0].tags)
    assert not last.success  # the disk is still full

    second = tick(defs, instance, cursor=first.cursor)
    assert not second.run_requests
    assert "batch 'b0001' NOT ingested after 2 failed runs: fix the cause, then re-execute run" in _skip(second)
    assert len(alerts) == 1 and alerts[0][0] == "batch b0001 not ingested"
    assert "No space left on device" in alerts[0][1] and "dagster job execute -m retrain_assets.definitions -j ingest_batch" in alerts[0][1]
    assert json.loads(second.cursor)["given_up"] == {"b0001": last.run_id}
    third = tick(defs, instance, cursor=second.cursor)
    assert "NOT ingested" in _skip(third) and len(alerts) == 1, "alerted once, listed every tick"


@pytest.mark.parametrize(
    "attempts, failed_at, now, expected",
    [(1, 0.0, 59.0, "waiting"), (1, 0.0, 60.0, "retry"), (2, 0.0, 119.0, "waiting"), (3, 0.0, 240.0, "retry"),
     (5, 0.0, 1e9, "retry"), (6, 0.0, 1e9, "given_up")],
)
def test_retry_delays_double_and_stop_after_the_last(attempts, failed_at, now, expected):
    item = retries.FailedIngest("b1", "r" * 32, failed_at, attempts, "locked")
    plan = retries.plan_retries([item], now, max_retries=5, base_minutes=1.0)
    got = "retry" if plan.retry else "waiting" if plan.waiting else "given_up"
    assert got == expected
