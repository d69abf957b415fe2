"""Human approval of promotions (promotion.require_approval) and shadow scoring, run in-process
against a real MLflow store, DuckDB warehouse and Dagster instance: a gated candidate waits as
`challenger`; approve_promotion moves the champion, reject_promotion refuses it; requests expire and
are superseded; production_metrics scores the challenger beside the champion; the approval sensor
alerts; and one approval through the real `dagster job execute` CLI."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from retrain_assets.constants import (
    APPROVAL_SENSOR,
    APPROVE_PROMOTION_JOB,
    PRODUCTION_METRICS,
    PRODUCTION_MODEL,
    REJECT_PROMOTION_JOB,
    REPO_ROOT,
)
from retrain_assets.core import approval, metrics_store, registry as reg, storage
from retrain_assets_tests.conftest import Retrainer, assert_refused, clean_batch, failure_text, run_log
from retrain_assets_tests.test_automation import Webhook, evaluate

pytestmark = pytest.mark.timeout(900)


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.server.shutdown()


@pytest.fixture
def awaiting(tmp_path, instance, monkeypatch, webhook) -> Retrainer:
    """Champion v1 promoted automatically; then approval is required and v2, which passed every gate
    against v1, awaits it."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # MLflow must not write ./mlruns wherever the process runs
    r = Retrainer(tmp_path / "ws", instance, **{"gates.max_flip_rate": 0.5, "alerts.webhook_url": webhook.url})
    for i in (1, 2, 3):
        r.land(i)
    assert r.retrain().success
    r.reconfigure(**{"promotion.require_approval": True})
    r.land(4)
    result = r.retrain()
    assert result.success, failure_text(result)
    r.__dict__["awaiting_run"] = result
    assert (r.alias(reg.CHAMPION_ALIAS), r.alias(reg.CHALLENGER_ALIAS)) == ("1", "2")
    return r


def decide(r: Retrainer, job: str, raise_on_error: bool = False, **config):
    op = approval.APPROVE_JOB_OP if job == APPROVE_PROMOTION_JOB else approval.REJECT_JOB_OP
    run_config = {"ops": {op: {"config": {"approver": "alice", "note": "shadow evidence looks fine", **config}}}}
    return r.defs.resolve_job_def(job).execute_in_process(instance=r.instance, run_config=run_config,
                                                          raise_on_error=raise_on_error)


def production_model_alone(r: Retrainer):
    return r.defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=r.instance, asset_selection=[dg.AssetKey(PRODUCTION_MODEL)], raise_on_error=False)


def event_metadata(result, key: str = PRODUCTION_MODEL) -> dict:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(key)]
    assert len(events) == 1, events
    return {k: v.value for k, v in events[0].materialization.metadata.items()}


def latest_metrics(r: Retrainer) -> dict:
    record = r.instance.fetch_materializations(dg.AssetKey(PRODUCTION_METRICS), limit=1).records[0]
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def requests(r: Retrainer) -> list[tuple]:
    ledger = r.ledger()
    rows = ledger[ledger["action"] == "approval"]
    return list(zip(rows["to_version"], rows["status"], rows["approver"].fillna(""), rows["note"].fillna("")))


def backdate_requests(r: Retrainer, hours: float) -> None:
    with duckdb.connect(str(r.settings.duckdb_path)) as conn:
        conn.execute(f"UPDATE promotion_ledger SET recorded_at = recorded_at - INTERVAL {int(hours)} HOUR "
                     "WHERE action = 'approval'")


