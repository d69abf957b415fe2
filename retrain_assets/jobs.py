"""Every job: ingesting a batch, retraining, and the jobs a person launches (replace a batch,
review labels, request a retrain, roll back the champion, approve or reject a candidate)."""

from datetime import datetime, timezone
from typing import Literal

import dagster as dg
from dagster_mlflow import end_mlflow_on_run_finished
from pydantic import Field

from retrain_assets.constants import (
    APPROVE_PROMOTION_JOB,
    CANDIDATE_MODEL,
    DRIFT_REPORT,
    INGEST_JOB,
    PRODUCTION_METRICS,
    PRODUCTION_MODEL,
    RAW_DATA,
    REJECT_PROMOTION_JOB,
    REQUEST_RETRAIN_JOB,
    RETRAIN_JOB,
    REVIEW_LABELS_JOB,
    ROLLBACK_JOB,
    VALIDATED_DATA,
)
from retrain_assets.assets.ingestion import replace_ingested_batch
from retrain_assets.assets.performance import shadow_evidence_metadata
from retrain_assets.assets.promotion import champion_metadata, ledger_markdown, promote
from retrain_assets.core import approval, storage
from retrain_assets.core import registry as reg
from retrain_assets.core.ledger import (
    decide_approval,
    promoted_versions,
    read_ledger,
    reconcile_ledger,
    settle_approval_requests,
)
from retrain_assets.core.model_registry import RegistryClient
from retrain_assets.core.promotion import Refused, check_promotable, move_champion, rollback_target
from retrain_assets.partitions import batch_partitions
from retrain_assets.resources import ModelRegistry, RetrainSettings, Warehouse
from retrain_assets.runs import refusal, run_trigger

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


# --------------------------------------------------------------------------
# The champion, moved back by a person (rollback)
# --------------------------------------------------------------------------


class RollbackConfig(dg.Config):
    """Which earlier champion to restore."""

    to_version: str | None = Field(
        default=None, description="Version to make champion again (one that was promoted before); default: the previous champion."
    )
    reason: str = Field(default="manual rollback", description="Why, for the promotion ledger.")


@dg.op(out=dg.Out(dg.Nothing))
def rollback_champion(
    context: dg.OpExecutionContext, config: RollbackConfig, warehouse: Warehouse, registry: ModelRegistry
) -> None:
    """Point alias `champion` back to an earlier promoted version and record it in the ledger."""
    client = registry.client()
    champion = client.version(reg.CHAMPION_ALIAS)
    if champion is None:
        raise refusal(f"{client.model_name!r} has no champion to roll back")
    with warehouse.get_connection() as conn:
        reconcile_ledger(conn, client.model_name, champion)
        promoted = promoted_versions(conn, client.model_name)
        ledger = read_ledger(conn, client.model_name)
    try:
        target = rollback_target(ledger, champion, config.to_version, promoted)
    except Refused as error:
        raise refusal(str(error)) from None
    ledger = move_champion(client, warehouse.get_connection, {
        "action": "rollback", "trigger": "rollback", "reason": config.reason, "dagster_run_id": context.run_id,
        "launched_by": run_trigger(context)[2],
    }, champion=champion, version=target, drop_challenger=True)
    context.log.info(f"rolled back: champion v{champion} -> v{target} ({config.reason})")
    metadata = champion_metadata(client, target, champion, ledger)
    metadata.update(moved=True, rollback_reason=config.reason)
    context.log_event(dg.AssetMaterialization(asset_key=PRODUCTION_MODEL, metadata=metadata,
                                              description=f"rollback v{champion} -> v{target}"))


@dg.job(name=ROLLBACK_JOB, description="Point the champion alias back to an earlier promoted version (default: the previous one).")
def rollback_job():
    """Point the champion alias back to an earlier promoted version (default: the previous one)."""
    rollback_champion()


# --------------------------------------------------------------------------
# A person's decision on a candidate awaiting approval (promotion.require_approval)
# --------------------------------------------------------------------------


class ApprovalConfig(dg.Config):
    """A person's approval of the candidate awaiting it."""

    approver: str = Field(description="Who approves (name or e-mail); recorded in the promotion ledger and on the MLflow version.")
    note: str = Field(description="Why it may be promoted (e.g. the shadow evidence you checked); recorded in the ledger.")
    version: str | None = Field(
        default=None,
        description="The version you reviewed; default: the one awaiting approval. Give it so that a newer candidate "
        "that arrived meanwhile is not approved by mistake.",
    )


class RejectionConfig(dg.Config):
    """A person's refusal of the candidate awaiting approval."""

    approver: str = Field(description="Who rejects (name or e-mail); recorded in the promotion ledger and on the MLflow version.")
    note: str = Field(description="Why it must not be promoted; recorded in the ledger.")
    version: str | None = Field(default=None, description="The version you reviewed; default: the one awaiting approval.")


