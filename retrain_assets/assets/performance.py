"""production_metrics: the champion's performance on each batch, the post-promotion watch, and
shadow scoring of the challenger beside the champion (evidence for a person approving it)."""

from datetime import datetime, timezone
from typing import Any

import dagster as dg
import pandas as pd

from retrain_assets.constants import DRIFT_REPORT, MONITORING, PRODUCTION_METRICS
from retrain_assets.core import approval, label_store, metrics_store, registry as reg, report, shadow, storage
from retrain_assets.core.ledger import read_ledger
from retrain_assets.core.model_registry import RegistryClient
from retrain_assets.core.registry import Champion
from retrain_assets.core.retrain import champion_holdout
from retrain_assets.core.watch import measure_batch
from retrain_assets.core.markdown import markdown_table, png_markdown
from retrain_assets.checks import held_back_message
from retrain_assets.partitions import batch_partitions_for
from retrain_assets.resources import ModelRegistry, RetrainSettings, Warehouse
from retrain_assets.views import shadow_evidence_metadata
from retrain_assets.names import SINGLE, ModelNames


def watched_previous(cfg, client: RegistryClient, conn, batch_id: str) -> Champion | None:
    """The champion the current one replaced, if ``batch_id`` is among the first
    ``automation.watch_batches`` labelled batches validated after the last promotion."""
    if cfg.automation.watch_batches == 0:
        return None
    ledger = read_ledger(conn, client.model_name)
    promotions = ledger[(ledger["status"] == "done") & (ledger["action"] == "promote") & ledger["from_version"].notna()]
    if promotions.empty:
        return None
    last = promotions.iloc[-1]
    if client.version(reg.CHAMPION_ALIAS) != str(last["to_version"]):
        return None  # rolled back or replaced since: nothing to watch
    after = storage.validations_since(conn, pd.Timestamp(last["settled_at"]).to_pydatetime())
    labelled_after = list(after.loc[after["labelled"], "batch_id"])
    if batch_id not in labelled_after[: cfg.automation.watch_batches]:
        return None
    return client.load(reg.PREVIOUS_ALIAS)


def shadow_candidate(cfg, client: RegistryClient, conn, champion: Champion | None) -> tuple[str | None, str]:
    """The challenger version to score beside the champion on this batch under
    ``promotion.shadow_scoring`` (None: none), and a sentence saying why (or why not)."""
    mode = cfg.promotion.shadow_scoring
    if mode == "never":
        return None, "off (promotion.shadow_scoring: never)"
    if champion is None:
        return None, "no champion to compare a challenger with"
    challenger = client.version(reg.CHALLENGER_ALIAS)
    if challenger is None or challenger == champion.version:
        return None, f"no challenger other than champion v{champion.version}"
    if mode == "while_awaiting_approval":
        request = approval.current_request(
            read_ledger(conn, client.model_name), champion=champion.version, challenger=challenger,
            max_age_hours=cfg.promotion.approval_max_age_hours,
        )
        if request is None:
            return None, (f"challenger v{challenger} does not await approval "
                          "(promotion.shadow_scoring: while_awaiting_approval)")
    why = "awaits approval" if mode == "while_awaiting_approval" else "promotion.shadow_scoring: always"
    return challenger, f"challenger v{challenger} scored beside champion v{champion.version} ({why})"


def load_challenger(client: RegistryClient, version: str) -> Champion | None:
    """The challenger, loaded, if it is still ``version`` (the alias may have moved meanwhile)."""
    model = client.load(reg.CHALLENGER_ALIAS)
    return model if model is not None and model.version == version else None


def drift_concept(reports: pd.DataFrame, batch_id: str, champion: Champion | None) -> dict[str, Any] | None:
    """The concept-drift verdict drift_report stored for this batch and this champion (judged once,
    there), or None (not judged, or judged for another champion)."""
    found = reports[reports["batch_id"] == batch_id]
    if champion is None or found.empty:
        return None
    row = found.iloc[-1]
    if str(row["champion_version"]) != str(champion.version) or pd.isna(row["concept_drift"]) or pd.isna(row["batch_metric"]):
        return None
    return {"batch_metric": float(row["batch_metric"]), "ci_low": float(row["ci_low"]), "ci_high": float(row["ci_high"]),
            "holdout_metric": float(row["holdout_metric"]), "concept_drift": bool(row["concept_drift"]),
            "detectors_fired": list(row["detectors_fired"]) if row["detectors_fired"] is not None else []}