# --------------------------------------------------------------------------
# Awaiting, approving, rejecting
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_a_gated_candidate_awaits_approval_and_approve_moves_the_champion(awaiting: Retrainer, webhook: Webhook):
    r = awaiting
    # Waiting: the champion did not move; the ledger and the metadata say what awaits whom and how to approve.
    assert requests(r) == [("2", "awaiting_approval", "", "")]
    assert list(r.ledger()["action"]) == ["promote", "approval"]
    meta = event_metadata(r.__dict__["awaiting_run"])
    assert meta["moved"] is False and meta["awaiting_approval"] is True
    assert (meta["champion_version"], meta["challenger_version"]) == ("1", "2")
    how = meta["how_to_approve"]
    assert "v2 passed every gate against champion v1 and awaits a person's approval" in how
    assert f"-j {APPROVE_PROMOTION_JOB} -c approve.yaml" in how and f"job `{REJECT_PROMOTION_JOB}`" in how
    launchpad = yaml.safe_load(re.search(r"```yaml\n(.*?)```", how, re.S).group(1))
    assert launchpad == approval.run_config(approval.APPROVE_JOB_OP, version="2")
    assert r.tags("2")["retrain.approval"] == "awaiting_approval"

    # Materializing production_model again asks nothing new; the sensor alerts once, with how to approve.
    again = production_model_alone(r)
    assert again.success and event_metadata(again)["approval_entry_id"] == meta["approval_entry_id"]
    assert len(requests(r)) == 1
    evaluate(r, APPROVAL_SENSOR)
    evaluate(r, APPROVAL_SENSOR)
    alerts = [t for t in webhook.texts() if "candidate awaits approval" in t]
    assert len(alerts) == 1 and "v2 passed every gate against champion v1" in alerts[0]
    assert APPROVE_PROMOTION_JOB in alerts[0] and '"version": "2"' in alerts[0]

    # A version other than the one awaiting is refused; so are a blank approver and a missing note.
    wrong = decide(r, APPROVE_PROMOTION_JOB, version="7")
    assert not wrong.success and 'v7 does not await approval: v2 does' in failure_text(wrong)
    assert not decide(r, APPROVE_PROMOTION_JOB, approver="  ").success
    with pytest.raises(dg.DagsterInvalidConfigError, match="note"):
        r.defs.resolve_job_def(APPROVE_PROMOTION_JOB).execute_in_process(
            instance=r.instance, run_config={"ops": {approval.APPROVE_JOB_OP: {"config": {"approver": "alice"}}}})
    # Gate tags that no longer say "passed" (edited in the registry by hand) are refused too.
    uri = r.settings.mlflow_tracking_uri
    reg.set_version_tags(uri, "churn", "2", {reg.TAG_GATES_PASSED: "false", reg.TAG_FAILED_GATES: "metric_floor"})
    tampered = decide(r, APPROVE_PROMOTION_JOB, version="2")
    assert not tampered.success and "v2 did not pass its gates (metric_floor)" in failure_text(tampered)
    reg.set_version_tags(uri, "churn", "2", {reg.TAG_GATES_PASSED: "true", reg.TAG_FAILED_GATES: ""})
    assert r.alias(reg.CHAMPION_ALIAS) == "1" and requests(r)[-1][1] == "awaiting_approval"

    # Approve: the champion moves exactly like an automatic promotion, and the ledger names the approver.
    result = decide(r, APPROVE_PROMOTION_JOB, version="2", note="+0.01 AUC over two batches")
    assert result.success, failure_text(result)
    assert (r.alias(reg.CHAMPION_ALIAS), r.alias(reg.PREVIOUS_ALIAS)) == ("2", "1")
    ledger = r.ledger()
    assert list(zip(ledger["action"], ledger["status"])) == [("promote", "done"), ("approval", "approved"),
                                                             ("promote", "done")]
    move = ledger.iloc[-1]
    assert (move["from_version"], move["to_version"], move["approver"]) == ("1", "2", "alice")
    assert bool(move["gates_passed"]) and "approved by alice: +0.01 AUC over two batches" in move["note"]
    assert requests(r) == [("2", "approved", "alice", "+0.01 AUC over two batches")]
    assert r.tags("2")["retrain.approved_by"] == "alice" and r.tags("2")["retrain.promoted_by_run"] == result.run_id
    meta = event_metadata(result)
    assert meta["moved"] is True and meta["approved_by"] == "alice" and meta["champion_version"] == "2"
    assert "no batch has been scored by both champion v1 and challenger v2 yet" in meta["shadow_evidence"]

    # Nothing awaits any more.
    twice = decide(r, APPROVE_PROMOTION_JOB)
    assert not twice.success and "nothing awaits approval; the last request: v2" in failure_text(twice)
    assert "approved by alice" in failure_text(twice)


def test_reject_clears_the_challenger_and_the_champion_stays(awaiting: Retrainer):
    r = awaiting
    result = decide(r, REJECT_PROMOTION_JOB, approver="bob", note="misprices annual plans")
    assert result.success, failure_text(result)
    assert r.alias(reg.CHAMPION_ALIAS) == "1" and r.alias(reg.CHALLENGER_ALIAS) is None
    assert requests(r) == [("2", "rejected", "bob", "misprices annual plans")]
    assert list(r.ledger()["action"]) == ["promote", "approval"]  # no move
    assert r.tags("2")["retrain.approval"] == "rejected"
    observation = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_OBSERVATION)
    assert observation.asset_observation_data.asset_observation.metadata["rejected_by"].value == "bob"

    # Nothing left to approve or promote.
    assert "nothing awaits approval; the last request: v2" in failure_text(decide(r, APPROVE_PROMOTION_JOB))
    assert "nothing to promote" in failure_text(production_model_alone(r))
    # A run killed between the ledger and the alias removal leaves the alias: it is still not put up again.
    reg.move_alias(r.settings.mlflow_tracking_uri, "churn", reg.CHALLENGER_ALIAS, "2")
    again = production_model_alone(r)
    assert not again.success and "v2 was rejected" in failure_text(again)
    assert r.alias(reg.CHAMPION_ALIAS) == "1" and len(requests(r)) == 1


