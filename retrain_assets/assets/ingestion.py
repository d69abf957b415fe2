"""raw_data: each landed batch file stored as it arrived in DuckDB, with where it came from."""


import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
from pydantic import Field

from retrain_assets.constants import BATCH_EXTENSIONS, DUCKDB_POOL, INGESTION, RAW_DATA, TAG_FILE, TAG_FINGERPRINT
from retrain_assets.core import landing, storage
from retrain_assets.core.columns import ROW_COLUMN
from retrain_assets.metadata import markdown_table
from retrain_assets.partitions import batch_partitions
from retrain_assets.resources import RetrainSettings, Warehouse
from retrain_assets.settings import Settings


def _refuse(message: str) -> dg.Failure:
    return dg.Failure(description=message, allow_retries=False)


def locate_batch_file(settings: Settings, batch_id: str, tagged_path: str | None) -> Path:
    """The landed file of a batch, inside landing_dir: the one the sensor saw, else ``<batch_id>.csv|.parquet``.

    The batch id and the run tag are not trusted: the id must follow the landing rule for file
    names, and the tagged path must resolve inside landing_dir (links included) and be named after
    the batch, or the run fails without reading or moving anything.
    """
    landing_dir = settings.dataset.landing_dir
    try:
        landing.check_batch_id(batch_id, source="partition key")
    except landing.UnsafePathError as error:
        raise _refuse(f"{error} (partitions added by hand must be named like landed files)") from None
    if tagged_path:
        try:
            tagged = landing.contained(Path(tagged_path), landing_dir, what=f"run tag {TAG_FILE}")
        except landing.UnsafePathError as error:
            raise _refuse(f"batch {batch_id!r}: {error}") from None
        if landing.batch_id_of(tagged) != batch_id or tagged.suffix not in BATCH_EXTENSIONS:
            raise _refuse(
                f"batch {batch_id!r}: run tag {TAG_FILE} names {tagged.name!r}, which is not {batch_id}.csv or "
                f"{batch_id}.parquet; nothing was read or moved"
            )
        if tagged.is_file():
            return tagged
    found = landing.find_batch_file(landing_dir, batch_id)
    if len(found) == 1:
        try:
            return landing.contained(found[0], landing_dir, what="the landed file")
        except landing.UnsafePathError as error:
            raise _refuse(f"batch {batch_id!r}: {error}") from None
    if not found:
        raise _refuse(
            f"batch {batch_id!r}: no file {batch_id}.csv or {batch_id}.parquet in "
            f"{landing_dir}" + (f" (the sensor saw {tagged_path}, now gone)" if tagged_path else "")
        )
    raise _refuse(f"batch {batch_id!r} exists as several files {[p.name for p in found]}; keep exactly one")


def _fingerprint(path: Path) -> str:
    try:
        return landing.fingerprint(path)
    except OSError as error:
        raise dg.Failure(
            description=(
                f"cannot read {path.name!r} ({error.strerror or error}): make it readable by the user running "
                "Dagster and re-execute this run; the file is left where it is"
            ),
            allow_retries=False,
        ) from None


