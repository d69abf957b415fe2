"""Jobs."""

from typing import Literal

import dagster as dg
from dagster_mlflow import end_mlflow_on_run_finished
from pydantic import Field

from retrain_assets.constants import (
    CANDIDATE_MODEL,
    DRIFT_REPORT,
    INGEST_JOB,
    PRODUCTION_METRICS,
    PRODUCTION_MODEL,
    RAW_DATA,
    REQUEST_RETRAIN_JOB,
    RETRAIN_JOB,
    REVIEW_LABELS_JOB,
    VALIDATED_DATA,
)
from retrain_assets.assets.ingestion import replace_ingested_batch
from retrain_assets.partitions import batch_partitions

REPLACE_BATCH_JOB = "replace_batch"

ingest_job = dg.define_asset_job(
    name=INGEST_JOB,
    selection=dg.AssetSelection.assets(RAW_DATA, VALIDATED_DATA, DRIFT_REPORT, PRODUCTION_METRICS),
    partitions_def=batch_partitions,
    description=(
        "Ingest one landed batch (raw_data), validate it (validated_data, blocking gate), compare it with "
        "the reference (drift_report) and measure the champion on it (production_metrics)."
    ),
)

retrain_job = dg.define_asset_job(
    name=RETRAIN_JOB,
    selection=dg.AssetSelection.assets(CANDIDATE_MODEL, PRODUCTION_MODEL),
    hooks={end_mlflow_on_run_finished},
    description=(
        "Train a candidate on the training window, judge it with the six blocking gates and, only if all pass, "
        "move the champion alias to it (one MLflow run per Dagster run)."
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


class ReviewLabelsConfig(dg.Config):
    """A person's decision on a batch whose labels were flagged as suspect (drift_report's label_quality)."""

    batch_id: str = Field(description="The batch whose labels were flagged.")
    decision: Literal["accept", "reject"] = Field(
        description="accept: its labels are trusted again (training windows, triggers); reject: kept out for good."
    )
    reviewer: str = Field(description="Who decides (recorded with the decision).")
    note: str = Field(default="", description="Why, for the record.")


@dg.op(required_resource_keys={"warehouse"})
def decide_on_labels(context: dg.OpExecutionContext, config: ReviewLabelsConfig) -> None:
    """Record a person's decision on a batch's suspect labels."""
    from retrain_assets.core import storage

    with context.resources.warehouse.get_connection() as conn:
        try:
            review = storage.review_labels(conn, config.batch_id, config.decision, config.reviewer, config.note)
        except ValueError as error:
            raise dg.Failure(description=str(error)) from None
    context.log.info(f"labels of batch {config.batch_id} {review['status']} by {config.reviewer}: {review['reason']}")


@dg.job(name=REVIEW_LABELS_JOB, description="Accept or reject the suspect labels of a batch (drift_report's label_quality).")
def review_labels_job():
    """Accept or reject the suspect labels of a batch (drift_report's label_quality)."""
    decide_on_labels()


class RetrainRequestConfig(dg.Config):
    """A person's request for a retrain."""

    reason: str = Field(description="Why (required), e.g. 'new pricing from 2026-12-01'; it reaches MLflow and the ledger.")


@dg.op
def record_retrain_request(context: dg.OpExecutionContext, config: RetrainRequestConfig) -> None:
    """Validate and log a person's retrain request; business_change_sensor then requests the retrain."""
    reason = config.reason.strip()
    if len(reason) < 5:
        raise dg.Failure(f"give a reason of at least 5 characters for the retrain (got {config.reason!r})")
    context.log.info(f"retrain requested by a person (business change): {reason}")


@dg.job(name=REQUEST_RETRAIN_JOB, description="Ask for a retrain after a business change; `reason` is required.")
def request_retrain_job():
    """Ask for a retrain after a business change; `reason` is required."""
    record_retrain_request()
