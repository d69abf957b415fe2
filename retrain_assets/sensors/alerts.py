"""Alerts: every failed run of this project's jobs (however launched); every run that refused a
landed file, held a batch back or refused a candidate (those runs succeed: the checks say why); and
candidates awaiting a person's approval (with expiry)."""

import json
from datetime import datetime, timezone

import dagster as dg
from dagster._core.storage.tags import PARTITION_NAME_TAG

from retrain_assets.constants import (
    ALERT_SENSOR,
    APPROVAL_SENSOR,
    APPROVE_PROMOTION_JOB,
    CANDIDATE_MODEL,
    PRODUCTION_MODEL,
    RAW_DATA,
    REFUSAL_ALERT_SENSOR,
    REJECT_PROMOTION_JOB,
    TAG_TRIGGER,
    VALIDATED_DATA,
)
from retrain_assets.core import approval, registry as reg
from retrain_assets.core.ledger import read_ledger, settle_approval_requests
from retrain_assets.core.alerts import send_alert
from retrain_assets.resources import SENSOR_LOCK_WAIT_SECONDS, ModelRegistry, RetrainSettings, Warehouse
from retrain_assets.names import SINGLE, ModelNames, with_model_resources_of
from retrain_assets.state import new_materializations


def own_run(context: dg.RunStatusSensorContext, run: dg.DagsterRun, names: ModelNames = SINGLE) -> bool:
    """Whether a run is of a job of this code location (the implicit asset job included) and, in a
    fleet, serves this sensor's model."""
    repository = context.repository_def
    return (repository is None or repository.has_job(run.job_name)) and names.serves(run)


def alert(cfg, context, title: str, details: str):
    return send_alert(f"retrain-assets ({cfg.dataset.name}): {title}", details,
                      webhook_url=cfg.alerts.webhook_url, timeout_seconds=cfg.alerts.timeout_seconds,
                      logger=context.log)


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


def failed_checks(instance: dg.DagsterInstance, run_id: str) -> dict[str, list[str]]:
    """The checks that failed in the run, by asset key, each as ``check_name: reason`` (cut to 300
    characters); the run's evaluations are read once."""
    records = instance.event_log_storage.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    failed: dict[str, list[str]] = {}
    for record in records:
        data = record.event_log_entry.dagster_event.event_specific_data
        if not data.passed:
            failed.setdefault(data.asset_key.to_user_string(), []).append(
                f"{data.check_name}: {data.description or ''}"[:300])
    return failed


def promotion_blocked(run: dg.DagsterRun, failed: list[str]) -> str:
    """The alert text of a retrain whose candidate failed its gates."""
    return (f"run {run.run_id[:8]} ({run.tags.get(TAG_TRIGGER, 'manual')}): the champion did not move; "
            + " | ".join(failed))


def build_refusal_alert_sensor(minimum_interval_seconds: int, names: ModelNames = SINGLE) -> dg.SensorDefinition:
    """The sensor that alerts refusals, ticking at the configured interval (Dagster's default for a
    run-status sensor is 30 s)."""

    @dg.run_status_sensor(
        name=names.name(REFUSAL_ALERT_SENSOR),
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitor_all_code_locations=True,  # as alert_on_run_failure: runs of `dagster job execute` too
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Alerts (webhook from alerts.webhook_url, and the log) when a run refused a landed file, held a "
        "batch back or refused a candidate: those runs succeed (the platform did its job) and the failed checks "
        "say why.",
    )
    @with_model_resources_of(names)
    def alert_on_refusal(context: dg.RunStatusSensorContext, settings: RetrainSettings):
        """Alerts on a landed file refused by raw_data, a batch held back by validation and a candidate
        refused by its gates (model_health's freshness checks alert once per breach themselves)."""
        # It returns None, never a SkipReason: Dagster stops a tick at the first run whose sensor call
        # returns something, so a SkipReason per quiet run would leave one run per tick and delay alerts.
        run = context.dagster_run
        if not own_run(context, run, names):
            return None
        failed = failed_checks(context.instance, run.run_id)
        file_refused = failed.get(names.key(RAW_DATA).to_user_string(), [])
        held_back = failed.get(names.key(VALIDATED_DATA).to_user_string(), [])
        refused = failed.get(names.key(CANDIDATE_MODEL).to_user_string(), [])
        if not file_refused and not held_back and not refused:
            return None
        cfg = settings.load()
        batch = run.tags.get(PARTITION_NAME_TAG, "?")
        if file_refused:
            alert(cfg, context, f"file of batch {batch} refused",
                  f"run {run.run_id[:8]}: nothing was ingested; " + " | ".join(file_refused))
        if held_back:
            alert(cfg, context, f"batch {batch} held back",
                  f"run {run.run_id[:8]}: nothing downstream uses it and its file is kept in the rejected area; "
                  + " | ".join(held_back))
        if refused:
            alert(cfg, context, "promotion blocked", promotion_blocked(run, refused))
        return None

    return alert_on_refusal


