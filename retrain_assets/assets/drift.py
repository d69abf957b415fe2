"""drift_report: each validated batch compared with the reference — data, prediction and concept drift."""

import json
from datetime import datetime, timezone

import dagster as dg
import numpy as np
import pandas as pd

from retrain_assets.constants import DRIFT_REPORT, MONITORING, REVIEW_LABELS_JOB, VALIDATED_DATA
from retrain_assets.core import label_store, metrics_store, storage
from retrain_assets.core.labels import label_verdict
from retrain_assets.core.monitoring import BatchMonitoring, concept_record, monitor_batch, reference_batches_for
from retrain_assets.core.drift_warehouse import batch_drift
from retrain_assets.core.retrain import champion_holdout
from retrain_assets.core.report import plot_distributions, write_html_report
from retrain_assets.core.schema import SchemaStore
from retrain_assets.core.markdown import png_markdown
from retrain_assets.checks import held_back_message
from retrain_assets.partitions import batch_partitions_for
from retrain_assets.resources import ModelRegistry, RetrainSettings, Warehouse
from retrain_assets.names import SINGLE, ModelNames

FEATURE_TABLE_COLUMNS = (
    "feature", "kind", "test", "statistic", "p_value", "p_adjusted", "effect_metric", "effect_size", "psi",
    "missing_change", "drifted", "reason",
)

REPORT_COLUMNS = (
    "feature", "drifted", "reason", "effect_metric", "effect_size", "p_adjusted", "test", "kind", "psi",
    "missing_change",
)
"""The HTML report's main table: why a feature drifted first (every column is in its fold)."""


def _feature_table(features: pd.DataFrame) -> dg.TableMetadataValue:
    columns = [c for c in FEATURE_TABLE_COLUMNS if c in features.columns]
    types = {"drifted": "bool", "feature": "string", "kind": "string", "test": "string", "effect_metric": "string",
             "reason": "string"}
    records = []
    for row in features[columns].itertuples(index=False):
        values = {}
        for name, value in zip(columns, row):
            if types.get(name) == "bool":
                values[name] = bool(value)
            elif name in types:
                values[name] = "" if value is None else str(value)
            else:
                values[name] = None if value is None or (isinstance(value, float) and np.isnan(value)) else float(round(value, 6))
        records.append(dg.TableRecord(values))
    schema = dg.TableSchema(columns=[dg.TableColumn(c, types.get(c, "float")) for c in columns])
    return dg.MetadataValue.table(records=records, schema=schema)


def _labels_file_result(context, conn, batch_id: str) -> dg.MaterializeResult:
    files = label_store.read_label_files(conn).set_index("batch_id")
    batches = list(files.loc[batch_id, "labelled_batches"])
    message = (f"batch {batch_id!r} is a labels file (labels for earlier rows): nothing to compare; the batches it "
               f"labelled ({', '.join(batches) or 'none'}) are monitored again by the landing sensor")
    context.log.info(message)
    return dg.MaterializeResult(metadata={"reason": message, "kind": "labels file",
                                          "labels_for_batches": dg.MetadataValue.json(batches)})


