"""Every job: ingesting a batch and retraining (asset jobs), and the jobs a person launches (their
ops live in ops/): replace a batch, review labels, request a retrain, roll back the champion,
approve or reject a candidate."""

from dataclasses import dataclass, fields
from typing import Any, Mapping

import dagster as dg

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
from retrain_assets.names import SINGLE, ModelNames
from retrain_assets.partitions import batch_partitions_for
from retrain_assets.resources import mlflow_run_hooks

@dataclass(frozen=True)
class ModelJobs:
    """Every job of one model (``<model>__<job>`` in a fleet)."""

    ingest: Any  # an unresolved asset job (dg.define_asset_job)
    retrain: Any  # an unresolved asset job (dg.define_asset_job)
    health: Any  # an unresolved asset job (dg.define_asset_job)
    replace_batch: dg.JobDefinition
    review_labels: dg.JobDefinition
    request_retrain: dg.JobDefinition
    rollback: dg.JobDefinition
    approve_promotion: dg.JobDefinition
    reject_promotion: dg.JobDefinition

    def all(self) -> list:
        return [getattr(self, field.name) for field in fields(self)]


def build_jobs(names: ModelNames = SINGLE, op_resources: Mapping[str, Any] | None = None,
               executor: dg.ExecutorDefinition | None = None) -> ModelJobs:
    """The jobs of one model.

    Args:
        names: The model's names.
        op_resources: The model's resources under their plain keys (``settings``, ``warehouse``,
            ``registry``), bound to the jobs a person launches, whose ops take them by those names;
            None for a single config, whose resources are the Definitions' own.
        executor: The model's executor (a fleet's models may each have their own); None for the
            Definitions' executor.
    """
    tags = names.tags

    def op_job(name: str, description: str, body) -> dg.JobDefinition:
        return dg.job(name=names.name(name), description=description, tags=tags, executor_def=executor,
                      resource_defs=dict(op_resources) if op_resources else None)(body)

    def replace_batch():
        """Replace an ingested batch with a complete file; the old rows and file are kept in the rejected area."""
        replace_ingested_batch()

    def review_labels():
        """Accept or reject the suspect labels of a batch (drift_report's label_quality)."""
        decide_on_labels()

    def request_retrain():
        """Ask for a retrain after a business change; `reason` is required."""
        record_retrain_request()

    def rollback():
        """Point the champion alias back to an earlier promoted version (default: the previous one)."""
        rollback_champion()

    def approve_promotion():
        """Approve the candidate awaiting approval: moves the champion alias to it; `approver` and `note` are required."""
        approve_challenger()

    def reject_promotion():
        """Reject the candidate awaiting approval; `approver` and `note` are required."""
        reject_challenger()

    return ModelJobs(
        ingest=dg.define_asset_job(
            name=names.name(INGEST_JOB),
            selection=dg.AssetSelection.assets(*names.keys(RAW_DATA, VALIDATED_DATA, DRIFT_REPORT, PRODUCTION_METRICS)),
            partitions_def=batch_partitions_for(names),
            tags=tags,
            executor_def=executor,
            description=(
                "Ingest one landed batch (raw_data), validate it (validated_data; a batch that fails its check is held "
                "back and the steps after skip it), compare it with the reference (drift_report) and measure the "
                "champion on it (production_metrics)."
            ),
        ),
        retrain=dg.define_asset_job(
            name=names.name(RETRAIN_JOB),
            selection=dg.AssetSelection.assets(*names.keys(CANDIDATE_MODEL, PRODUCTION_MODEL)),
            hooks=set(mlflow_run_hooks(names)),
            tags=tags,
            executor_def=executor,
            description=(
                "Train a candidate on the training window, judge it with the six gates and, only if all pass, "
                "move the champion alias to it (one MLflow run per Dagster run)."
            ),
        ),
        health=dg.define_asset_job(
            name=names.name(HEALTH_JOB),
            selection=dg.AssetSelection.assets(names.key(MODEL_HEALTH)),
            tags=tags,
            executor_def=executor,
            description=(
                "Refresh model_health (verdict, freshness checks, retrain costs); the health sensor runs it after "
                "every ingest and retrain, the hourly schedule when nothing happens."
            ),
        ),
        replace_batch=op_job(REPLACE_BATCH_JOB, (
            "Replace an ingested batch with a complete file (config batch_id, optional file): the old rows and file "
            "are kept in the rejected area and the file is landed for the landing sensor to ingest."), replace_batch),
        review_labels=op_job(REVIEW_LABELS_JOB,
                             "Accept or reject the suspect labels of a batch (drift_report's label_quality).",
                             review_labels),
        request_retrain=op_job(REQUEST_RETRAIN_JOB,
                               "Ask for a retrain after a business change; `reason` is required.", request_retrain),
        rollback=op_job(ROLLBACK_JOB,
                        "Point the champion alias back to an earlier promoted version (default: the previous one).",
                        rollback),
        approve_promotion=op_job(APPROVE_PROMOTION_JOB, (
            "Approve the candidate awaiting approval (promotion.require_approval): moves the champion alias to it; "
            "`approver` and `note` are required."), approve_promotion),
        reject_promotion=op_job(REJECT_PROMOTION_JOB, (
            "Reject the candidate awaiting approval: recorded in the ledger, alias challenger removed, champion "
            "untouched; `approver` and `note` are required."), reject_promotion),
    )


_single = build_jobs(SINGLE)


def single_jobs() -> ModelJobs:
    """The jobs of a single config (plain names), the default of every sensor and schedule factory."""
    return _single

ingest_job = _single.ingest
retrain_job = _single.retrain
health_job = _single.health
replace_batch_job = _single.replace_batch
review_labels_job = _single.review_labels
request_retrain_job = _single.request_retrain
rollback_job = _single.rollback
approve_promotion_job = _single.approve_promotion
reject_promotion_job = _single.reject_promotion