def _awaiting(context: dg.OpExecutionContext, cfg, client: RegistryClient, warehouse: Warehouse, config, *,
              expire: bool) -> tuple[str | None, approval.ApprovalRequest]:
    """(champion, the request awaiting approval) after settling what ended. ``expire``: whether
    requests past their age end now (an approval must not pass them; a rejection may still record
    the person's refusal)."""
    if not config.approver.strip() or not config.note.strip():
        raise refusal("give both `approver` (who decides) and a `note` (why); both go into the promotion ledger")
    name = client.model_name
    champion = client.version(reg.CHAMPION_ALIAS)
    challenger = client.version(reg.CHALLENGER_ALIAS)
    max_age = cfg.promotion.approval_max_age_hours if expire else float("inf")
    with warehouse.get_connection() as conn:
        for entry in reconcile_ledger(conn, name, champion):
            context.log.warning(f"ledger entry {entry['entry_id']} {entry['status']}: {entry['note']}")
        for ended in settle_approval_requests(conn, name, champion=champion, challenger=challenger,
                                              max_age_hours=max_age):
            context.log.warning(f"approval request for v{ended.to_version} {ended.status}: {ended.note}")
        ledger = read_ledger(conn, name)
    try:
        request = approval.request_to_decide(
            ledger, model_name=name, champion=champion, challenger=challenger, max_age_hours=max_age,
            asked=config.version, require_approval=cfg.promotion.require_approval,
        )
    except approval.NoDecision as error:
        raise refusal(str(error)) from None
    return champion, request


@dg.op(name=approval.APPROVE_JOB_OP, out=dg.Out(dg.Nothing))
def approve_challenger(
    context: dg.OpExecutionContext, config: ApprovalConfig, settings: RetrainSettings, warehouse: Warehouse,
    registry: ModelRegistry,
) -> None:
    """Promote the candidate awaiting approval: champion moves exactly as an automatic promotion would; the ledger names the approver."""
    client = registry.client()
    champion, request = _awaiting(context, settings.load(), client, warehouse, config, expire=True)
    version = request.to_version
    tags = client.tags(version)
    try:
        check_promotable(tags, version, champion)
    except Refused as error:
        raise refusal(str(error)) from None
    evidence, evidence_metadata = shadow_evidence_metadata(warehouse, champion, version)
    context.log.info(f"shadow evidence for v{version}: {evidence}")
    approver, note = config.approver.strip(), config.note.strip()
    promote(context, client, warehouse, champion=champion, version=version, tags=tags,
            approver=approver, note=f"approved by {approver}: {note}")
    with warehouse.get_connection() as conn:
        decide_approval(conn, request.entry_id, "approved", note=note, approver=approver)
        ledger = read_ledger(conn, client.model_name)
    client.set_tags(version, {"retrain.approval": "approved", "retrain.approved_by": approver})
    waited = request.age_hours(datetime.now(timezone.utc))
    context.log.info(f"v{version} approved by {approver} after {waited:.1f} h: {note}")
    metadata = champion_metadata(client, version, champion, ledger)
    metadata.update(moved=True, approved_by=approver, approval_note=note, waited_hours=round(waited, 2),
                    **evidence_metadata)
    context.log_event(dg.AssetMaterialization(asset_key=PRODUCTION_MODEL, metadata=metadata,
                                              description=f"v{version} approved by {approver}"))


@dg.op(name=approval.REJECT_JOB_OP, out=dg.Out(dg.Nothing))
def reject_challenger(
    context: dg.OpExecutionContext, config: RejectionConfig, settings: RetrainSettings, warehouse: Warehouse,
    registry: ModelRegistry,
) -> None:
    """Refuse the candidate awaiting approval: recorded in the ledger, alias `challenger` removed, champion untouched."""
    client = registry.client()
    champion, request = _awaiting(context, settings.load(), client, warehouse, config, expire=False)
    version = request.to_version
    evidence, evidence_metadata = shadow_evidence_metadata(warehouse, champion, version)
    approver, note = config.approver.strip(), config.note.strip()
    with warehouse.get_connection() as conn:
        decide_approval(conn, request.entry_id, "rejected", note=note, approver=approver)
        ledger = read_ledger(conn, client.model_name)
    # After the ledger: a run killed in between leaves a rejected request whose version
    # production_model refuses to put up again.
    if client.version(reg.CHALLENGER_ALIAS) == version:
        client.move_alias(reg.CHALLENGER_ALIAS, None)
    client.set_tags(version, {"retrain.approval": "rejected", "retrain.rejected_by": approver})
    context.log.info(f"v{version} rejected by {approver}: {note}; the champion stays "
                     f"{'v' + champion if champion else 'unset'} (shadow evidence: {evidence})")
    context.log_event(dg.AssetObservation(asset_key=PRODUCTION_MODEL, description=f"v{version} rejected by {approver}",
                                          metadata={
        "rejected_version": version, "rejected_by": approver, "rejection_note": note,
        "champion_version": champion or "none yet", "moved": False, "ledger": ledger_markdown(ledger),
        **evidence_metadata,
    }))


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
