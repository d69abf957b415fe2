"""The one place that assembles retrain-assets: assets, checks, jobs, sensors and resources.

The config is read when the code location loads (``@dg.definitions``), not at import, from
``$RETRAIN_CONFIG`` or the demo config. An invalid config fails the load with a message that
names the key.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import dagster as dg

from retrain_assets.assets.drift import drift_report_asset
from retrain_assets.assets.fleet import FLEET_HEALTH, fleet_health_asset
from retrain_assets.assets.health import model_health_asset
from retrain_assets.assets.ingestion import raw_data_asset
from retrain_assets.assets.performance import production_metrics_asset
from retrain_assets.assets.promotion import production_model_asset
from retrain_assets.assets.training import candidate_model_asset
from retrain_assets.assets.validation import validated_data_asset
from retrain_assets.constants import FLEET_STRICT_ENV_VAR, MLFLOW_RESOURCE
from retrain_assets.core.fleet import FleetSettings
from retrain_assets.executors import executor_for
from retrain_assets.jobs import build_jobs
from retrain_assets.names import SINGLE, ModelNames
from retrain_assets.resources import ModelRegistry, RetrainSettings, Warehouse, mlflow_tracking_resource
from retrain_assets.schedules import build_retrain_schedule
from retrain_assets.sensors.alerts import build_approval_sensor, build_failure_alert_sensor, build_refusal_alert_sensor
from retrain_assets.sensors.health import (
    FLEET_HEALTH_JOB,
    build_fleet_config_sensor,
    build_fleet_health_sensor,
    build_health_schedule,
    build_health_sensor,
)
from retrain_assets.sensors.landing import build_landing_sensor
from retrain_assets.sensors.requests import build_business_change_sensor
from retrain_assets.sensors.retrain import build_drift_sensor, build_performance_sensor
from retrain_assets.settings import Settings, config_path_from_env, load_settings
from retrain_assets.settings.base import SettingsError
from retrain_assets.settings.fleet import load_fleet

log = logging.getLogger("retrain_assets")


def model_resources(path: Path, settings: Settings) -> dict:
    """One model's resources under their plain keys (settings, warehouse, registry, mlflow)."""
    return {
        "settings": RetrainSettings(config_path=str(path)),
        "warehouse": Warehouse(database=str(settings.duckdb_path), lock_wait_seconds=settings.storage.lock_wait_seconds),
        "registry": ModelRegistry(config_path=str(path)),
        MLFLOW_RESOURCE: mlflow_tracking_resource(
            settings.mlflow_tracking_uri, settings.mlflow_experiment, settings.mlflow_artifacts_dir
        ),
    }


def model_definitions(names: ModelNames, path: Path, settings: Settings, fleet: FleetSettings | None = None,
                      executor: dg.ExecutorDefinition | None = None) -> dg.Definitions:
    """Every asset, check, job, sensor and schedule of one model, and its resources (under the model's
    resource keys: plain for a single config, ``<model>__<key>`` in a fleet)."""
    interval = settings.automation.sensor_interval_seconds
    resources = model_resources(path, settings)
    op_resources = None if names.model is None else {k: resources[k] for k in ("settings", "warehouse", "registry")}
    jobs = build_jobs(names, op_resources, executor=executor)
    return dg.Definitions(
        assets=[raw_data_asset(names), validated_data_asset(names), drift_report_asset(names),
                production_metrics_asset(names), candidate_model_asset(names), production_model_asset(names),
                model_health_asset(names)],
        jobs=jobs.all(),
        sensors=[
            build_landing_sensor(interval, names, jobs),
            build_drift_sensor(interval, names, jobs, fleet),
            build_performance_sensor(interval, names, jobs, fleet),
            build_approval_sensor(interval, names),
            build_business_change_sensor(interval, names, jobs, fleet),
            build_health_sensor(interval, names, jobs),
            build_failure_alert_sensor(names),
            build_refusal_alert_sensor(interval, names),
        ],
        schedules=[
            build_retrain_schedule(settings.automation.schedule_cron, settings.automation.schedule_timezone, names,
                                   jobs, fleet),
            build_health_schedule(settings.health.schedule_cron, settings.automation.schedule_timezone, names, jobs),
        ],
        resources={names.resource(key): value for key, value in resources.items()},
    )


def build_definitions(config_path: str | os.PathLike) -> dg.Definitions:
    """Definitions for one config file, or for a fleet folder of them (tests call this with their own)."""
    path = Path(config_path).resolve()
    if path.is_dir():
        return build_fleet_definitions(path)
    settings = load_settings(path)
    return dg.Definitions.merge(
        model_definitions(SINGLE, path, settings),
        dg.Definitions(executor=executor_for(settings.automation.executor, settings.automation.executor_config)),
    )


def build_fleet_definitions(folder: Path) -> dg.Definitions:
    """One code location for every model of a fleet folder (settings.fleet): each under its own key
    prefix, group, jobs, sensors, schedules and resources; a model file that does not load is left
    out with a loud error (logged, a failing sensor, a row of fleet_health) and the others run."""
    config = load_fleet(folder)
    if config.errors and os.environ.get(FLEET_STRICT_ENV_VAR, "").strip() == "1":
        raise SettingsError(f"config folder {folder} ({FLEET_STRICT_ENV_VAR}=1): every model file must load:\n" + "\n".join(
            f"- {path.name}: {message}" for path, message in config.errors))
    for path, message in config.errors:
        log.error("retrain-assets fleet %s: %s left out: %s", folder, path.name, message)
    executors = [executor_for(m.settings.automation.executor, m.settings.automation.executor_config)
                 for m in config.models]
    parts = [model_definitions(ModelNames(m.name), m.path, m.settings, config.fleet, executor)
             for m, executor in zip(config.models, executors)]
    names = [m.name for m in config.models]
    fleet_job = dg.define_asset_job(FLEET_HEALTH_JOB, selection=dg.AssetSelection.assets(FLEET_HEALTH),
                                    description="Refresh fleet_health: every model's verdict on one page.")
    interval = min(m.settings.automation.sensor_interval_seconds for m in config.models)
    sensors = [build_fleet_health_sensor(interval, names, fleet_job)]
    if config.errors:
        sensors.append(build_fleet_config_sensor([(path.name, message) for path, message in config.errors]))
    # Materializing from the asset graph runs Dagster's implicit job: it takes the first model's executor.
    parts.append(dg.Definitions(assets=[fleet_health_asset(names, list(config.errors))], jobs=[fleet_job],
                                sensors=sensors, executor=executors[0]))
    return dg.Definitions.merge(*parts)


@dg.definitions
def defs() -> dg.Definitions:
    """retrain-assets for the config in $RETRAIN_CONFIG: a file, or a folder of one file per model
    (default: the demo config)."""
    return build_definitions(config_path_from_env())