def build_failure_alert_sensor(names: ModelNames = SINGLE) -> dg.SensorDefinition:
    """The sensor that alerts failed runs (of this model, in a fleet)."""

    @dg.run_failure_sensor(
        name=names.name(ALERT_SENSOR),
        # Without it Dagster matches only runs launched from this code location: a run of
        # `dagster job execute` has no code-location origin and would never be alerted.
        monitor_all_code_locations=True,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Alerts (webhook from alerts.webhook_url, and the log) on every failed run of this project's "
        "jobs, however launched (daemon, launchpad, CLI), naming any check that failed in it.",
    )
    @with_model_resources_of(names)
    def alert_on_run_failure(context: dg.RunFailureSensorContext, settings: RetrainSettings):
        """Alerts on failed runs, naming the checks that failed in them."""
        run = context.dagster_run
        if not own_run(context, run, names):  # None, not a SkipReason: see alert_on_refusal
            return None
        cfg = settings.load()
        details = f"run {run.run_id[:8]}: {_failure_explained(context.instance, run, context.failure_event.message)}"
        failed = [text for texts in failed_checks(context.instance, run.run_id).values() for text in texts]
        if failed:
            details += " | " + " | ".join(failed)
        alert(cfg, context, f"run of {run.job_name} failed", details)

    return alert_on_run_failure


alert_on_run_failure = build_failure_alert_sensor()


def build_approval_sensor(minimum_interval_seconds: int, names: ModelNames = SINGLE) -> dg.SensorDefinition:
    """The sensor that tells people a candidate awaits their approval, and when a request expired."""

    @dg.sensor(
        name=names.name(APPROVAL_SENSOR),
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "With promotion.require_approval: alerts when a candidate that passed every gate awaits a person's "
            f"approval (how to run {names.name(APPROVE_PROMOTION_JOB)} / {names.name(REJECT_PROMOTION_JOB)}), and records and alerts an "
            "approval request that expired unapproved (promotion.approval_max_age_hours)."
        ),
    )
    @with_model_resources_of(names)
    def approval_alert_sensor(context: dg.SensorEvaluationContext, settings: RetrainSettings, warehouse: Warehouse, registry: ModelRegistry):
        """Alerts when a candidate awaits approval; records and alerts expired approval requests."""
        first_tick = context.cursor is None
        state = json.loads(context.cursor) if context.cursor else {}
        awaited: dict[str, str] = state.get("awaiting", {})  # entry id -> when it was requested (ISO, UTC)
        records = new_materializations(context.instance, names.key(PRODUCTION_MODEL), state.get("after"), first_tick_newest=first_tick)
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
        client = registry.client()
        with warehouse.get_connection(SENSOR_LOCK_WAIT_SECONDS) as conn:
            ended = settle_approval_requests(
                conn, name, champion=client.version(reg.CHAMPION_ALIAS),
                challenger=client.version(reg.CHALLENGER_ALIAS), max_age_hours=max_age,
            )
            still_open = {r.entry_id: r for r in approval.open_requests(read_ledger(conn, name))}
        for settled in ended:
            if settled.status == "expired":
                alert(cfg, context, "approval expired", f"v{settled.to_version} was not approved in time and will not "
                       f"be promoted: {settled.note}")
        # First tick: the ledger is the current state; every request still open awaits a person.
        for entry in dict.fromkeys(list(still_open) if first_tick else requested):
            request = still_open.get(entry)
            if request is None or entry in awaited:
                continue
            config = json.dumps(approval.run_config(approval.APPROVE_JOB_OP, version=request.to_version))
            alert(cfg, context, "candidate awaits approval", (
                f"v{request.to_version} passed every gate against champion "
                f"{'v' + request.from_version if request.from_version else '(none yet)'} "
                f"(trigger {request.trigger or 'manual'}) and awaits approval until "
                f"{request.expires_at(max_age):%Y-%m-%d %H:%M} UTC. Approve: job {names.name(APPROVE_PROMOTION_JOB)} from the "
                f"launchpad or `dagster job execute -m retrain_assets.definitions -j {names.name(APPROVE_PROMOTION_JOB)} -c "
                f"approve.yaml` with {config}; reject: job {names.name(REJECT_PROMOTION_JOB)}. Shadow evidence: production_metrics."
            ))
        awaited = {entry: r.recorded_at.isoformat() for entry, r in still_open.items()}
        context.update_cursor(json.dumps({"after": after, "awaiting": awaited}))
        return dg.SkipReason(f"{len(awaited)} request(s) awaiting approval; {len(ended)} ended")

    return approval_alert_sensor