def _drift_report(
    context: dg.AssetExecutionContext, names: ModelNames, settings: RetrainSettings, warehouse: Warehouse, registry: ModelRegistry
):
    """How a validated batch differs from the reference: per-feature and joint data drift, prediction drift and concept drift."""
    cfg = settings.load()
    batch_id = context.partition_key
    schema = SchemaStore(cfg.schema_path).load()
    with warehouse.get_connection() as conn:
        passed = storage.passed_batches(conn)
        if batch_id in label_store.label_file_ids(conn):
            yield _labels_file_result(context, conn, batch_id)
            return
        if batch_id not in passed:
            context.log.warning(held_back_message(batch_id, "nothing to compare"))
            return
        champion = registry.champion()
        reference_ids = reference_batches_for(batch_id, passed, champion, cfg.drift.reference_batches)
        checked = batch_drift(conn, cfg, schema, batch_id=batch_id, reference_ids=reference_ids)
        current, reference = checked.current, checked.reference
        holdout = champion_holdout(conn, cfg, champion, passed)
    result: BatchMonitoring = monitor_batch(
        cfg, schema, batch_id=batch_id, current=current, reference=reference, reference_ids=reference_ids,
        champion=champion, holdout=holdout, data=checked,
    )
    context.log.info(result.summary)

    report_dir = cfg.reports_dir / "drift"
    plot_path = report_path = None
    if result.data is not None:
        plotted = result.plot_features(cfg.drift.plot_features)
        plot_path = plot_distributions(
            reference, current, plotted, report_dir / f"{batch_id}.png",
            title=f"{batch_id} vs reference {', '.join(reference_ids[:4])}{' …' if len(reference_ids) > 4 else ''}",
        )
        report_path = write_html_report(
            report_dir / f"{batch_id}.html", title=f"Drift report — batch {batch_id}", summary=result.summary,
            table=result.data.features, image=plot_path, sections=result.sections(), columns=REPORT_COLUMNS,
        )

    record = {
        "batch_id": batch_id,
        "drift_detected": result.drift_detected,
        "data_drift": result.data_drift,
        "prediction_drift": result.prediction_drift,
        "concept_drift": result.concept_drift,
        "drift_score": result.score,
        "drifted_features": result.drifted_features,
        "domain_auc": result.domain_auc,
        "labelled": result.labelled,
        "metric": result.metric,
        "batch_metric": result.batch_metric,
        "estimated_metric": result.estimated_metric,
        "champion_version": champion.version if champion is not None else None,
        "reference_batches": reference_ids,
        "summary": result.summary,
        "features_json": result.data.features.to_json(orient="records") if result.data is not None else "[]",
        "report_path": str(report_path) if report_path else None,
        "created_at": datetime.now(timezone.utc),
        "dagster_run_id": context.run_id,
        **{k: v for k, v in concept_record(result.concept).items() if k in ("ci_low", "ci_high", "holdout_metric",
                                                                          "detectors_fired")},
    }
    verdict = None
    if result.labelled and schema is not None and schema.target in current.columns:
        batch = result.concept.batch if result.concept is not None else None
        verdict = label_verdict(
            current[schema.target], task=schema.task, known_classes=schema.classes,
            metric=batch.metric if batch is not None else None, metric_value=batch.value if batch is not None else None,
            metric_low=batch.low if batch is not None else None, metric_high=batch.high if batch is not None else None,
            agreement=result.agreement,
        )
    with warehouse.get_connection() as conn:
        metrics_store.write_drift_report(conn, record)
        label_status = label_store.flag_labels(conn, batch_id, verdict.kind, verdict.reason) if verdict else None
    if verdict is not None:
        context.log.warning(
            f"labels of batch {batch_id} look suspect ({label_status}): {verdict.reason}. They are kept out of training "
            f"and retrain triggers until a person accepts them: launch job {names.name(REVIEW_LABELS_JOB)} with batch_id "
            f"{batch_id!r} and decision accept or reject"
        )

    metadata = {
        "drift_detected": result.drift_detected,
        "reason": result.summary,
        "drifted_features": dg.MetadataValue.json(result.drifted_features),
        "drift_score": float(result.score),
        "data_drift": result.data_drift,
        "reference_batches": dg.MetadataValue.json(reference_ids),
        "n_reference": checked.n_reference,
        "n_current": checked.n_current,
        "labelled": result.labelled,
        "champion_version": champion.version if champion is not None else "none yet",
        "label_quality": (
            f"SUSPECT ({label_status}): {verdict.reason} — kept out of training and retrain triggers until accepted "
            f"with job {names.name(REVIEW_LABELS_JOB)}" if verdict is not None
            else ("ok" if result.labelled else "no labels in this batch")
        ),
    }
    if result.domain_auc is not None:
        metadata["domain_classifier_auc"] = float(result.domain_auc)
    if plot_path is not None:  # the picture before the long table, where a person sees it
        metadata["distribution_plot"] = dg.MetadataValue.md(png_markdown(
            plot_path, f"{batch_id} vs reference: distributions of {', '.join(name for name, _ in plotted)}"))
        metadata["distribution_plot_path"] = dg.MetadataValue.path(str(plot_path))
        metadata["html_report"] = dg.MetadataValue.path(str(report_path))
    if result.data is not None:
        metadata["features"] = _feature_table(result.data.features)
    if result.prediction is not None:
        metadata["prediction_drift"] = result.prediction_drift
        metadata["prediction_drift_detail"] = dg.MetadataValue.json(_plain(result.prediction))
    if result.estimated_metric is not None:
        metadata[f"estimated_{result.metric}"] = float(result.estimated_metric)
    if result.concept is not None:
        metadata["concept_drift"] = result.concept_drift
        metadata[f"batch_{result.metric}"] = float(result.concept.batch.value)
        metadata["concept_drift_detail"] = dg.MetadataValue.md(result.concept_markdown())
    if result.notes:
        metadata["notes"] = dg.MetadataValue.md("\n".join(f"- {n}" for n in result.notes))
    yield dg.MaterializeResult(metadata=metadata)


def drift_report_asset(names: ModelNames = SINGLE) -> dg.AssetsDefinition:
    """The drift_report asset of one model (plain key for a single config, ``<model>/drift_report`` in a fleet)."""

    @dg.asset(
        key=names.key(DRIFT_REPORT),
        partitions_def=batch_partitions_for(names),
        deps=names.keys(VALIDATED_DATA),
        group_name=names.group(MONITORING),
        kinds={"scikit-learn", "duckdb", "mlflow"},
        pool=names.duckdb_pool,
        code_version="1",
        output_required=False,  # a held-back batch is skipped, not failed (see checks.py)
        required_resource_keys=names.resources("settings", "warehouse", "registry"),
    )
    def drift_report(context: dg.AssetExecutionContext):
        """How a validated batch differs from the reference: per-feature and joint data drift, prediction drift and concept drift."""
        yield from _drift_report(context, names, **names.bind(context, "settings", "warehouse", "registry"))

    return drift_report


drift_report = drift_report_asset()


def _plain(value):
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
