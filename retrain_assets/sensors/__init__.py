"""Every sensor of retrain-assets, one module per concern."""

from retrain_assets.sensors.alerts import alert_on_run_failure, build_approval_sensor
from retrain_assets.sensors.landing import TAG_RETRY_OF, build_landing_sensor
from retrain_assets.sensors.requests import build_business_change_sensor
from retrain_assets.sensors.retrain import build_drift_sensor, build_performance_sensor

__all__ = [
    "TAG_RETRY_OF",
    "alert_on_run_failure",
    "build_approval_sensor",
    "build_business_change_sensor",
    "build_drift_sensor",
    "build_landing_sensor",
    "build_performance_sensor",
]
