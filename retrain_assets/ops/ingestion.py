"""The op of the replace_batch job: an ingested batch replaced by a complete file (a writer that
paused, a corrected file), the old rows and file kept in the rejected area."""

import os
import shutil
from pathlib import Path

import dagster as dg
from pydantic import Field

from retrain_assets.constants import BATCH_EXTENSIONS, RAW_DATA
from retrain_assets.core import ingestion, landing, paths, rejected, storage
from retrain_assets.names import names_of_run
from retrain_assets.resources import RetrainSettings, Warehouse
from retrain_assets.runs import file_fingerprint
from retrain_assets.runs import refusal as _refuse
from retrain_assets.settings import Settings


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
        found = rejected.latest_rejected_file(cfg.rejected_dir, batch_id)
        if found is None:
            raise _refuse(f"batch {batch_id!r}: no refused file for it in {cfg.rejected_dir / batch_id}; give config file")
        return found
    path = Path(given)
    for folder in (cfg.dataset.landing_dir, cfg.rejected_dir):
        try:
            entry = paths.contained(path, folder, what="config file")
        except paths.UnsafePathError:
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
        batch_id = paths.check_batch_id(config.batch_id, source="config batch_id")
    except paths.UnsafePathError as error:
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
    new_fp = file_fingerprint(source)
    if new_fp == prior.fingerprint:
        raise _refuse(f"{source.name!r} has the same contents as the ingested batch {batch_id!r}: nothing to replace")
    try:  # the file must read as a batch before anything is moved
        ingestion.read_batch(source, encoding=cfg.dataset.encoding, delimiter=cfg.dataset.csv_delimiter, check_name=False)
    except ingestion.BatchReadError as error:
        raise _refuse(f"the replacement cannot be read ({error}); batch {batch_id!r} was left as it was") from None
    destination = landing_dir / f"{batch_id}{ext}"
    in_landing = landing.find_batch_file(landing_dir, batch_id)
    for other in in_landing:
        if other.resolve() == source.resolve() or file_fingerprint(other) == prior.fingerprint:
            continue
        raise _refuse(f"{other} holds other contents than both the ingested batch and the replacement: move it first")

    reason = (f"batch {batch_id!r} replaced by {source.name!r} (sha256 {new_fp[:12]}…) with the replace_batch job, "
              f"run {context.run_id}")
    kept = rejected.keep_replaced_rows(old_rows, cfg.rejected_dir, batch_id, fingerprint_hex=prior.fingerprint,
                                      reason=reason)
    context.log.info(f"kept the {len(old_rows)} replaced rows of {batch_id!r} in {kept}")
    for other in in_landing:
        if other.resolve() != source.resolve():  # the old file, still landed: kept beside its rows
            moved = rejected.reject_file(other, cfg.rejected_dir, reason=reason, stage=rejected.REPLACED_STAGE,
                                        fingerprint_hex=prior.fingerprint, landing_dir=landing_dir)
            context.log.info(f"kept the replaced file {other.name} in {moved.moved_to}")
    if source.resolve() != destination.resolve():
        staging = landing_dir / f"_replace-{batch_id}{ext}"  # an ignored name until the atomic rename
        shutil.copy2(source, staging)
        if destination.exists():  # something landed meanwhile: never overwrite it
            raise _refuse(f"{destination} appeared while replacing; the replacement waits in {staging}")
        os.replace(staging, destination)
    if cfg.automation.ready_marker == "done_file":
        Path(f"{destination}{ingestion.READY_SUFFIX}").touch()
    context.log.info(
        f"{destination} now holds the replacement (sha256 {new_fp[:12]}…); the landing sensor ingests it as batch "
        f"{batch_id!r} on its next tick. The refused copy stays in {cfg.rejected_dir / batch_id}."
    )
    context.log_event(dg.AssetObservation(
        asset_key=names_of_run(context.run.tags).key(RAW_DATA), partition=batch_id,
        metadata={
            "replaced_by": dg.MetadataValue.path(str(destination)), "sha256": new_fp,
            "replaced_sha256": prior.fingerprint, "replaced_rows_kept_in": dg.MetadataValue.path(str(kept)),
        },
    ))
