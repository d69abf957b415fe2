"""The landing sensor: new batch files become ingest runs; failed ingests are retried; batches that
received late labels are scored again."""


import time

import dagster as dg

from dagster._core.storage.tags import PARTITION_NAME_TAG

from retrain_assets.constants import (
    DRIFT_REPORT, INGEST_JOB, LABELS_FOR, LANDING_SENSOR, PRODUCTION_METRICS, TAG_FILE, TAG_FINGERPRINT, TAG_REASON,
    TAG_TRIGGER,
    VALIDATED_DATA,
)
from retrain_assets.sensors.alerts import alert as _alert
from retrain_assets.state import fail_dead_runs, new_materializations
from retrain_assets.core import ingestion, landing, paths, rejected, retries
from retrain_assets.jobs import ModelJobs, single_jobs
from retrain_assets.names import SINGLE, ModelNames, with_model_resources_of
from retrain_assets.partitions import batch_partitions_for
from retrain_assets.resources import RetrainSettings


def _skip_message(plan: landing.LandingPlan, landing_dir) -> str:
    """Why a tick requested nothing: what waits, what was refused, left in place or ignored (with the rule)."""
    parts = []
    if plan.settling:
        parts.append(f"waiting for {len(plan.settling)} file(s) to settle: {plan.settling[:5]}")
    if plan.waiting_marker:
        parts.append(
            f"waiting for the ready marker <name>{ingestion.READY_SUFFIX} (automation.ready_marker: done_file) "
            f"of {len(plan.waiting_marker)} file(s): {plan.waiting_marker[:5]}"
        )
    if plan.refused:
        parts.append(f"refused {len(plan.refused)} file(s)")
    if plan.left:
        left = len(plan.left)
        parts.append(
            f"left {left} {'entry' if left == 1 else 'entries'} that cannot be read as batches in place (the tick "
            "log says why and what to do): " + "; ".join(why.split(": ", 1)[0] for why in list(plan.left.values())[:5])
        )
    if plan.ignored:
        parts.append(f"ignored {len(plan.ignored)} file(s) {plan.ignored[:5]} ({ingestion.IGNORED_RULE})")
    parts.append(f"{len(plan.already_done)} batch file(s) already taken in")
    return f"no new batch in {landing_dir}: " + "; ".join(parts)


TAG_RETRY_OF = "retrain/retry_of"
"""On a retry ingest run: the id of the failed run it retries."""

FAILED_INGESTS_SCANNED = 50
"""How many of the newest failed ingest runs are looked at for batches to retry."""


_DECISIONS: dict[str, bool] = {}
"""Failed run id -> whether it failed by decision. A failed run's events never change, so each is
read once per code-server process instead of on every tick (refused batches stay failed for good)."""
_DECISIONS_KEPT = 10_000


