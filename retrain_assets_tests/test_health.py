"""model_health in-process: the verdict, the inline plot, freshness checks that warn and alert once,
the retrain costs matching MLflow, and the sensor that refreshes it after ingests and retrains."""

from __future__ import annotations

import dagster as dg
import pytest

from retrain_assets.assets.health import BATCH_FRESHNESS, LABEL_FRESHNESS
from retrain_assets.constants import DRIFT_SENSOR, HEALTH_JOB, HEALTH_SENSOR, MODEL_HEALTH, TAG_TRIGGER
from retrain_assets.core import registry as reg
from retrain_assets_tests.conftest import Retrainer, assert_held_back, clean_batch, failure_text, ingest
from retrain_assets_tests.test_automation import Webhook, evaluate

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def bootstrapped(tmp_path, instance, monkeypatch) -> Retrainer:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    r = Retrainer(tmp_path / "ws", instance)
    for i in (1, 2, 3):
        r.land(i)
    assert r.retrain().success
    return r


def refresh(r: Retrainer):
    result = r.defs.resolve_job_def(HEALTH_JOB).execute_in_process(instance=r.instance, raise_on_error=False)
    assert result.success, failure_text(result)
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(MODEL_HEALTH))
    meta = {k: v.value for k, v in event.materialization.metadata.items()}
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    return meta, checks


def test_no_champion_is_said_with_what_is_missing(tmp_path, instance, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = Retrainer(tmp_path / "ws", instance)
    r.land(1, rows=150)
    meta, checks = refresh(r)
    assert meta["verdict"] == "no_champion"
    assert "No model is in production yet" in meta["health"] and "150" in meta["health"]
    assert checks[BATCH_FRESHNESS].passed and checks[LABEL_FRESHNESS].passed
    assert meta["retrains"] == 0 and "no retrain has trained a candidate yet" in meta["retrain_costs_by_trigger"]


def record_tick(instance: dg.DagsterInstance, sensor: str, result, started: bool = False) -> None:
    """Store a sensor evaluation as the daemon does: the sensor's state and a tick with its outcome
    (``started``: a tick the daemon has begun and not finished, with no outcome yet)."""
    import time

    from dagster._core.remote_origin import (
        InProcessCodeLocationOrigin, RemoteInstigatorOrigin, RemoteRepositoryOrigin,
    )
    from dagster._core.scheduler.instigation import (
        InstigatorState, InstigatorStatus, InstigatorType, TickData, TickStatus,
    )
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    location = InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="retrain_assets.definitions"))
    state = InstigatorState(RemoteInstigatorOrigin(RemoteRepositoryOrigin(location, "__repository__"), sensor),
                            InstigatorType.SENSOR, InstigatorStatus.RUNNING)
    if instance.get_instigator_state(state.instigator_origin_id, state.selector_id) is None:
        instance.add_instigator_state(state)
    instance.create_tick(TickData(
        instigator_origin_id=state.instigator_origin_id, instigator_name=sensor, instigator_type=InstigatorType.SENSOR,
        status=TickStatus.STARTED if started else TickStatus.SKIPPED if not result.run_requests else TickStatus.SUCCESS,
        timestamp=time.time(), selector_id=state.selector_id, skip_reason=None if started else result.skip_message))


def test_held_back_batches_and_each_sensors_last_reason_are_on_the_page(tmp_path, instance, monkeypatch):
    """What the UI keeps a click deeper (a tick's reason, a held-back batch's check) is on the page."""
    monkeypatch.chdir(tmp_path)
    r = Retrainer(tmp_path / "ws", instance, **{"automation.first_champion": "by_hand"})
    r.land(1, rows=400)
    r.ws.land("batch_0002", clean_batch(2, 400).drop(columns=["region"]))
    assert_held_back(ingest(r.defs, r.instance, "batch_0002"))
    decided = evaluate(r, DRIFT_SENSOR)
    assert not decided.run_requests and len(decided.skip_message) > 60  # longer than a default table cell
    record_tick(r.instance, DRIFT_SENSOR, decided)
    record_tick(r.instance, DRIFT_SENSOR, decided, started=True)  # the next tick, still running: not shown
    meta, _ = refresh(r)
    assert meta["batches_held_back"] == 1
    assert "| batch_0002 | batch_0002.csv | 400 | batch batch_0002 held back: schema broken" in meta["held_back"]
    assert "region" in meta["held_back"] and str(r.settings.rejected_dir) in meta["held_back"]
    rows = {line.split(" | ")[0].strip("| "): line for line in meta["automation"].splitlines()[2:]}
    assert list(rows) == ["landing_sensor", "drift_retrain_sensor", "performance_sensor", "business_change_sensor",
                          "approval_alert_sensor"]
    assert "| no run | " + decided.skip_message.replace("|", "\\|")[:399] in rows["drift_retrain_sensor"]
    assert "no tick yet" in rows["landing_sensor"]


