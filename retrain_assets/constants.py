"""Names shared across the package: asset keys, groups, tags, defaults. No Dagster import."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG_PATH = REPO_ROOT / "data" / "demo_config.yaml"
CONFIG_ENV_VAR = "RETRAIN_CONFIG"
# With RETRAIN_CONFIG naming a folder: "1" makes any model file that does not load fail the code
# location (for CI, `dg check defs`); by default it is left out loudly and the other models run.
FLEET_STRICT_ENV_VAR = "RETRAIN_FLEET_STRICT"

# Asset keys (exact names are part of the product's contract).
RAW_DATA = "raw_data"
VALIDATED_DATA = "validated_data"
DRIFT_REPORT = "drift_report"
CANDIDATE_MODEL = "candidate_model"
PRODUCTION_MODEL = "production_model"
PRODUCTION_METRICS = "production_metrics"
MODEL_HEALTH = "model_health"

# Asset groups, one per stage.
INGESTION = "ingestion"
VALIDATION = "validation"
MONITORING = "monitoring"
TRAINING = "training"
SERVING = "serving"

# Dynamic partitions: one per landed batch.
BATCH_PARTITIONS = "batches"

# Metadata key of a labels file's validated_data: the batches it attached labels to.
LABELS_FOR = "labels_for_batches"

# Checks.
VALIDATION_GATE = "batch_passes_validation"
FILE_CHECK = "file_accepted"

# Jobs and sensors.
INGEST_JOB = "ingest_batch"
RETRAIN_JOB = "retrain"
ROLLBACK_JOB = "rollback"
REQUEST_RETRAIN_JOB = "request_retrain"
APPROVE_PROMOTION_JOB = "approve_promotion"
REVIEW_LABELS_JOB = "review_labels"
REJECT_PROMOTION_JOB = "reject_promotion"
REPLACE_BATCH_JOB = "replace_batch"
HEALTH_JOB = "refresh_model_health"
HEALTH_SENSOR = "model_health_sensor"
HEALTH_SCHEDULE = "model_health_hourly"
APPROVAL_SENSOR = "approval_alert_sensor"
DRIFT_SENSOR = "drift_retrain_sensor"
PERFORMANCE_SENSOR = "performance_sensor"
BUSINESS_CHANGE_SENSOR = "business_change_sensor"
ALERT_SENSOR = "alert_on_run_failure"
REFUSAL_ALERT_SENSOR = "alert_on_refusal"
RETRAIN_SCHEDULE = "safety_net_retrain"
LANDING_SENSOR = "landing_sensor"

# Concurrency pool for steps that write the DuckDB file (DuckDB allows one writer per file).
DUCKDB_POOL = "duckdb_writer"
# Concurrency pool of the training step: one retrain at a time (limit 1 in deploy/local/dagster.yaml).
RETRAIN_POOL = "retrain"

# Run tags.
TAG_FILE = "retrain/file"
TAG_FINGERPRINT = "retrain/fingerprint"
TAG_TRIGGER = "retrain/trigger"
TAG_REASON = "retrain/reason"

# MLflow resource key (dagster-mlflow's end-of-run hook requires this name).
MLFLOW_RESOURCE = "mlflow"

BATCH_EXTENSIONS = (".csv", ".parquet")
