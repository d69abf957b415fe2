"""validated_data: the rows of a batch that pass the Great Expectations suite; the rest quarantined."""


from pathlib import Path

import dagster as dg

from retrain_assets.checks import explain, rules_table, validation_gate_for, validation_gate_result
from retrain_assets.constants import LABELS_FOR, RAW_DATA, VALIDATED_DATA, VALIDATION
from retrain_assets.core import ingestion, label_store, late_labels, paths, rejected, storage, validation_store
from retrain_assets.core.columns import ROW_COLUMN
from retrain_assets.core.schema import SchemaStore
from retrain_assets.core.validation_rules import Limits
from retrain_assets.core.markdown import markdown_table
from retrain_assets.partitions import batch_partitions_for
from retrain_assets.resources import RetrainSettings, Warehouse
from retrain_assets.names import SINGLE, ModelNames


"""validated_data metadata of a labels file: the batches it gave labels to (scored again by the landing sensor)."""


def _move_rejected_file(
    record: storage.IngestionRecord, rejected_dir: Path, reason: str, landing_dir: Path | None = None
) -> Path | None:
    """Move the landed file of a held-back batch to the rejected area (if it is still there, unchanged,
    and inside landing_dir: a recorded path that leads elsewhere is never moved)."""
    path = Path(record.file_path)
    if landing_dir is not None:
        try:
            path = paths.contained(path, landing_dir, what="the recorded landed file")
        except paths.UnsafePathError:
            return None
    if not path.is_file() or ingestion.fingerprint(path) != record.fingerprint:
        return None
    return rejected.reject_file(
        path, rejected_dir, reason=reason, stage=VALIDATED_DATA, fingerprint_hex=record.fingerprint,
        landing_dir=landing_dir,
    ).moved_to


def _validated_data(
    context: dg.AssetExecutionContext, names: ModelNames, settings: RetrainSettings, warehouse: Warehouse
) -> dg.MaterializeResult:
    """Rows of a batch that pass the Great Expectations suite; bad rows quarantined with the rules they broke."""
    cfg = settings.load()
    batch_id = context.partition_key
    with warehouse.get_connection() as conn:
        columns = storage.raw_columns(conn, batch_id)
        record = storage.ingested_record(conn, batch_id)
    if record is None:  # raw table without a log row cannot happen through the assets
        raise dg.Failure(f"batch {batch_id!r} has no ingestion record; materialize {RAW_DATA} first")

    store = SchemaStore(cfg.schema_path)
    stored = store.load()
    if stored is not None and late_labels.is_labels_file(columns, stored):
        with warehouse.get_connection() as conn:
            raw = storage.read_raw_batch(conn, batch_id)
        return _take_labels_file(context, cfg, warehouse, raw, stored, record)
    with warehouse.get_connection() as conn:
        schema, learns_classes = validation_store.schema_for_batch(
            conn, cfg, stored, batch_id, memory_limit_mb=cfg.storage.memory_limit_mb)

    def store_schema(report) -> None:  # inside the transaction that stores the outcome
        if report.passed and (stored is None or learns_classes):
            store.save(schema, overwrite=stored is not None)
            context.log.info(f"schema stored at {cfg.schema_path} ({schema.source})")

    with warehouse.get_connection() as conn:
        report, published = validation_store.validate_stored_batch(
            conn,
            schema,
            batch_id=batch_id,
            fingerprint=record.fingerprint,
            run_id=context.run_id,
            memory_limit_mb=cfg.storage.memory_limit_mb,
            before_commit=store_schema,
            max_invalid_fraction=cfg.validation.max_invalid_fraction,
            examples=cfg.validation.examples_per_expectation,
            limits=Limits(
                range_margin=cfg.validation.range_margin,
                future_tolerance_hours=cfg.validation.future_tolerance_hours,
                max_cell_chars=cfg.validation.max_cell_chars,
            ),
        )

    moved_to = None
    if not report.passed:
        moved_to = _move_rejected_file(record, cfg.rejected_dir, report.summary, cfg.dataset.landing_dir)
        context.log.warning(report.summary)  # held back by design: a warning, as its check (checks.py)
        hint = late_labels.labels_file_hint(columns, schema)
        if hint:
            context.log.warning(f"batch {batch_id!r}: {hint}")
    elif report.quarantined_rows:
        context.log.warning(report.summary)
    else:
        context.log.info(report.summary)

    quarantine_preview = report.quarantine.head(10)[[ROW_COLUMN, "reasons"]]
    return dg.MaterializeResult(
        metadata={
            "passed": report.passed,
            "summary": report.summary,
            "labelled": report.labelled,
            "rows_in": report.rows,
            "dagster/row_count": published,
            "valid_rows": report.valid_rows,
            "quarantined_rows": report.quarantined_rows,
            "invalid_fraction": float(round(report.invalid_fraction, 6)),
            "schema_source": schema.source,
            "explanation": dg.MetadataValue.md(explain(report, moved_to)),
            "expectations": dg.MetadataValue.md(rules_table(report)),
            "quarantine_preview": dg.MetadataValue.md(markdown_table(quarantine_preview)),
            "dagster/column_schema": dg.TableSchema(
                columns=[
                    dg.TableColumn(
                        name=spec.name,
                        type=spec.kind,
                        description=_describe(spec),
                    )
                    for spec in schema.columns
                ]
                + ([dg.TableColumn(name=schema.target, type=f"target ({schema.task})")] if report.labelled else [])
            ),
        },
        check_results=[validation_gate_result(report, moved_to)],
    )


