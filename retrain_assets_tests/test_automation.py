"""Automation: the drift and performance sensors, the safety-net schedule, a person's request,
post-promotion rollback and alerts, evaluated in-process against a real instance, warehouse and
MLflow store (sensors with build_sensor_context, as the daemon would call them)."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg
import numpy as np
import pytest

from retrain_assets.constants import (
    BUSINESS_CHANGE_SENSOR,
    CANDIDATE_MODEL,
    DRIFT_SENSOR,
    HEALTH_JOB,
    PERFORMANCE_SENSOR,
    PRODUCTION_MODEL,
    REFUSAL_ALERT_SENSOR,
    REQUEST_RETRAIN_JOB,
    RETRAIN_JOB,
    RETRAIN_SCHEDULE,
    ROLLBACK_JOB,
    TAG_REASON,
    TAG_TRIGGER,
)
from retrain_assets.core import registry as reg, synthetic, synthetic_batches
from retrain_assets.resources import resources_for
from retrain_assets_tests.conftest import (
    Retrainer, assert_file_refused, assert_held_back, assert_refused, clean_batch, failure_text, ingest,
)

pytestmark = pytest.mark.timeout(600)

LOOSE = {"automation.cooldown_minutes": 0, "automation.cooldown_batches": 1, "automation.min_new_labelled_rows": 0}


class Webhook:
    """A local Slack-compatible webhook that records what it receives."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def texts(self) -> list[str]:
        return [r["text"] for r in self.received]


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.server.shutdown()


def evaluate(r: Retrainer, name: str):
    """One sensor tick as the daemon runs it (its own resources only), keeping the cursor."""
    sensor = r.defs.resolve_sensor_def(name)
    resources = resources_for(r.defs, sensor)
    cursors = r.__dict__.setdefault("cursors", {})
    context = dg.build_sensor_context(instance=r.instance, definitions=r.defs, resources=resources,
                                      cursor=cursors.get(name))
    result = sensor.evaluate_tick(context)
    cursors[name] = result.cursor
    return result


def run_requests(result) -> list[dg.RunRequest]:
    return list(result.run_requests or [])


def launch(r: Retrainer, request: dg.RunRequest):
    """Execute a requested run in-process with its tags (and config), as the daemon would launch it."""
    job = r.defs.resolve_job_def(request.job_name)
    return job.execute_in_process(instance=r.instance, tags=request.tags, run_config=request.run_config or None,
                                  raise_on_error=False)


@pytest.fixture
def champion(tmp_path, instance, webhook) -> Retrainer:
    r = Retrainer(tmp_path, instance, **LOOSE, **{"alerts.webhook_url": webhook.url})
    for i in (1, 2, 3):
        r.land(i, rows=1000)
    assert r.retrain().success
    # Sensors start from "now": the bootstrap's own reports are history.
    for name in (DRIFT_SENSOR, PERFORMANCE_SENSOR):
        evaluate(r, name)
    return r


@pytest.mark.slow
def test_a_clean_batch_causes_no_retrain(champion: Retrainer):
    champion.land(4, rows=1000)
    result = evaluate(champion, DRIFT_SENSOR)
    assert not run_requests(result) and "no actionable drift on batch batch_0004" in result.skip_message
    perf = evaluate(champion, PERFORMANCE_SENSOR)
    assert not run_requests(perf) and "holds up on batch_0004" in perf.skip_message
    assert not evaluate(champion, DRIFT_SENSOR).run_requests  # nothing new: skipped
    assert evaluate(champion, DRIFT_SENSOR).skip_message == "no new drift report"


