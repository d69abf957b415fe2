"""automation.executor: celery, end to end: a real Redis (broker and result backend), a real
``dagster-celery`` worker as an operator starts one on any machine, and the retrain job through the
real CLI. The run's process only hands out steps; the worker runs them; the gates still decide."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import dagster as dg
import pytest
import yaml

from retrain_assets.constants import CANDIDATE_MODEL, PRODUCTION_MODEL, RETRAIN_JOB, RETRAIN_POOL
from retrain_assets.core import registry as reg, workers
from retrain_assets_tests.conftest import Retrainer
from retrain_assets_tests.dagster_dev import group_members, make_home
from retrain_assets_tests.services import redis_server, stop_and_check, wait_ready  # noqa: F401  (fixture)

pytestmark = [pytest.mark.cli, pytest.mark.timeout(400)]

BIN = Path(sys.executable).parent
DAGSTER = str(BIN / "dagster")
DAGSTER_CELERY = str(BIN / "dagster-celery")
WORKER_STARTUP_TIMEOUT = 120
"""Seconds the worker may take until Celery says it is ready (2-4 s measured)."""


@dataclass
class CeleryWorker:
    """A running ``dagster-celery worker start``: the CLI, the Celery main process and its pool process."""

    proc: subprocess.Popen
    name: str
    log_path: Path

    @property
    def node_name(self) -> str:
        """Celery's name for it (``<name>@<host>``), as steps report it."""
        return f"{self.name}@{socket.gethostname()}"

    def pids(self) -> set[int]:
        return {int(line.split()[0]) for line in group_members(self.proc.pid)}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextmanager
