"""production_model: the MLflow registry alias `champion`, moved to a candidate that passed every
gate, with the move recorded in the promotion ledger; and the `rollback` job that moves it back."""

from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from retrain_assets.assets.training import candidate_model, refusal, run_trigger
from retrain_assets.constants import DUCKDB_POOL, PRODUCTION_MODEL, ROLLBACK_JOB, SERVING
from retrain_assets.core import registry as reg
from retrain_assets.core import storage
from retrain_assets.metadata import markdown_table
from retrain_assets.resources import RetrainSettings, Warehouse

LEDGER_SHOWN = ("recorded_at", "action", "status", "from_version", "to_version", "trigger", "reason",
                "gates_passed", "launched_by", "dagster_run_id", "note")


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
    """The served model: MLflow alias `champion`, moved to the challenger only after it passed every gate; each move in the ledger."""
    cfg = settings.load()
    uri, name = cfg.mlflow_tracking_uri, cfg.registered_model_name
    challenger = reg.alias_version(uri, name, reg.CHALLENGER_ALIAS)
    champion = reg.alias_version(uri, name, reg.CHAMPION_ALIAS)
    with warehouse.get_connection() as conn:
        settled = storage.reconcile_ledger(conn, name, champion)
    for entry in settled:
        context.log.warning(f"ledger entry {entry['entry_id']} {entry['status']}: {entry['note']}")
    if challenger is None:
        raise refusal(f"nothing to promote: no version of {name!r} holds alias {reg.CHALLENGER_ALIAS!r}; "
                    "materialize candidate_model first")
    tags = reg.version_tags(uri, name, challenger)
    if tags.get(reg.TAG_GATES_PASSED) != "true":
        failed = tags.get(reg.TAG_FAILED_GATES) or "not judged"
        raise refusal(
            f"v{challenger} did not pass its gates ({failed}); the champion stays "
            f"{'v' + champion if champion else 'unset'}"
        )
    if champion == challenger:
        context.log.info(f"v{challenger} is already the champion; nothing to move")
        with warehouse.get_connection() as conn:
            ledger = storage.read_ledger(conn, name)
        metadata = _champion_metadata(cfg, champion, reg.alias_version(uri, name, reg.PREVIOUS_ALIAS), ledger)
        metadata["moved"] = False
        return dg.MaterializeResult(metadata=metadata)
    judged_against = tags.get(reg.TAG_COMPARED_TO, "none")
    if judged_against != (champion or "none"):
        raise refusal(
            f"v{challenger} was judged against {'v' + judged_against if judged_against != 'none' else 'no champion'}, "
            f"but the champion is now {'v' + champion if champion else 'unset'}; retrain to judge a candidate "
            "against the current champion"
        )

    trigger, reason, launched_by = run_trigger(context)
    client = reg.client_for(uri)
    mlflow_run_id = client.get_model_version(name, challenger).run_id
    gates_json = tags.get(reg.TAG_GATES, "[]")
    with warehouse.get_connection() as conn:
        entry = storage.open_ledger_entry(conn, {
            "model_name": name, "action": "promote", "from_version": champion, "to_version": challenger,
            "trigger": tags.get(reg.TAG_TRIGGER, trigger), "reason": tags.get(reg.TAG_REASON, reason),
            "gates_passed": True, "gates_json": gates_json, "dagster_run_id": context.run_id,
            "mlflow_run_id": mlflow_run_id, "launched_by": launched_by,
        })
    # The alias move is one registry call: champion points at the old or the new version, both gated.
    if champion is not None:
        reg.move_alias(uri, name, reg.PREVIOUS_ALIAS, champion)
    reg.move_alias(uri, name, reg.CHAMPION_ALIAS, challenger)
    with warehouse.get_connection() as conn:
        storage.settle_ledger_entry(conn, entry, "done")
        ledger = storage.read_ledger(conn, name)
    reg.set_version_tags(uri, name, challenger, {"retrain.promoted_by_run": context.run_id})
    if mlflow_run_id:
        client.set_tag(mlflow_run_id, "retrain.promoted", "true")
        client.set_tag(mlflow_run_id, "retrain.promoted_by_run", context.run_id)
    context.log.info(f"champion {('v' + champion) if champion else '(none)'} -> v{challenger}")
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
        storage.reconcile_ledger(conn, name, champion)
        promoted = storage.promoted_versions(conn, name)
        ledger = storage.read_ledger(conn, name)
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
        entry = storage.open_ledger_entry(conn, {
            "model_name": name, "action": "rollback", "from_version": champion, "to_version": target,
            "trigger": "rollback", "reason": config.reason, "dagster_run_id": context.run_id,
            "launched_by": launched_by,
        })
    reg.move_alias(uri, name, reg.PREVIOUS_ALIAS, champion)
    reg.move_alias(uri, name, reg.CHAMPION_ALIAS, target)
    if reg.alias_version(uri, name, reg.CHALLENGER_ALIAS) == champion:
        reg.move_alias(uri, name, reg.CHALLENGER_ALIAS, None)  # so production_model cannot re-promote it
    with warehouse.get_connection() as conn:
        storage.settle_ledger_entry(conn, entry, "done")
        ledger = storage.read_ledger(conn, name)
    context.log.info(f"rolled back: champion v{champion} -> v{target} ({config.reason})")
    metadata = _champion_metadata(cfg, target, champion, ledger)
    metadata.update(moved=True, rollback_reason=config.reason)
    context.log_event(dg.AssetMaterialization(asset_key=PRODUCTION_MODEL, metadata=metadata,
                                              description=f"rollback v{champion} -> v{target}"))


@dg.job(name=ROLLBACK_JOB, description="Point the champion alias back to an earlier promoted version (default: the previous one).")
def rollback_job():
    """Point the champion alias back to an earlier promoted version (default: the previous one)."""
    rollback_champion()
