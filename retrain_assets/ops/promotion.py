"""The ops of the jobs that move the champion by a person's decision: rollback, and the approval or
rejection of a candidate awaiting approval (promotion.require_approval). The rules they apply are
pure (core/promotion.py, core/approval.py); production_model moves it automatically."""

from datetime import datetime, timezone

import dagster as dg
from pydantic import Field

from retrain_assets.constants import PRODUCTION_MODEL
from retrain_assets.core import approval, registry as reg
from retrain_assets.core.ledger import (
    decide_approval,
    promoted_versions,
    read_ledger,
    reconcile_ledger,
    settle_approval_requests,
)
from retrain_assets.core.model_registry import RegistryClient
from retrain_assets.core.promotion import (
    Refused,
    check_promotable,
    move_champion,
    promote,
    promotion_entry,
    rollback_target,
)
from retrain_assets.names import names_of_run
from retrain_assets.resources import ModelRegistry, RetrainSettings, Warehouse
from retrain_assets.runs import refusal, run_trigger
from retrain_assets.views import champion_metadata, ledger_markdown, shadow_evidence_metadata


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
    context.log_event(dg.AssetMaterialization(asset_key=names_of_run(context.run.tags).key(PRODUCTION_MODEL), metadata=metadata,
                                              description=f"rollback v{champion} -> v{target}"))


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
    trigger, reason, launched_by = run_trigger(context)
    entry = promotion_entry(tags, trigger=trigger, reason=reason, launched_by=launched_by, approver=approver,
                            note=f"approved by {approver}: {note}")
    promote(client, warehouse.get_connection, entry, champion=champion, version=version, run_id=context.run_id)
    context.log.info(f"champion {('v' + champion) if champion else '(none)'} -> v{version}")
    with warehouse.get_connection() as conn:
        decide_approval(conn, request.entry_id, "approved", note=note, approver=approver)
        ledger = read_ledger(conn, client.model_name)
    client.set_tags(version, {"retrain.approval": "approved", "retrain.approved_by": approver})
    waited = request.age_hours(datetime.now(timezone.utc))
    context.log.info(f"v{version} approved by {approver} after {waited:.1f} h: {note}")
    metadata = champion_metadata(client, version, champion, ledger)
    metadata.update(moved=True, approved_by=approver, approval_note=note, waited_hours=round(waited, 2),
                    **evidence_metadata)
    context.log_event(dg.AssetMaterialization(asset_key=names_of_run(context.run.tags).key(PRODUCTION_MODEL), metadata=metadata,
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
    context.log_event(dg.AssetObservation(asset_key=names_of_run(context.run.tags).key(PRODUCTION_MODEL), description=f"v{version} rejected by {approver}",
                                          metadata={
        "rejected_version": version, "rejected_by": approver, "rejection_note": note,
        "champion_version": champion or "none yet", "moved": False, "ledger": ledger_markdown(ledger),
        **evidence_metadata,
    }))
