"""Automation that retrains when it pays: sensors on drift reports and production metrics, the
safety-net schedule, a person's request (business change), post-promotion rollback and alerts.

Every retrain request goes through :func:`retrain_assets.core.policy.decide` (cooldown,
confirmation, new labelled rows, budget, one retrain at a time) and carries the tags
``retrain/trigger`` and ``retrain/reason``, which reach the MLflow version and the promotion ledger.
"""

import json
from datetime import datetime, timezone

import dagster as dg
import pandas as pd
from pydantic import Field

from retrain_assets.constants import (
    CANDIDATE_MODEL,
    ALERT_SENSOR,
    APPROVAL_SENSOR,
    APPROVE_PROMOTION_JOB,
    BUSINESS_CHANGE_SENSOR,
    DRIFT_REPORT,
    DRIFT_SENSOR,
    PERFORMANCE_SENSOR,
    PRODUCTION_METRICS,
    PRODUCTION_MODEL,
    REJECT_PROMOTION_JOB,
    REQUEST_RETRAIN_JOB,
    RETRAIN_JOB,
    RETRAIN_SCHEDULE,
    ROLLBACK_JOB,
    TAG_REASON,
    TAG_TRIGGER,
)
from retrain_assets.assets.serving import rollback_job
from retrain_assets.core import approval, policy, storage, workers
from retrain_assets.core import registry as reg
from retrain_assets.core.alerts import send_alert
from retrain_assets.jobs import retrain_job
from retrain_assets.resources import SENSOR_LOCK_WAIT_SECONDS, ModelRegistry, RetrainSettings, Warehouse

OTHER_RUNS_SCANNED = 200
"""How many of the newest runs of other jobs are searched for a candidate_model materialization."""

ACTIVE = (
    dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING,
)


# --------------------------------------------------------------------------
# State the policy needs
# --------------------------------------------------------------------------


def fail_dead_runs(instance: dg.DagsterInstance, log=None) -> list[str]:
    """Mark failed every STARTED run whose recorded worker process is gone (killed, machine lost).

    Dagster then counts it as ended: run monitoring frees its pool slots after
    ``free_slots_after_run_end_seconds`` (deploy/*/dagster.yaml), alert_on_run_failure alerts it,
    and the policy no longer waits on it. Returns the ids marked failed.
    """
    failed = []
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]), limit=100):
        run = record.dagster_run
        worker = run.tags.get(workers.WORKER_TAG)
        if not workers.worker_gone(worker):
            continue
        message = (f"the run worker of run {run.run_id[:8]} ({run.job_name}), process {worker}, is gone (killed or "
                   "its machine restarted): marked failed so that its pool slots are freed and the next run can start")
        instance.report_run_failed(run, message)
        if log is not None:
            log.warning(message)
        failed.append(run.run_id)
    return failed


def retrain_history(instance: dg.DagsterInstance) -> tuple[list[policy.RetrainRecord], bool]:
    """Retrain runs so far (any outcome) and whether one is queued or running.

    A retrain is a run of the ``retrain`` job or any other run that materializes candidate_model:
    "Materialize" in the asset graph launches Dagster's implicit asset job, and such a run must
    count for the cooldown, the budget and one-at-a-time like the sensors' own. A run whose worker
    is gone is marked failed first (:func:`fail_dead_runs`): it is not running.
    """
    fail_dead_runs(instance)
    records = list(instance.get_run_records(filters=dg.RunsFilter(job_name=RETRAIN_JOB), limit=500))
    candidate = dg.AssetKey(CANDIDATE_MODEL)
    records += [
        record for record in instance.get_run_records(limit=OTHER_RUNS_SCANNED)
        if record.dagster_run.job_name != RETRAIN_JOB and candidate in (record.dagster_run.asset_selection or ())
    ]
    history = [
        policy.RetrainRecord(record.create_timestamp, record.dagster_run.tags.get(TAG_TRIGGER, "manual"))
        for record in records
    ]
    running = any(record.dagster_run.status in ACTIVE for record in records)
    return history, running


def _signal_summary(report, measured) -> str:
    """The drift report's sentence, and the production metrics' when the champion is failing there
    (below the floor, or worse than on its holdout), so a retrain's reason names both."""
    parts = [str(report["summary"])] if report is not None else []
    failing = measured is not None and any(
        not pd.isna(measured[c]) and bool(measured[c]) for c in ("below_floor", "degraded"))
    if measured is not None and (failing or not parts):
        parts.append(str(measured["summary"]).removeprefix(f"batch {measured.name}: ") if parts else str(measured["summary"]))
    return "; ".join(parts)


