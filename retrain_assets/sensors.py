"""Sensors."""


import time

import dagster as dg

from retrain_assets.constants import LANDING_SENSOR, TAG_FILE, TAG_FINGERPRINT, TAG_REASON, TAG_TRIGGER
from retrain_assets.core import landing
from retrain_assets.jobs import ingest_job
from retrain_assets.partitions import batch_partitions
from retrain_assets.resources import RetrainSettings


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
        cfg = settings.load()
        state = landing.LandingState.from_json(context.cursor)
        plan = landing.scan_landing(
            cfg.dataset.landing_dir,
            state,
            now_ts=time.time(),
            settle_seconds=cfg.automation.settle_seconds,
            was_rejected=lambda batch_id, fp: fp in landing.rejected_fingerprints(cfg.rejected_dir, batch_id),
        )
        for refused in plan.refused:
            if not refused.path.exists():
                continue
            rejection = landing.reject_file(
                refused.path, cfg.rejected_dir, reason=refused.reason, stage=LANDING_SENSOR,
                fingerprint_hex=refused.fingerprint,
            )
            context.log.warning(f"refused {refused.path.name}: {refused.reason} (moved to {rejection.moved_to})")

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
                    TAG_REASON: f"new batch file {batch.path.name}",
                },
            )
            for batch in plan.new
        ]
        skip_reason = None
        if not run_requests:
            parts = []
            if plan.settling:
                parts.append(f"waiting for {len(plan.settling)} file(s) to settle: {plan.settling[:5]}")
            if plan.refused:
                parts.append(f"refused {len(plan.refused)} file(s)")
            parts.append(f"{len(plan.already_done)} batch file(s) already taken in")
            skip_reason = f"no new batch in {cfg.dataset.landing_dir}: " + "; ".join(parts)
        return dg.SensorResult(
            run_requests=run_requests,
            dynamic_partitions_requests=[batch_partitions.build_add_request(new_ids)] if new_ids else [],
            cursor=plan.state.to_json(),
            skip_reason=skip_reason,
        )

    return landing_sensor
