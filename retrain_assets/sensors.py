"""Sensors."""


import time

import dagster as dg

from retrain_assets.constants import LANDING_SENSOR, TAG_FILE, TAG_FINGERPRINT, TAG_REASON, TAG_TRIGGER
from retrain_assets.automation import fail_dead_runs
from retrain_assets.core import landing
from retrain_assets.jobs import ingest_job
from retrain_assets.partitions import batch_partitions
from retrain_assets.resources import RetrainSettings


def _skip_message(plan: landing.LandingPlan, landing_dir) -> str:
    """Why a tick requested nothing: what waits, what was refused, left in place or ignored (with the rule)."""
    parts = []
    if plan.settling:
        parts.append(f"waiting for {len(plan.settling)} file(s) to settle: {plan.settling[:5]}")
    if plan.waiting_marker:
        parts.append(
            f"waiting for the ready marker <name>{landing.READY_SUFFIX} (automation.ready_marker: done_file) "
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
        parts.append(f"ignored {len(plan.ignored)} file(s) {plan.ignored[:5]} ({landing.IGNORED_RULE})")
    parts.append(f"{len(plan.already_done)} batch file(s) already taken in")
    return f"no new batch in {landing_dir}: " + "; ".join(parts)


def build_landing_sensor(minimum_interval_seconds: int) -> dg.SensorDefinition:
    """The landing sensor, ticking at the configured interval."""

    @dg.sensor(
        name=LANDING_SENSOR,
        job=ingest_job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Watches dataset.landing_dir: adds a partition and requests an ingest run for each new, settled batch "
            "file (run key = batch id + sha256); refuses bad or changed files into the rejected area."
        ),
    )
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
            was_rejected=lambda batch_id, fp: fp in landing.rejected_fingerprints(cfg.rejected_dir, batch_id),
            ready_marker=cfg.automation.ready_marker,
        )
        for notice in plan.new_notices:  # logged once; the skip message repeats the count
            context.log.warning(f"left in the landing folder: {notice}")
        for refused in plan.refused:
            if not refused.path.exists():
                continue
            try:
                rejection = landing.reject_file(
                    refused.path, cfg.rejected_dir, reason=refused.reason, stage=LANDING_SENSOR,
                    fingerprint_hex=refused.fingerprint, landing_dir=cfg.dataset.landing_dir,
                )
            except (OSError, landing.UnsafePathError) as error:  # e.g. rejected/ not writable: say so, go on
                context.log.error(f"could not move refused {refused.path.name} to {cfg.rejected_dir}: {error}; "
                                  f"it stays in the landing folder ({refused.reason})")
                continue
            context.log.warning(f"refused {refused.path.name}: {refused.reason} (moved to {rejection.moved_to})")
        for batch_id, latest in plan.out_of_order.items():
            context.log.warning(landing.out_of_order_message(batch_id, latest, cfg.drift.reference_batches))

        known = set(context.instance.get_dynamic_partitions(batch_partitions.name))
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
        skip_reason = None if run_requests else _skip_message(plan, cfg.dataset.landing_dir)
        return dg.SensorResult(
            run_requests=run_requests,
            dynamic_partitions_requests=[batch_partitions.build_add_request(new_ids)] if new_ids else [],
            cursor=plan.state.to_json(),
            skip_reason=skip_reason,
        )

    return landing_sensor
