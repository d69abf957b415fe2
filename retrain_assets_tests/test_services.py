"""The platform against real services the tests start themselves (retrain_assets_tests/services.py):

* an MLflow tracking server (``mlflow.tracking_uri: http://127.0.0.1:<port>``, artifacts proxied by
  the server): the whole retrain loop — ingest, a sensor-triggered bootstrap, a second retrain, the
  serving smoke test in a fresh process, rollback — and a plain ``models:/<name>@champion`` load;
* Dagster on PostgreSQL (``deploy/postgres/dagster.yaml``): an ingest run and its
  materializations stored in Postgres, and ``dagster-daemon`` ingesting a landed batch through the
  landing sensor and the run queue.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pytest

from retrain_assets.core.columns import model_input
from retrain_assets.constants import (
    DRIFT_REPORT,
    DRIFT_SENSOR,
    INGEST_JOB,
    LANDING_SENSOR,
    PRODUCTION_METRICS,
    RAW_DATA,
    REPO_ROOT,
    ROLLBACK_JOB,
    VALIDATED_DATA,
)
from retrain_assets.core import registry as reg, serving

from retrain_assets.definitions import build_definitions
from retrain_assets_tests.conftest import (
    Retrainer,
    Workspace,
    clean_batch,
    failure_text,
    ingest,
    write_config,
)
from retrain_assets_tests.dagster_dev import group_members
from retrain_assets_tests.services import (  # noqa: F401  (pytest fixtures, used by name)
    MlflowServer,
    Postgres,
    stop_and_check,
    mlflow_server,
    postgres,
    postgres_home,
)
from retrain_assets_tests.test_automation import LOOSE, evaluate, launch, run_requests

pytestmark = [pytest.mark.cli, pytest.mark.timeout(600)]

DAGSTER_DAEMON = str(Path(sys.executable).with_name("dagster-daemon"))
DAEMON_RUN_TIMEOUT = 180
"""Seconds until the daemon's ingest run finishes (~30 s measured: code server, tick, queue, run worker)."""

LOOSE_GATES = {"gates.max_flip_rate": 1.0, "gates.slice_tolerance": 1.0, "gates.comparison_tolerance": 1.0}
"""Gates that cannot block the second retrain: these tests are about the services, not the gates'
verdicts (the serving smoke test and the metric floor still judge)."""