def batch_signals(conn, since: datetime | None) -> list[policy.BatchSignal]:
    """What monitoring said about each batch validated after ``since`` (drift reports and
    production metrics), in arrival order."""
    validated = storage.validations_since(conn, since)
    drift = storage.read_drift_reports(conn).set_index("batch_id")
    metrics = storage.read_production_metrics(conn).set_index("batch_id")
    held = storage.held_label_batches(conn)
    signals = []
    for row in validated.itertuples(index=False):
        report = drift.loc[row.batch_id] if row.batch_id in drift.index else None
        measured = metrics.loc[row.batch_id] if row.batch_id in metrics.index else None
        if row.batch_id in held:  # suspect labels never trigger a retrain by themselves (core.labels)
            signals.append(policy.BatchSignal.from_monitoring(
                row.batch_id,
                data_drift=None if report is None or pd.isna(report["data_drift"]) else bool(report["data_drift"]),
                prediction_drift=None, concept_drift=None, degraded=None, below_floor=None, labelled_rows=0,
                summary=f"{held[row.batch_id]} — its labels are not counted as a retrain trigger",
            ))
            continue

        def flag(frame_row, column):
            if frame_row is None or pd.isna(frame_row[column]):
                return None
            return bool(frame_row[column])

        signals.append(policy.BatchSignal.from_monitoring(
            row.batch_id,
            data_drift=flag(report, "data_drift"),
            prediction_drift=flag(report, "prediction_drift"),
            concept_drift=flag(report, "concept_drift"),
            degraded=flag(measured, "degraded"),
            below_floor=flag(measured, "below_floor"),
            labelled_rows=int(row.valid_rows) if row.labelled else 0,
            summary=_signal_summary(report, measured),
        ))
    return signals


RetrainState = tuple[list[policy.RetrainRecord], bool, list[policy.BatchSignal]]
"""Retrains so far, whether one is queued or running, and the batch signals since the last one."""


def retrain_state(instance: dg.DagsterInstance, conn) -> RetrainState:
    """What the policy needs: the retrain runs and every batch validated since the last one started."""
    history, running = retrain_history(instance)
    last = max(history, key=lambda r: r.started_at, default=None)
    return history, running, batch_signals(conn, last.started_at if last else None)


def policy_state(instance: dg.DagsterInstance, conn, cfg, *, has_champion: bool,
                 state: RetrainState | None = None) -> policy.PolicyState:
    """What :func:`policy.next_action` looks at, read from Dagster (retrain runs) and DuckDB (signals,
    and the labelled rows the first champion would learn from)."""
    history, running, signals = state or retrain_state(instance, conn)
    first = None if has_champion else cfg.training.first_champion_plan(
        storage.labelled_row_counts(conn, cfg.dataset.target))
    return policy.PolicyState(history=history, running=running, signals=signals, first_champion=first,
                              automatic_first=cfg.automation.first_champion == "automatic")


def decide_retrain(
    instance: dg.DagsterInstance, conn, cfg, *, trigger: str | None, reason: str, now: datetime | None = None,
    state: RetrainState | None = None,
) -> policy.Decision:
    """The policy's decision for a signal (``state`` from :func:`retrain_state`, read if not given)."""
    history, running, signals = state or retrain_state(instance, conn)
    return policy.decide(
        now or datetime.now(timezone.utc), trigger=trigger, reason=reason, history=history,
        new_batches=len(signals), new_labelled_rows=sum(signal.labelled_rows for signal in signals),
        running=running, settings=cfg.automation.policy(),
    )


def retrain_request(decision: policy.Decision, key: str) -> dg.RunRequest:
    """The run request for a positive decision, tagged with its trigger and reason."""
    return dg.RunRequest(
        run_key=f"{decision.trigger}:{key}", job_name=RETRAIN_JOB,
        tags={TAG_TRIGGER: decision.trigger, TAG_REASON: decision.reason[:500]},
    )


