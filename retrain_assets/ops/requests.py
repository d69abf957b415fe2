"""The ops of the jobs a person launches about data and retraining: a decision on a batch's suspect
labels (review_labels) and a retrain request after a business change (request_retrain)."""

from typing import Literal

import dagster as dg
from pydantic import Field

from retrain_assets.core import label_store



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
    with context.resources.warehouse.get_connection() as conn:
        try:
            review = label_store.review_labels(conn, config.batch_id, config.decision, config.reviewer, config.note)
        except ValueError as error:
            raise dg.Failure(description=str(error)) from None
    context.log.info(f"labels of batch {config.batch_id} {review['status']} by {config.reviewer}: {review['reason']}")


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
