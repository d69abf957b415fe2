"""The rejected area: a landed file that cannot be taken is moved there with a reason file beside it,
never deleted; rows replaced by the replace_batch job are kept there too. Pure Python (no Dagster).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from retrain_assets.core import files
from retrain_assets.core.ingestion import batch_id_of, fingerprint
from retrain_assets.core.paths import BATCH_ID_PATTERN, check_batch_id, contained


@dataclass(frozen=True)
class Rejection:
    """A refused landing file and where it now lies."""

    batch_id: str
    original: Path
    moved_to: Path
    reason: str
    stage: str
    fingerprint: str | None


def reject_file(
    path: Path,
    rejected_dir: Path,
    *,
    reason: str,
    stage: str,
    fingerprint_hex: str | None = None,
    now: datetime | None = None,
    landing_dir: Path | None = None,
) -> Rejection:
    """Move a refused file out of the landing folder, keeping it with a reason file beside it.

    The file goes to ``<rejected_dir>/<batch_id>/<UTC time>__<file name>`` and a JSON file with
    the same name plus ``.reason.json`` records the reason, the stage that refused it and its
    fingerprint. Nothing is deleted: on another filesystem the file is copied, synced and renamed
    before the original is removed (:func:`files.move_file`), and a failure leaves it where it was.

    Args:
        path: The landed file.
        rejected_dir: The rejected area (``storage.root/rejected``).
        reason: Why it was refused, in words a person reads.
        stage: Which part refused it (``landing_sensor``, ``raw_data``, ``validated_data``).
        fingerprint_hex: The file's SHA-256, if known (computed otherwise).
        now: Time of the refusal (UTC); default: now.
        landing_dir: The folder the file must lie in (the landing folder); a file elsewhere, or a
            link leading elsewhere, is never moved.

    Returns:
        Where it went and why.

    Raises:
        UnsafePathError: ``path`` is outside ``landing_dir``.
        files.StorageUnavailable: the rejected area's disk is full; the file stays where it was and
            no partial copy or reason file is left.
    """
    now = now or datetime.now(timezone.utc)
    if landing_dir is not None:
        path = contained(path, landing_dir, what="the refused file")
    batch_id = batch_id_of(path)
    safe_folder = batch_id if BATCH_ID_PATTERN.fullmatch(batch_id) else "_unnamed"
    target_dir = contained(rejected_dir / safe_folder, rejected_dir, what="the rejected folder")
    files.make_folder(target_dir)
    if fingerprint_hex is None and path.exists():
        fingerprint_hex = fingerprint(path)
    stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
    target = target_dir / f"{stamp}__{path.name}"
    copy = 1
    while target.exists() or Path(f"{target}.reason.json").exists():  # never overwrite an earlier refusal
        copy += 1
        target = target_dir / f"{stamp}-{copy}__{path.name}"
    target = contained(target, rejected_dir, what="the rejected copy")
    record = {
        "batch_id": batch_id,
        "file": path.name,
        "original_path": str(path),
        "moved_to": str(target),
        "reason": reason,
        "stage": stage,
        "fingerprint": fingerprint_hex,
        "rejected_at": now.isoformat(),
    }
    reason_file = Path(f"{target}.reason.json")
    written: list[Path] = []

    def write_reason() -> None:  # once the copy is safe, before the original is touched
        written.append(files.write_atomic(reason_file, json.dumps(record, indent=2), exclusive=True))

    try:
        files.move_file(path, target, before_commit=write_reason)
    except BaseException:
        if written and not target.exists():  # the move failed after the reason was written
            reason_file.unlink()
        raise
    return Rejection(batch_id, path, target, reason, stage, fingerprint_hex)


def rejected_fingerprints(rejected_dir: Path, batch_id: str) -> set[str]:
    """Fingerprints of every file refused so far for a batch id."""
    folder = rejected_dir / batch_id
    found: set[str] = set()
    if not folder.is_dir():
        return found
    for reason_file in folder.glob("*.reason.json"):
        try:
            fp = json.loads(reason_file.read_text(encoding="utf-8")).get("fingerprint")
        except (OSError, json.JSONDecodeError):
            continue
        if fp:
            found.add(fp)
    return found


def list_rejections(rejected_dir: Path) -> list[dict]:
    """Every reason record in the rejected area, oldest first."""
    if not rejected_dir.is_dir():
        return []
    records = []
    for reason_file in rejected_dir.glob("*/*.reason.json"):
        try:
            records.append(json.loads(reason_file.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError):
            continue
    return sorted(records, key=lambda r: r.get("rejected_at", ""))


REPLACED_STAGE = "replace_batch"
"""The stage recorded beside the rows and file of a batch that was replaced."""


def latest_rejected_file(rejected_dir: Path, batch_id: str) -> Path | None:
    """The newest file refused for a batch id that is still in the rejected area, or None."""
    check_batch_id(batch_id, source="batch id")
    for record in reversed(list_rejections(rejected_dir)):
        moved_to = Path(record.get("moved_to", ""))
        if record.get("batch_id") == batch_id and record.get("stage") != REPLACED_STAGE and moved_to.is_file():
            return moved_to
    return None


def keep_replaced_rows(
    rows: pd.DataFrame, rejected_dir: Path, batch_id: str, *, fingerprint_hex: str, reason: str,
    now: datetime | None = None,
) -> Path:
    """Keep the stored rows of a batch that is being replaced, as Parquet with a reason file, in the rejected area.

    The reason file records the replaced version's fingerprint, so that version counts as
    rejected and a new file may be taken in under the same batch id. Nothing is overwritten.

    Returns:
        The Parquet file written.
    """
    check_batch_id(batch_id, source="batch id")
    now = now or datetime.now(timezone.utc)
    folder = contained(rejected_dir / batch_id, rejected_dir, what="the rejected folder")
    folder.mkdir(parents=True, exist_ok=True)
    stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
    target = folder / f"{stamp}__replaced-rows__{batch_id}.parquet"
    copy = 1
    while target.exists():
        copy += 1
        target = folder / f"{stamp}-{copy}__replaced-rows__{batch_id}.parquet"
    buffer = io.BytesIO()
    rows.to_parquet(buffer, index=False)
    files.write_atomic(target, buffer.getvalue(), exclusive=True)  # whole or not at all
    record = {
        "batch_id": batch_id, "file": target.name, "original_path": None, "moved_to": str(target), "reason": reason,
        "stage": REPLACED_STAGE, "fingerprint": fingerprint_hex, "rejected_at": now.isoformat(),
    }
    try:
        files.write_atomic(Path(f"{target}.reason.json"), json.dumps(record, indent=2), exclusive=True)
    except BaseException:  # rows without their reason would not count as replaced: none, and try again
        target.unlink()
        raise
    return target