@pytest.mark.slow
def test_an_expired_request_cannot_be_approved(awaiting: Retrainer, webhook: Webhook):
    r = awaiting
    backdate_requests(r, 73)  # default approval_max_age_hours: 72
    result = decide(r, APPROVE_PROMOTION_JOB, version="2")
    assert not result.success
    assert "expired — awaited approval for 73.0 h, longer than promotion.approval_max_age_hours (72 h)" in failure_text(result)
    assert r.alias(reg.CHAMPION_ALIAS) == "1" and requests(r)[-1][:2] == ("2", "expired")

    # Asking again (production_model re-materialized) opens a new request; the sensor alerts when it expires.
    assert production_model_alone(r).success
    assert [s for _, s, _, _ in requests(r)] == ["expired", "awaiting_approval"]
    evaluate(r, APPROVAL_SENSOR)
    r.reconfigure(**{"promotion.approval_max_age_hours": 0.0001})  # 0.36 s
    time.sleep(0.5)
    evaluate(r, APPROVAL_SENSOR)
    assert [s for _, s, _, _ in requests(r)] == ["expired", "expired"]
    assert any("approval expired" in t and "v2 was not approved in time" in t for t in webhook.texts()), webhook.texts()
    assert r.alias(reg.CHAMPION_ALIAS) == "1"


@pytest.mark.slow
def test_a_candidate_that_fails_its_gates_leaves_the_awaiting_one_alone(awaiting: Retrainer):
    r = awaiting
    r.land(5)
    r.reconfigure(**{"gates.metric_floor": 0.99})
    result = r.retrain()
    assert "metric_floor" in assert_refused(result)
    assert "v3 did not pass its gates (metric_floor" in run_log(r.instance, result.run_id)
    assert (r.alias(reg.CHAMPION_ALIAS), r.alias(reg.CHALLENGER_ALIAS)) == ("1", "2")
    assert r.tags("3")[reg.TAG_GATES_PASSED] == "false"
    assert [(v, s) for v, s, _, _ in requests(r)] == [("2", "awaiting_approval")]
    r.reconfigure(**{"gates.metric_floor": None})
    approved = decide(r, APPROVE_PROMOTION_JOB)
    assert approved.success, failure_text(approved)
    assert r.alias(reg.CHAMPION_ALIAS) == "2"


@pytest.mark.slow
def test_a_newer_candidate_supersedes_the_awaiting_one(awaiting: Retrainer):
    r = awaiting
    r.land(5)
    r.reconfigure(**{"gates.comparison_tolerance": 1.0})  # about the ledger, not the gates' verdict
    result = r.retrain()
    assert result.success, failure_text(result)
    assert (r.alias(reg.CHAMPION_ALIAS), r.alias(reg.CHALLENGER_ALIAS)) == ("1", "3")
    assert [(v, s) for v, s, _, _ in requests(r)] == [("2", "superseded"), ("3", "awaiting_approval")]
    assert "v2 no longer holds alias challenger (now v3)" in requests(r)[0][3]
    stale = decide(r, APPROVE_PROMOTION_JOB, version="2")
    assert not stale.success and "v2 does not await approval: v3 does" in failure_text(stale)

    # The champion moves under the request (a manual alias move): it was judged against another champion.
    reg.move_alias(r.settings.mlflow_tracking_uri, "churn", reg.CHAMPION_ALIAS, "2")
    moved = decide(r, APPROVE_PROMOTION_JOB, version="3")
    assert not moved.success
    assert "judged against champion v1, but the champion is now v2" in failure_text(moved)
    assert requests(r)[-1][:2] == ("3", "superseded") and r.alias(reg.CHAMPION_ALIAS) == "2"


