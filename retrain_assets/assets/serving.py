"""production_model: the MLflow registry alias `champion`, moved to a candidate that passed every
gate, with the move recorded in the promotion ledger; the `rollback` job that moves it back; and,
with `promotion.require_approval`, the candidate left awaiting a person's decision and the
`approve_promotion` / `reject_promotion` jobs that take it."""

from datetime import datetime, timezone
from typing import Any

import dagster as dg
import pandas as pd
import yaml
from pydantic import Field

from retrain_assets.assets.training import candidate_model, refusal, run_trigger
from retrain_assets.constants import (
    APPROVE_PROMOTION_JOB,
    DUCKDB_POOL,
    PRODUCTION_MODEL,
    REJECT_PROMOTION_JOB,
    ROLLBACK_JOB,
    SERVING,
)
from retrain_assets.assets.production import shadow_evidence_metadata
from retrain_assets.core import approval
from retrain_assets.core.ledger import (
    decide_approval,
    open_ledger_entry,
    promoted_versions,
    read_ledger,
    reconcile_ledger,
    request_approval,
    settle_approval_requests,
    settle_ledger_entry,
)
from retrain_assets.core import registry as reg
from retrain_assets.metadata import markdown_table
from retrain_assets.resources import RetrainSettings, Warehouse

LEDGER_SHOWN = ("recorded_at", "action", "status", "from_version", "to_version", "trigger", "reason",
                "gates_passed", "launched_by", "approver", "dagster_run_id", "note")
APPROVE_OP = approval.APPROVE_JOB_OP
REJECT_OP = approval.REJECT_JOB_OP


def _ledger_markdown(ledger: pd.DataFrame, limit: int = 10) -> dg.MetadataValue:
    shown = ledger.tail(limit)[[c for c in LEDGER_SHOWN if c in ledger.columns]].copy()
    if "recorded_at" in shown:
        shown["recorded_at"] = shown["recorded_at"].astype(str).str.slice(0, 19)
    if "dagster_run_id" in shown:
        shown["dagster_run_id"] = shown["dagster_run_id"].astype(str).str.slice(0, 8)
    return dg.MetadataValue.md(markdown_table(shown.iloc[::-1]))


def _champion_metadata(cfg, champion: str, previous: str | None, ledger: pd.DataFrame) -> dict[str, Any]:
    name = cfg.registered_model_name
    return {
        "champion_version": champion,
        "previous_version": previous or "none",
        "champion_uri": reg.model_uri(name, alias=reg.CHAMPION_ALIAS),
        "version_uri": reg.model_uri(name, champion),
        "registered_model": name,
        "ledger": _ledger_markdown(ledger),
    }


def _check_gates_passed(tags: dict[str, str], version: str, champion: str | None) -> None:
    if tags.get(reg.TAG_GATES_PASSED) != "true":
        failed = tags.get(reg.TAG_FAILED_GATES) or "not judged"
        raise refusal(
            f"v{version} did not pass its gates ({failed}); the champion stays "
            f"{'v' + champion if champion else 'unset'}"
        )


def _check_judged_against(tags: dict[str, str], version: str, champion: str | None) -> None:
    judged_against = tags.get(reg.TAG_COMPARED_TO, "none")
    if judged_against != (champion or "none"):
        raise refusal(
            f"v{version} was judged against {'v' + judged_against if judged_against != 'none' else 'no champion'}, "
            f"but the champion is now {'v' + champion if champion else 'unset'}; retrain to judge a candidate "
            "against the current champion"
        )