def _new_materializations(instance: dg.DagsterInstance, key: str, cursor: str | None, *, first_tick_newest: bool = False):
    """Materializations of ``key`` after the cursor (a storage id), oldest first. With no cursor yet and
    ``first_tick_newest``, only the newest: a sensor that starts (a new deployment, the UI after
    `make demo`) acts on the current state, not on every event of its history (README: Automation)."""
    if cursor is None and first_tick_newest:
        return list(reversed(instance.fetch_materializations(dg.AssetKey(key), limit=1).records))
    after = int(cursor) if cursor else None
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), after_storage_id=after), limit=1000, ascending=True
    )
    return result.records


def _own_run(context: dg.RunStatusSensorContext, run: dg.DagsterRun) -> bool:
    """Whether a run is of a job of this code location (the implicit asset job included)."""
    repository = context.repository_def
    return repository is None or repository.has_job(run.job_name)


def _alert(cfg, context, title: str, details: str):
    return send_alert(f"retrain-assets ({cfg.dataset.name}): {title}", details,
                      webhook_url=cfg.alerts.webhook_url, timeout_seconds=cfg.alerts.timeout_seconds,
                      logger=context.log)


# --------------------------------------------------------------------------
# Sensors
# --------------------------------------------------------------------------


def build_drift_sensor(minimum_interval_seconds: int) -> dg.SensorDefinition:
    """The sensor that retrains on actionable drift."""

    @dg.sensor(
        name=DRIFT_SENSOR,
        jobs=[retrain_job],
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "On new drift_report materializations: requests the first retrain as soon as the labelled rows allow one, then a "
            "retrain when drift is actionable (concept drift at once; data/prediction drift confirmed in "
            "automation.confirm_k of confirm_n batches) and the policy allows it."
        ),
    )
    def drift_retrain_sensor(
        context: dg.SensorEvaluationContext, settings: RetrainSettings, warehouse: Warehouse, registry: ModelRegistry
    ):
        """Requests a retrain on actionable drift, within the retrain policy."""
        records = _new_materializations(context.instance, DRIFT_REPORT, context.cursor)
        if not records:
            return dg.SkipReason("no new drift report")
        cursor = str(records[-1].storage_id)
        cfg = settings.load()
        with warehouse.get_connection(SENSOR_LOCK_WAIT_SECONDS) as conn:
            state = policy_state(context.instance, conn, cfg, has_champion=registry.champion_version() is not None)
        decision = policy.next_action(datetime.now(timezone.utc), state, cfg.automation.policy())
        context.update_cursor(cursor)
        if decision.trigger == "performance_decline":  # the performance sensor owns metric declines
            return dg.SkipReason(f"the champion's metric decline is handled by {PERFORMANCE_SENSOR}: {decision.reason}")
        if not decision.retrain:
            return dg.SkipReason(decision.reason)
        newest = state.signals[-1].batch_id if state.signals else "start"
        context.log.info(f"retrain requested ({decision.trigger}): {decision.reason}")
        return [retrain_request(decision, newest)]

    return drift_retrain_sensor


def build_performance_sensor(minimum_interval_seconds: int) -> dg.SensorDefinition:
    """The sensor that retrains on a metric decline and rolls back a new champion that does worse."""

    @dg.sensor(
        name=PERFORMANCE_SENSOR,
        jobs=[retrain_job, rollback_job],
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "On new production_metrics materializations: rolls back a new champion that is significantly worse than "
            "the one it replaced; requests a retrain when the champion falls below the metric floor or significantly "
            "below its holdout metric (or a River detector fires while it gets worse); alerts on both."
        ),
    )
    def performance_sensor(
        context: dg.SensorEvaluationContext, settings: RetrainSettings, warehouse: Warehouse, registry: ModelRegistry
    ):
        """Rolls back a worse new champion; requests a retrain on a metric decline; alerts."""
        records = _new_materializations(context.instance, PRODUCTION_METRICS, context.cursor, first_tick_newest=True)
        if not records:
            return dg.SkipReason("no new production metrics")
        context.update_cursor(str(records[-1].storage_id))
        cfg = settings.load()
        batches = {r.partition_key for r in records if r.partition_key}
        champion = registry.champion_version()
        if champion is None:
            return dg.SkipReason(f"no champion yet: nothing to judge on {', '.join(sorted(batches))}")
        with warehouse.get_connection(SENSOR_LOCK_WAIT_SECONDS) as conn:
            metrics = storage.read_production_metrics(conn)
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
            held = storage.held_label_batches(conn)
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
                _alert(cfg, context, "new champion is worse, rolling back", details)
                config = {"ops": {"rollback_champion": {"config": {
                    "to_version": str(row["watch_previous_version"]),
                    "reason": f"post-promotion watch on batch {row['batch_id']}: {row['summary']}"[:500],
                }}}}
                return [dg.RunRequest(
                    run_key=f"rollback:{row['batch_id']}:{row['champion_version']}", job_name=ROLLBACK_JOB,
                    run_config=config, tags={TAG_TRIGGER: "rollback", TAG_REASON: details[:500]},
                )]
            state = policy_state(context.instance, conn, cfg, has_champion=True)
        # The same decision as the drift sensor's (policy.next_action); this sensor acts on the
        # champion getting worse, the drift sensor on drift (whichever ticks first requests the
        # retrain; the other then finds it running).
        decision = policy.next_action(datetime.now(timezone.utc), state, cfg.automation.policy())
        if decision.trigger not in policy.URGENT_TRIGGERS:
            return dg.SkipReason(f"the champion holds up on {', '.join(sorted(batches))}")
        _alert(cfg, context, "champion degrading", decision.reason)
        if not decision.retrain:
            return dg.SkipReason(decision.reason)
        context.log.info(f"retrain requested ({decision.trigger}): {decision.reason}")
        return [retrain_request(decision, state.signals[-1].batch_id)]

    return performance_sensor


