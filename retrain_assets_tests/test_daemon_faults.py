"""A retrain killed with SIGKILL at each step under the real daemon never stops the platform.

`dagster dev` (webserver + daemon) serves a code location that is the project's definitions plus
one test hook: when the file ``hang_at`` beside the config names a point (``training``,
``smoke_test``, ``before_champion_move``, ``after_champion_move``), the run worker that reaches it
takes the file (so only one run hangs), writes its pid and sleeps. The test kills that process with
SIGKILL, as a reboot or the OOM killer would. After each kill it checks what an operator needs:

* the dead run is marked failed, naming the dead worker, and alerted (webhook);
* the next landed batch is ingested (the pool slots the dead run held are freed: a kill while
  production_model moves the aliases held the ``duckdb_writer`` slot);
* the next trigger (a person's ``request_retrain``, turned into a retrain by the sensor) retrains
  on its own: the dead run no longer counts as "a retrain already queued or running".

At the end one retrain runs to completion: the champion's gates passed, no ledger entry is left
pending, and the ledger agrees with the registry.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from retrain_assets.constants import INGEST_JOB, REQUEST_RETRAIN_JOB, RETRAIN_JOB, TAG_TRIGGER
from retrain_assets.core import registry as reg
from retrain_assets.definitions import build_definitions
from retrain_assets_tests.conftest import clean_batch, write_config
from retrain_assets_tests.dagster_dev import running_dagster_dev
from retrain_assets_tests.test_automation import Webhook, webhook  # noqa: F401  (the fixture)
from retrain_assets_tests.test_daemon import INGEST_TIMEOUT, RETRAIN_TIMEOUT, ROWS, SENSOR_INTERVAL, Daemon

pytestmark = pytest.mark.cli

POINTS = ("training", "smoke_test", "before_champion_move", "after_champion_move")

RECOVERY_TIMEOUT = 90
"""Seconds from the kill until the dead run is marked failed (the landing sensor looks every 2 s here)."""

HANG_TIMEOUT = 240
"""Seconds from a retrain request until its run worker hangs at the point (a retrain took 20–60 s here)."""

LOCATION = '''
"""The project's definitions, with a hook that makes one run worker hang at a named point."""
import os
import subprocess
import sys
import time
from pathlib import Path

import retrain_assets.core.retrain as training  # candidate_model fits through core.retrain.train_model
import retrain_assets.core.registry as registry
import retrain_assets.core.serving as serving
from retrain_assets.definitions import defs  # noqa: F401  (the code location)

HANG = Path(os.environ["RETRAIN_CONFIG"]).parent / "hang_at"


def hang_if(point, detail=""):
    if not HANG.exists() or HANG.read_text().strip() != point:
        return
    try:
        HANG.rename(HANG.with_name("hang_taken"))  # one run hangs per request
    except FileNotFoundError:
        return
    HANG.with_name("hanging").write_text(f"{point} {os.getpid()} {detail}")
    time.sleep(600)


real_train = training.train_model


def train(*args, **kwargs):
    hang_if("training")
    return real_train(*args, **kwargs)


training.train_model = train
real_smoke_test = serving.smoke_test


def smoke_test(*args, **kwargs):
    if HANG.exists() and HANG.read_text().strip() == "smoke_test":
        # the serving process is running when its parent dies
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    hang_if("smoke_test")
    return real_smoke_test(*args, **kwargs)


serving.smoke_test = smoke_test
real_move_alias = registry.move_alias


def move_alias(tracking_uri, model_name, alias, version):
    if alias == registry.CHAMPION_ALIAS:
        hang_if("before_champion_move", f"v{version}")
    real_move_alias(tracking_uri, model_name, alias, version)
    if alias == registry.CHAMPION_ALIAS:
        hang_if("after_champion_move", f"v{version}")


