"""What the retrain policy looks at, read from Dagster (retrain runs, dead run workers) and DuckDB
(batch signals), and the run request a decision becomes. Used by the sensors and the schedule;
the decision itself is :func:`retrain_assets.core.policy.next_action` / :func:`~retrain_assets.core.policy.decide`.
"""

from datetime import datetime, timedelta, timezone

import dagster as dg
import pandas as pd

from dagster._core.storage.tags import PRIORITY_TAG

from retrain_assets.constants import CANDIDATE_MODEL, RETRAIN_JOB, TAG_REASON, TAG_TRIGGER
from retrain_assets.core import fleet, label_store, metrics_store, policy, storage, workers
from retrain_assets.names import SINGLE, ModelNames

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


def retrain_history(instance: dg.DagsterInstance, names: ModelNames = SINGLE) -> tuple[list[policy.RetrainRecord], bool]:
    """Retrain runs so far (any outcome) and whether one is queued or running.

    A retrain is a run of the ``retrain`` job or any other run that materializes candidate_model:
    "Materialize" in the asset graph launches Dagster's implicit asset job, and such a run must
    count for the cooldown, the budget and one-at-a-time like the sensors' own. A run whose worker
    is gone is marked failed first (:func:`fail_dead_runs`): it is not running.
    """
    fail_dead_runs(instance)
    job = names.name(RETRAIN_JOB)
    records = list(instance.get_run_records(filters=dg.RunsFilter(job_name=job), limit=500))
    candidate = names.key(CANDIDATE_MODEL)
    records += [
        record for record in instance.get_run_records(limit=OTHER_RUNS_SCANNED)
        if record.dagster_run.job_name != job and candidate in (record.dagster_run.asset_selection or ())
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
    drift = metrics_store.read_drift_reports(conn).set_index("batch_id")
    metrics = metrics_store.read_production_metrics(conn).set_index("batch_id")
    held = label_store.held_label_batches(conn)
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


def retrain_state(instance: dg.DagsterInstance, conn, names: ModelNames = SINGLE) -> RetrainState:
    """What the policy needs: the retrain runs and every batch validated since the last one started."""
    history, running = retrain_history(instance, names)
    last = max(history, key=lambda r: r.started_at, default=None)
    return history, running, batch_signals(conn, last.started_at if last else None)


def policy_state(instance: dg.DagsterInstance, conn, cfg, *, has_champion: bool,
                 state: RetrainState | None = None, names: ModelNames = SINGLE) -> policy.PolicyState:
    """What :func:`policy.next_action` looks at, read from Dagster (retrain runs) and DuckDB (signals,
    and the labelled rows the first champion would learn from)."""
    history, running, signals = state or retrain_state(instance, conn, names)
    first = None if has_champion else cfg.training.first_champion_plan(
        label_store.labelled_row_counts(conn, cfg.dataset.target))
    return policy.PolicyState(history=history, running=running, signals=signals, first_champion=first,
                              automatic_first=cfg.automation.first_champion == "automatic")


def decide_retrain(
    instance: dg.DagsterInstance, conn, cfg, *, trigger: str | None, reason: str, now: datetime | None = None,
    state: RetrainState | None = None, names: ModelNames = SINGLE,
) -> policy.Decision:
    """The policy's decision for a signal (``state`` from :func:`retrain_state`, read if not given)."""
    history, running, signals = state or retrain_state(instance, conn, names)
    return policy.decide(
        now or datetime.now(timezone.utc), trigger=trigger, reason=reason, history=history,
        new_batches=len(signals), new_labelled_rows=sum(signal.labelled_rows for signal in signals),
        running=running, settings=cfg.automation.policy(),
    )


def retrain_request(decision: policy.Decision, key: str, names: ModelNames = SINGLE) -> dg.RunRequest:
    """The run request for a positive decision, tagged with its trigger, reason and priority."""
    return dg.RunRequest(
        run_key=f"{decision.trigger}:{key}", job_name=names.name(RETRAIN_JOB),
        tags=retrain_tags(decision.trigger, decision.reason),
    )


def retrain_tags(trigger: str, reason: str) -> dict[str, str]:
    """A retrain run's tags: its trigger and reason, and its priority in the order of need
    (``dagster/priority``: the run queue and the shared ``retrain`` pool serve higher first)."""
    return {TAG_TRIGGER: trigger, TAG_REASON: reason[:500], PRIORITY_TAG: str(fleet.need_priority(trigger))}


def fleet_budget_spent(instance: dg.DagsterInstance, settings: fleet.FleetSettings | None,
                       now: datetime | None = None) -> str | None:
    """Why the fleet may not start another retrain now (its budget is spent), or None."""
    if settings is None or settings.retrain_budget is None:
        return None
    now = now or datetime.now(timezone.utc)
    jobs = {ModelNames(model).name(RETRAIN_JOB) for model in settings.models}
    since = now - timedelta(hours=settings.budget_period_hours)
    started = [
        datetime.fromtimestamp(record.create_timestamp.timestamp(), timezone.utc)
        for record in instance.get_run_records(filters=dg.RunsFilter(created_after=since), limit=5000)
        if record.dagster_run.job_name in jobs
    ]
    return fleet.budget_spent(started, now, settings)


def fleet_request(instance: dg.DagsterInstance, decision: policy.Decision, key: str, names: ModelNames,
                  settings: fleet.FleetSettings | None) -> list[dg.RunRequest] | dg.SkipReason:
    """The retrain request of a positive decision, unless the fleet's budget is spent (then a skip
    that says so; the sensor asks again at its next tick)."""
    spent = fleet_budget_spent(instance, settings)
    if spent:
        return dg.SkipReason(f"{names.label()}{decision.reason} — waiting: {spent}")
    return [retrain_request(decision, key, names)]


def new_materializations(instance: dg.DagsterInstance, key: str | dg.AssetKey, cursor: str | None, *, first_tick_newest: bool = False):
    """Materializations of ``key`` after the cursor (a storage id), oldest first. With no cursor yet and
    ``first_tick_newest``, only the newest: a sensor that starts (a new deployment, the UI after
    `make demo`) acts on the current state, not on every event of its history (README: Automation)."""
    key = dg.AssetKey(key) if isinstance(key, str) else key
    if cursor is None and first_tick_newest:
        return list(reversed(instance.fetch_materializations(key, limit=1).records))
    after = int(cursor) if cursor else None
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=1000, ascending=True
    )
    return result.records
