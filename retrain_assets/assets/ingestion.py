"""raw_data: each landed batch file stored as it arrived in DuckDB, with where it came from."""


from datetime import datetime, timezone
from pathlib import Path

import dagster as dg

from retrain_assets.checks import file_check_for, file_refused
from retrain_assets.constants import (
    BATCH_EXTENSIONS, FILE_CHECK, INGESTION, RAW_DATA, TAG_FILE, TAG_FINGERPRINT,
)
from retrain_assets.core import ingestion, landing, paths, rejected, storage
from retrain_assets.core.markdown import markdown_table
from retrain_assets.partitions import batch_partitions_for
from retrain_assets.resources import RetrainSettings, Warehouse
from retrain_assets.runs import file_fingerprint, refusal
from retrain_assets.settings import Settings
from retrain_assets.names import SINGLE, ModelNames


def locate_batch_file(settings: Settings, batch_id: str, tagged_path: str | None) -> Path:
    """The landed file of a batch, inside landing_dir: the one the sensor saw, else ``<batch_id>.csv|.parquet``.

    The batch id and the run tag are not trusted: the id must follow the landing rule for file
    names, and the tagged path must resolve inside landing_dir (links included) and be named after
    the batch, or the run fails without reading or moving anything.
    """
    landing_dir = settings.dataset.landing_dir
    try:
        paths.check_batch_id(batch_id, source="partition key")
    except paths.UnsafePathError as error:
        raise refusal(f"{error} (partitions added by hand must be named like landed files)") from None
    if tagged_path:
        try:
            tagged = paths.contained(Path(tagged_path), landing_dir, what=f"run tag {TAG_FILE}")
        except paths.UnsafePathError as error:
            raise refusal(f"batch {batch_id!r}: {error}") from None
        if ingestion.batch_id_of(tagged) != batch_id or tagged.suffix not in BATCH_EXTENSIONS:
            raise refusal(
                f"batch {batch_id!r}: run tag {TAG_FILE} names {tagged.name!r}, which is not {batch_id}.csv or "
                f"{batch_id}.parquet; nothing was read or moved"
            )
        if tagged.is_file():
            return tagged
    found = landing.find_batch_file(landing_dir, batch_id)
    if len(found) == 1:
        try:
            return paths.contained(found[0], landing_dir, what="the landed file")
        except paths.UnsafePathError as error:
            raise refusal(f"batch {batch_id!r}: {error}") from None
    if not found:
        raise refusal(
            f"batch {batch_id!r}: no file {batch_id}.csv or {batch_id}.parquet in "
            f"{landing_dir}" + (f" (the sensor saw {tagged_path}, now gone)" if tagged_path else "")
        )
    raise refusal(f"batch {batch_id!r} exists as several files {[p.name for p in found]}; keep exactly one")