def _production_metrics(
    context: dg.AssetExecutionContext, names: ModelNames, settings: RetrainSettings, warehouse: Warehouse, registry: ModelRegistry
):
    """The champion on this batch: its metric with a 95% interval and River detectors (labelled), a label-free estimate (unlabelled), the post-promotion watch, and the challenger scored beside it (shadow)."""
    cfg = settings.load()
    batch_id = context.partition_key
    client = registry.client()
    champion = registry.champion()
    with warehouse.get_connection() as conn:
        if batch_id in label_store.label_file_ids(conn):
            message = f"batch {batch_id!r} is a labels file: no rows of its own to measure the champion on"
            context.log.info(message)
            yield dg.MaterializeResult(metadata={"reason": message, "kind": "labels file"})
            return
        if batch_id not in storage.passed_batches(conn):
            context.log.warning(held_back_message(batch_id, "nothing to measure the champion on"))
            return
        # at most training.max_rows rows (a seeded sample beyond): the batch is never read whole into memory
        batch, batch_rows = storage.read_validated_capped(conn, batch_id, max_rows=cfg.training.max_rows,
                                                          seed=cfg.model.seed)
        holdout = None
        previous = None
        if champion is not None:
            passed = set(storage.passed_batches(conn))
            holdout = champion_holdout(conn, cfg, champion, passed)
            previous = watched_previous(cfg, client, conn, batch_id) if batch[cfg.dataset.target].notna().any() else None
        challenger_version, shadow_reason = shadow_candidate(cfg, client, conn, champion)
        concept = drift_concept(metrics_store.read_drift_reports(conn, batch_id), batch_id, champion)
    challenger = load_challenger(client, challenger_version) if challenger_version else None
    if challenger_version and challenger is None:
        shadow_reason = f"challenger v{challenger_version} lost its alias while this batch was measured"
    measured = measure_batch(cfg, batch_id, batch, champion, holdout=holdout, previous=previous, concept=concept)
    context.log.info(measured.summary)
    record = measured.as_record()
    record.update(created_at=datetime.now(timezone.utc), dagster_run_id=context.run_id)
    shadowed = None
    if challenger is not None and shadow.unseen_by_both(cfg, batch_id, batch, champion, challenger).empty:
        shadow_reason = (f"batch {batch_id} was trained on by champion v{champion.version} or challenger "
                         f"v{challenger.version}: not shadow-scored (a model is never scored on its own training rows)")
        challenger = None
    if challenger is not None:
        shadowed = shadow.shadow_score(cfg, batch_id, batch, champion, challenger)
        context.log.info(f"shadow: {shadowed.summary} ({shadowed.seconds:.2f} s)")
    with warehouse.get_connection() as conn:
        metrics_store.write_production_metrics(conn, record)
        if shadowed is not None:
            metrics_store.write_shadow_scores(conn, shadowed.as_record() | {
                "created_at": record["created_at"], "dagster_run_id": context.run_id})
        history = metrics_store.read_production_metrics(conn)
        shadow_history = metrics_store.read_shadow_scores(conn)

    sampled = (f"a seeded sample of {len(batch):,} of the batch's {batch_rows:,} rows (training.max_rows)"
               if len(batch) < batch_rows else None)
    if sampled:
        context.log.info(f"measured on {sampled}")
    metadata = {
        "summary": measured.summary,
        "rows_measured": sampled or f"every row ({batch_rows:,})",
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

    metadata["shadow_scoring"] = shadow_reason
    if shadowed is not None:
        metadata.update(_shadow_metadata(shadowed))
        metadata.update(shadow_evidence_metadata(warehouse, champion.version, challenger.version)[1])
    if champion is not None:
        floor = measured.floor
        plot = report.plot_metric_history(
            history, shadow_history, cfg.reports_dir / "production" / f"{batch_id}.png", metric=cfg.metric,
            floor=floor, title=f"{cfg.registered_model_name}: {cfg.metric} per batch, up to {batch_id}",
        )
        metadata["metric_plot"] = dg.MetadataValue.path(str(plot))
        metadata["metric_plot_inline"] = dg.MetadataValue.md(png_markdown(plot, f"{cfg.metric} per batch"))
    yield dg.MaterializeResult(metadata=metadata)


def production_metrics_asset(names: ModelNames = SINGLE) -> dg.AssetsDefinition:
    """The production_metrics asset of one model (plain key for a single config, ``<model>/production_metrics`` in a fleet)."""

    @dg.asset(
        key=names.key(PRODUCTION_METRICS),
        partitions_def=batch_partitions_for(names),
        deps=names.keys(DRIFT_REPORT),
        group_name=names.group(MONITORING),
        kinds={"scikit-learn", "duckdb", "mlflow"},
        pool=names.duckdb_pool,
        code_version="1",
        output_required=False,  # a held-back batch is skipped, not failed (see checks.py)
        required_resource_keys=names.resources("settings", "warehouse", "registry"),
    )
    def production_metrics(context: dg.AssetExecutionContext):
        """The champion on this batch: its metric with a 95% interval and River detectors (labelled), a label-free estimate (unlabelled), the post-promotion watch, and the challenger scored beside it (shadow)."""
        yield from _production_metrics(context, names, **names.bind(context, "settings", "warehouse", "registry"))

    return production_metrics


production_metrics = production_metrics_asset()


def _shadow_metadata(scores: shadow.ShadowScores) -> dict[str, Any]:
    """This batch, champion vs challenger: a table and the numbers a sensor or a person filters on."""
    metadata: dict[str, Any] = {
        "challenger_version": scores.challenger_version,
        "shadow": dg.MetadataValue.md(f"{scores.summary}\n\n{markdown_table(scores.comparison())}"),
        "shadow_agreement": float(scores.agreement),
        "shadow_seconds": round(float(scores.seconds), 3),
    }
    for key in ("challenger_metric", "challenger_ci_low", "challenger_ci_high", "difference", "difference_ci_low",
                "difference_ci_high", "challenger_estimated_metric", "champion_positive_rate",
                "challenger_positive_rate"):
        value = getattr(scores, key)
        if value is not None:
            metadata[f"shadow_{key}" if key.startswith("difference") else key] = float(value)
    return metadata
