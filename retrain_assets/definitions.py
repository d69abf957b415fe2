"""The one place that assembles retrain-assets: assets, checks, jobs, sensors and resources.

The config is read when the code location loads (``@dg.definitions``), not at import, from
``$RETRAIN_CONFIG`` or the demo config. An invalid config fails the load with a message that
names the key.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from retrain_assets.assets.drift import drift_report
from retrain_assets.assets.health import model_health
from retrain_assets.assets.ingestion import raw_data
from retrain_assets.assets.performance import production_metrics
from retrain_assets.assets.promotion import production_model
from retrain_assets.assets.training import candidate_model
from retrain_assets.assets.validation import validated_data
from retrain_assets.constants import MLFLOW_RESOURCE
from retrain_assets.executors import executor_for
from retrain_assets.jobs import (
    approve_promotion_job,
    health_job,
    ingest_job,
    reject_promotion_job,
    replace_batch_job,
    request_retrain_job,
    retrain_job,
    review_labels_job,
    rollback_job,
)
from retrain_assets.resources import ModelRegistry, RetrainSettings, Warehouse, mlflow_tracking_resource
from retrain_assets.schedules import build_retrain_schedule
from retrain_assets.sensors.alerts import alert_on_run_failure, build_approval_sensor, build_refusal_alert_sensor
from retrain_assets.sensors.health import build_health_schedule, build_health_sensor
from retrain_assets.sensors.landing import build_landing_sensor
from retrain_assets.sensors.requests import build_business_change_sensor
from retrain_assets.sensors.retrain import build_drift_sensor, build_performance_sensor
from retrain_assets.settings import config_path_from_env, load_settings


def build_definitions(config_path: str | os.PathLike) -> dg.Definitions:
    """Definitions for one config file (tests call this with their own temp config)."""
    path = Path(config_path).resolve()
    settings = load_settings(path)
    interval = settings.automation.sensor_interval_seconds
    return dg.Definitions(
        assets=[raw_data, validated_data, drift_report, production_metrics, candidate_model, production_model,
                model_health],
        jobs=[ingest_job, retrain_job, health_job, replace_batch_job, review_labels_job, rollback_job, request_retrain_job, approve_promotion_job, reject_promotion_job],
        sensors=[
            build_landing_sensor(interval),
            build_drift_sensor(interval),
            build_performance_sensor(interval),
            build_approval_sensor(interval),
            build_business_change_sensor(interval),
            build_health_sensor(interval),
            alert_on_run_failure,
            build_refusal_alert_sensor(interval),
        ],
        executor=executor_for(settings.automation.executor, settings.automation.executor_config),
        schedules=[build_retrain_schedule(settings.automation.schedule_cron, settings.automation.schedule_timezone),
                   build_health_schedule(settings.health.schedule_cron, settings.automation.schedule_timezone)],
        resources={
            "settings": RetrainSettings(config_path=str(path)),
            "warehouse": Warehouse(database=str(settings.duckdb_path), lock_wait_seconds=settings.storage.lock_wait_seconds),
            "registry": ModelRegistry(config_path=str(path)),
            MLFLOW_RESOURCE: mlflow_tracking_resource(
                settings.mlflow_tracking_uri, settings.mlflow_experiment, settings.mlflow_artifacts_dir
            ),
        },
    )


@dg.definitions
def defs() -> dg.Definitions:
    """retrain-assets for the config in $RETRAIN_CONFIG (default: the demo config)."""
    return build_definitions(config_path_from_env())
