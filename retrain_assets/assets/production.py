"""production_metrics: the champion's performance on each batch, and the post-promotion watch."""

from datetime import datetime, timezone

import dagster as dg
import pandas as pd

from retrain_assets.assets.monitoring import drift_report
from retrain_assets.constants import DUCKDB_POOL, MONITORING, PRODUCTION_METRICS
from retrain_assets.core import registry as reg
from retrain_assets.core import storage
from retrain_assets.core.registry import load_champion
from retrain_assets.core.watch import measure_batch
from retrain_assets.partitions import batch_partitions
from retrain_assets.resources import ModelRegistry, RetrainSettings, Warehouse


def watched_previous(cfg, conn, batch_id: str):
    """The champion the current one replaced, if ``batch_id`` is among the first
    ``automation.watch_batches`` labelled batches validated after the last promotion."""
    if cfg.automation.watch_batches == 0:
        return None
    ledger = storage.read_ledger(conn, cfg.registered_model_name)
    promotions = ledger[(ledger["status"] == "done") & (ledger["action"] == "promote") & ledger["from_version"].notna()]
    if promotions.empty:
        return None
    last = promotions.iloc[-1]
    uri, name = cfg.mlflow_tracking_uri, cfg.registered_model_name
    if reg.alias_version(uri, name, reg.CHAMPION_ALIAS) != str(last["to_version"]):
        return None  # rolled back or replaced since: nothing to watch
    after = storage.validations_since(conn, pd.Timestamp(last["settled_at"]).to_pydatetime())
    labelled_after = list(after.loc[after["labelled"], "batch_id"])
    if batch_id not in labelled_after[: cfg.automation.watch_batches]:
        return None
    return load_champion(uri, name, alias=reg.PREVIOUS_ALIAS)


@dg.asset(
    key=PRODUCTION_METRICS,
    partitions_def=batch_partitions,
    deps=[drift_report],
    group_name=MONITORING,
    kinds={"scikit-learn", "duckdb", "mlflow"},
    pool=DUCKDB_POOL,
    code_version="1",
)
def production_metrics(
    context: dg.AssetExecutionContext, settings: RetrainSettings, warehouse: Warehouse, registry: ModelRegistry
) -> dg.MaterializeResult:
    """The champion on this batch: its metric with a 95% interval and River detectors (labelled), a label-free estimate (unlabelled), and the post-promotion watch."""
    cfg = settings.load()
    batch_id = context.partition_key
    champion = registry.champion()
    with warehouse.get_connection() as conn:
        if batch_id not in storage.passed_batches(conn):
            raise dg.Failure(f"batch {batch_id!r} has not passed validation; nothing to measure", allow_retries=False)
        batch = storage.read_validated(conn, [batch_id])
        holdout = None
        previous = None
        if champion is not None:
            passed = set(storage.passed_batches(conn))
            holdout = storage.read_validated(conn, [b for b in champion.holdout_batches if b in passed])
            previous = watched_previous(cfg, conn, batch_id) if batch[cfg.dataset.target].notna().any() else None
    measured = measure_batch(cfg, batch_id, batch, champion, holdout=holdout, previous=previous)
    context.log.info(measured.summary)
    record = measured.as_record()
    record.update(created_at=datetime.now(timezone.utc), dagster_run_id=context.run_id)
    with warehouse.get_connection() as conn:
        storage.write_production_metrics(conn, record)

    metadata = {
        "summary": measured.summary,
        "champion_version": measured.champion_version or "none yet",
        "labelled": measured.labelled,
        "declining": measured.declining,
        "rollback_recommended": measured.rollback_recommended,
    }
    for key in ("batch_metric", "ci_low", "ci_high", "holdout_metric", "floor", "estimated_metric",
                "watch_difference", "watch_ci_low"):
        value = getattr(measured, key)
        if value is not None:
            metadata[key] = float(value)
    for key in ("below_floor", "degraded"):
        if getattr(measured, key) is not None:
            metadata[key] = bool(getattr(measured, key))
    if measured.detectors_fired:
        metadata["detectors_fired"] = dg.MetadataValue.json(measured.detectors_fired)
    if measured.watch_previous_version:
        metadata["watch_previous_version"] = measured.watch_previous_version
    return dg.MaterializeResult(metadata=metadata)
