"""Dagster metadata for what a person reviews before and after the champion moves: the promotion
ledger, the champion's URIs, and the shadow evidence of a challenger. Shared by production_model,
production_metrics and the rollback/approval ops."""

from typing import Any

import dagster as dg
import pandas as pd

from retrain_assets.core import metrics_store, registry as reg, shadow

from retrain_assets.core.model_registry import RegistryClient
from retrain_assets.core.markdown import inert, markdown_table

LEDGER_SHOWN = ("recorded_at", "action", "status", "move", "trigger", "gates_passed", "launched_by", "approver",
                "dagster_run_id")
"""The ledger table's columns; each entry's reason and note follow it as a list, read in full (in a
table column of their own they were squeezed to a few characters by the ten beside them)."""


def ledger_markdown(ledger: pd.DataFrame, limit: int = 10) -> dg.MetadataValue:
    """The newest ``limit`` ledger entries, newest first: a table, then why each was made."""
    shown = ledger.tail(limit).iloc[::-1].copy()
    if shown.empty:
        return dg.MetadataValue.md("_(no promotion or rollback yet)_")
    shown["recorded_at"] = shown["recorded_at"].astype(str).str.slice(0, 19)
    shown["dagster_run_id"] = shown["dagster_run_id"].astype(str).str.slice(0, 8)
    version = lambda v: "none" if v is None or pd.isna(v) else f"v{v}"  # noqa: E731
    shown["move"] = [f"{version(a)} → {version(b)}" for a, b in zip(shown["from_version"], shown["to_version"])]
    table = markdown_table(shown[[c for c in LEDGER_SHOWN if c in shown.columns]])
    why = []
    for row in shown.itertuples(index=False):
        note = getattr(row, "note", None)
        text = str(getattr(row, "reason", "") or "") + (f" — note: {note}" if note is not None and not pd.isna(note)
                                                        and str(note) else "")
        why.append(f"- {row.recorded_at} {row.action} {row.move}: {inert(text)[:600]}")
    return dg.MetadataValue.md(table + "\n\n**Why:**\n\n" + "\n".join(why))


def champion_metadata(client: RegistryClient, champion: str, previous: str | None, ledger: pd.DataFrame) -> dict[str, Any]:
    """What production_model shows about the champion after a move (or none)."""
    return {
        "champion_version": champion,
        "previous_version": previous or "none",
        "champion_uri": client.uri(alias=reg.CHAMPION_ALIAS),
        "version_uri": client.uri(champion),
        "registered_model": client.model_name,
        "ledger": ledger_markdown(ledger),
    }


def shadow_evidence_metadata(warehouse, champion: str | None, challenger: str) -> tuple[str, dict[str, Any]]:
    """The shadow evidence of ``challenger`` against ``champion`` so far: a sentence, and metadata
    (the sentence with a per-batch table, the verdict, the combined difference and its interval)."""
    if champion is None:
        return "no shadow evidence: there is no champion to compare with", {}
    with warehouse.get_connection() as conn:
        rows = metrics_store.read_shadow_scores(conn, champion_version=champion, challenger_version=challenger)
    if rows.empty:
        sentence = (f"no shadow evidence: no batch has been scored by both champion v{champion} and challenger "
                    f"v{challenger} yet (promotion.shadow_scoring: it starts with the next batch)")
        return sentence, {"shadow_evidence": sentence}
    evidence = shadow.shadow_evidence(rows)
    metadata: dict[str, Any] = {
        "shadow_evidence": dg.MetadataValue.md(f"{evidence.summary}\n\n{markdown_table(shadow.evidence_table(rows))}"),
        "shadow_verdict": evidence.verdict,
        "shadow_batches": evidence.labelled_batches + evidence.unlabelled_batches,
    }
    if evidence.difference is not None:
        metadata["shadow_difference_overall"] = float(evidence.difference)
    if evidence.ci_low is not None:
        metadata.update(shadow_difference_overall_ci_low=float(evidence.ci_low),
                        shadow_difference_overall_ci_high=float(evidence.ci_high))
    return evidence.summary, metadata