def promote(
    context, cfg, warehouse: Warehouse, *, champion: str | None, version: str, tags: dict[str, str],
    approver: str | None = None, note: str | None = None,
) -> pd.DataFrame:
    """Move alias `champion` to ``version``, which passed its gates against ``champion``; returns the ledger.

    Crash-safe: a ``pending`` ledger row first, then alias ``previous`` at the old champion, then
    ``champion`` at the new one (one atomic registry call: it always names a gated version), then the
    row settles ``done``. A run killed in between leaves the row pending for
    :func:`reconcile_ledger`. The automatic promotion and ``approve_promotion`` both use it.
    """
    uri, name = cfg.mlflow_tracking_uri, cfg.registered_model_name
    trigger, reason, launched_by = run_trigger(context)
    client = reg.client_for(uri)
    mlflow_run_id = client.get_model_version(name, version).run_id
    with warehouse.get_connection() as conn:
        entry = open_ledger_entry(conn, {
            "model_name": name, "action": "promote", "from_version": champion, "to_version": version,
            "trigger": tags.get(reg.TAG_TRIGGER, trigger), "reason": tags.get(reg.TAG_REASON, reason),
            "gates_passed": True, "gates_json": tags.get(reg.TAG_GATES, "[]"), "dagster_run_id": context.run_id,
            "mlflow_run_id": mlflow_run_id, "launched_by": launched_by, "approver": approver, "note": note,
        })
    if champion is not None:
        reg.move_alias(uri, name, reg.PREVIOUS_ALIAS, champion)
    reg.move_alias(uri, name, reg.CHAMPION_ALIAS, version)
    with warehouse.get_connection() as conn:
        settle_ledger_entry(conn, entry, "done")
        ledger = read_ledger(conn, name)
    reg.set_version_tags(uri, name, version, {"retrain.promoted_by_run": context.run_id})
    if mlflow_run_id:
        client.set_tag(mlflow_run_id, "retrain.promoted", "true")
        client.set_tag(mlflow_run_id, "retrain.promoted_by_run", context.run_id)
    context.log.info(f"champion {('v' + champion) if champion else '(none)'} -> v{version}")
    return ledger


def approval_instructions(version: str, champion: str | None, expires_at) -> str:
    """Markdown: what awaits whom, until when, and the exact launchpad config and CLI commands."""
    approve = yaml.safe_dump(approval.run_config(APPROVE_OP, version=version), sort_keys=False).strip()
    reject = yaml.safe_dump(approval.run_config(REJECT_OP, version=version, note="<why not>"), sort_keys=False).strip()
    return (
        f"**v{version} passed every gate against champion {'v' + champion if champion else '(none yet)'} and awaits "
        f"a person's approval** until {expires_at:%Y-%m-%d %H:%M} UTC (`promotion.approval_max_age_hours`). "
        "The champion does not move until then.\n\n"
        f"**Approve**: launch job `{APPROVE_PROMOTION_JOB}` from the UI launchpad with\n\n```yaml\n{approve}\n```\n\n"
        f"or save that as `approve.yaml` and run `dagster job execute -m retrain_assets.definitions "
        f"-j {APPROVE_PROMOTION_JOB} -c approve.yaml`.\n\n"
        f"**Reject**: job `{REJECT_PROMOTION_JOB}` with\n\n```yaml\n{reject}\n```\n\n"
        "**Evidence**: `production_metrics` scores the challenger beside the champion on every new batch "
        "(`promotion.shadow_scoring`); the approve job logs the summary."
    )