@pytest.mark.slow
def test_covariate_drift_requests_one_retrain_with_tags_that_reach_mlflow_and_the_ledger(champion: Retrainer):
    r = champion
    # Gates that cannot block this retrain: the test is about tags, not about the gates' verdict.
    r.reconfigure(**{"gates.max_flip_rate": 1.0, "gates.slice_tolerance": 1.0, "gates.comparison_tolerance": 1.0})
    r.land(4, synthetic_batches.make_batch(1500, seed=204, batch_index=4, scenario="covariate_drift"))
    requests = run_requests(evaluate(r, DRIFT_SENSOR))
    assert len(requests) == 1
    request = requests[0]
    assert request.job_name == RETRAIN_JOB and request.tags[TAG_TRIGGER] == "data_drift"
    assert "actionable drift on batch batch_0004" in request.tags[TAG_REASON]
    result = launch(r, request)
    version = r.alias(reg.CHALLENGER_ALIAS)
    tags = r.tags(version)
    assert tags[reg.TAG_TRIGGER] == "data_drift" and "batch_0004" in tags[reg.TAG_REASON]
    assert result.success, failure_text(result)
    ledger = r.ledger()
    assert ledger.iloc[-1]["trigger"] == "data_drift" and "batch_0004" in ledger.iloc[-1]["reason"]
    assert ledger.iloc[-1]["launched_by"] == "sensor drift_retrain_sensor"

    # The cooldown now holds the next drifted batch back, with the reason as the skip message.
    r.reconfigure(**{"automation.cooldown_minutes": 60})
    r.land(5, synthetic_batches.make_batch(1500, seed=205, batch_index=5, scenario="covariate_drift"))
    result = evaluate(r, DRIFT_SENSOR)
    assert not run_requests(result) and "cooldown 60 min" in result.skip_message


@pytest.mark.slow
def test_ten_drifted_batches_at_once_cause_one_retrain(champion: Retrainer):
    r = champion
    for i in range(4, 14):
        r.land(i, synthetic_batches.make_batch(600, seed=300 + i, batch_index=i, scenario="covariate_drift"))
    first = run_requests(evaluate(r, DRIFT_SENSOR))
    assert len(first) == 1
    # While the requested run is in progress, nothing else is requested.
    job = r.defs.resolve_job_def(RETRAIN_JOB)
    r.instance.create_run_for_job(job, tags=first[0].tags, status=dg.DagsterRunStatus.STARTED)
    r.land(14, synthetic_batches.make_batch(600, seed=314, batch_index=14, scenario="covariate_drift"))
    again = evaluate(r, DRIFT_SENSOR)
    assert not run_requests(again) and "already queued or running" in again.skip_message


@pytest.mark.slow
def test_a_retrain_launched_from_the_asset_graph_counts_for_the_policy(champion: Retrainer):
    """"Materialize" on candidate_model in the UI runs Dagster's implicit asset job, not `retrain`:
    while it runs the sensors must not start another, and once done it counts for the cooldown."""
    r = champion
    asset_job = r.defs.resolve_implicit_global_asset_job_def()
    selection = frozenset({dg.AssetKey(CANDIDATE_MODEL), dg.AssetKey(PRODUCTION_MODEL)})
    run = r.instance.create_run_for_job(asset_job, asset_selection=selection, status=dg.DagsterRunStatus.STARTED)
    r.land(4, synthetic_batches.make_batch(1500, seed=504, batch_index=4, scenario="covariate_drift"))
    result = evaluate(r, DRIFT_SENSOR)
    assert not run_requests(result) and "already queued or running" in result.skip_message
    # Finished: the cooldown (60 min) now counts from it.
    r.instance.report_run_failed(r.instance.get_run_by_id(run.run_id))
    r.reconfigure(**{"automation.cooldown_minutes": 60})
    r.land(5, synthetic_batches.make_batch(1500, seed=505, batch_index=5, scenario="covariate_drift"))
    result = evaluate(r, DRIFT_SENSOR)
    assert not run_requests(result) and "cooldown 60 min" in result.skip_message
    # An asset-graph run that does not train (an ingest of one batch) is not a retrain.
    r.reconfigure(**{"automation.cooldown_minutes": 0})
    r.instance.delete_run(run.run_id)
    r.instance.create_run_for_job(asset_job, asset_selection=frozenset({dg.AssetKey("raw_data")}),
                                  status=dg.DagsterRunStatus.STARTED)
    r.land(6, synthetic_batches.make_batch(1500, seed=506, batch_index=6, scenario="covariate_drift"))
    assert run_requests(evaluate(r, DRIFT_SENSOR))


