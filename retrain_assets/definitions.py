"""The one place that assembles retrain-assets: assets, checks, jobs, sensors and resources.

The config is read when the code location loads (``@dg.definitions``), not at import, from
``$RETRAIN_CONFIG`` or the demo config. An invalid config fails the load with a message that
names the key.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from retrain_assets.assets.ingestion import raw_data
from retrain_assets.assets.monitoring import drift_report
from retrain_assets.assets.validation import validated_data
from retrain_assets.jobs import ingest_job
from retrain_assets.resources import ModelRegistry, RetrainSettings, Warehouse
from retrain_assets.sensors import build_landing_sensor
from retrain_assets.settings import config_path_from_env, load_settings


def build_definitions(config_path: str | os.PathLike) -> dg.Definitions:
    """Definitions for one config file (tests call this with their own temp config)."""
    path = Path(config_path).resolve()
    settings = load_settings(path)
    return dg.Definitions(
        assets=[raw_data, validated_data, drift_report],
        jobs=[ingest_job],
        sensors=[build_landing_sensor(settings.automation.sensor_interval_seconds)],
        resources={
            "settings": RetrainSettings(config_path=str(path)),
            "warehouse": Warehouse(database=str(settings.duckdb_path)),
            "registry": ModelRegistry(
                tracking_uri=settings.mlflow_tracking_uri, model_name=settings.registered_model_name
            ),
        },
    )


@dg.definitions
def defs() -> dg.Definitions:
    """retrain-assets for the config in $RETRAIN_CONFIG (default: the demo config)."""
    return build_definitions(config_path_from_env())