def _failure_is_a_decision(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether a failed ingest run refused or held back its batch on purpose (never retried).

    A refusal is a ``dagster.Failure`` raised by a step (it carries user failure data). A failed
    validation check marks a run recorded before held-back batches stopped failing their runs (they
    now succeed and are never retried). Anything else (a killed worker, a lock, a full disk, a server
    down) is an outside cause.
    """
    known = _DECISIONS.get(run_id)
    if known is None:
        if len(_DECISIONS) >= _DECISIONS_KEPT:
            _DECISIONS.clear()
        known = _DECISIONS[run_id] = _read_decision(instance, run_id)
    return known


def _read_decision(instance: dg.DagsterInstance, run_id: str) -> bool:
    records = instance.all_logs(
        run_id, of_type={dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.ASSET_CHECK_EVALUATION}
    )
    for record in records:
        event = record.dagster_event
        data = event.event_specific_data
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION and not data.passed:
            return True
        if event.event_type == dg.DagsterEventType.STEP_FAILURE and data.user_failure_data is not None:
            return True
    return False


def _failure_message(instance: dg.DagsterInstance, run_id: str) -> str:
    for record in reversed(instance.all_logs(
        run_id, of_type={dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE}
    )):
        error = getattr(record.dagster_event.event_specific_data, "error", None)
        if error is not None:
            while error.cause is not None and (error.cls_name or "").startswith("Dagster"):  # the step's own error
                error = error.cause
            return error.message.strip() if error.message.startswith(error.cls_name or "-") else (
                f"{error.cls_name}: {error.message.strip()}"
            )
        if record.message:
            return record.message
    return "failed"


def failed_ingests(instance: dg.DagsterInstance, max_retries: int,
                   names: ModelNames = SINGLE) -> list[retries.FailedIngest]:
    """Batches whose newest ingest run failed for an outside cause, with how many times in a row."""
    found = []
    seen = set()
    failures = instance.get_run_records(
        filters=dg.RunsFilter(job_name=names.name(INGEST_JOB), statuses=[dg.DagsterRunStatus.FAILURE]),
        limit=FAILED_INGESTS_SCANNED,
    )
    for failure in failures:
        batch_id = failure.dagster_run.tags.get(PARTITION_NAME_TAG)
        if batch_id is None or batch_id in seen:
            continue
        seen.add(batch_id)
        newest = instance.get_run_records(
            filters=dg.RunsFilter(job_name=names.name(INGEST_JOB), tags={PARTITION_NAME_TAG: batch_id}),
            limit=max_retries + 2,
        )
        attempts = 0
        for record in newest:
            if record.dagster_run.status != dg.DagsterRunStatus.FAILURE:
                break
            if _failure_is_a_decision(instance, record.dagster_run.run_id):
                break
            attempts += 1
        if attempts == 0 or newest[0].dagster_run.status != dg.DagsterRunStatus.FAILURE:
            continue
        last = newest[0]
        ended = last.end_time or last.update_timestamp.timestamp()
        found.append(retries.FailedIngest(
            batch_id=batch_id,
            run_id=last.dagster_run.run_id,
            failed_at=ended,
            attempts=attempts,
            message=_failure_message(instance, last.dagster_run.run_id),
            file=last.dagster_run.tags.get(TAG_FILE),
            fingerprint=last.dagster_run.tags.get(TAG_FINGERPRINT),
        ))
    return found


def retry_request(item: retries.FailedIngest, max_retries: int) -> dg.RunRequest:
    """Re-run the ingest of a batch whose last run failed for an outside cause (one retry per failed run)."""
    tags = {TAG_TRIGGER: "retry", TAG_REASON: retries.retry_reason(item, max_retries), TAG_RETRY_OF: item.run_id}
    if item.file:
        tags[TAG_FILE] = item.file
    if item.fingerprint:
        tags[TAG_FINGERPRINT] = item.fingerprint
    return dg.RunRequest(run_key=f"{item.batch_id}:retry:{item.run_id}", partition_key=item.batch_id, tags=tags)


def rescore_requests(instance: dg.DagsterInstance, state: landing.LandingState,
                     names: ModelNames = SINGLE) -> list[dg.RunRequest]:
    """Score again each batch a labels file gave labels to (drift_report and production_metrics of
    that batch), once per labels file and batch; advances ``state.labels_seen``."""
    requests = []
    for record in new_materializations(instance, names.key(VALIDATED_DATA), str(state.labels_seen or "") or None):
        state.labels_seen = record.storage_id
        materialization = record.asset_materialization
        value = (materialization.metadata or {}).get(LABELS_FOR)
        batches = list(value.value) if value is not None else []
        labels_file = materialization.partition
        for batch_id in batches:
            requests.append(dg.RunRequest(
                run_key=f"labels:{labels_file}:{batch_id}:{record.storage_id}",
                partition_key=batch_id,
                asset_selection=names.keys(DRIFT_REPORT, PRODUCTION_METRICS),
                tags={TAG_TRIGGER: "late_labels",
                      TAG_REASON: f"labels for earlier rows of batch {batch_id} arrived in labels file {labels_file}"},
            ))
    return requests


def build_landing_sensor(minimum_interval_seconds: int, names: ModelNames = SINGLE, jobs: ModelJobs | None = None) -> dg.SensorDefinition:
    """The landing sensor, ticking at the configured interval."""
    jobs = jobs or single_jobs()
    partitions = batch_partitions_for(names)

    @dg.sensor(
        name=names.name(LANDING_SENSOR),
        job=jobs.ingest,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Watches dataset.landing_dir: adds a partition and requests an ingest run for each new, settled batch "
            "file (run key = batch id + sha256); refuses bad or changed files into the rejected area."
        ),
    )
    @with_model_resources_of(names)
    def landing_sensor(context: dg.SensorEvaluationContext, settings: RetrainSettings) -> dg.SensorResult:
        """Watches dataset.landing_dir and requests an ingest run per new batch file."""
        fail_dead_runs(context.instance, context.log)  # a killed ingest must not hold the DuckDB pool forever
        cfg = settings.load()
        state = landing.LandingState.from_json(context.cursor)
        plan = landing.scan_landing(
            cfg.dataset.landing_dir,
            state,
            now_ts=time.time(),
            settle_seconds=cfg.automation.settle_seconds,
            was_rejected=lambda batch_id, fp: fp in rejected.rejected_fingerprints(cfg.rejected_dir, batch_id),
            ready_marker=cfg.automation.ready_marker,
        )
        for notice in plan.new_notices:  # logged once; the skip message repeats the count
            context.log.warning(f"left in the landing folder: {notice}")
        for refused in plan.refused:
            if not refused.path.exists():
                continue
            try:
                rejection = rejected.reject_file(
                    refused.path, cfg.rejected_dir, reason=refused.reason, stage=names.name(LANDING_SENSOR),
                    fingerprint_hex=refused.fingerprint, landing_dir=cfg.dataset.landing_dir,
                )
            except (OSError, paths.UnsafePathError) as error:  # e.g. rejected/ not writable: say so, go on
                context.log.error(f"could not move refused {refused.path.name} to {cfg.rejected_dir}: {error}; "
                                  f"it stays in the landing folder ({refused.reason})")
                continue
            context.log.warning(f"refused {refused.path.name}: {refused.reason} (moved to {rejection.moved_to})")
        for batch_id, latest in plan.out_of_order.items():
            context.log.warning(landing.out_of_order_message(batch_id, latest, cfg.drift.reference_batches))

        known = set(context.instance.get_dynamic_partitions(partitions.name))
        new_ids = [b.batch_id for b in plan.new if b.batch_id not in known]
        run_requests = [
            dg.RunRequest(
                run_key=batch.run_key,
                partition_key=batch.batch_id,
                tags={
                    TAG_FILE: str(batch.path),
                    TAG_FINGERPRINT: batch.fingerprint,
                    TAG_TRIGGER: "new_data",
                    TAG_REASON: f"new batch file {batch.path.name}" + (
                        f", out of order (its id sorts before {plan.out_of_order[batch.batch_id]!r})"
                        if batch.batch_id in plan.out_of_order else ""
                    ),
                },
            )
            for batch in plan.new
        ]
        state = plan.state
        rescored = rescore_requests(context.instance, state, names)
        for request in rescored:
            context.log.info(request.tags[TAG_REASON] + ": scoring it again")
        run_requests += rescored
        auto = cfg.automation
        retry_plan = retries.plan_retries(
            failed_ingests(context.instance, auto.ingest_retries, names), time.time(),
            max_retries=auto.ingest_retries, base_minutes=auto.ingest_retry_minutes,
        )
        for item in retry_plan.retry:
            context.log.warning(retries.retry_reason(item, auto.ingest_retries))
            run_requests.append(retry_request(item, auto.ingest_retries))
        stuck = {item.batch_id for item in retry_plan.given_up}
        state.given_up = {batch: run for batch, run in state.given_up.items() if batch in stuck}
        for item in retry_plan.given_up:
            if state.given_up.get(item.batch_id) != item.run_id:  # logged and alerted once; listed every tick
                message = retries.given_up_message(item, auto.ingest_retries, names.name(INGEST_JOB))
                context.log.error(message)
                state.given_up[item.batch_id] = item.run_id
                _alert(cfg, context, f"batch {item.batch_id} not ingested", message)
        skip_reason = None
        if not run_requests:
            skip_reason = _skip_message(plan, cfg.dataset.landing_dir)
            waiting = retries.waiting_summary(retry_plan) + [
                f"batch {item.batch_id!r} NOT ingested after {item.attempts} failed runs: fix the cause, then "
                f"re-execute run {item.run_id[:8]}" for item in retry_plan.given_up
            ]
            if waiting:
                skip_reason += "; " + "; ".join(waiting)
        return dg.SensorResult(
            run_requests=run_requests,
            dynamic_partitions_requests=[partitions.build_add_request(new_ids)] if new_ids else [],
            cursor=state.to_json(),
            skip_reason=skip_reason,
        )

    return landing_sensor