registry.move_alias = move_alias
'''


def _faulty_setup(tmp_path: Path, webhook: Webhook) -> tuple[Path, Path]:
    """The config (sensors every 2 s, no cooldowns, alerts to the test's webhook) and the hooked location."""
    config_path = write_config(tmp_path, **{
        "automation.sensor_interval_seconds": SENSOR_INTERVAL,
        "automation.settle_seconds": 1,
        "automation.cooldown_minutes": 0,
        "automation.cooldown_batches": 1,
        "automation.min_new_labelled_rows": 0,
        "automation.max_retrains_per_period": 50,
        "automation.schedule_cron": "0 3 1 1 *",  # the safety-net schedule must not fire during the test
        "alerts.webhook_url": webhook.url,
        # Every retrain here must reach its alias moves: the stability gate (a candidate trained on more
        # batches flips many of a one-batch champion's predictions) is not what this test is about.
        "gates.max_flip_rate": 1.0,
    })
    location = tmp_path / "faulty_location.py"
    location.write_text(LOCATION)
    return config_path, location


@pytest.fixture
def faulty_dev(tmp_path: Path, webhook: Webhook):
    config_path, location = _faulty_setup(tmp_path, webhook)
    with running_dagster_dev(tmp_path, config_path, location_file=location) as dev:
        yield dev


def _request_retrain(defs: dg.Definitions, instance: dg.DagsterInstance, reason: str) -> None:
    run = defs.resolve_job_def(REQUEST_RETRAIN_JOB).execute_in_process(
        instance=instance, run_config={"ops": {"record_retrain_request": {"config": {"reason": reason}}}})
    assert run.success


def _new_retrain(d: Daemon, before: set[str]) -> dg.DagsterRun | None:
    runs = [r for r in d.runs(RETRAIN_JOB) if r.run_id not in before]
    return runs[-1] if runs else None


def _failure_messages(instance: dg.DagsterInstance, run_id: str) -> str:
    """The run's failure and engine messages (what an operator reads on the run's page)."""
    kinds = {dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.ENGINE_EVENT}
    return " | ".join(r.message or "" for r in instance.all_logs(run_id, of_type=kinds))


@pytest.mark.timeout(1200)
def test_a_retrain_killed_at_each_step_never_stops_ingestion_or_the_next_retrain(faulty_dev, webhook):
    dev = faulty_dev
    root = dev.config_path.parent
    defs = build_definitions(dev.config_path)
    with dg.DagsterInstance.from_config(str(dev.home)) as instance:
        d = Daemon(dev, instance)
        first = d.step("batch_0001", clean_batch(1, ROWS))
        d.assert_promoted(first, "bootstrap", previous=None)
        d.step("batch_0002", clean_batch(2, ROWS))  # a retrain needs two labelled batches (one is the holdout)
        index = 3
        killed = {}
        for point in POINTS:
            started = time.monotonic()
            before = {r.run_id for r in d.runs(RETRAIN_JOB)}
            (root / "hang_at").write_text(point)
            _request_retrain(defs, instance, f"kill test: hang at {point}")

            def hanging_now():
                run = _new_retrain(d, before)
                if run is not None and run.is_finished:
                    pytest.fail(f"the retrain {run.run_id[:8]} ended ({run.status.value}) before hanging at {point}: "
                                f"{d.failure_text(run)}")
                return (root / "hanging").exists() and (root / "hanging").read_text()

            hanging = dev.wait_for(
                f"a retrain to hang at {point}", hanging_now, HANG_TIMEOUT,
                explain=lambda: d._explain("business_change_sensor", time.time() - HANG_TIMEOUT))
            (root / "hanging").unlink()
            where, pid, *_ = hanging.split()
            assert where == point
            run = _new_retrain(d, before)
            assert run is not None and run.status == dg.DagsterRunStatus.STARTED
            os.kill(int(pid), signal.SIGKILL)  # the run worker only: a reboot, the OOM killer

            dead = dev.wait_for(
                f"the killed run {run.run_id[:8]} to be marked failed",
                lambda: instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE, RECOVERY_TIMEOUT)
            assert dead
            # Under `dagster dev` the code server that started the worker sees it die and says so; where
            # nothing watches the worker (a lost machine), fail_dead_runs does ("… is gone").
            message = _failure_messages(instance, run.run_id)
            assert ("is gone" in message and pid in message) or "SIGKILL" in message, message
            killed[point] = run.run_id
            print(f"{point}: run {run.run_id[:8]} (pid {pid}) killed and failed after "
                  f"{time.monotonic() - started:.0f} s", flush=True)

            # The next batch is ingested: no pool slot is held by the dead run.
            batch_id = f"batch_{index:04d}"
            d.drop(batch_id, clean_batch(index, ROWS))
            ingested = dev.wait_for(
                f"the ingest of {batch_id} after the kill at {point}",
                lambda: next((r for r in d.runs(INGEST_JOB, **{"dagster/partition": batch_id}) if r.is_finished), None),
                INGEST_TIMEOUT, explain=lambda: d._explain("landing_sensor", time.time() - INGEST_TIMEOUT))
            assert ingested.is_success, d.failure_text(ingested)
            index += 1

        # The next trigger retrains on its own and promotes.
        before = {r.run_id for r in d.runs(RETRAIN_JOB)}
        _request_retrain(defs, instance, "kill test: the retrain after the kills")
        final = dev.wait_for(
            "the retrain after the kills to finish",
            lambda: (lambda r: r if r is not None and r.is_finished else None)(_new_retrain(d, before)),
            RETRAIN_TIMEOUT, explain=lambda: d._explain("business_change_sensor", time.time() - RETRAIN_TIMEOUT))
        assert final.is_success, d.failure_text(final)
        assert final.tags.get(TAG_TRIGGER) == "business_change"

        version, tags = d.candidate_of(final)
        assert d.champion() == version and tags[reg.TAG_GATES_PASSED] == "true"
        ledger = d.ledger()
        assert not (ledger["status"] == "pending").any(), ledger[["to_version", "status", "note"]].to_dict("records")
        moves = ledger[ledger["action"] == "promote"]
        killed_moves = moves[moves["dagster_run_id"].isin([killed["before_champion_move"],
                                                           killed["after_champion_move"]])]
        assert len(killed_moves) == 2 and killed_moves["note"].str.startswith("settled later").all(), (
            killed_moves[["to_version", "status", "note"]].to_dict("records"))
        assert set(killed_moves["status"]) == {"aborted", "done"}
        done = moves[moves["status"] == "done"]
        assert done["to_version"].iloc[-1] == version
        assert list(done["from_version"].iloc[1:]) == list(done["to_version"].iloc[:-1]), "an unbroken chain"
        alerts = " || ".join(webhook.texts())
        for run_id in killed.values():
            said = [t for t in webhook.texts() if run_id[:8] in t]
            assert said and ("SIGKILL" in said[0] or "is gone" in said[0]), alerts[-2000:]


@pytest.mark.timeout(900)
def test_a_machine_that_reboots_mid_retrain_recovers_on_its_own(tmp_path: Path, webhook: Webhook):
    """The whole `dagster dev` (code server, daemon, run worker) dies mid-training, as in a reboot.
    Nothing watched the run worker, so only the platform can tell its run is dead: after the restart
    it is marked failed naming the dead worker, and ingestion and retraining go on."""
    config_path, location = _faulty_setup(tmp_path, webhook)
    defs = build_definitions(config_path)
    with running_dagster_dev(tmp_path, config_path, location_file=location) as dev:
        home = dev.home
        with dg.DagsterInstance.from_config(str(home)) as instance:
            d = Daemon(dev, instance)
            d.assert_promoted(d.step("batch_0001", clean_batch(1, ROWS)), "bootstrap", previous=None)
            d.step("batch_0002", clean_batch(2, ROWS))
            before = {r.run_id for r in d.runs(RETRAIN_JOB)}
            (tmp_path / "hang_at").write_text("training")
            _request_retrain(defs, instance, "reboot test: hang at training")
            dev.wait_for("a retrain to hang at training", lambda: (tmp_path / "hanging").exists(), HANG_TIMEOUT)
            run = _new_retrain(d, before)
            os.killpg(dev.proc.pid, signal.SIGKILL)  # the machine goes down: everything at once
            dev.proc.wait(timeout=30)
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
    (tmp_path / "dagster_dev.log").rename(tmp_path / "dagster_dev_before_reboot.log")
    (tmp_path / "outbox").rename(tmp_path / "outbox_before_reboot")

    with running_dagster_dev(tmp_path, config_path, home=home, location_file=location) as dev:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            d = Daemon(dev, instance)
            dev.wait_for(f"the run {run.run_id[:8]} whose worker died in the reboot to be marked failed",
                         lambda: instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE,
                         RECOVERY_TIMEOUT)
            message = _failure_messages(instance, run.run_id)
            assert "is gone" in message or "SIGKILL" in message, message
            step = d.step("batch_0003", clean_batch(3, ROWS))
            assert step.ingest.is_success, d.failure_text(step.ingest)
            before = {r.run_id for r in d.runs(RETRAIN_JOB)}
            _request_retrain(defs, instance, "reboot test: the retrain after the reboot")
            final = dev.wait_for(
                "the retrain after the reboot to finish",
                lambda: (lambda r: r if r is not None and r.is_finished else None)(_new_retrain(d, before)),
                RETRAIN_TIMEOUT)
            assert final.is_success, d.failure_text(final)
            version, tags = d.candidate_of(final)
            assert d.champion() == version and tags[reg.TAG_GATES_PASSED] == "true"
            assert any(run.run_id[:8] in t for t in webhook.texts()), webhook.texts()