@dg.asset(
    key=RAW_DATA,
    partitions_def=batch_partitions,
    group_name=INGESTION,
    kinds={"duckdb", "pandas"},
    pool=DUCKDB_POOL,
    code_version="1",
)
def raw_data(context: dg.AssetExecutionContext, settings: RetrainSettings, warehouse: Warehouse) -> dg.MaterializeResult:
    """A landed batch file, stored as it arrived (CSV values as text) in DuckDB, with file, hash and arrival time."""
    cfg = settings.load()
    batch_id = context.partition_key
    path = locate_batch_file(cfg, batch_id, context.run.tags.get(TAG_FILE))
    fp = _fingerprint(path)
    seen = context.run.tags.get(TAG_FINGERPRINT)
    if seen and seen != fp:
        raise dg.Failure(
            description=(
                f"file {path.name!r} changed after the landing sensor saw it (sha256 {seen[:12]}… then, "
                f"{fp[:12]}… now); it was not ingested. Land new data under a new batch id."
            ),
            allow_retries=False,
        )

    with warehouse.get_connection() as conn:
        prior = storage.ingested_record(conn, batch_id)
        statuses = storage.batch_statuses(conn)
    if prior is not None and prior.fingerprint != fp and prior.fingerprint not in landing.rejected_fingerprints(
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
        rejection = landing.reject_file(path, cfg.rejected_dir, reason=reason, stage=RAW_DATA, fingerprint_hex=fp,
                                        landing_dir=cfg.dataset.landing_dir)
        raise dg.Failure(description=f"{reason} The file was moved to {rejection.moved_to}.",
                         metadata={"moved_to": dg.MetadataValue.path(str(rejection.moved_to))}, allow_retries=False)

    arrived_at = landing.file_arrival_time(path)
    size = path.stat().st_size
    try:
        frame = landing.read_batch(path, encoding=cfg.dataset.encoding, delimiter=cfg.dataset.csv_delimiter)
    except landing.BatchReadError as error:
        rejection = landing.reject_file(path, cfg.rejected_dir, reason=str(error), stage=RAW_DATA, fingerprint_hex=fp,
                                        landing_dir=cfg.dataset.landing_dir)
        context.log.error(f"{error}; moved to {rejection.moved_to}")
        raise dg.Failure(
            description=f"{error}. Nothing was ingested; the file was moved to {rejection.moved_to}.",
            metadata={"file": path.name, "moved_to": dg.MetadataValue.path(str(rejection.moved_to))},
            allow_retries=False,
        ) from None

    columns = [c for c in frame.columns if c != ROW_COLUMN]
    record = storage.IngestionRecord(
        batch_id=batch_id,
        file_name=path.name,
        file_path=str(path),
        file_format=path.suffix.lstrip("."),
        fingerprint=fp,
        size_bytes=size,
        rows=len(frame),
        columns=columns,
        arrived_at=arrived_at,
        ingested_at=datetime.now(timezone.utc),
        dagster_run_id=context.run_id,
    )
    with warehouse.get_connection() as conn:
        storage.write_raw_batch(conn, record, frame)
    labelled = cfg.dataset.target in columns
    context.log.info(f"ingested {path.name}: {len(frame)} rows, {len(columns)} columns, labelled={labelled}")
    later = sorted(b for b in statuses["batch_id"].tolist() if b > batch_id)
    arrival = "in order" if prior is None else "replaces an earlier version of this batch"
    if later and prior is None:
        arrival = landing.out_of_order_message(batch_id, later[-1], cfg.drift.reference_batches)
        context.log.warning(arrival)
    return dg.MaterializeResult(
        metadata={
            "file": dg.MetadataValue.path(str(path)),
            "format": record.file_format,
            "dagster/row_count": len(frame),
            "columns": dg.MetadataValue.json(columns),
            "sha256": fp,
            "size_bytes": size,
            "arrived_at": dg.MetadataValue.timestamp(arrived_at),
            "labelled": labelled,
            "arrival": arrival,
            "duckdb_table": storage.raw_table(batch_id),
            "preview": dg.MetadataValue.md(markdown_table(frame.head(5))),
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(name=c, type=str(frame[c].dtype)) for c in columns]
            ),
        },
        data_version=dg.DataVersion(fp[:16]),
    )


# --------------------------------------------------------------------------
# Replacing an ingested batch (a writer that paused, a corrected file)
# --------------------------------------------------------------------------


class ReplaceBatchConfig(dg.Config):
    """Which ingested batch to replace, and with which file."""

    batch_id: str = Field(description="The ingested batch to replace (its id, e.g. 2024-05-01).")
    file: str | None = Field(
        default=None,
        description=(
            "The complete file, inside the landing folder or the rejected area; default: the newest file refused "
            "for this batch id (the one the landing sensor moved to the rejected area)."
        ),
    )


def _replacement_file(cfg: Settings, batch_id: str, given: str | None) -> Path:
    """The file to replace a batch with, refused unless it lies in the landing folder or the rejected area."""
    if given is None:
        found = landing.latest_rejected_file(cfg.rejected_dir, batch_id)
        if found is None:
            raise _refuse(f"batch {batch_id!r}: no refused file for it in {cfg.rejected_dir / batch_id}; give config file")
        return found
    path = Path(given)
    for folder in (cfg.dataset.landing_dir, cfg.rejected_dir):
        try:
            entry = landing.contained(path, folder, what="config file")
        except landing.UnsafePathError:
            continue
        if not entry.is_file():
            raise _refuse(f"config file {given!r} is not a file")
        return entry
    raise _refuse(
        f"config file {given!r} is outside the landing folder {cfg.dataset.landing_dir} and the rejected area "
        f"{cfg.rejected_dir}: copy it into the landing folder under a temporary name (e.g. _{batch_id}.csv) and give that"
    )


