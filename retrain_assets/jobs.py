"""Every job: ingesting a batch and retraining (asset jobs), and the jobs a person launches (their
ops live in ops/): replace a batch, review labels, request a retrain, roll back the champion,
approve or reject a candidate."""

import dagster as dg
from dagster_mlflow import end_mlflow_on_run_finished

from retrain_assets.constants import (
    APPROVE_PROMOTION_JOB,
    CANDIDATE_MODEL,
    DRIFT_REPORT,
    HEALTH_JOB,
    INGEST_JOB,
    MODEL_HEALTH,
    PRODUCTION_METRICS,
    PRODUCTION_MODEL,
    RAW_DATA,
    REJECT_PROMOTION_JOB,
    REPLACE_BATCH_JOB,
    REQUEST_RETRAIN_JOB,
    RETRAIN_JOB,
    REVIEW_LABELS_JOB,
    ROLLBACK_JOB,
    VALIDATED_DATA,
)
from retrain_assets.ops.ingestion import replace_ingested_batch
from retrain_assets.ops.promotion import approve_challenger, reject_challenger, rollback_champion
from retrain_assets.ops.requests import decide_on_labels, record_retrain_request
from retrain_assets.partitions import batch_partitions

ingest_job = dg.define_asset_job(
    name=INGEST_JOB,
    selection=dg.AssetSelection.assets(RAW_DATA, VALIDATED_DATA, DRIFT_REPORT, PRODUCTION_METRICS),
    partitions_def=batch_partitions,
    description=(
        "Ingest one landed batch (raw_data), validate it (validated_data; a batch that fails its check is held back and the steps after skip it), compare it with "
        "the reference (drift_report) and measure the champion on it (production_metrics)."
    ),
)

retrain_job = dg.define_asset_job(
    name=RETRAIN_JOB,
    selection=dg.AssetSelection.assets(CANDIDATE_MODEL, PRODUCTION_MODEL),
    hooks={end_mlflow_on_run_finished},
    description=(
        "Train a candidate on the training window, judge it with the six gates and, only if all pass, "
        "move the champion alias to it (one MLflow run per Dagster run)."
    ),
)


health_job = dg.define_asset_job(
    name=HEALTH_JOB,
    selection=dg.AssetSelection.assets(MODEL_HEALTH),
    description=(
        "Refresh model_health (verdict, freshness checks, retrain costs); the health sensor runs it after every "
        "ingest and retrain, the hourly schedule when nothing happens."
    ),
)


@dg.job(
    name=REPLACE_BATCH_JOB,
    description=(
        "Replace an ingested batch with a complete file (config batch_id, optional file): the old rows and file are "
        "kept in the rejected area and the file is landed for the landing sensor to ingest."
    ),
)
def replace_batch_job():
    """Replace an ingested batch with a complete file; the old rows and file are kept in the rejected area."""
    replace_ingested_batch()


@dg.job(name=REVIEW_LABELS_JOB, description="Accept or reject the suspect labels of a batch (drift_report's label_quality).")
def review_labels_job():
    """Accept or reject the suspect labels of a batch (drift_report's label_quality)."""
    decide_on_labels()


@dg.job(name=REQUEST_RETRAIN_JOB, description="Ask for a retrain after a business change; `reason` is required.")
def request_retrain_job():
    """Ask for a retrain after a business change; `reason` is required."""
    record_retrain_request()


@dg.job(name=ROLLBACK_JOB, description="Point the champion alias back to an earlier promoted version (default: the previous one).")
def rollback_job():
    """Point the champion alias back to an earlier promoted version (default: the previous one)."""
    rollback_champion()


@dg.job(
    name=APPROVE_PROMOTION_JOB,
    description="Approve the candidate awaiting approval (promotion.require_approval): moves the champion alias to it; `approver` and `note` are required.",
)
def approve_promotion_job():
    """Approve the candidate awaiting approval: moves the champion alias to it; `approver` and `note` are required."""
    approve_challenger()


@dg.job(
    name=REJECT_PROMOTION_JOB,
    description="Reject the candidate awaiting approval: recorded in the ledger, alias challenger removed, champion untouched; `approver` and `note` are required.",
)
def reject_promotion_job():
    """Reject the candidate awaiting approval; `approver` and `note` are required."""
    reject_challenger()