@pytest.mark.slow
def test_confirmation_waits_for_k_of_n_drifted_batches(champion: Retrainer):
    r = champion
    r.reconfigure(**{"automation.confirm_k": 2, "automation.confirm_n": 3})
    r.land(4, synthetic_batches.make_batch(1500, seed=404, batch_index=4, scenario="covariate_drift"))
    result = evaluate(r, DRIFT_SENSOR)
    assert not run_requests(result) and "drift in 1 of the last 1 batches, 2 needed to confirm" in result.skip_message
    r.land(5, synthetic_batches.make_batch(1500, seed=405, batch_index=5, scenario="covariate_drift"))
    assert len(run_requests(evaluate(r, DRIFT_SENSOR))) == 1


@pytest.mark.slow
def test_concept_drift_requests_a_retrain_and_alerts(champion: Retrainer, webhook: Webhook):
    r = champion
    r.land(4, synthetic_batches.make_batch(2000, seed=504, batch_index=4, scenario="concept_drift"))
    perf = run_requests(evaluate(r, PERFORMANCE_SENSOR))
    assert len(perf) == 1 and perf[0].tags[TAG_TRIGGER] == "concept_drift"
    assert any("champion degrading" in text and "batch_0004" in text for text in webhook.texts())
    drift = run_requests(evaluate(r, DRIFT_SENSOR))
    assert len(drift) == 1 and drift[0].tags[TAG_TRIGGER] == "concept_drift"


@pytest.mark.slow
def test_metric_below_the_floor_is_a_performance_decline(champion: Retrainer):
    r = champion
    r.reconfigure(**{"gates.metric_floor": 0.95})
    r.land(4, rows=1000)
    requests = run_requests(evaluate(r, PERFORMANCE_SENSOR))
    assert len(requests) == 1 and requests[0].tags[TAG_TRIGGER] == "performance_decline"
    assert "below the floor of 0.95" in requests[0].tags[TAG_REASON]


@pytest.mark.slow
def test_a_new_champion_that_does_worse_is_rolled_back(champion: Retrainer, webhook: Webhook):
    r = champion
    # Loosened gates let a model trained on shuffled labels through (what the watch is for).
    r.reconfigure(**{"gates.comparison_tolerance": 1.0, "gates.metric_floor": 0.0, "gates.max_flip_rate": 1.0,
                     "gates.slice_tolerance": 1.0, "training.window": "last_n_batches", "training.last_n": 1})
    shuffled = clean_batch(4, 1000)
    shuffled["churned"] = np.random.default_rng(1).permutation(shuffled["churned"].to_numpy())
    r.land(4, shuffled)
    r.land(5, rows=1000)
    evaluate(r, PERFORMANCE_SENSOR)
    assert r.retrain().success and r.alias(reg.CHAMPION_ALIAS) == "2"
    r.land(6, rows=1000)
    requests = run_requests(evaluate(r, PERFORMANCE_SENSOR))
    assert len(requests) == 1 and requests[0].job_name == ROLLBACK_JOB
    assert requests[0].run_config["ops"]["rollback_champion"]["config"]["to_version"] == "1"
    assert any("rolling back to v1" in text for text in webhook.texts())
    assert launch(r, requests[0]).success
    assert r.alias(reg.CHAMPION_ALIAS) == "1"
    last = r.ledger().iloc[-1]
    assert last["action"] == "rollback" and "post-promotion watch on batch batch_0006" in last["reason"]

    # A sensor that starts with no cursor (a new deployment, the UI after `make demo`) must not
    # replay that rollback or its alert: batch_0006 was scored by v2, which no longer serves.
    alerts = len(webhook.texts())
    r.__dict__["cursors"].pop(PERFORMANCE_SENSOR)
    fresh = evaluate(r, PERFORMANCE_SENSOR)
    assert not run_requests(fresh) and "scored by v2, not by champion v1: nothing to act on" in fresh.skip_message
    assert len(webhook.texts()) == alerts