def validated_data_asset(names: ModelNames = SINGLE) -> dg.AssetsDefinition:
    """The validated_data asset of one model (plain key for a single config, ``<model>/validated_data`` in a fleet)."""

    @dg.asset(
        key=names.key(VALIDATED_DATA),
        partitions_def=batch_partitions_for(names),
        deps=names.keys(RAW_DATA),
        check_specs=[validation_gate_for(names)],
        group_name=names.group(VALIDATION),
        kinds={"great_expectations", "duckdb"},
        pool=names.duckdb_pool,
        code_version="1",
        required_resource_keys=names.resources("settings", "warehouse"),
    )
    def validated_data(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        """Rows of a batch that pass the Great Expectations suite; bad rows quarantined with the rules they broke."""
        return _validated_data(context, names, **names.bind(context, "settings", "warehouse"))

    return validated_data


validated_data = validated_data_asset()


def _take_labels_file(context: dg.AssetExecutionContext, cfg, warehouse: Warehouse, raw, schema,
                      record: storage.IngestionRecord) -> dg.MaterializeResult:
    """A labels file: attach its labels to earlier rows by id (core.late_labels); it adds no rows."""
    batch_id = context.partition_key
    ids = late_labels.id_columns(schema)
    keys = raw[ids].astype(object).where(raw[ids].notna(), None).apply(
        lambda column: column.map(lambda v: None if v is None else str(v).strip()))
    with warehouse.get_connection() as conn:
        known = label_store.rows_with_ids(conn, keys.dropna(), schema.target)
    late = late_labels.match_late_labels(raw, schema, known, batch_id=batch_id)
    report = late_labels.as_report(late, schema, cfg.validation.max_invalid_fraction)
    attached = 0
    with warehouse.get_connection() as conn:
        storage.write_validation(conn, report, fingerprint=record.fingerprint, run_id=context.run_id)
        if report.passed:
            attached = label_store.attach_labels(
                conn, batch_id, late.updates, target=schema.target, rows=late.rows, already_known=late.already_known,
                quarantined=len(late.quarantine), run_id=context.run_id,
            )
    moved_to = None
    if report.passed:
        (context.log.warning if len(late.quarantine) else context.log.info)(report.summary)
    else:
        moved_to = _move_rejected_file(record, cfg.rejected_dir, report.summary, cfg.dataset.landing_dir)
        context.log.warning(report.summary)
    labelled = late.labelled_batches if report.passed else []
    quarantine_preview = report.quarantine.head(10)[[ROW_COLUMN, "reasons"]]
    return dg.MaterializeResult(
        metadata={
            "passed": report.passed,
            "summary": report.summary,
            "kind": "labels file",
            "labels_attached": attached,
            "labels_already_known": late.already_known,
            LABELS_FOR: dg.MetadataValue.json(labelled),
            "rows_in": report.rows,
            "dagster/row_count": 0,
            "quarantined_rows": report.quarantined_rows,
            "invalid_fraction": float(round(report.invalid_fraction, 6)),
            "explanation": dg.MetadataValue.md(explain(report, moved_to)),
            "quarantine_preview": dg.MetadataValue.md(markdown_table(quarantine_preview)),
        },
        check_results=[validation_gate_result(report, moved_to)],
    )


def _describe(spec) -> str:
    parts = []
    if spec.required:
        parts.append("required")
    if spec.min is not None or spec.max is not None:
        parts.append(f"range [{spec.min}, {spec.max}]")
    if spec.categories is not None:
        parts.append(f"{len(spec.categories)} allowed categories")
    return ", ".join(parts)