def _await_approval(
    context: dg.AssetExecutionContext, cfg, warehouse: Warehouse, champion: str | None, challenger: str,
    tags: dict[str, str],
) -> dg.MaterializeResult:
    """Record that the gated challenger awaits a person's approval (the champion does not move)."""
    name, max_age = cfg.registered_model_name, cfg.promotion.approval_max_age_hours
    trigger, reason, launched_by = run_trigger(context)
    mlflow_run_id = reg.client_for(cfg.mlflow_tracking_uri).get_model_version(name, challenger).run_id
    with warehouse.get_connection() as conn:
        for ended in settle_approval_requests(conn, name, champion=champion, challenger=challenger,
                                                      max_age_hours=max_age):
            context.log.warning(f"approval request for v{ended.to_version} {ended.status}: {ended.note}")
        ledger = read_ledger(conn, name)
        earlier = approval.latest_request(ledger, challenger)
        if earlier is not None and earlier.status == "rejected":
            raise refusal(f"v{challenger} was rejected ({earlier.describe()}); it is not put up for approval again: "
                          "retrain for a new candidate")
        request = approval.current_request(ledger, champion=champion, challenger=challenger, max_age_hours=max_age)
        if request is not None and request.to_version == challenger:
            context.log.info(f"v{challenger} already awaits approval (since {request.recorded_at:%Y-%m-%d %H:%M} UTC)")
            entry_id = request.entry_id
        else:
            entry_id, superseded = request_approval(conn, {
                "model_name": name, "from_version": champion, "to_version": challenger,
                "trigger": tags.get(reg.TAG_TRIGGER, trigger), "reason": tags.get(reg.TAG_REASON, reason),
                "gates_passed": True, "gates_json": tags.get(reg.TAG_GATES, "[]"), "dagster_run_id": context.run_id,
                "mlflow_run_id": mlflow_run_id, "launched_by": launched_by,
            })
            for old in superseded:
                context.log.warning(f"approval request {old} superseded by v{challenger}")
        ledger = read_ledger(conn, name)
    request = next(r for r in approval.requests(ledger) if r.entry_id == entry_id)
    expires_at = request.expires_at(max_age)
    instructions = approval_instructions(challenger, champion, expires_at)
    context.log.info(instructions.replace("\n\n", "\n"))
    reg.set_version_tags(cfg.mlflow_tracking_uri, name, challenger, {"retrain.approval": approval.AWAITING})
    return dg.MaterializeResult(metadata={
        "moved": False,
        "awaiting_approval": True,
        "champion_version": champion or "none yet",
        "challenger_version": challenger,
        "challenger_uri": reg.model_uri(name, challenger),
        "approval_entry_id": entry_id,
        "approval_requested_at": f"{request.recorded_at:%Y-%m-%d %H:%M:%S} UTC",
        "approval_expires_at": f"{expires_at:%Y-%m-%d %H:%M:%S} UTC",
        "how_to_approve": dg.MetadataValue.md(instructions),
        "shadow_scoring": cfg.promotion.shadow_scoring,
        "registered_model": name,
        "ledger": _ledger_markdown(ledger),
    })


@dg.asset(
    key=PRODUCTION_MODEL,
    deps=[candidate_model],
    group_name=SERVING,
    kinds={"mlflow", "duckdb"},
    pool=DUCKDB_POOL,
    code_version="1",
)
def production_model(
    context: dg.AssetExecutionContext, settings: RetrainSettings, warehouse: Warehouse
) -> dg.MaterializeResult:
    """The served model: MLflow alias `champion`, moved to the challenger only after it passed every gate (and, if required, a person approved it); each move in the ledger."""
    cfg = settings.load()
    uri, name = cfg.mlflow_tracking_uri, cfg.registered_model_name
    challenger = reg.alias_version(uri, name, reg.CHALLENGER_ALIAS)
    champion = reg.alias_version(uri, name, reg.CHAMPION_ALIAS)
    with warehouse.get_connection() as conn:
        settled = reconcile_ledger(conn, name, champion)
    for entry in settled:
        context.log.warning(f"ledger entry {entry['entry_id']} {entry['status']}: {entry['note']}")
    if challenger is None:
        raise refusal(f"nothing to promote: no version of {name!r} holds alias {reg.CHALLENGER_ALIAS!r}; "
                    "materialize candidate_model first")
    tags = reg.version_tags(uri, name, challenger)
    _check_gates_passed(tags, challenger, champion)
    if champion == challenger:
        context.log.info(f"v{challenger} is already the champion; nothing to move")
        with warehouse.get_connection() as conn:
            ledger = read_ledger(conn, name)
        metadata = _champion_metadata(cfg, champion, reg.alias_version(uri, name, reg.PREVIOUS_ALIAS), ledger)
        metadata["moved"] = False
        return dg.MaterializeResult(metadata=metadata)
    _check_judged_against(tags, challenger, champion)
    if cfg.promotion.require_approval:
        return _await_approval(context, cfg, warehouse, champion, challenger, tags)

    ledger = promote(context, cfg, warehouse, champion=champion, version=challenger, tags=tags)
    metadata = _champion_metadata(cfg, challenger, champion, ledger)
    metadata["moved"] = True
    return dg.MaterializeResult(metadata=metadata)