def request_retrain(r: Retrainer, reason: str):
    """A person's request_retrain run, executed in-process: like `dagster job execute`, it has no
    code-location origin (the daemon's run-status sensors never matched such a run)."""
    config = {"ops": {"record_retrain_request": {"config": {"reason": reason}}}}
    run = r.defs.resolve_job_def(REQUEST_RETRAIN_JOB).execute_in_process(instance=r.instance, run_config=config)
    assert run.success and r.instance.get_run_by_id(run.run_id).remote_job_origin is None
    return run


@pytest.mark.slow
def test_a_person_requests_a_retrain_with_a_reason(champion: Retrainer, webhook: Webhook):
    r = champion
    with pytest.raises(dg.DagsterInvalidConfigError, match="reason"):
        r.defs.resolve_job_def(REQUEST_RETRAIN_JOB).execute_in_process(instance=r.instance)
    assert evaluate(r, BUSINESS_CHANGE_SENSOR).skip_message == "no new retrain request"
    run = request_retrain(r, "new pricing from 2026-12-01")
    requests = run_requests(evaluate(r, BUSINESS_CHANGE_SENSOR))
    assert len(requests) == 1 and requests[0].job_name == RETRAIN_JOB
    assert requests[0].run_key == f"business_change:{run.run_id}"  # the daemon launches it once
    assert (requests[0].tags[TAG_TRIGGER], requests[0].tags[TAG_REASON]) == ("business_change", "new pricing from 2026-12-01")
    assert evaluate(r, BUSINESS_CHANGE_SENSOR).skip_message == "no new retrain request"
    result = launch(r, requests[0])
    assert r.tags(r.alias(reg.CHALLENGER_ALIAS))[reg.TAG_TRIGGER] == "business_change", failure_text(result)

    # Two requests seen in one tick: one retrain; the other is refused (one at a time) and alerted.
    first, _ = request_retrain(r, "new pricing, part one"), request_retrain(r, "new pricing, part two")
    result = evaluate(r, BUSINESS_CHANGE_SENSOR)
    assert [q.run_key for q in run_requests(result)] == [f"business_change:{first.run_id}"]
    assert any("requested retrain not started" in t and "already queued or running" in t for t in webhook.texts())


@pytest.mark.slow
def test_a_new_business_change_sensor_answers_only_a_request_no_retrain_answered(champion: Retrainer):
    """With no cursor (a new deployment), the sensor starts from now: a request made since the newest
    retrain started still gets one; one made before it was answered by that retrain."""
    r = champion
    request_retrain(r, "answered by the retrain that follows")
    assert r.retrain().success
    assert not run_requests(evaluate(r, BUSINESS_CHANGE_SENSOR))
    r.__dict__["cursors"].pop(BUSINESS_CHANGE_SENSOR)
    older, newer = request_retrain(r, "waiting for the daemon"), request_retrain(r, "waiting too")
    requests = run_requests(evaluate(r, BUSINESS_CHANGE_SENSOR))
    assert [q.run_key for q in requests] == [f"business_change:{newer.run_id}"], older.run_id
    assert evaluate(r, BUSINESS_CHANGE_SENSOR).skip_message == "no new retrain request"


def refusal_alert(r: Retrainer, result):
    """Evaluate alert_on_refusal on a finished, successful run, as the daemon does."""
    sensor = r.defs.resolve_sensor_def(REFUSAL_ALERT_SENSOR)
    success = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_SUCCESS)
    context = dg.build_run_status_sensor_context(
        sensor_name=REFUSAL_ALERT_SENSOR, dagster_event=success, dagster_instance=r.instance,
        dagster_run=r.instance.get_run_by_id(result.run_id), resources=resources_for(r.defs, sensor),
    )
    return sensor(context)


