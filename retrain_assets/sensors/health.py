"""Keep model_health current: refresh it after every ingest and retrain, and hourly when nothing
happens (so a feed that stopped is noticed)."""

import json

import dagster as dg

from retrain_assets.constants import (
    CANDIDATE_MODEL,
    HEALTH_JOB,
    HEALTH_SCHEDULE,
    HEALTH_SENSOR,
    PRODUCTION_METRICS,
    PRODUCTION_MODEL,
    RAW_DATA,
)
from retrain_assets.jobs import health_job
from retrain_assets.state import new_materializations

WATCHED = (RAW_DATA, PRODUCTION_METRICS, CANDIDATE_MODEL, PRODUCTION_MODEL)
"""A new batch, its metrics, a candidate (passed or blocked) and a champion move change the health."""


def build_health_sensor(minimum_interval_seconds: int) -> dg.SensorDefinition:
    """The sensor that refreshes model_health when something it shows has changed."""

    @dg.sensor(
        name=HEALTH_SENSOR,
        job=health_job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Refreshes model_health after new materializations of {', '.join(WATCHED)}.",
    )
    def model_health_sensor(context: dg.SensorEvaluationContext):
        """One refresh of model_health for all that changed since the last tick."""
        cursor = json.loads(context.cursor) if context.cursor else {}
        changed, after = [], dict(cursor)
        for key in WATCHED:
            records = new_materializations(context.instance, key, cursor.get(key), first_tick_newest=True)
            if records:
                after[key] = str(records[-1].storage_id)
                changed.append(f"{key} ×{len(records)}")
        context.update_cursor(json.dumps(after))
        if not changed:
            return dg.SkipReason("nothing model_health shows has changed")
        return dg.RunRequest(job_name=HEALTH_JOB, run_key=f"health:{'-'.join(after.get(k, '0') for k in WATCHED)}",
                             tags={"retrain/health_refresh": ", ".join(changed)[:200]})

    return model_health_sensor


def build_health_schedule(cron: str, timezone_name: str) -> dg.ScheduleDefinition:
    """Hourly (``health.schedule_cron``): freshness is judged even when nothing lands."""
    return dg.ScheduleDefinition(
        name=HEALTH_SCHEDULE, cron_schedule=cron, execution_timezone=timezone_name, job=health_job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Refreshes model_health (health.schedule_cron), so a feed that stopped is noticed and alerted.",
    )