class RollbackConfig(dg.Config):
    """Which earlier champion to restore."""

    to_version: str | None = Field(
        default=None, description="Version to make champion again (one that was promoted before); default: the previous champion."
    )
    reason: str = Field(default="manual rollback", description="Why, for the promotion ledger.")


@dg.op(out=dg.Out(dg.Nothing))
def rollback_champion(
    context: dg.OpExecutionContext, config: RollbackConfig, settings: RetrainSettings, warehouse: Warehouse
) -> None:
    """Point alias `champion` back to an earlier promoted version and record it in the ledger."""
    cfg = settings.load()
    uri, name = cfg.mlflow_tracking_uri, cfg.registered_model_name
    champion = reg.alias_version(uri, name, reg.CHAMPION_ALIAS)
    if champion is None:
        raise refusal(f"{name!r} has no champion to roll back")
    with warehouse.get_connection() as conn:
        reconcile_ledger(conn, name, champion)
        promoted = promoted_versions(conn, name)
        ledger = read_ledger(conn, name)
    target = config.to_version
    if target is None:
        moves = ledger[(ledger["status"] == "done") & (ledger["to_version"] == champion)]
        target = moves["from_version"].iloc[-1] if len(moves) else None
        if target is None or pd.isna(target):
            raise refusal(f"v{champion} has no previous champion to roll back to; give to_version")
    target = str(target)
    if target == champion:
        raise refusal(f"v{target} is already the champion")
    if target not in promoted:
        raise refusal(
            f"v{target} was never promoted (promoted versions: {', '.join('v' + v for v in promoted) or 'none'}); "
            "rollback only restores a version that passed its gates and served before"
        )
    launched_by = run_trigger(context)[2]
    with warehouse.get_connection() as conn:
        entry = open_ledger_entry(conn, {
            "model_name": name, "action": "rollback", "from_version": champion, "to_version": target,
            "trigger": "rollback", "reason": config.reason, "dagster_run_id": context.run_id,
            "launched_by": launched_by,
        })
    reg.move_alias(uri, name, reg.PREVIOUS_ALIAS, champion)
    reg.move_alias(uri, name, reg.CHAMPION_ALIAS, target)
    if reg.alias_version(uri, name, reg.CHALLENGER_ALIAS) == champion:
        reg.move_alias(uri, name, reg.CHALLENGER_ALIAS, None)  # so production_model cannot re-promote it
    with warehouse.get_connection() as conn:
        settle_ledger_entry(conn, entry, "done")
        ledger = read_ledger(conn, name)
    context.log.info(f"rolled back: champion v{champion} -> v{target} ({config.reason})")
    metadata = _champion_metadata(cfg, target, champion, ledger)
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


def _awaiting(context: dg.OpExecutionContext, cfg, warehouse: Warehouse, config, *, expire: bool):
    """(champion, the request awaiting approval) after settling what ended; refuses when nothing
    awaits or ``config.version`` is not the one awaiting. ``expire``: whether requests past their age
    end now (an approval must not pass them; a rejection may still record the person's refusal)."""
    uri, name = cfg.mlflow_tracking_uri, cfg.registered_model_name
    if not config.approver.strip() or not config.note.strip():
        raise refusal("give both `approver` (who decides) and a `note` (why); both go into the promotion ledger")
    champion = reg.alias_version(uri, name, reg.CHAMPION_ALIAS)
    challenger = reg.alias_version(uri, name, reg.CHALLENGER_ALIAS)
    max_age = cfg.promotion.approval_max_age_hours if expire else float("inf")
    with warehouse.get_connection() as conn:
        for entry in reconcile_ledger(conn, name, champion):
            context.log.warning(f"ledger entry {entry['entry_id']} {entry['status']}: {entry['note']}")
        for ended in settle_approval_requests(conn, name, champion=champion, challenger=challenger,
                                                      max_age_hours=max_age):
            context.log.warning(f"approval request for v{ended.to_version} {ended.status}: {ended.note}")
        ledger = read_ledger(conn, name)
    request = approval.current_request(ledger, champion=champion, challenger=challenger, max_age_hours=max_age)
    asked = str(config.version).removeprefix("v") if config.version else None
    if request is None:
        last = approval.latest_request(ledger, asked) or approval.latest_request(ledger)
        if last is None:
            raise refusal(
                f"nothing awaits approval: no candidate of {name!r} was ever put up for approval "
                f"(promotion.require_approval is {str(cfg.promotion.require_approval).lower()})"
            )
        raise refusal(f"nothing awaits approval; the last request: {last.describe()}")
    if asked is not None and asked != request.to_version:
        raise refusal(
            f"v{asked} does not await approval: v{request.to_version} does ({request.describe()}); review it and give "
            f"version \"{request.to_version}\", or leave version out"
        )
    return champion, request