def _raw_data(context: dg.AssetExecutionContext, names: ModelNames, settings: RetrainSettings, warehouse: Warehouse):
    """A landed batch file, stored as it arrived (CSV values as text) in DuckDB, with file, hash and arrival time."""
    cfg = settings.load()
    batch_id = context.partition_key
    path = locate_batch_file(cfg, batch_id, context.run.tags.get(TAG_FILE))
    fp = file_fingerprint(path)
    seen = context.run.tags.get(TAG_FINGERPRINT)
    if seen and seen != fp:
        reason = (f"file {path.name!r} changed after the landing sensor saw it (sha256 {seen[:12]}… then, "
                  f"{fp[:12]}… now); it was not ingested. Land new data under a new batch id.")
        context.log.warning(reason)
        yield file_refused(reason, file=path.name)
        return

    with warehouse.get_connection() as conn:
        prior = storage.ingested_record(conn, batch_id)
        statuses = storage.batch_statuses(conn)
    if prior is not None and prior.fingerprint != fp and prior.fingerprint not in rejected.rejected_fingerprints(
        cfg.rejected_dir, batch_id
    ):
        added = landing.extension_of(path, prior.fingerprint, prior.size_bytes)
        if added:
            reason = landing.extension_message(batch_id, path.name, added, prior.size_bytes, None)
        else:
            reason = (
                f"batch {batch_id!r} was already ingested from {prior.file_name!r} (sha256 {prior.fingerprint[:12]}…) "
                f"on {prior.ingested_at:%Y-%m-%d %H:%M} UTC; {path.name!r} has different contents "
                f"(sha256 {fp[:12]}…). Ingested batches are never overwritten: land the data under a new batch id "
                f"(or replace the batch with the replace_batch job, batch_id: {batch_id}; the old one is kept)."
            )
        rejection = rejected.reject_file(path, cfg.rejected_dir, reason=reason, stage=RAW_DATA, fingerprint_hex=fp,
                                        landing_dir=cfg.dataset.landing_dir)
        context.log.warning(f"{reason} The file was moved to {rejection.moved_to}.")
        yield file_refused(f"{reason} The file was moved to {rejection.moved_to}.", file=path.name,
                           moved_to=dg.MetadataValue.path(str(rejection.moved_to)))
        return

    arrived_at = landing.file_arrival_time(path)
    size = path.stat().st_size
    record = storage.IngestionRecord(
        batch_id=batch_id,
        file_name=path.name,
        file_path=str(path),
        file_format=path.suffix.lstrip("."),
        fingerprint=fp,
        size_bytes=size,
        rows=0,  # rows and columns are counted as the file is stored
        columns=[],
        arrived_at=arrived_at,
        ingested_at=datetime.now(timezone.utc),
        dagster_run_id=context.run_id,
    )
    try:
        with warehouse.get_connection() as conn:
            record = ingestion.ingest_batch(conn, path, record, encoding=cfg.dataset.encoding,
                                            delimiter=cfg.dataset.csv_delimiter,
                                            memory_limit_mb=cfg.storage.memory_limit_mb)
            preview = ingestion.batch_preview(conn, batch_id)
    except ingestion.BatchReadError as error:
        rejection = rejected.reject_file(path, cfg.rejected_dir, reason=str(error), stage=RAW_DATA, fingerprint_hex=fp,
                                        landing_dir=cfg.dataset.landing_dir)
        reason = f"{error}. Nothing was ingested; the file was moved to {rejection.moved_to}."
        context.log.warning(reason)
        yield file_refused(reason, file=path.name, moved_to=dg.MetadataValue.path(str(rejection.moved_to)))
        return

    columns = record.columns
    labelled = cfg.dataset.target in columns
    context.log.info(f"ingested {path.name}: {record.rows} rows, {len(columns)} columns, labelled={labelled}")
    later = sorted(b for b in statuses["batch_id"].tolist() if b > batch_id)
    arrival = "in order" if prior is None else "replaces an earlier version of this batch"
    if later and prior is None:
        arrival = landing.out_of_order_message(batch_id, later[-1], cfg.drift.reference_batches)
        context.log.warning(arrival)
    yield dg.MaterializeResult(
        check_results=[dg.AssetCheckResult(check_name=FILE_CHECK, passed=True,
                                           description=f"{path.name}: {record.rows} rows, {len(columns)} columns")],
        metadata={
            "file": dg.MetadataValue.path(str(path)),
            "format": record.file_format,
            "dagster/row_count": record.rows,
            "columns": dg.MetadataValue.json(columns),
            "sha256": fp,
            "size_bytes": size,
            "arrived_at": dg.MetadataValue.timestamp(arrived_at),
            "labelled": labelled,
            "arrival": arrival,
            "duckdb_table": storage.raw_table(batch_id),
            "preview": dg.MetadataValue.md(markdown_table(preview)),
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(name=c, type=str(preview[c].dtype)) for c in columns]
            ),
        },
        data_version=dg.DataVersion(fp[:16]),
    )


def raw_data_asset(names: ModelNames = SINGLE) -> dg.AssetsDefinition:
    """The raw_data asset of one model (plain key for a single config, ``<model>/raw_data`` in a fleet)."""

    @dg.asset(
        key=names.key(RAW_DATA),
        partitions_def=batch_partitions_for(names),
        group_name=names.group(INGESTION),
        kinds={"duckdb", "pandas"},
        pool=names.duckdb_pool,
        code_version="1",
        check_specs=[file_check_for(names)],
        output_required=False,  # a refused file is a failed check in a run that succeeds (see checks.py)
        required_resource_keys=names.resources("settings", "warehouse"),
    )
    def raw_data(context: dg.AssetExecutionContext):
        """A landed batch file, stored as it arrived (CSV values as text) in DuckDB, with file, hash and arrival time."""
        yield from _raw_data(context, names, **names.bind(context, "settings", "warehouse"))

    return raw_data


raw_data = raw_data_asset()
