"""production_model: the MLflow registry alias `champion`, moved to a candidate that passed every
gate, each move recorded in the promotion ledger; with `promotion.require_approval`, the candidate
is left awaiting a person's decision instead (the rules: core/promotion.py and core/approval.py;
the rollback and approval ops: ops/promotion.py)."""

import dagster as dg
import yaml

from retrain_assets.constants import (
    APPROVE_PROMOTION_JOB,
    CANDIDATE_MODEL,
    PRODUCTION_MODEL,
    REJECT_PROMOTION_JOB,
    SERVING,
)
from retrain_assets.core import approval, registry as reg
from retrain_assets.core.ledger import read_ledger, reconcile_ledger, request_approval, settle_approval_requests
from retrain_assets.core.model_registry import RegistryClient
from retrain_assets.core.promotion import GatesFailed, Refused, check_promotable, promote, promotion_entry
from retrain_assets.resources import ModelRegistry, RetrainSettings, Warehouse
from retrain_assets.runs import refusal, run_trigger
from retrain_assets.views import champion_metadata, ledger_markdown
from retrain_assets.names import SINGLE, ModelNames


def approval_instructions(version: str, champion: str | None, expires_at, names: ModelNames = SINGLE) -> str:
    """Markdown: what awaits whom, until when, and the exact launchpad config and CLI commands."""
    approve = yaml.safe_dump(approval.run_config(approval.APPROVE_JOB_OP, version=version), sort_keys=False).strip()
    reject = yaml.safe_dump(approval.run_config(approval.REJECT_JOB_OP, version=version, note="<why not>"),
                            sort_keys=False).strip()
    return (
        f"**v{version} passed every gate against champion {'v' + champion if champion else '(none yet)'} and awaits "
        f"a person's approval** until {expires_at:%Y-%m-%d %H:%M} UTC (`promotion.approval_max_age_hours`). "
        "The champion does not move until then.\n\n"
        f"**Approve**: launch job `{names.name(APPROVE_PROMOTION_JOB)}` from the UI launchpad with\n\n```yaml\n{approve}\n```\n\n"
        f"or save that as `approve.yaml` and run `dagster job execute -m retrain_assets.definitions "
        f"-j {names.name(APPROVE_PROMOTION_JOB)} -c approve.yaml`.\n\n"
        f"**Reject**: job `{names.name(REJECT_PROMOTION_JOB)}` with\n\n```yaml\n{reject}\n```\n\n"
        "**Evidence**: `production_metrics` scores the challenger beside the champion on every new batch "
        "(`promotion.shadow_scoring`); the approve job logs the summary."
    )


def _await_approval(
    context: dg.AssetExecutionContext, cfg, client: RegistryClient, warehouse: Warehouse, champion: str | None,
    challenger: str, tags: dict[str, str], names: ModelNames = SINGLE,
) -> dg.MaterializeResult:
    """Record that the gated challenger awaits a person's approval (the champion does not move)."""
    name, max_age = client.model_name, cfg.promotion.approval_max_age_hours
    trigger, reason, launched_by = run_trigger(context)
    mlflow_run_id = client.run_id(challenger)
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
    instructions = approval_instructions(challenger, champion, expires_at, names)
    context.log.info(instructions.replace("\n\n", "\n"))
    client.set_tags(challenger, {"retrain.approval": approval.AWAITING})
    return dg.MaterializeResult(metadata={
        "moved": False,
        "awaiting_approval": True,
        "champion_version": champion or "none yet",
        "challenger_version": challenger,
        "challenger_uri": client.uri(challenger),
        "approval_entry_id": entry_id,
        "approval_requested_at": f"{request.recorded_at:%Y-%m-%d %H:%M:%S} UTC",
        "approval_expires_at": f"{expires_at:%Y-%m-%d %H:%M:%S} UTC",
        "how_to_approve": dg.MetadataValue.md(instructions),
        "shadow_scoring": cfg.promotion.shadow_scoring,
        "registered_model": name,
        "ledger": ledger_markdown(ledger),
    })


