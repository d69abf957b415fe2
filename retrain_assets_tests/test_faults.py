"""Faults: a run whose worker was killed does not block the platform; readers never take the write lock."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg
import duckdb
import pytest

from retrain_assets.constants import DRIFT_SENSOR, RETRAIN_JOB
from retrain_assets.core import label_store, storage, synthetic, synthetic_batches, workers
from retrain_assets_tests.conftest import Retrainer, clean_batch, definitions_for, ingest, tick
from retrain_assets_tests.test_automation import LOOSE, evaluate, run_requests


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_run_records_its_worker(workspace, defs, instance):
    workspace.land("b0001", clean_batch(1))
    request = tick(defs, instance).run_requests[0]
    run = ingest(defs, instance, request.partition_key, tags=request.tags)
    assert run.success
    worker = instance.get_run_by_id(run.run_id).tags[workers.WORKER_TAG]
    assert worker == workers.this_worker() and not workers.worker_gone(worker)


@pytest.mark.slow
def test_a_retrain_whose_worker_was_killed_is_failed_and_does_not_block_the_next(tmp_path, instance):
    r = Retrainer(tmp_path, instance, **LOOSE)
    for i in (1, 2, 3):
        r.land(i, rows=1000)
    assert r.retrain().success
    evaluate(r, DRIFT_SENSOR)
    job = r.defs.resolve_job_def(RETRAIN_JOB)
    alive = r.instance.create_run_for_job(job, status=dg.DagsterRunStatus.STARTED,
                                          tags={workers.WORKER_TAG: workers.this_worker()})
    r.land(4, synthetic_batches.make_batch(1500, seed=404, batch_index=4, scenario="covariate_drift"))
    waiting = evaluate(r, DRIFT_SENSOR)
    assert not run_requests(waiting) and "already queued or running" in waiting.skip_message
    # The worker is killed (here: the run now names a process that has exited).
    dead_worker = workers.this_worker().rsplit(":", 1)[0] + f":{_dead_pid()}"
    r.instance.add_run_tags(alive.run_id, {workers.WORKER_TAG: dead_worker})
    r.land(5, synthetic_batches.make_batch(1500, seed=405, batch_index=5, scenario="covariate_drift"))
    result = evaluate(r, DRIFT_SENSOR)
    assert len(run_requests(result)) == 1, result.skip_message
    assert r.instance.get_run_by_id(alive.run_id).status == dg.DagsterRunStatus.FAILURE
    failure = r.instance.all_logs(alive.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert failure and "is gone" in failure[-1].message


def test_a_worker_elsewhere_or_unrecorded_is_never_declared_gone():
    assert not workers.worker_gone(None)
    assert not workers.worker_gone(f"another-host.invalid:{_dead_pid()}")
    assert workers.worker_gone(workers.this_worker().rsplit(":", 1)[0] + f":{_dead_pid()}")


def test_readers_work_on_a_read_only_connection_and_run_no_ddl(workspace, defs, instance):
    workspace.land("b0001", clean_batch(1))
    request = tick(defs, instance).run_requests[0]
    assert ingest(defs, instance, request.partition_key, tags=request.tags).success
    with duckdb.connect(str(workspace.settings.duckdb_path), read_only=True) as conn:
        assert list(storage.batch_statuses(conn)["batch_id"]) == ["b0001"]
        assert label_store.labelled_batches(conn) == {"b0001": True}
        assert label_store.held_label_batches(conn) == {}


@pytest.mark.slow
def test_two_retrains_requested_at_once_give_one_promotion(tmp_path, instance, monkeypatch):
    """Two `retrain` runs launched together by hand queue on the retrain pool; the second starts after
    the first promoted, finds a version trained on exactly its data since it was requested, and stops."""
    from datetime import datetime, timezone

    from retrain_assets.core import registry as reg
    from retrain_assets_tests.conftest import failure_text

    r = Retrainer(tmp_path, instance, **LOOSE)
    for i in (1, 2, 3):
        r.land(i, rows=1000)
    requested_together = datetime.now(timezone.utc)
    first = r.retrain()
    assert first.success and r.alias(reg.CHAMPION_ALIAS) == "1"
    original = dg.DagsterInstance.get_run_record_by_id

    def as_if_requested_with_the_first(self, run_id):  # the second run was created when the first was
        record = original(self, run_id)
        return record._replace(create_timestamp=requested_together) if record is not None else None

    monkeypatch.setattr(dg.DagsterInstance, "get_run_record_by_id", as_if_requested_with_the_first)
    second = r.retrain()
    assert not second.success
    assert "already registered v1 from exactly this training data" in failure_text(second)
    assert r.alias(reg.CHAMPION_ALIAS) == "1" and len(reg.version_lineage(r.settings.mlflow_tracking_uri, "churn")) == 1
    monkeypatch.undo()
    # Requested afterwards, a retrain is a new decision and runs.
    third = r.retrain()
    assert third.success, failure_text(third)