def test_health_after_retrains_shows_verdict_plot_costs_and_next_step(bootstrapped: Retrainer):
    r = bootstrapped
    r.land(4)
    r.retrain(tags={TAG_TRIGGER: "data_drift"})
    meta, checks = refresh(r)
    champion = r.alias(reg.CHAMPION_ALIAS)
    assert meta["verdict"] in {"healthy", "drifting"}
    assert meta["champion_version"] == champion
    assert meta["health"].startswith(f"**{meta['verdict']}** — Champion v{champion}")
    assert "**Next:**" in meta["health"] and meta["next_step"].startswith(("retrain now", "no retrain now"))
    assert "(promote," in meta["champion_since"]
    assert meta["metric_plot"].startswith("![roc_auc per batch](data:image/png;base64,")
    assert "| batch_0004 |" in meta["metric_per_batch"] and "| batch_0004 |" in meta["drift_per_batch"]
    assert isinstance(meta["latest_roc_auc"], float) and isinstance(meta["hours_since_last_batch"], float)
    assert "trigger data_drift" in meta["last_retrain"]

    # the cost rollup matches the retrains MLflow recorded
    client = reg.client_for(r.settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(r.settings.mlflow_experiment)
    runs = client.search_runs([experiment.experiment_id])
    assert meta["retrains"] == len(runs) == 2
    assert meta["retrain_fit_seconds"] == pytest.approx(
        sum(run.data.metrics["window_choice_seconds"] for run in runs), abs=0.01)
    assert "| data_drift | 1 |" in meta["retrain_costs_by_trigger"] and "| manual | 1 |" in meta["retrain_costs_by_trigger"]
    assert meta["retrain_costs_plot"].startswith("![retrain fit seconds per week](data:image/png;base64,")
    assert checks[BATCH_FRESHNESS].passed and checks[LABEL_FRESHNESS].passed


def test_stale_batches_and_labels_warn_and_alert_once(bootstrapped: Retrainer):
    r = bootstrapped
    hook = Webhook()
    try:
        r.reconfigure(**{"health.max_hours_without_batch": 0.00001, "health.max_batches_without_labels": 0,
                         "alerts.webhook_url": hook.url})
        r.ws.land("batch_0004", clean_batch(4, 400).drop(columns=[r.settings.dataset.target]))
        assert ingest(r.defs, r.instance, "batch_0004").success
        meta, checks = refresh(r)
        for name in (BATCH_FRESHNESS, LABEL_FRESHNESS):
            assert not checks[name].passed and checks[name].severity == dg.AssetCheckSeverity.WARN
        assert "no batch for more than 1e-05 h" in checks[BATCH_FRESHNESS].description
        assert "the newest labelled batch is batch_0003; 1 batch(es) since" in checks[LABEL_FRESHNESS].description
        texts = hook.texts()
        assert len(texts) == 2 and "no new batch" in texts[0] and "no labels" in texts[1], texts
        assert meta["verdict"] in {"healthy", "drifting"}  # stale data warns; it does not make the model unhealthy
        refresh(r)  # still stale: the checks still warn, no second alert
        assert len(hook.texts()) == 2
        r.reconfigure(**{"health.max_hours_without_batch": 48, "health.max_batches_without_labels": 5})
        meta, checks = refresh(r)  # fresh again, and a later breach alerts again
        assert checks[BATCH_FRESHNESS].passed and checks[LABEL_FRESHNESS].passed
        r.reconfigure(**{"health.max_hours_without_batch": 0.00001})
        refresh(r)
        assert len(hook.texts()) == 3 and "no new batch" in hook.texts()[2]
    finally:
        hook.server.shutdown()


def test_the_sensor_refreshes_health_after_ingests_and_retrains(bootstrapped: Retrainer):
    r = bootstrapped
    first = evaluate(r, HEALTH_SENSOR)  # first tick: the current state
    assert [q.job_name for q in first.run_requests] == [HEALTH_JOB]
    assert "skip" not in (first.skip_message or "")
    again = evaluate(r, HEALTH_SENSOR)
    assert not again.run_requests and "nothing model_health shows has changed" in again.skip_message
    r.land(4)
    after_ingest = evaluate(r, HEALTH_SENSOR)
    assert len(after_ingest.run_requests) == 1
    assert "raw_data ×1" in after_ingest.run_requests[0].tags["retrain/health_refresh"]
    r.retrain(tags={TAG_TRIGGER: "data_drift"})
    after_retrain = evaluate(r, HEALTH_SENSOR)
    assert "candidate_model ×1" in after_retrain.run_requests[0].tags["retrain/health_refresh"]
    assert len({q.run_key for q in first.run_requests + after_ingest.run_requests + after_retrain.run_requests}) == 3