class RetrainRequestConfig(dg.Config):
    """A person's request for a retrain."""

    reason: str = Field(description="Why (required), e.g. 'new pricing from 2026-12-01'; it reaches MLflow and the ledger.")


@dg.op
def record_retrain_request(context: dg.OpExecutionContext, config: RetrainRequestConfig) -> None:
    """Validate and log a person's retrain request; business_change_sensor then requests the retrain."""
    reason = config.reason.strip()
    if len(reason) < 5:
        raise dg.Failure(f"give a reason of at least 5 characters for the retrain (got {config.reason!r})")
    context.log.info(f"retrain requested by a person (business change): {reason}")


@dg.job(name=REQUEST_RETRAIN_JOB, description="Ask for a retrain after a business change; `reason` is required.")
def request_retrain_job():
    """Ask for a retrain after a business change; `reason` is required."""
    record_retrain_request()


REQUEST_EVENTS_SCANNED = 200
"""Run-success events read per page by business_change_sensor (all jobs: open-source event storage
cannot filter them by job name)."""


def _request_config_reason(run: dg.DagsterRun) -> str:
    return run.run_config["ops"]["record_retrain_request"]["config"]["reason"].strip()


def _newest_success_event_id(instance: dg.DagsterInstance) -> int:
    newest = instance.fetch_run_status_changes(dg.DagsterEventType.RUN_SUCCESS, limit=1).records
    return newest[0].storage_id if newest else 0


def _requests_since(instance: dg.DagsterInstance, after: int) -> tuple[list[dg.DagsterRun], int]:
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
        found += [runs[i] for i in run_ids if i in runs and runs[i].job_name == REQUEST_RETRAIN_JOB]
        after = events[-1].storage_id
        if len(events) < REQUEST_EVENTS_SCANNED:
            return found, after


def _unanswered_request(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """The newest request_retrain run that finished after the newest retrain started (none
    answers it yet); older requests were answered by that retrain or are history."""
    retrains, _ = retrain_history(instance)
    since = max((r.started_at.timestamp() for r in retrains), default=0.0)
    records = instance.get_run_records(
        dg.RunsFilter(job_name=REQUEST_RETRAIN_JOB, statuses=[dg.DagsterRunStatus.SUCCESS]), limit=20
    )
    pending = [r for r in records if r.end_time and r.end_time > since]
    newest = max(pending, key=lambda r: r.end_time, default=None)
    return [newest.dagster_run] if newest else []


def build_business_change_sensor(minimum_interval_seconds: int) -> dg.SensorDefinition:
    """The sensor that turns a person's request_retrain run into a retrain."""

    @dg.sensor(
        name=BUSINESS_CHANGE_SENSOR,
        jobs=[retrain_job],
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Turns each successful request_retrain run (launchpad, GraphQL or `dagster job execute`) into one retrain "
            "run tagged business_change with its reason; alerts when the policy refuses it."
        ),
    )
    def business_change_sensor(context: dg.SensorEvaluationContext, settings: RetrainSettings, warehouse: Warehouse):
        """Turns each request_retrain run into one retrain (budget and one-at-a-time still apply)."""
        if context.cursor is None:
            # First tick: start from now; only a request no retrain has answered yet still counts.
            cursor, requests = _newest_success_event_id(context.instance), _unanswered_request(context.instance)
        else:
            requests, cursor = _requests_since(context.instance, int(context.cursor))
        if not requests:
            return dg.SensorResult(cursor=str(cursor), skip_reason="no new retrain request")
        cfg = settings.load()
        run_requests, refused = [], []
        with warehouse.get_connection(SENSOR_LOCK_WAIT_SECONDS) as conn:
            history, running, signals = retrain_state(context.instance, conn)
            for request in requests:
                reason = _request_config_reason(request)
                decision = decide_retrain(context.instance, conn, cfg, trigger="business_change", reason=reason,
                                          state=(history, running, signals))
                if not decision.retrain:
                    refused.append(f"request {request.run_id[:8]}: {decision.reason}")
                    _alert(cfg, context, "requested retrain not started", decision.reason)
                    continue
                context.log.info(f"retrain requested by run {request.run_id[:8]} (business change): {reason}")
                run_requests.append(retrain_request(decision, request.run_id))
                running = True  # the next request of this tick waits like one after a queued retrain
        return dg.SensorResult(run_requests=run_requests, cursor=str(cursor),
                               skip_reason=None if run_requests else "; ".join(refused))

    return business_change_sensor


