"""What a person does by hand, against the running platform: `dagster dev` (webserver + daemon) on a
temp DAGSTER_HOME and config, and the README's commands in a separate process on the same home.

A champion (v1) is prepared in-process first, the way `make demo` does it; then, with
``promotion.require_approval: true`` and `dagster dev` running:

1. `dagster job execute -j request_retrain -c reason.yaml` (no code-location origin: the daemon's
   run-status sensors never saw such a run): the daemon starts exactly one retrain tagged
   ``business_change`` with that reason; its candidate v2 awaits approval and the approval sensor
   alerts; `dagster job execute -j approve_promotion` makes it champion;
2. the same request through GraphQL ``launchRun`` (what the launchpad sends): exactly one more
   retrain; `dagster job execute -j reject_promotion` refuses its candidate v3;
3. `dagster job execute -j rollback` moves the champion back to v1, with its ledger row;
4. an approval with nothing awaiting fails, and the daemon alerts that failed CLI run.

Every process of `dagster dev` is in one process group, stopped with killpg in teardown.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
import yaml

# Sensor ticks are only exposed through this module (as in test_daemon).
from dagster._core.scheduler.instigation import InstigatorType

from retrain_assets.constants import (
    APPROVE_PROMOTION_JOB,
    BUSINESS_CHANGE_SENSOR,
    REJECT_PROMOTION_JOB,
    REQUEST_RETRAIN_JOB,
    RETRAIN_JOB,
    ROLLBACK_JOB,
    TAG_REASON,
    TAG_TRIGGER,
)
from retrain_assets.core import approval, registry as reg
from retrain_assets_tests.conftest import Workspace, clean_batch, definitions_for, failure_text, ingest, write_config
from retrain_assets_tests.dagster_dev import DAGSTER, DagsterDev, make_home, running_dagster_dev
from retrain_assets_tests.test_automation import Webhook

pytestmark = pytest.mark.cli

SENSOR_INTERVAL = 2
RETRAIN_TIMEOUT = 300
REQUEST_TIMEOUT = 120
"""Seconds from a successful request_retrain run to its retrain run (a sensor interval when it works)."""
CLI_TIMEOUT = 300

LAUNCH_RUN = """mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }"""


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.server.shutdown()


class Person:
    """The README's commands, run on the same DAGSTER_HOME and config as `dagster dev`, and what
    the instance, MLflow and the ledger say afterwards."""

    def __init__(self, dev: DagsterDev, instance: dg.DagsterInstance, webhook: Webhook):
        self.dev, self.instance, self.webhook = dev, instance, webhook
        self.settings = dev.settings
        self.cwd = dev.root / "cwd"  # nothing may be written where the person stands (./mlruns)
        self.cwd.mkdir(exist_ok=True)
        self.env = {**os.environ, "DAGSTER_HOME": str(dev.home), "RETRAIN_CONFIG": str(dev.config_path)}

    def execute(self, job: str, run_config: dict) -> subprocess.CompletedProcess:
        """`dagster job execute -m retrain_assets.definitions -j <job> -c <job>.yaml`."""
        path = self.dev.root / f"{job}.yaml"
        path.write_text(yaml.safe_dump(run_config))
        command = [DAGSTER, "job", "execute", "-m", "retrain_assets.definitions", "-j", job, "-c", str(path)]
        return subprocess.run(command, env=self.env, cwd=self.cwd, capture_output=True, text=True, timeout=CLI_TIMEOUT)

    def execute_ok(self, job: str, run_config: dict) -> None:
        done = self.execute(job, run_config)
        assert done.returncode == 0, f"{job} failed\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    def launch_over_graphql(self, job: str, run_config: dict) -> str:
        """launchRun, as the launchpad sends it; returns the run id."""
        location = self.dev.graphql("{ workspaceOrError { ... on Workspace { locationEntries { name } } } }")
        params = {"selector": {"repositoryLocationName": location["workspaceOrError"]["locationEntries"][0]["name"],
                               "repositoryName": "__repository__", "jobName": job},
                  "runConfigData": run_config}
        body = json.dumps({"query": LAUNCH_RUN, "variables": {"params": params}}).encode()
        request = urllib.request.Request(f"{self.dev.url}/graphql", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        result = answer["data"]["launchRun"]
        assert result["__typename"] == "LaunchRunSuccess", answer
        return result["run"]["runId"]

    # -- state ------------------------------------------------------------------------------

    def runs(self, job: str) -> list[dg.DagsterRun]:
        return list(reversed(self.instance.get_runs(filters=dg.RunsFilter(job_name=job))))  # oldest first

    def alias(self, alias: str) -> str | None:
        return reg.alias_version(self.settings.mlflow_tracking_uri, self.settings.registered_model_name, alias)

    def ledger(self) -> pd.DataFrame:
        """The promotion ledger on a short read-only connection (retried while a run writes)."""
        deadline = time.monotonic() + 60
        while True:
            try:
                with duckdb.connect(str(self.settings.duckdb_path), read_only=True) as conn:
                    return conn.execute("SELECT * FROM promotion_ledger ORDER BY recorded_at, entry_id").df()
            except duckdb.IOException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def sensor_ticks(self, sensor: str, after: float) -> list:
        ticks = []
        for state in self.instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
            if state.instigator_name == sensor:
                ticks += self.instance.get_ticks(state.instigator_origin_id, state.selector_id, after=after)
        return [t for t in ticks if t.is_completed]

    def explain(self, since: float) -> str:
        said = [f"  {t.status.value} runs={[r[:8] for r in t.run_ids]} {t.skip_reason or ''}"[:300]
                for t in sorted(self.sensor_ticks(BUSINESS_CHANGE_SENSOR, since), key=lambda t: t.timestamp)[-5:]]
        runs = [f"  {r.job_name} {r.run_id[:8]} {r.status.value} {r.tags.get(TAG_TRIGGER, '')}" for r in self.runs(RETRAIN_JOB)]
        return "ticks of business_change_sensor:\n" + "\n".join(said or ["  (none)"]) + "\nretrain runs:\n" + "\n".join(runs)

    # -- expectations -------------------------------------------------------------------------

    def retrain_answers(self, request_run_id: str, reason: str) -> dg.DagsterRun:
        """Exactly one retrain answers the request: tagged business_change with its reason, launched by
        the daemon (run key = the request's run id), finished; and no second one follows while the
        sensor ticks on."""
        since = time.time()
        def request_finished():
            run = self.instance.get_run_by_id(request_run_id)
            return run if run is not None and run.is_finished else None

        request = self.dev.wait_for(f"request run {request_run_id[:8]} to finish", request_finished, REQUEST_TIMEOUT)
        assert request.is_success, f"request run {request_run_id} {request.status.value}"

        def answering():
            return [r for r in self.runs(RETRAIN_JOB) if r.tags.get(TAG_REASON) == reason]

        self.dev.wait_for(f"a retrain answering request {request_run_id[:8]} ({reason!r}) to start", answering,
                          REQUEST_TIMEOUT, explain=lambda: self.explain(since))
        def finished_runs():
            runs = answering()
            return runs if all(r.is_finished for r in runs) else None

        runs = self.dev.wait_for(f"the retrain answering request {request_run_id[:8]} to finish", finished_runs,
                                 RETRAIN_TIMEOUT, explain=lambda: self.explain(since))
        finished = self.instance.get_run_record_by_id(runs[-1].run_id).end_time
        # Two completed ticks after the retrain ended have had every chance to request another.
        self.dev.wait_for(f"{BUSINESS_CHANGE_SENSOR} to tick twice after the retrain ended",
                          lambda: len(self.sensor_ticks(BUSINESS_CHANGE_SENSOR, finished)) >= 2, 60)
        runs = [r for r in self.runs(RETRAIN_JOB) if r.tags.get(TAG_REASON) == reason]
        assert len(runs) == 1, f"{len(runs)} retrains for one request\n{self.explain(since)}"
        run = runs[0]
        assert run.tags[TAG_TRIGGER] == "business_change"
        assert run.tags.get("dagster/run_key") == f"business_change:{request_run_id}"
        assert run.tags.get("dagster/sensor_name") == BUSINESS_CHANGE_SENSOR
        return run

    def awaiting(self, run: dg.DagsterRun) -> str:
        """The candidate a retrain left awaiting approval (promotion.require_approval)."""
        assert run.is_success, f"retrain {run.run_id[:8]} failed: {run.status.value}"
        version = self.alias(reg.CHALLENGER_ALIAS)
        tags = reg.version_tags(self.settings.mlflow_tracking_uri, self.settings.registered_model_name, version)
        assert tags[reg.TAG_DAGSTER_RUN] == run.run_id and tags[reg.TAG_GATES_PASSED] == "true", tags
        last = self.ledger().iloc[-1]
        assert (last["action"], last["status"], last["to_version"]) == ("approval", "awaiting_approval", version)
        return version

    def alerted(self, text: str, timeout: float = 90) -> list[str]:
        return self.dev.wait_for(f"an alert saying {text!r} (webhook)",
                                 lambda: [t for t in self.webhook.texts() if text in t], timeout,
                                 explain=lambda: f"alerts so far: {self.webhook.texts()}")


def _request(reason: str) -> dict:
    return {"ops": {"record_retrain_request": {"config": {"reason": reason}}}}


def _decision(op: str, version: str, note: str) -> dict:
    return approval.run_config(op, version=version, approver="dana", note=note)


@pytest.mark.timeout(900)
def test_a_persons_requests_and_decisions_work_from_the_cli_and_graphql_under_the_daemon(tmp_path: Path, webhook):
    config_path = write_config(tmp_path, **{
        "automation.sensor_interval_seconds": SENSOR_INTERVAL,
        "automation.cooldown_minutes": 0,
        "automation.schedule_cron": "0 3 1 1 *",  # the safety net must not fire during the test
        "alerts.webhook_url": webhook.url,
        # Retrains on the same data must reach a person's decision, not stop at a gate: the gates'
        # verdicts are tested elsewhere; here they only must not decide.
        "gates.comparison_tolerance": 1.0, "gates.max_flip_rate": 1.0, "gates.slice_tolerance": 1.0,
        "gates.metric_floor": 0.0,
    })
    home = make_home(tmp_path)
    workspace = Workspace(tmp_path, config_path)
    # Champion v1, in-process on the same instance (as `make demo` prepares one).
    with dg.DagsterInstance.from_config(str(home)) as instance:
        defs = definitions_for(config_path)
        for index in (1, 2):
            workspace.land(f"batch_{index:04d}", clean_batch(index, 600))
            result = ingest(defs, instance, f"batch_{index:04d}")
            assert result.success, failure_text(result)
        result = defs.resolve_job_def(RETRAIN_JOB).execute_in_process(instance=instance, raise_on_error=False)
        assert result.success, failure_text(result)
    config = yaml.safe_load(config_path.read_text())
    config["promotion"] = {**(config.get("promotion") or {}), "require_approval": True}
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    with running_dagster_dev(tmp_path, config_path, home=home) as dev, \
            dg.DagsterInstance.from_config(str(home)) as instance:
        dev.wait_for("the code location to load in the webserver", dev.code_locations_loaded, 120)
        person = Person(dev, instance, webhook)
        assert person.alias(reg.CHAMPION_ALIAS) == "1"

        # 1. The README's CLI request: one retrain, whose candidate awaits approval; approve by CLI.
        person.execute_ok(REQUEST_RETRAIN_JOB, _request("new pricing from 2026-12-01 (CLI)"))
        (cli_request,) = person.runs(REQUEST_RETRAIN_JOB)
        assert cli_request.remote_job_origin is None  # what the run-status sensor could not match
        run = person.retrain_answers(cli_request.run_id, "new pricing from 2026-12-01 (CLI)")
        assert person.awaiting(run) == "2" and person.alias(reg.CHAMPION_ALIAS) == "1"
        person.alerted("candidate awaits approval")
        person.execute_ok(APPROVE_PROMOTION_JOB, _decision(approval.APPROVE_JOB_OP, "2", "same data, gates passed"))
        assert person.alias(reg.CHAMPION_ALIAS) == "2"
        last = person.ledger().iloc[-1]
        assert (last["action"], last["status"], last["to_version"], last["approver"]) == ("promote", "done", "2", "dana")

        # 2. The launchpad's request (GraphQL launchRun): one more retrain; reject it by CLI.
        graphql_request = person.launch_over_graphql(REQUEST_RETRAIN_JOB, _request("new pricing (launchpad)"))
        run = person.retrain_answers(graphql_request, "new pricing (launchpad)")
        assert person.awaiting(run) == "3"
        person.execute_ok(REJECT_PROMOTION_JOB, _decision(approval.REJECT_JOB_OP, "3", "not this week"))
        assert person.alias(reg.CHALLENGER_ALIAS) is None and person.alias(reg.CHAMPION_ALIAS) == "2"
        ledger = person.ledger()
        decided = ledger[(ledger["action"] == "approval") & (ledger["to_version"] == "3")]
        assert list(decided["status"]) == ["rejected"] and list(decided["approver"]) == ["dana"]

        # 3. Rollback by CLI: the champion goes back to v1, recorded as launched by hand.
        person.execute_ok(ROLLBACK_JOB, {"ops": {"rollback_champion": {"config": {"reason": "v2 misprices (CLI)"}}}})
        assert person.alias(reg.CHAMPION_ALIAS) == "1"
        last = person.ledger().iloc[-1]
        assert (last["action"], last["status"], last["from_version"], last["to_version"], last["reason"]) == (
            "rollback", "done", "2", "1", "v2 misprices (CLI)")
        assert last["launched_by"] == "manual (UI or CLI)"

        # 4. A CLI run that fails is alerted by the daemon like any other.
        refused = person.execute(APPROVE_PROMOTION_JOB, _decision(approval.APPROVE_JOB_OP, "3", "changed my mind"))
        assert refused.returncode != 0 and "nothing awaits approval" in refused.stdout + refused.stderr
        person.alerted(f"run of {APPROVE_PROMOTION_JOB} failed")

        # Nothing else was started: the bootstrap and one retrain per request.
        assert [r.tags.get(TAG_TRIGGER, "manual") for r in person.runs(RETRAIN_JOB)] == [
            "manual", "business_change", "business_change"]
