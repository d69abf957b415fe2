"""The policy sensors: a retrain on actionable drift (drift_report) or on the champion getting worse
(production_metrics), and a rollback of a new champion that does worse than the one it replaced.
Both ask :func:`retrain_assets.core.policy.next_action`, as the backtester does."""

from datetime import datetime, timezone

import dagster as dg

from retrain_assets.constants import (
    DRIFT_REPORT,
    DRIFT_SENSOR,
    PERFORMANCE_SENSOR,
    PRODUCTION_METRICS,
    ROLLBACK_JOB,
    TAG_REASON,
    TAG_TRIGGER,
)
from retrain_assets.core import label_store, metrics_store, policy
from retrain_assets.core.fleet import FleetSettings
from retrain_assets.jobs import ModelJobs, single_jobs
from retrain_assets.names import SINGLE, ModelNames, with_model_resources_of
from retrain_assets.resources import SENSOR_LOCK_WAIT_SECONDS, ModelRegistry, RetrainSettings, Warehouse
from retrain_assets.sensors.alerts import alert
from retrain_assets.state import fleet_request, new_materializations, policy_state

def build_drift_sensor(minimum_interval_seconds: int, names: ModelNames = SINGLE, jobs: ModelJobs | None = None,
                       fleet: FleetSettings | None = None) -> dg.SensorDefinition:
    """The sensor that retrains on actionable drift."""
    jobs = jobs or single_jobs()

    @dg.sensor(
        name=names.name(DRIFT_SENSOR),
        jobs=[jobs.retrain],
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "On new drift_report materializations: requests the first retrain as soon as the labelled rows allow one, then a "
            "retrain when drift is actionable (concept drift at once; data/prediction drift confirmed in "
            "automation.confirm_k of confirm_n batches) and the policy allows it."
        ),
    )
    @with_model_resources_of(names)
    def drift_retrain_sensor(context: dg.SensorEvaluationContext, settings: RetrainSettings, warehouse: Warehouse, registry: ModelRegistry):
        """Requests a retrain on actionable drift, within the retrain policy."""
        previous = context.cursor
        records = new_materializations(context.instance, names.key(DRIFT_REPORT), context.cursor)
        if not records:
            return dg.SkipReason("no new drift report")
        cursor = str(records[-1].storage_id)
        cfg = settings.load()
        with warehouse.get_connection(SENSOR_LOCK_WAIT_SECONDS) as conn:
            state = policy_state(context.instance, conn, cfg, has_champion=registry.champion_version() is not None,
                                 names=names)
        decision = policy.next_action(datetime.now(timezone.utc), state, cfg.automation.policy())
        context.update_cursor(cursor)
        if decision.trigger == "performance_decline":  # the performance sensor owns metric declines
            return dg.SkipReason(f"the champion's metric decline is handled by {names.name(PERFORMANCE_SENSOR)}: {decision.reason}")
        if not decision.retrain:
            return dg.SkipReason(decision.reason)
        newest = state.signals[-1].batch_id if state.signals else "start"
        context.log.info(f"retrain requested ({decision.trigger}): {decision.reason}")
        request = fleet_request(context.instance, decision, newest, names, fleet)
        if isinstance(request, dg.SkipReason):  # the fleet's budget is spent: ask again at the next tick
            context.update_cursor(previous)
        return request

    return drift_retrain_sensor