OUTSIDE_FAILURE = "marked as failed from outside the execution context"
"""Dagster's run-failure message when something other than the run (its code server, run monitoring)
marked it failed; the reason is then in an engine event of the run."""


def _failure_explained(instance: dg.DagsterInstance, run: dg.DagsterRun, message: str | None) -> str:
    """The run's failure message; when Dagster only says the run was failed from outside (its worker
    was killed: SIGKILL, out of memory, a reboot), the engine event that says what happened."""
    message = message or "failed"
    if OUTSIDE_FAILURE not in message:
        return message
    for record in reversed(instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)[-20:]):
        text = record.message or ""
        if "terminated" in text or "signal" in text or "is gone" in text or "exited" in text:
            return f"{message} {text}"
    return message


@dg.run_failure_sensor(
    name=ALERT_SENSOR,
    # Without it Dagster matches only runs launched from this code location: a run of
    # `dagster job execute` has no code-location origin and would never be alerted.
    monitor_all_code_locations=True,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts (webhook from alerts.webhook_url, and the log) on every failed run of this project's jobs, "
    "however launched (daemon, launchpad, CLI); names the gates of a blocked promotion.",
)
def alert_on_run_failure(context: dg.RunFailureSensorContext, settings: RetrainSettings):
    """Alerts on failed runs; a retrain blocked by its gates is reported as a blocked promotion."""
    run = context.dagster_run
    if not _own_run(context, run):
        return dg.SkipReason(f"run {run.run_id[:8]} of {run.job_name}: not a job of this code location")
    cfg = settings.load()
    evaluations = context.instance.event_log_storage.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    failed = []
    for record in evaluations:
        data = record.event_log_entry.dagster_event.event_specific_data
        if not data.passed:
            failed.append(f"{data.check_name}: {data.description or ''}"[:300])
    if run.job_name == RETRAIN_JOB and failed:
        title = "promotion blocked"
        details = f"run {run.run_id[:8]} ({run.tags.get(TAG_TRIGGER, 'manual')}): the champion did not move; " + " | ".join(failed)
    else:
        title = f"run of {run.job_name} failed"
        details = f"run {run.run_id[:8]}: {_failure_explained(context.instance, run, context.failure_event.message)}"
        if failed:
            details += " | " + " | ".join(failed)
    _alert(cfg, context, title, details)