@pytest.mark.slow
def test_a_blocked_promotion_a_held_back_batch_and_a_refused_file_are_alerted_though_their_runs_succeed(
    champion: Retrainer, webhook: Webhook,
):
    r = champion
    r.reconfigure(**{"gates.max_flip_rate": 0.0})
    r.land(4, rows=1000)
    result = r.retrain(tags={TAG_TRIGGER: "data_drift"})
    assert "prediction_stability" in assert_refused(result)
    refusal_alert(r, result)
    texts = webhook.texts()
    assert len(texts) == 1 and "promotion blocked" in texts[0] and "prediction_stability" in texts[0], texts
    assert "the champion did not move" in texts[0] and "(data_drift)" in texts[0]

    corrupt = synthetic_batches.make_batch(400, seed=9, batch_index=5, scenario="corrupt", corrupt_fraction=0.3)
    r.ws.land("batch_0005", corrupt)
    held = ingest(r.defs, r.instance, "batch_0005")
    assert_held_back(held)
    refusal_alert(r, held)
    assert len(webhook.texts()) == 2
    assert "batch batch_0005 held back" in webhook.texts()[1] and "batch_passes_validation" in webhook.texts()[1]

    r.ws.land("batch_0006", b"")  # an empty file: refused by raw_data
    refused = ingest(r.defs, r.instance, "batch_0006")
    assert "is empty" in assert_file_refused(refused)
    refusal_alert(r, refused)
    assert len(webhook.texts()) == 3
    assert "file of batch batch_0006 refused" in webhook.texts()[2] and "file_accepted" in webhook.texts()[2]

    # A run where every check passed is not alerted, nor is model_health's freshness (it alerts itself).
    r.reconfigure(**{"gates.max_flip_rate": 1.0, "health.max_hours_without_batch": 0.0001})
    passed = ingest(r.defs, r.instance, "batch_0004")
    assert passed.success and refusal_alert(r, passed) is None and len(webhook.texts()) == 3
    health = r.defs.resolve_job_def(HEALTH_JOB).execute_in_process(instance=r.instance, raise_on_error=False)
    assert health.success and [c.check_name for c in health.get_asset_check_evaluations() if not c.passed] == [
        "batch_freshness"]
    assert len(webhook.texts()) == 4 and "no new batch" in webhook.texts()[3]  # model_health's own alert
    assert refusal_alert(r, health) is None and len(webhook.texts()) == 4


@pytest.mark.slow
def test_the_safety_net_schedule_skips_when_a_retrain_ran_in_the_period(champion: Retrainer):
    r = champion
    schedule = r.defs.resolve_schedule_def(RETRAIN_SCHEDULE)
    assert schedule.cron_schedule == "0 3 * * 1" and schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    resources = resources_for(r.defs, schedule)
    soon = datetime.now(timezone.utc) + timedelta(days=1)
    skipped = schedule.evaluate_tick(dg.build_schedule_context(instance=r.instance, scheduled_execution_time=soon,
                                                               resources=resources))
    assert not skipped.run_requests and "skipped: a manual retrain already started" in skipped.skip_message
    later = datetime.now(timezone.utc) + timedelta(days=8)
    due = schedule.evaluate_tick(dg.build_schedule_context(instance=r.instance, scheduled_execution_time=later,
                                                           resources=resources))
    assert len(due.run_requests) == 1 and due.run_requests[0].tags[TAG_TRIGGER] == "schedule"


def test_one_large_labelled_batch_starts_the_first_retrain_whatever_the_replacing_minimums(tmp_path, instance):
    # 500 new labelled rows and 3 batches of cooldown are for a retrain that replaces a champion.
    r = Retrainer(tmp_path, instance, **{**LOOSE, "automation.min_new_labelled_rows": 100_000,
                                         "automation.cooldown_batches": 3})
    r.land(1, rows=1000)
    requests = run_requests(evaluate(r, DRIFT_SENSOR))
    assert len(requests) == 1 and requests[0].tags[TAG_TRIGGER] == "bootstrap"
    assert "judge on the newest 500 rows of batch_0001" in requests[0].tags[TAG_REASON]
    assert launch(r, requests[0]).success and r.alias(reg.CHAMPION_ALIAS) == "1"


