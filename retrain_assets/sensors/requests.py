"""A person's retrain request (the request_retrain job, however launched) becomes one retrain."""

import dagster as dg

from retrain_assets.constants import BUSINESS_CHANGE_SENSOR, REQUEST_RETRAIN_JOB
from retrain_assets.core.fleet import FleetSettings
from retrain_assets.jobs import ModelJobs, single_jobs
from retrain_assets.names import SINGLE, ModelNames, with_model_resources_of
from retrain_assets.resources import SENSOR_LOCK_WAIT_SECONDS, RetrainSettings, Warehouse
from retrain_assets.sensors.alerts import alert
from retrain_assets.state import decide_retrain, fleet_budget_spent, retrain_history, retrain_request, retrain_state

REQUEST_EVENTS_SCANNED = 200
"""Run-success events read per page by business_change_sensor (all jobs: open-source event storage
cannot filter them by job name)."""


def _request_config_reason(run: dg.DagsterRun) -> str:
    return run.run_config["ops"]["record_retrain_request"]["config"]["reason"].strip()


def _newest_success_event_id(instance: dg.DagsterInstance) -> int:
    newest = instance.fetch_run_status_changes(dg.DagsterEventType.RUN_SUCCESS, limit=1).records
    return newest[0].storage_id if newest else 0


def _requests_since(instance: dg.DagsterInstance, after: int, names: ModelNames = SINGLE) -> tuple[list[dg.DagsterRun], int]:
    """request_retrain runs that succeeded after run-success event ``after``, in the order they
    finished, and the storage id of the last event read. Runs of every origin count: the CLI's
    (`dagster job execute`, no code-location origin), the launchpad's and the GraphQL API's."""
    found: list[dg.DagsterRun] = []
    while True:
        events = instance.fetch_run_status_changes(
            dg.RunStatusChangeRecordsFilter(event_type=dg.DagsterEventType.RUN_SUCCESS, after_storage_id=after),
            limit=REQUEST_EVENTS_SCANNED, ascending=True,
        ).records
        if not events:
            return found, after
        run_ids = [event.event_log_entry.run_id for event in events]
        runs = {r.dagster_run.run_id: r.dagster_run for r in instance.get_run_records(dg.RunsFilter(run_ids=run_ids))}
        found += [runs[i] for i in run_ids if i in runs and runs[i].job_name == names.name(REQUEST_RETRAIN_JOB)]
        after = events[-1].storage_id
        if len(events) < REQUEST_EVENTS_SCANNED:
            return found, after


def _unanswered_request(instance: dg.DagsterInstance, names: ModelNames = SINGLE) -> list[dg.DagsterRun]:
    """The newest request_retrain run that finished after the newest retrain started (none
    answers it yet); older requests were answered by that retrain or are history."""
    retrains, _ = retrain_history(instance, names)
    since = max((r.started_at.timestamp() for r in retrains), default=0.0)
    records = instance.get_run_records(
        dg.RunsFilter(job_name=names.name(REQUEST_RETRAIN_JOB), statuses=[dg.DagsterRunStatus.SUCCESS]), limit=20
    )
    pending = [r for r in records if r.end_time and r.end_time > since]
    newest = max(pending, key=lambda r: r.end_time, default=None)
    return [newest.dagster_run] if newest else []


def build_business_change_sensor(minimum_interval_seconds: int, names: ModelNames = SINGLE, jobs: ModelJobs | None = None,
                                  fleet: FleetSettings | None = None) -> dg.SensorDefinition:
    """The sensor that turns a person's request_retrain run into a retrain."""
    jobs = jobs or single_jobs()

    @dg.sensor(
        name=names.name(BUSINESS_CHANGE_SENSOR),
        jobs=[jobs.retrain],
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Turns each successful request_retrain run (launchpad, GraphQL or `dagster job execute`) into one retrain "
            "run tagged business_change with its reason; alerts when the policy refuses it."
        ),
    )
    @with_model_resources_of(names)
    def business_change_sensor(context: dg.SensorEvaluationContext, settings: RetrainSettings, warehouse: Warehouse):
        """Turns each request_retrain run into one retrain (budget and one-at-a-time still apply)."""
        if context.cursor is None:
            # First tick: start from now; only a request no retrain has answered yet still counts.
            cursor, requests = _newest_success_event_id(context.instance), _unanswered_request(context.instance, names)
        else:
            requests, cursor = _requests_since(context.instance, int(context.cursor), names)
        if not requests:
            return dg.SensorResult(cursor=str(cursor), skip_reason="no new retrain request")
        cfg = settings.load()
        run_requests, refused = [], []
        with warehouse.get_connection(SENSOR_LOCK_WAIT_SECONDS) as conn:
            history, running, signals = retrain_state(context.instance, conn, names)
            for request in requests:
                reason = _request_config_reason(request)
                decision = decide_retrain(context.instance, conn, cfg, trigger="business_change", reason=reason,
                                          state=(history, running, signals))
                if not decision.retrain:
                    refused.append(f"request {request.run_id[:8]}: {decision.reason}")
                    alert(cfg, context, "requested retrain not started", decision.reason)
                    continue
                context.log.info(f"retrain requested by run {request.run_id[:8]} (business change): {reason}")
                spent = fleet_budget_spent(context.instance, fleet)
                if spent:  # unanswered: the cursor stays, so it is asked again at the next tick (run keys
                    # keep a request already turned into a run from starting twice)
                    return dg.SensorResult(run_requests=run_requests, cursor=context.cursor,
                                           skip_reason=None if run_requests else f"{decision.reason} — waiting: {spent}")
                run_requests.append(retrain_request(decision, request.run_id, names))
                running = True  # the next request of this tick waits like one after a queued retrain
        return dg.SensorResult(run_requests=run_requests, cursor=str(cursor),
                               skip_reason=None if run_requests else "; ".join(refused))

    return business_change_sensor
