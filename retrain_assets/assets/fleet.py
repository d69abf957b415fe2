"""fleet_health: every model of a fleet on one page (verdict, champion, last retrain, cost), and
the model files that could not be loaded."""

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dagster as dg

from retrain_assets.constants import MODEL_HEALTH
from retrain_assets.core.markdown import markdown_table
from retrain_assets.names import ModelNames

FLEET_HEALTH = "fleet_health"
FLEET_GROUP = "fleet"
SHOWN = ("verdict", "summary", "champion_version", "champion_since", "last_retrain", "retrains",
         "retrain_fit_seconds", "next_step")


def fleet_rows(instance: dg.DagsterInstance, models: list[str], errors: list[tuple[Path, str]]) -> list[dict[str, Any]]:
    """One row per model from its newest model_health materialization, then one per file left out."""
    rows = []
    for model in models:
        records = instance.fetch_materializations(ModelNames(model).key(MODEL_HEALTH), limit=1).records
        meta = records[0].asset_materialization.metadata if records and records[0].asset_materialization else {}
        row: dict[str, Any] = {"model": model}
        for key in SHOWN:
            row[key] = meta[key].value if key in meta else ""
        if not meta:
            row["verdict"], row["summary"] = "unknown", "model_health has not been materialized yet"
        row["refreshed (UTC)"] = (datetime.fromtimestamp(records[0].timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M")
                                  if records else "")
        rows.append(row)
    for path, message in errors:
        rows.append({"model": path.stem, "verdict": "config_error", "summary": f"{path.name} not loaded: {message}",
                     **{key: "" for key in SHOWN[2:]}, "refreshed (UTC)": ""})
    return rows


def fleet_health_asset(models: list[str], errors: list[tuple[Path, str]]) -> dg.AssetsDefinition:
    """The fleet view for these models (and these files left out)."""

    @dg.asset(
        key=FLEET_HEALTH,
        deps=[ModelNames(model).key(MODEL_HEALTH) for model in models],
        group_name=FLEET_GROUP,
        kinds={"dagster"},
    )
    def fleet_health(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        """Every model of the fleet at one look: verdict, champion, last retrain and cost; files left out."""
        rows = fleet_rows(context.instance, models, errors)
        counts: dict[str, int] = {}
        for row in rows:
            counts[str(row["verdict"])] = counts.get(str(row["verdict"]), 0) + 1
        summary = ", ".join(f"{n} {verdict.replace('_', ' ')}" for verdict, n in sorted(counts.items()))
        return dg.MaterializeResult(metadata={
            "fleet": dg.MetadataValue.md(f"**{len(models)} models** ({summary})\n\n" + markdown_table(rows, width=300)),
            "models": len(models),
            "models_left_out": len(errors),
            "unhealthy": sum(1 for row in rows if row["verdict"] not in ("healthy",)),
            "verdicts": dg.MetadataValue.json(counts),
        })

    return fleet_health