@dg.op(out=dg.Out(dg.Nothing))
def approve_challenger(
    context: dg.OpExecutionContext, config: ApprovalConfig, settings: RetrainSettings, warehouse: Warehouse
) -> None:
    """Promote the candidate awaiting approval: champion moves exactly as an automatic promotion would; the ledger names the approver."""
    cfg = settings.load()
    uri, name = cfg.mlflow_tracking_uri, cfg.registered_model_name
    champion, request = _awaiting(context, cfg, warehouse, config, expire=True)
    version = request.to_version
    tags = reg.version_tags(uri, name, version)
    _check_gates_passed(tags, version, champion)
    _check_judged_against(tags, version, champion)
    evidence, evidence_metadata = shadow_evidence_metadata(warehouse, champion, version)
    context.log.info(f"shadow evidence for v{version}: {evidence}")
    approver, note = config.approver.strip(), config.note.strip()
    ledger = promote(context, cfg, warehouse, champion=champion, version=version, tags=tags,
                     approver=approver, note=f"approved by {approver}: {note}")
    with warehouse.get_connection() as conn:
        decide_approval(conn, request.entry_id, "approved", note=note, approver=approver)
        ledger = read_ledger(conn, name)
    reg.set_version_tags(uri, name, version, {"retrain.approval": "approved", "retrain.approved_by": approver})
    waited = request.age_hours(datetime.now(timezone.utc))
    context.log.info(f"v{version} approved by {approver} after {waited:.1f} h: {note}")
    metadata = _champion_metadata(cfg, version, champion, ledger)
    metadata.update(moved=True, approved_by=approver, approval_note=note, waited_hours=round(waited, 2),
                    **evidence_metadata)
    context.log_event(dg.AssetMaterialization(asset_key=PRODUCTION_MODEL, metadata=metadata,
                                              description=f"v{version} approved by {approver}"))


@dg.op(out=dg.Out(dg.Nothing))
def reject_challenger(
    context: dg.OpExecutionContext, config: RejectionConfig, settings: RetrainSettings, warehouse: Warehouse
) -> None:
    """Refuse the candidate awaiting approval: recorded in the ledger, alias `challenger` removed, champion untouched."""
    cfg = settings.load()
    uri, name = cfg.mlflow_tracking_uri, cfg.registered_model_name
    champion, request = _awaiting(context, cfg, warehouse, config, expire=False)
    version = request.to_version
    evidence, evidence_metadata = shadow_evidence_metadata(warehouse, champion, version)
    approver, note = config.approver.strip(), config.note.strip()
    with warehouse.get_connection() as conn:
        decide_approval(conn, request.entry_id, "rejected", note=note, approver=approver)
        ledger = read_ledger(conn, name)
    # After the ledger: a run killed in between leaves a rejected request whose version
    # production_model refuses to put up again.
    if reg.alias_version(uri, name, reg.CHALLENGER_ALIAS) == version:
        reg.move_alias(uri, name, reg.CHALLENGER_ALIAS, None)
    reg.set_version_tags(uri, name, version, {"retrain.approval": "rejected", "retrain.rejected_by": approver})
    context.log.info(f"v{version} rejected by {approver}: {note}; the champion stays "
                     f"{'v' + champion if champion else 'unset'} (shadow evidence: {evidence})")
    context.log_event(dg.AssetObservation(asset_key=PRODUCTION_MODEL, description=f"v{version} rejected by {approver}",
                                          metadata={
        "rejected_version": version, "rejected_by": approver, "rejection_note": note,
        "champion_version": champion or "none yet", "moved": False, "ledger": _ledger_markdown(ledger),
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
