"""What a step knows about the run it is in (why it was launched, by whom) and how it refuses."""

from pathlib import Path
from typing import Any

import dagster as dg

from retrain_assets.constants import TAG_REASON, TAG_TRIGGER
from retrain_assets.core import ingestion


def run_trigger(context: dg.AssetExecutionContext | dg.OpExecutionContext) -> tuple[str, str, str]:
    """(trigger, reason, launched_by) of the run, from its tags."""
    tags = context.run.tags
    trigger = tags.get(TAG_TRIGGER) or "manual"
    reason = tags.get(TAG_REASON) or "launched by hand"
    if tags.get("dagster/sensor_name"):
        launched_by = f"sensor {tags['dagster/sensor_name']}"
    elif tags.get("dagster/schedule_name"):
        launched_by = f"schedule {tags['dagster/schedule_name']}"
    elif tags.get("dagster/backfill"):
        launched_by = f"backfill {tags['dagster/backfill']}"
    else:
        launched_by = tags.get("user") or tags.get("dagster/user") or "manual (UI or CLI)"
    return trigger, reason, launched_by


def refusal(message: str, **metadata: Any) -> dg.Failure:
    """A failure that a retry would not fix (bad data, wrong state): the message says what to do."""
    return dg.Failure(description=message, metadata=metadata, allow_retries=False)


def file_fingerprint(path: Path) -> str:
    """The sha256 of a landed file; one the run cannot read fails the step saying what to do (the
    file is left where it is)."""
    try:
        return ingestion.fingerprint(path)
    except OSError as error:
        raise refusal(
            f"cannot read {path.name!r} ({error.strerror or error}): make it readable by the user running "
            "Dagster and re-execute this run; the file is left where it is"
        ) from None