def forget_process_mlflow_uris(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop this process's MLflow URIs (module globals and environment), as in a fresh run worker:
    whatever follows must reach the server through the configured URI alone. Undone after the test
    by conftest's ``own_mlflow_uris``."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(registry_utils, "_registry_uri", None)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)


def gate_verdicts(r: Retrainer, version: str) -> dict[str, bool]:
    return {g["gate"]: g["passed"] for g in json.loads(r.tags(version)[reg.TAG_GATES])}


# --------------------------------------------------------------------------
# MLflow tracking server
# --------------------------------------------------------------------------


def test_the_retrain_loop_runs_unchanged_against_an_mlflow_tracking_server(
    mlflow_server: MlflowServer, instance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # nothing may land in the working folder (./mlruns, ./mlflow.db)
    r = Retrainer(tmp_path / "ws", instance, **LOOSE, **{"mlflow.tracking_uri": mlflow_server.uri})
    s = r.settings
    name = s.registered_model_name
    assert s.mlflow_tracking_uri == mlflow_server.uri

    # Two labelled batches: the drift sensor requests the bootstrap retrain; it promotes v1.
    r.land(1, rows=1000)
    r.land(2, rows=1000)
    requests = run_requests(evaluate(r, DRIFT_SENSOR))
    assert len(requests) == 1 and requests[0].tags["retrain/trigger"] == "bootstrap", requests
    forget_process_mlflow_uris(monkeypatch)
    bootstrap = launch(r, requests[0])
    assert bootstrap.success, failure_text(bootstrap)
    assert r.alias(reg.CHAMPION_ALIAS) == "1"
    assert gate_verdicts(r, "1")["serving_smoke_test"], r.tags("1")[reg.TAG_GATES]

    # The server chose where artifacts go, and every byte went through it.
    client = reg.client_for(mlflow_server.uri)
    experiment = client.get_experiment_by_name(s.mlflow_experiment)
    assert experiment.artifact_location.startswith("mlflow-artifacts:"), experiment.artifact_location
    assert client.get_model_version_download_uri(name, "1").startswith("mlflow-artifacts:")
    stored = [p for p in mlflow_server.artifacts.rglob("*") if p.is_file()]
    assert any(p.name == "MLmodel" for p in stored), stored[:10]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["dagster_run_id"] == bootstrap.run_id
    assert "retrain.experiment_artifacts" not in run.data.tags  # no local folder named for a server
    assert not s.mlflow_artifacts_dir.exists() and not (s.storage.root / "mlflow.db").exists()

    # A batch lands with a champion in place: production_metrics loads it from the server in a
    # process that has no MLflow URI of its own.
    forget_process_mlflow_uris(monkeypatch)
    r.land(3, rows=1000)
    metrics = instance.fetch_materializations(dg.AssetKey(PRODUCTION_METRICS), limit=1).records
    assert metrics and metrics[0].partition_key == "batch_0003"

    # A second retrain: judged against v1 (loaded from the server), smoke-tested, promoted.
    r.reconfigure(**LOOSE_GATES)
    forget_process_mlflow_uris(monkeypatch)
    second = r.retrain()
    assert second.success, failure_text(second)
    assert r.alias(reg.CHAMPION_ALIAS) == "2" and r.alias(reg.PREVIOUS_ALIAS) == "1"
    verdicts = gate_verdicts(r, "2")
    assert verdicts["serving_smoke_test"] and r.tags("2")[reg.TAG_COMPARED_TO] == "1", verdicts

    # Rollback through the registry on the server.
    forget_process_mlflow_uris(monkeypatch)
    rollback = r.defs.resolve_job_def(ROLLBACK_JOB).execute_in_process(instance=instance, raise_on_error=False)
    assert rollback.success, failure_text(rollback)
    assert r.alias(reg.CHAMPION_ALIAS) == "1" and r.alias(reg.PREVIOUS_ALIAS) == "2"
    assert list(r.ledger()["action"]) == ["promote", "promote", "rollback"]

    # A consumer that knows only the server: plain MLflow, the alias, a landed batch.
    forget_process_mlflow_uris(monkeypatch)
    frame = model_input(clean_batch(9, 300), s.dataset.target)
    mlflow.set_tracking_uri(mlflow_server.uri)
    served = np.asarray(mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(frame)).ravel()
    pinned = np.asarray(mlflow.pyfunc.load_model(f"models:/{name}/1").predict(frame)).ravel()
    assert len(served) == len(frame) and set(served) <= {0, 1}
    np.testing.assert_array_equal(served, pinned)

    # The serving smoke test's child reaches the server even when this process points elsewhere.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{(tmp_path / 'elsewhere.db').as_posix()}")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{(tmp_path / 'elsewhere.db').as_posix()}")
    probe = serving.smoke_test(f"models:/{name}@champion", frame, tracking_uri=mlflow_server.uri, repeats=1)
    assert probe.ok, probe.error
    np.testing.assert_array_equal(probe.predictions, served)
    assert not (tmp_path / "elsewhere.db").exists()

    assert sorted(p.name for p in cwd.iterdir()) == []


# --------------------------------------------------------------------------
# Dagster on PostgreSQL
# --------------------------------------------------------------------------


def test_dagster_on_postgres_stores_an_ingest_run_and_its_materializations(
    postgres: Postgres, postgres_home: Path, tmp_path: Path
):
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    root = tmp_path / "ws"
    root.mkdir()
    ws = Workspace(root=root, config_path=write_config(root))
    defs = build_definitions(ws.config_path)
    ws.land("batch_0001", clean_batch(1, 400))
    with dg.DagsterInstance.from_config(str(postgres_home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        result = ingest(defs, instance, "batch_0001")
        assert result.success, failure_text(result)

    # A new instance on the same dagster.yaml (another process would do the same) sees it all.
    with dg.DagsterInstance.from_config(str(postgres_home)) as instance:
        run = instance.get_run_by_id(result.run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        assert instance.get_dynamic_partitions("batches") == ["batch_0001"]
        for key in (RAW_DATA, VALIDATED_DATA, DRIFT_REPORT):
            (record,) = instance.fetch_materializations(dg.AssetKey(key), limit=5).records
            assert (record.run_id, record.partition_key) == (result.run_id, "batch_0001"), key

    # And it is in Postgres' own tables.
    assert postgres.query("SELECT status FROM runs WHERE run_id = %s", (result.run_id,)) == [("SUCCESS",)]
    stored = postgres.query(
        "SELECT asset_key FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
        (result.run_id,),
    )
    assert {json.loads(key)[0] for (key,) in stored} >= {RAW_DATA, VALIDATED_DATA, DRIFT_REPORT}, stored


def test_the_daemon_on_postgres_ingests_a_landed_batch_through_the_landing_sensor(
    postgres: Postgres, postgres_home: Path, tmp_path: Path
):
    root = tmp_path / "ws"
    root.mkdir()
    config_path = write_config(root, **{
        "automation.sensor_interval_seconds": 2,
        "automation.schedule_cron": "0 3 1 1 *",  # the safety-net schedule must not fire
    })
    ws = Workspace(root=root, config_path=config_path)
    ws.land("batch_0001", clean_batch(1, 400))

    log_path = tmp_path / "dagster_daemon.log"
    env = {**os.environ, "RETRAIN_CONFIG": str(config_path), "PYTHONUNBUFFERED": "1"}  # DAGSTER_HOME, DAGSTER_PG_*
    started = time.monotonic()
    with open(log_path, "wb") as log:
        # Its own process group: one killpg reaches the daemon, its code server and the run worker.
        daemon = subprocess.Popen([DAGSTER_DAEMON, "run", "-m", "retrain_assets.definitions"], cwd=REPO_ROOT,
                                  env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  start_new_session=True)
    try:
        with dg.DagsterInstance.from_config(str(postgres_home)) as instance:
            run = wait_for_finished_ingest(instance, daemon, log_path)
        seconds = time.monotonic() - started
        print(f"daemon started, ticked, queued and ran the ingest in {seconds:.1f} s")
        assert run.status == dg.DagsterRunStatus.SUCCESS, daemon_log(log_path)
        assert run.tags["dagster/sensor_name"] == LANDING_SENSOR
        assert run.tags["dagster/partition"] == "batch_0001"
    finally:
        stop_and_check(daemon, "dagster-daemon")
    assert not group_members(daemon.pid)

    # In Postgres: the run, its sensor tag, its trip through the queue, and the sensor's ticks.
    assert postgres.query("SELECT status FROM runs WHERE run_id = %s", (run.run_id,)) == [("SUCCESS",)]
    assert postgres.query("SELECT value FROM run_tags WHERE run_id = %s AND key = 'dagster/sensor_name'",
                          (run.run_id,)) == [(LANDING_SENSOR,)]
    events = {kind for (kind,) in postgres.query(
        "SELECT DISTINCT dagster_event_type FROM event_logs WHERE run_id = %s", (run.run_id,))}
    assert {"PIPELINE_ENQUEUED", "PIPELINE_STARTING", "PIPELINE_SUCCESS", "ASSET_MATERIALIZATION"} <= events, events
    ticks = postgres.query("SELECT tick_body FROM job_ticks WHERE status = 'SUCCESS'")
    assert any(json.loads(body).get("job_name") == LANDING_SENSOR for (body,) in ticks), ticks[:3]


def daemon_log(log_path: Path, lines: int = 60) -> str:
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return f"--- end of {log_path} ---\n" + "\n".join(text.splitlines()[-lines:])


def wait_for_finished_ingest(instance: dg.DagsterInstance, daemon: subprocess.Popen, log_path: Path) -> dg.DagsterRun:
    """The first ingest run, once it has finished (success or failure)."""
    deadline = time.monotonic() + DAEMON_RUN_TIMEOUT
    while True:
        if daemon.poll() is not None:
            pytest.fail(f"dagster-daemon exited with code {daemon.returncode}\n{daemon_log(log_path)}")
        runs = instance.get_runs(filters=dg.RunsFilter(job_name=INGEST_JOB))
        finished = [r for r in runs if r.is_finished]
        if finished:
            return finished[0]
        if time.monotonic() > deadline:
            statuses = [r.status.value for r in runs]
            pytest.fail(f"no finished ingest run after {DAEMON_RUN_TIMEOUT} s (runs: {statuses})\n{daemon_log(log_path)}")
        time.sleep(0.5)
