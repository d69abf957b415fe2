"""Keep model_health current: refresh it after every ingest and retrain, and hourly when nothing
happens (so a feed that stopped is noticed)."""

import json

import dagster as dg

from retrain_assets.constants import (
    MODEL_HEALTH,
    CANDIDATE_MODEL,
    HEALTH_JOB,
    HEALTH_SCHEDULE,
    HEALTH_SENSOR,
    PRODUCTION_METRICS,
    PRODUCTION_MODEL,
    RAW_DATA,
)
from retrain_assets.jobs import ModelJobs, single_jobs
from retrain_assets.names import SINGLE, ModelNames
from retrain_assets.state import new_materializations

WATCHED = (RAW_DATA, PRODUCTION_METRICS, CANDIDATE_MODEL, PRODUCTION_MODEL)
"""A new batch, its metrics, a candidate (passed or blocked) and a champion move change the health."""


def changed_since(context: dg.SensorEvaluationContext, watched: dict[str, dg.AssetKey]) -> tuple[dict[str, int], dict]:
    """New materializations of each watched key since the sensor's cursor (a JSON map of label to
    storage id; on the first tick only the newest counts): how many per label that changed, and the
    advanced cursor, which is stored."""
    cursor = json.loads(context.cursor) if context.cursor else {}
    counts, after = {}, dict(cursor)
    for label, key in watched.items():
        records = new_materializations(context.instance, key, cursor.get(label), first_tick_newest=True)
        if records:
            after[label] = str(records[-1].storage_id)
            counts[label] = len(records)
    context.update_cursor(json.dumps(after))
    return counts, after


def build_health_sensor(minimum_interval_seconds: int, names: ModelNames = SINGLE, jobs: ModelJobs | None = None) -> dg.SensorDefinition:
    """The sensor that refreshes model_health when something it shows has changed."""
    jobs = jobs or single_jobs()

    @dg.sensor(
        name=names.name(HEALTH_SENSOR),
        job=jobs.health,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Refreshes model_health after new materializations of {', '.join(WATCHED)}.",
    )
    def model_health_sensor(context: dg.SensorEvaluationContext):
        """One refresh of model_health for all that changed since the last tick."""
        counts, after = changed_since(context, {key: names.key(key) for key in WATCHED})
        changed = [f"{key} ×{n}" for key, n in counts.items()]
        if not changed:
            return dg.SkipReason("nothing model_health shows has changed")
        return dg.RunRequest(job_name=names.name(HEALTH_JOB), run_key=f"health:{'-'.join(after.get(k, '0') for k in WATCHED)}",
                             tags={"retrain/health_refresh": ", ".join(changed)[:200]})

    return model_health_sensor


def build_health_schedule(cron: str, timezone_name: str, names: ModelNames = SINGLE,
                          jobs: ModelJobs | None = None) -> dg.ScheduleDefinition:
    """Hourly (``health.schedule_cron``): freshness is judged even when nothing lands."""
    jobs = jobs or single_jobs()
    return dg.ScheduleDefinition(
        name=names.name(HEALTH_SCHEDULE), cron_schedule=cron, execution_timezone=timezone_name, job=jobs.health,
        default_status=dg.DefaultScheduleStatus.RUNNING, tags=names.tags,
        description="Refreshes model_health (health.schedule_cron), so a feed that stopped is noticed and alerted.",
    )


FLEET_HEALTH_JOB = "refresh_fleet_health"
FLEET_HEALTH_SENSOR = "fleet_health_sensor"
FLEET_CONFIG_SENSOR = "fleet_config_errors"


def build_fleet_health_sensor(minimum_interval_seconds: int, models: list[str],
                              job) -> dg.SensorDefinition:
    """Refreshes fleet_health after any model's model_health is refreshed."""

    @dg.sensor(name=FLEET_HEALTH_SENSOR, job=job, minimum_interval_seconds=minimum_interval_seconds,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Refreshes fleet_health after any model's model_health materializes.")
    def fleet_health_sensor(context: dg.SensorEvaluationContext):
        """One refresh of fleet_health for all models whose health changed since the last tick."""
        counts, after = changed_since(context, {model: ModelNames(model).key(MODEL_HEALTH) for model in models})
        changed = list(counts)
        if not changed:
            return dg.SkipReason("no model's health has changed")
        return dg.RunRequest(run_key=f"fleet:{'-'.join(after.get(m, '0') for m in models)}",
                             tags={"retrain/health_refresh": ", ".join(changed)[:200]})

    return fleet_health_sensor


def build_fleet_config_sensor(errors: list[tuple[str, str]]) -> dg.SensorDefinition:
    """A sensor whose every tick fails with the model files left out of the fleet, so the Automation
    page shows them in red until they are fixed (the other models run)."""
    message = "; ".join(f"{name}: {why}" for name, why in errors)

    @dg.sensor(name=FLEET_CONFIG_SENSOR, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING,
               description="Fails while a model file of the fleet is invalid: " + message[:500])
    def fleet_config_errors(context: dg.SensorEvaluationContext):
        """Fails with every model file left out of the fleet and why."""
        raise dg.Failure(f"{len(errors)} model file(s) left out of the fleet (the other models run): {message}. "
                         "Fix the file; the code location reloads it.")

    return fleet_config_errors