def build_approval_sensor(minimum_interval_seconds: int) -> dg.SensorDefinition:
    """The sensor that tells people a candidate awaits their approval, and when a request expired."""

    @dg.sensor(
        name=APPROVAL_SENSOR,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "With promotion.require_approval: alerts when a candidate that passed every gate awaits a person's "
            f"approval (how to run {APPROVE_PROMOTION_JOB} / {REJECT_PROMOTION_JOB}), and records and alerts an "
            "approval request that expired unapproved (promotion.approval_max_age_hours)."
        ),
    )
    def approval_alert_sensor(context: dg.SensorEvaluationContext, settings: RetrainSettings, warehouse: Warehouse):
        """Alerts when a candidate awaits approval; records and alerts expired approval requests."""
        first_tick = context.cursor is None
        state = json.loads(context.cursor) if context.cursor else {}
        awaited: dict[str, str] = state.get("awaiting", {})  # entry id -> when it was requested (ISO, UTC)
        records = _new_materializations(context.instance, PRODUCTION_MODEL, state.get("after"), first_tick_newest=first_tick)
        after = str(records[-1].storage_id) if records else state.get("after")
        requested = [
            r.asset_materialization.metadata["approval_entry_id"].value for r in records
            if r.asset_materialization is not None and "approval_entry_id" in r.asset_materialization.metadata
        ]
        cfg = settings.load()
        name, max_age = cfg.registered_model_name, cfg.promotion.approval_max_age_hours
        now = datetime.now(timezone.utc)
        due = [e for e, at in awaited.items() if (now - datetime.fromisoformat(at)).total_seconds() > max_age * 3600]
        if not requested and not due and not first_tick:
            context.update_cursor(json.dumps({"after": after, "awaiting": awaited}))
            return dg.SkipReason(f"{len(awaited)} request(s) awaiting approval, none expired" if awaited
                                 else "no candidate awaits approval")
        with warehouse.get_connection(SENSOR_LOCK_WAIT_SECONDS) as conn:
            ended = storage.settle_approval_requests(
                conn, name, champion=reg.alias_version(cfg.mlflow_tracking_uri, name, reg.CHAMPION_ALIAS),
                challenger=reg.alias_version(cfg.mlflow_tracking_uri, name, reg.CHALLENGER_ALIAS), max_age_hours=max_age,
            )
            still_open = {r.entry_id: r for r in approval.open_requests(storage.read_ledger(conn, name))}
        for settled in ended:
            if settled.status == "expired":
                _alert(cfg, context, "approval expired", f"v{settled.to_version} was not approved in time and will not "
                       f"be promoted: {settled.note}")
        # First tick: the ledger is the current state; every request still open awaits a person.
        for entry in dict.fromkeys(list(still_open) if first_tick else requested):
            request = still_open.get(entry)
            if request is None or entry in awaited:
                continue
            config = json.dumps(approval.run_config(approval.APPROVE_JOB_OP, version=request.to_version))
            _alert(cfg, context, "candidate awaits approval", (
                f"v{request.to_version} passed every gate against champion "
                f"{'v' + request.from_version if request.from_version else '(none yet)'} "
                f"(trigger {request.trigger or 'manual'}) and awaits approval until "
                f"{request.expires_at(max_age):%Y-%m-%d %H:%M} UTC. Approve: job {APPROVE_PROMOTION_JOB} from the launchpad "
                f"or `dagster job execute -m retrain_assets.definitions -j {APPROVE_PROMOTION_JOB} -c approve.yaml` with "
                f"{config}; reject: job {REJECT_PROMOTION_JOB}. Shadow evidence: production_metrics."
            ))
        awaited = {entry: r.recorded_at.isoformat() for entry, r in still_open.items()}
        context.update_cursor(json.dumps({"after": after, "awaiting": awaited}))
        return dg.SkipReason(f"{len(awaited)} request(s) awaiting approval; {len(ended)} ended")

    return approval_alert_sensor


def build_retrain_schedule(cron: str, timezone_name: str) -> dg.ScheduleDefinition:
    """The safety net: a periodic retrain unless one already ran in the period."""

    @dg.schedule(
        name=RETRAIN_SCHEDULE,
        cron_schedule=cron,
        execution_timezone=timezone_name,
        job=retrain_job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Safety-net retrain (automation.schedule_cron), skipped with the reason when a retrain ran in the period.",
    )
    def safety_net_retrain(context: dg.ScheduleEvaluationContext, settings: RetrainSettings):
        """Safety-net retrain, skipped when a retrain already ran in the period."""
        cfg = settings.load()
        history, running = retrain_history(context.instance)
        now = context.scheduled_execution_time or datetime.now(timezone.utc)
        due, reason = policy.schedule_due(now, history, cfg.automation.policy())
        if not due:
            return dg.SkipReason(reason)
        if running:
            return dg.SkipReason("skipped: a retrain is queued or running")
        return dg.RunRequest(run_key=f"schedule:{now:%Y%m%dT%H%M}", job_name=RETRAIN_JOB,
                             tags={TAG_TRIGGER: "schedule", TAG_REASON: reason})

    return safety_net_retrain