@dg.op(out=dg.Out(dg.Nothing))
def replace_ingested_batch(
    context: dg.OpExecutionContext, config: ReplaceBatchConfig, settings: RetrainSettings, warehouse: Warehouse
) -> None:
    """Replace an ingested batch with a complete file: old rows and file kept in the rejected area, the new file landed for the sensor."""
    cfg = settings.load()
    try:
        batch_id = landing.check_batch_id(config.batch_id, source="config batch_id")
    except landing.UnsafePathError as error:
        raise _refuse(str(error)) from None
    landing_dir = cfg.dataset.landing_dir
    with warehouse.get_connection() as conn:
        prior = storage.ingested_record(conn, batch_id)
        old_rows = storage.read_raw_batch(conn, batch_id) if prior is not None else None
    if prior is None:
        raise _refuse(f"batch {batch_id!r} was never ingested: nothing to replace; land its file as {batch_id}.csv")
    source = _replacement_file(cfg, batch_id, config.file)
    ext = source.suffix
    if ext not in BATCH_EXTENSIONS:
        raise _refuse(f"{source.name!r} is not a .csv or .parquet file")
    new_fp = _fingerprint(source)
    if new_fp == prior.fingerprint:
        raise _refuse(f"{source.name!r} has the same contents as the ingested batch {batch_id!r}: nothing to replace")
    try:  # the file must read as a batch before anything is moved
        landing.read_batch(source, encoding=cfg.dataset.encoding, delimiter=cfg.dataset.csv_delimiter, check_name=False)
    except landing.BatchReadError as error:
        raise _refuse(f"the replacement cannot be read ({error}); batch {batch_id!r} was left as it was") from None
    destination = landing_dir / f"{batch_id}{ext}"
    in_landing = landing.find_batch_file(landing_dir, batch_id)
    for other in in_landing:
        if other.resolve() == source.resolve() or _fingerprint(other) == prior.fingerprint:
            continue
        raise _refuse(f"{other} holds other contents than both the ingested batch and the replacement: move it first")

    reason = (f"batch {batch_id!r} replaced by {source.name!r} (sha256 {new_fp[:12]}…) with the replace_batch job, "
              f"run {context.run_id}")
    kept = landing.keep_replaced_rows(old_rows, cfg.rejected_dir, batch_id, fingerprint_hex=prior.fingerprint,
                                      reason=reason)
    context.log.info(f"kept the {len(old_rows)} replaced rows of {batch_id!r} in {kept}")
    for other in in_landing:
        if other.resolve() != source.resolve():  # the old file, still landed: kept beside its rows
            moved = landing.reject_file(other, cfg.rejected_dir, reason=reason, stage=landing.REPLACED_STAGE,
                                        fingerprint_hex=prior.fingerprint, landing_dir=landing_dir)
            context.log.info(f"kept the replaced file {other.name} in {moved.moved_to}")
    if source.resolve() != destination.resolve():
        staging = landing_dir / f"_replace-{batch_id}{ext}"  # an ignored name until the atomic rename
        shutil.copy2(source, staging)
        if destination.exists():  # something landed meanwhile: never overwrite it
            raise _refuse(f"{destination} appeared while replacing; the replacement waits in {staging}")
        os.replace(staging, destination)
    if cfg.automation.ready_marker == "done_file":
        Path(f"{destination}{landing.READY_SUFFIX}").touch()
    context.log.info(
        f"{destination} now holds the replacement (sha256 {new_fp[:12]}…); the landing sensor ingests it as batch "
        f"{batch_id!r} on its next tick. The refused copy stays in {cfg.rejected_dir / batch_id}."
    )
    context.log_event(dg.AssetObservation(
        asset_key=RAW_DATA, partition=batch_id,
        metadata={
            "replaced_by": dg.MetadataValue.path(str(destination)), "sha256": new_fp,
            "replaced_sha256": prior.fingerprint, "replaced_rows_kept_in": dg.MetadataValue.path(str(kept)),
        },
    ))