def _gates_failed_in_this_run(run_id: str, client: RegistryClient, champion: str | None) -> str | None:
    """Why the candidate this run trained (if it trained one) failed its gates, else None. It is asked
    before the alias: a failed candidate leaves ``challenger`` on one that awaits approval, and the
    run must not then go on to that one."""
    trained = [version for version, _, _, run in client.lineage() if run == run_id]
    if not trained:
        return None
    version = max(trained, key=int)
    try:
        check_promotable(client.tags(version), version, champion)
    except GatesFailed as error:
        return str(error)
    except Refused:
        return None  # any other refusal is judged on the challenger below
    return None


def _leave_as_it_was(context: dg.AssetExecutionContext, why: str) -> None:
    # The gates did their work: the champion and this asset stay as they were, the run succeeds, and
    # the failed checks on candidate_model say why (alerted by alert_on_refusal).
    context.log.warning(f"{why}: production_model is left as it was (see the checks on candidate_model)")


def _production_model(
    context: dg.AssetExecutionContext, names: ModelNames, settings: RetrainSettings, warehouse: Warehouse, registry: ModelRegistry
):
    """The served model: MLflow alias `champion`, moved to the challenger only after it passed every gate (and, if required, a person approved it); each move in the ledger."""
    cfg = settings.load()
    client = registry.client()
    challenger = client.version(reg.CHALLENGER_ALIAS)
    champion = client.version(reg.CHAMPION_ALIAS)
    with warehouse.get_connection() as conn:
        settled = reconcile_ledger(conn, client.model_name, champion)
    for entry in settled:
        context.log.warning(f"ledger entry {entry['entry_id']} {entry['status']}: {entry['note']}")
    failed_here = _gates_failed_in_this_run(context.run_id, client, champion)
    if failed_here is not None:
        _leave_as_it_was(context, failed_here)
        return
    if challenger is None:
        raise refusal(f"nothing to promote: no version of {client.model_name!r} holds alias {reg.CHALLENGER_ALIAS!r}; "
                      "materialize candidate_model first")
    tags = client.tags(challenger)
    if champion == challenger and tags.get(reg.TAG_GATES_PASSED) == "true":
        context.log.info(f"v{challenger} is already the champion; nothing to move")
        with warehouse.get_connection() as conn:
            ledger = read_ledger(conn, client.model_name)
        metadata = champion_metadata(client, champion, client.version(reg.PREVIOUS_ALIAS), ledger)
        metadata["moved"] = False
        yield dg.MaterializeResult(metadata=metadata)
        return
    try:
        check_promotable(tags, challenger, champion)
    except GatesFailed as error:
        _leave_as_it_was(context, str(error))
        return
    except Refused as error:
        raise refusal(str(error)) from None
    if cfg.promotion.require_approval:
        yield _await_approval(context, cfg, client, warehouse, champion, challenger, tags, names)
        return

    trigger, reason, launched_by = run_trigger(context)
    entry = promotion_entry(tags, trigger=trigger, reason=reason, launched_by=launched_by)
    ledger = promote(client, warehouse.get_connection, entry, champion=champion, version=challenger, run_id=context.run_id)
    context.log.info(f"champion {('v' + champion) if champion else '(none)'} -> v{challenger}")
    metadata = champion_metadata(client, challenger, champion, ledger)
    metadata["moved"] = True
    yield dg.MaterializeResult(metadata=metadata)


def production_model_asset(names: ModelNames = SINGLE) -> dg.AssetsDefinition:
    """The production_model asset of one model (plain key for a single config, ``<model>/production_model`` in a fleet)."""

    @dg.asset(
        key=names.key(PRODUCTION_MODEL),
        deps=names.keys(CANDIDATE_MODEL),
        group_name=names.group(SERVING),
        kinds={"mlflow", "duckdb"},
        pool=names.duckdb_pool,
        code_version="1",
        output_required=False,  # a candidate that failed its gates leaves it as it was: not materialized, not failed
        required_resource_keys=names.resources("settings", "warehouse", "registry"),
    )
    def production_model(context: dg.AssetExecutionContext):
        """The served model: MLflow alias `champion`, moved to the challenger only after it passed every gate (and, if required, a person approved it); each move in the ledger."""
        yield from _production_model(context, names, **names.bind(context, "settings", "warehouse", "registry"))

    return production_model


production_model = production_model_asset()