def celery_worker(root: Path, env: dict[str, str], executor_config: dict) -> Iterator[CeleryWorker]:
    """One worker started as the README says, with the executor's broker and backend in its
    celery.yaml, and one pool process: every step of every run then goes through the same
    long-lived process, as on a busy worker. Stopped (and checked gone) on the way out."""
    config_yaml = root / "celery.yaml"
    config_yaml.write_text(yaml.safe_dump({"execution": {"config": executor_config}}))
    worker = CeleryWorker(proc=None, name=f"retrain-test-{os.getpid()}",  # type: ignore[arg-type]
                          log_path=root / "celery_worker.log")
    command = [DAGSTER_CELERY, "worker", "start", "-A", "dagster_celery.app", "-y", str(config_yaml), "-q", "dagster",
               "-n", worker.name, "--",
               # Celery's own options: one pool process; one worker needs no gossip, mingle or heartbeat.
               "--concurrency=1", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    with open(worker.log_path, "wb") as log:
        # Its own process group: one killpg reaches the CLI, the Celery main process and its pool process.
        worker.proc = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        seconds = wait_ready("celery worker", worker.proc, worker.log_path,
                             lambda: f"{worker.node_name} ready." in worker.log(), WORKER_STARTUP_TIMEOUT)
        print(f"celery worker ready after {seconds:.1f} s")
        yield worker
    finally:
        stop_and_check(worker.proc, "celery worker")
        left = subprocess.run(["pgrep", "-af", worker.name], capture_output=True, text=True)
        assert left.returncode == 1, f"celery worker processes left after the stop:\n{left.stdout}"


def _execute_retrain(env: dict[str, str], cwd: Path, worker: CeleryWorker) -> str:
    """`dagster job execute -j retrain` as a user's CI runs it; the new run's id."""
    started = time.monotonic()
    result = subprocess.run([DAGSTER, "job", "execute", "-m", "retrain_assets.definitions", "-j", RETRAIN_JOB],
                            env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    print(f"dagster job execute -j retrain: {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:] + worker.log()[-3000:]
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        return instance.get_runs(filters=dg.RunsFilter(job_name=RETRAIN_JOB), limit=1)[0].run_id


def _where_steps_ran(instance: dg.DagsterInstance, run_id: str) -> tuple[int, dict[str, int], dict[str, str]]:
    """The pid of the run's own process (RUN_START), each step's pid (STEP_START) and the Celery
    worker each step reported running on (dagster-celery's engine event, sent from the worker)."""
    run_pid, step_pids, step_workers = None, {}, {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type_value == "PIPELINE_START":
            run_pid = event.pid
        elif event.event_type_value == "STEP_START":
            step_pids[event.step_key] = event.pid
        elif event.event_type_value == "ENGINE_EVENT" and "in celery worker" in (event.message or ""):
            step_workers[event.step_key] = event.engine_event_data.metadata["Celery worker"].value
    return run_pid, step_pids, step_workers


def _materialized(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    return {entry.dagster_event.asset_key.to_user_string() for entry in instance.all_logs(run_id)
            if entry.dagster_event is not None and entry.dagster_event.event_type_value == "ASSET_MATERIALIZATION"}


def test_the_retrain_steps_run_on_a_celery_worker_and_the_gates_still_decide(tmp_path, redis_server, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow must not write ./mlruns wherever the process runs
    home = make_home(tmp_path)
    executor_config = {"broker": redis_server.url(0), "backend": redis_server.url(1)}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        r = Retrainer(tmp_path / "ws", instance, **{"automation.executor": "celery",
                                                    "automation.executor_config": executor_config})
        for i in (1, 2, 3):
            r.land(i)  # in-process: execute_in_process never uses the job's executor
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update(DAGSTER_HOME=str(home), RETRAIN_CONFIG=str(r.ws.config_path),
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")  # dagster-celery starts `celery` from PATH
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    with celery_worker(tmp_path, env, executor_config) as worker:
        promoted = _execute_retrain(env, elsewhere, worker)
        assert r.alias(reg.CHAMPION_ALIAS) == "1"
        r.reconfigure(**{"training.min_rows": 100_000})  # read by the worker when the step runs
        refused = _execute_retrain(env, elsewhere, worker)
        worker_pids, worker_log = worker.pids(), worker.log()

    # The gates decided on the worker: v2 failed data_sufficiency, the champion stayed v1.
    assert r.alias(reg.CHAMPION_ALIAS) == "1" and r.alias(reg.CHALLENGER_ALIAS) == "2"
    assert r.tags("2")[reg.TAG_FAILED_GATES] == "data_sufficiency"
    assert list(r.ledger()["to_version"]) == ["1"]
    # Each step ran in the worker's pool process, not in the run's process (the CLI), and said so.
    assert len(re.findall(r"Task execute_plan\[[0-9a-f-]+\] succeeded in", worker_log)) == 4, worker_log[-3000:]
    assert "v2 failed gate(s) data_sufficiency" in worker_log  # the candidate step's own log line
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for run_id, promotes in ((promoted, True), (refused, False)):
            assert instance.get_run_by_id(run_id).is_success
            run_pid, step_pids, step_workers = _where_steps_ran(instance, run_id)
            assert set(step_pids) == {CANDIDATE_MODEL, PRODUCTION_MODEL}, step_pids
            assert set(step_pids.values()) <= worker_pids and run_pid not in worker_pids, \
                (run_pid, step_pids, worker_pids)
            assert step_workers == {CANDIDATE_MODEL: worker.node_name, PRODUCTION_MODEL: worker.node_name}
            assert (PRODUCTION_MODEL in _materialized(instance, run_id)) is promotes
            # A Celery pool process serves many runs: it is never recorded as this run's worker (a restart of
            # the pool must not fail a live run; see core.workers.in_celery_worker).
            assert workers.WORKER_TAG not in instance.get_run_by_id(run_id).tags
        checks = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey(CANDIDATE_MODEL), "data_sufficiency"), limit=5)
        assert [c.status.value for c in checks] == ["FAILED", "SUCCEEDED"]
        # The run's process claimed the `retrain` pool's slot for candidate_model and gave it back.
        pool = instance.event_log_storage.get_concurrency_info(RETRAIN_POOL)
        assert pool.slot_count == 1 and not pool.claimed_slots and not pool.pending_steps, pool
    # One MLflow run per Dagster run, each closed, although both went through one long-lived process.
    client = reg.client_for(r.settings.mlflow_tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(r.settings.mlflow_experiment).experiment_id])
    assert sorted((run.data.tags["dagster_run_id"], run.info.status) for run in runs) == sorted(
        [(promoted, "FINISHED"), (refused, "FINISHED")])
    assert not (tmp_path / "mlruns").exists() and not (elsewhere / "mlruns").exists()  # the worker's and CLI's cwd