# --------------------------------------------------------------------------
# Shadow scoring
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_shadow_scoring_shows_both_models_and_reaches_the_approver(awaiting: Retrainer):
    r = awaiting
    r.land(5, rows=1000)  # labelled
    meta = latest_metrics(r)
    assert meta["champion_version"] == "1" and meta["challenger_version"] == "2"
    assert "challenger v2 scored beside champion v1 (awaits approval)" in meta["shadow_scoring"]
    assert meta["ci_low"] < meta["batch_metric"] < meta["ci_high"]
    assert meta["challenger_ci_low"] < meta["challenger_metric"] < meta["challenger_ci_high"]
    assert meta["shadow_difference_ci_low"] <= meta["shadow_difference"] <= meta["shadow_difference_ci_high"]
    table = meta["shadow"]
    assert "| roc_auc |" in table and "champion v1" in table and "challenger v2" in table
    assert "over the last 1 labelled batch(es) (batch_0005, 1000 rows) challenger v2" in meta["shadow_evidence"]
    assert Path(meta["metric_plot"]).read_bytes()[:4] == b"\x89PNG"

    unlabelled = clean_batch(6, 600).drop(columns=["churned"])
    r.land(6, unlabelled)
    meta = latest_metrics(r)
    assert "no labels" in meta["shadow"] and "predicted positive rate" in meta["shadow"]
    assert 0 <= meta["champion_positive_rate"] <= 1 and 0 <= meta["challenger_positive_rate"] <= 1
    assert "challenger_estimated_metric" in meta and "challenger_metric" not in meta
    assert "on 1 unlabelled batch(es) the challenger predicts" in meta["shadow_evidence"]
    with duckdb.connect(str(r.settings.duckdb_path)) as conn:
        rows = metrics_store.read_shadow_scores(conn, champion_version="1", challenger_version="2")
    assert list(rows["batch_id"]) == ["batch_0005", "batch_0006"] and list(rows["labelled"]) == [True, False]
    assert rows["champion_metric"].notna().tolist() == [True, False]

    # The approver sees the evidence in the approve run's log and metadata.
    result = decide(r, APPROVE_PROMOTION_JOB, version="2")
    assert result.success, failure_text(result)
    logged = " ".join(entry.user_message for entry in r.instance.all_logs(result.run_id))
    assert "shadow evidence for v2: over the last 1 labelled batch(es) (batch_0005" in logged
    meta = event_metadata(result)
    assert "| batch_0006 |" in meta["shadow_evidence"] and meta["shadow_batches"] == 2
    assert "shadow_difference_overall" in meta and meta["shadow_verdict"] in (
        "better", "worse", "no significant difference")

    # Promoted: no challenger other than the champion, nothing to shadow.
    r.land(7)
    meta = latest_metrics(r)
    assert "challenger_version" not in meta and meta["shadow_scoring"] == "no challenger other than champion v2"


@pytest.mark.slow
def test_shadow_scoring_modes(awaiting: Retrainer):
    r = awaiting
    r.reconfigure(**{"promotion.shadow_scoring": "never"})
    r.land(5)
    assert latest_metrics(r)["shadow_scoring"] == "off (promotion.shadow_scoring: never)"
    # A challenger that awaits nothing (rejected, then the alias put back by hand) is shadowed only with "always".
    assert decide(r, REJECT_PROMOTION_JOB).success
    reg.move_alias(r.settings.mlflow_tracking_uri, "churn", reg.CHALLENGER_ALIAS, "2")
    r.reconfigure(**{"promotion.shadow_scoring": "while_awaiting_approval"})
    r.land(6)
    assert "does not await approval" in latest_metrics(r)["shadow_scoring"]
    r.reconfigure(**{"promotion.shadow_scoring": "always"})
    r.land(7)
    meta = latest_metrics(r)
    assert meta["challenger_version"] == "2" and "promotion.shadow_scoring: always" in meta["shadow_scoring"]


# --------------------------------------------------------------------------
# The real CLI
# --------------------------------------------------------------------------


@pytest.mark.cli
def test_cli_approves_the_first_champion(tmp_path, instance, monkeypatch):
    """With approval required from the start, the first candidate awaits too; `dagster job execute
    -j approve_promotion -c approve.yaml` (a fresh process, its own DAGSTER_HOME) makes it champion."""
    monkeypatch.chdir(tmp_path)
    r = Retrainer(tmp_path / "ws", instance, **{"promotion.require_approval": True})
    for i in (1, 2):
        r.land(i)
    assert r.retrain().success
    assert r.alias(reg.CHAMPION_ALIAS) is None and r.alias(reg.CHALLENGER_ALIAS) == "1"
    assert requests(r) == [("1", "awaiting_approval", "", "")]

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "deploy" / "local" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "RETRAIN_CONFIG": str(r.ws.config_path)}
    config = tmp_path / "approve.yaml"
    config.write_text(yaml.safe_dump(approval.run_config(approval.APPROVE_JOB_OP, version="1", approver="carol",
                                                         note="first model, holdout AUC checked")))
    dagster = str(Path(sys.executable).with_name("dagster"))
    command = [dagster, "job", "execute", "-m", "retrain_assets.definitions", "-j", APPROVE_PROMOTION_JOB, "-c", str(config)]
    done = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert r.alias(reg.CHAMPION_ALIAS) == "1"
    assert requests(r) == [("1", "approved", "carol", "first model, holdout AUC checked")]
    move = r.ledger().iloc[-1]
    assert (move["action"], move["status"], move["approver"]) == ("promote", "done", "carol")
    assert move["from_version"] is None or move["from_version"] != move["from_version"]  # no champion before

    again = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "nothing awaits approval" in again.stdout + again.stderr