def test_small_batches_wait_for_the_first_retrain_saying_exactly_what_is_missing(tmp_path, instance):
    r = Retrainer(tmp_path, instance, **LOOSE)
    r.land(1, rows=150)
    waiting = evaluate(r, DRIFT_SENSOR)
    assert not run_requests(waiting), waiting.skip_message
    assert ("no champion yet: 150 labelled rows in 1 batch(es) (batch_0001); the first retrain needs at least 200 "
            "rows to learn from and 100 newer rows to judge on, and they give 75 to learn from and 75 to judge on"
            ) in waiting.skip_message
    r.land(2, rows=250)
    requests = run_requests(evaluate(r, DRIFT_SENSOR))
    assert len(requests) == 1 and requests[0].tags[TAG_TRIGGER] == "bootstrap"
    assert "learn from batch_0001, the oldest 125 rows of batch_0002 (275 labelled rows)" in requests[0].tags[TAG_REASON]


def test_the_performance_sensor_judges_no_champion_when_there_is_none(tmp_path, instance):
    r = Retrainer(tmp_path, instance, **LOOSE)
    r.land(1, rows=1000)
    first = evaluate(r, PERFORMANCE_SENSOR)
    r.land(2, rows=1000)
    second = evaluate(r, PERFORMANCE_SENSOR)
    for result, batch in ((first, "batch_0001"), (second, "batch_0002")):
        assert not run_requests(result) and result.skip_message == f"no champion yet: nothing to judge on {batch}"


@pytest.mark.slow
def test_a_new_performance_sensor_starts_from_the_newest_metrics_not_from_history(champion: Retrainer, webhook: Webhook):
    """With no cursor the sensor acts on the current state, the newest production metrics: a decline
    on an earlier batch (here under a floor raised for that batch only) is history, not replayed."""
    r = champion
    r.reconfigure(**{"gates.metric_floor": 0.95})
    r.land(4, rows=1000)
    r.reconfigure(**{"gates.metric_floor": 0.6})
    r.land(5, rows=1000)
    r.__dict__["cursors"].pop(PERFORMANCE_SENSOR)
    result = evaluate(r, PERFORMANCE_SENSOR)
    assert not run_requests(result) and result.skip_message == "the champion holds up on batch_0005"
    assert not any("champion degrading" in t for t in webhook.texts())


@pytest.mark.slow
def test_both_policy_sensors_decide_with_the_backtesters_function(tmp_path, instance, monkeypatch):
    """The drift and the performance sensor each call policy.next_action (the backtester's too, see
    test_backtest) on the state read from Dagster and DuckDB, and act on its decision."""
    from retrain_assets.core import policy

    calls = []
    real = policy.next_action

    def recording(now, state, settings):
        decision = real(now, state, settings)
        calls.append((state, decision))
        return decision

    monkeypatch.setattr(policy, "next_action", recording)
    r = Retrainer(tmp_path, instance, **LOOSE)
    for i in (1, 2, 3):
        r.land(i, rows=1000)
    first = evaluate(r, DRIFT_SENSOR)
    assert calls and calls[-1][0].first_champion is not None and calls[-1][1].trigger == "bootstrap"
    assert run_requests(first)[0].tags["retrain/trigger"] == "bootstrap"
    assert r.retrain(tags={"retrain/trigger": "bootstrap"}).success
    evaluate(r, PERFORMANCE_SENSOR)
    calls.clear()
    r.land(4, synthetic_batches.make_batch(1000, seed=404, batch_index=4, scenario="concept_drift"))
    drift = evaluate(r, DRIFT_SENSOR)
    performance = evaluate(r, PERFORMANCE_SENSOR)
    assert len(calls) == 2, "one decision per sensor"
    (state_d, decision_d), (state_p, decision_p) = calls
    assert state_d.first_champion is None and [s.batch_id for s in state_d.signals] == ["batch_0004"]
    assert decision_d.trigger == decision_p.trigger == "concept_drift", (decision_d, decision_p)
    requested = run_requests(drift) + run_requests(performance)
    assert [q.tags["retrain/trigger"] for q in requested] == ["concept_drift", "concept_drift"], (
        "each sensor alone would request it; the daemon's second request finds the first running")