def build_performance_sensor(minimum_interval_seconds: int, names: ModelNames = SINGLE, jobs: ModelJobs | None = None,
                       fleet: FleetSettings | None = None) -> dg.SensorDefinition:
    """The sensor that retrains on a metric decline and rolls back a new champion that does worse."""
    jobs = jobs or single_jobs()

    @dg.sensor(
        name=names.name(PERFORMANCE_SENSOR),
        jobs=[jobs.retrain, jobs.rollback],
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "On new production_metrics materializations: rolls back a new champion that is significantly worse than "
            "the one it replaced; requests a retrain when the champion falls below the metric floor or significantly "
            "below its holdout metric (or a River detector fires while it gets worse); alerts on both."
        ),
    )
    @with_model_resources_of(names)
    def performance_sensor(context: dg.SensorEvaluationContext, settings: RetrainSettings, warehouse: Warehouse, registry: ModelRegistry):
        """Rolls back a worse new champion; requests a retrain on a metric decline; alerts."""
        previous = context.cursor
        records = new_materializations(context.instance, names.key(PRODUCTION_METRICS), context.cursor, first_tick_newest=True)
        if not records:
            return dg.SkipReason("no new production metrics")
        context.update_cursor(str(records[-1].storage_id))
        cfg = settings.load()
        batches = {r.partition_key for r in records if r.partition_key}
        champion = registry.champion_version()
        if champion is None:
            return dg.SkipReason(f"no champion yet: nothing to judge on {', '.join(sorted(batches))}")
        with warehouse.get_connection(SENSOR_LOCK_WAIT_SECONDS) as conn:
            metrics = metrics_store.read_production_metrics(conn)
            measured = metrics[metrics["batch_id"].isin(batches)]
            # A batch scored by an earlier champion says nothing about this one: acting on it would
            # roll back or retrain the wrong model.
            fresh = measured[measured["champion_version"] == champion]
            if fresh.empty:
                scored_by = sorted({str(v) for v in measured["champion_version"].dropna()})
                if not scored_by:
                    return dg.SkipReason(
                        f"{', '.join(sorted(batches))} arrived before any champion existed (now v{champion}): "
                        "nothing to act on"
                    )
                return dg.SkipReason(
                    f"{', '.join(sorted(batches))} scored by {', '.join('v' + v for v in scored_by)}, "
                    f"not by champion v{champion}: nothing to act on"
                )
            held = label_store.held_label_batches(conn)
            suspect = fresh[fresh["batch_id"].isin(held)]
            fresh = fresh[~fresh["batch_id"].isin(held)]
            if fresh.empty:
                return dg.SkipReason("; ".join(
                    f"{b}: {held[b]} — not counted as a retrain trigger" for b in sorted(suspect["batch_id"])))
            batches = set(fresh["batch_id"])
            rollback = fresh[fresh["rollback_recommended"]]
            if not rollback.empty:
                row = rollback.iloc[-1]
                details = f"{row['summary']}; rolling back to v{row['watch_previous_version']}"
                alert(cfg, context, "new champion is worse, rolling back", details)
                config = {"ops": {"rollback_champion": {"config": {
                    "to_version": str(row["watch_previous_version"]),
                    "reason": f"post-promotion watch on batch {row['batch_id']}: {row['summary']}"[:500],
                }}}}
                return [dg.RunRequest(
                    run_key=f"rollback:{row['batch_id']}:{row['champion_version']}", job_name=names.name(ROLLBACK_JOB),
                    run_config=config, tags={TAG_TRIGGER: "rollback", TAG_REASON: details[:500]},
                )]
            state = policy_state(context.instance, conn, cfg, has_champion=True, names=names)
        # The same decision as the drift sensor's (policy.next_action); this sensor acts on the
        # champion getting worse, the drift sensor on drift (whichever ticks first requests the
        # retrain; the other then finds it running).
        decision = policy.next_action(datetime.now(timezone.utc), state, cfg.automation.policy())
        if decision.trigger not in policy.URGENT_TRIGGERS:
            return dg.SkipReason(f"the champion holds up on {', '.join(sorted(batches))}")
        alert(cfg, context, "champion degrading", decision.reason)
        if not decision.retrain:
            return dg.SkipReason(decision.reason)
        context.log.info(f"retrain requested ({decision.trigger}): {decision.reason}")
        request = fleet_request(context.instance, decision, state.signals[-1].batch_id, names, fleet)
        if isinstance(request, dg.SkipReason):  # the fleet's budget is spent: ask again at the next tick
            context.update_cursor(previous)
        return request

    return performance_sensor
