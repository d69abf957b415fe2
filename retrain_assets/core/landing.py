"""Landed batch files: naming, fingerprints, reading, refusing, and deciding what is new.

A batch lands as ``<batch_id>.csv`` or ``<batch_id>.parquet`` in the landing folder. Batch ids sort
in arrival order. A file is read once it has settled; a file that cannot be taken is *moved* to the
rejected area with a reason file beside it, never deleted. Pure Python (no Dagster).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd

from retrain_assets.constants import BATCH_EXTENSIONS
from retrain_assets.core import files
from retrain_assets.core.columns import ROW_COLUMN
from retrain_assets.core.paths import (  # noqa: F401 - part of this module's interface
    BATCH_ID_PATTERN,
    UnsafePathError,
    batch_id_problem,
    check_batch_id,
    contained,
)
from retrain_assets.core.sniff import sniff_problem

_IGNORED_PREFIXES = (".", "~", "_")
_IGNORED_SUFFIXES = (".tmp", ".part", ".crdownload", ".swp", ".partial", ".filepart")
READY_SUFFIX = ".done"
"""``<batch_id>.csv.done`` beside ``<batch_id>.csv`` says the writer has finished (automation.ready_marker)."""
IGNORED_RULE = (
    "names starting with " + ", ".join(repr(p) for p in _IGNORED_PREFIXES) + " or ending in "
    + ", ".join(_IGNORED_SUFFIXES) + " are ignored as temporary files until renamed; "
    f"'{READY_SUFFIX}' files are ready markers"
)
"""The ignore rule in words, for the landing sensor's skip message."""


class BatchReadError(ValueError):
    """A landed file cannot be read as a batch; the message names the file and what is wrong."""


def is_ignored_name(name: str) -> bool:
    """True for hidden, temporary and in-progress files, which the platform leaves alone."""
    return name.startswith(_IGNORED_PREFIXES) or name.lower().endswith(_IGNORED_SUFFIXES)


def batch_id_of(path: Path) -> str:
    """The batch id a file stands for: its name without the extension."""
    return path.stem if path.suffix else path.name


def name_problem(path: Path) -> str | None:
    """Why a file's name cannot be a batch, or None if it can.

    Args:
        path: The landed file.

    Returns:
        A sentence naming the file and the fix, or None.
    """
    suffix = path.suffix.lower()
    if suffix not in BATCH_EXTENSIONS:
        shown = f"extension {path.suffix!r}" if path.suffix else "no extension"
        return (
            f"file {path.name!r} has {shown}; batches must land as <batch_id>.csv or <batch_id>.parquet"
        )
    if path.suffix != suffix:
        return f"file {path.name!r}: write the extension in lower case ({suffix})"
    problem = batch_id_problem(batch_id_of(path))
    return f"file {path.name!r}: {problem}" if problem else None


def fingerprint(path: Path, chunk_size: int = 1 << 20) -> str:
    """SHA-256 of the file's bytes, streamed (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _line_of_offset(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def read_batch(path: Path, *, encoding: str = "utf-8", delimiter: str = ",", check_name: bool = True) -> pd.DataFrame:
    """Read a landed batch exactly as it arrived.

    CSV values are kept as text (``None`` for empty cells and the usual missing markers) so that
    nothing is lost or silently coerced before validation; Parquet keeps its own types. A column
    ``_row`` holds the 1-based data row number used in every message about a row.

    Args:
        path: A ``.csv`` or ``.parquet`` file.
        encoding: Text encoding of CSV files.
        delimiter: CSV field separator.
        check_name: Refuse a name that cannot be a batch (off for a replacement file kept under
            another name; its extension still says how it is read).

    Returns:
        The batch with a leading ``_row`` column.

    Raises:
        BatchReadError: the file is empty, has no data rows, is not valid text in ``encoding``,
            is not a parseable CSV/Parquet file, or has blank/duplicated column names.
    """
    name = path.name
    problem = name_problem(path) if check_name else None
    if problem:
        raise BatchReadError(problem)
    size = path.stat().st_size
    if size == 0:
        raise BatchReadError(f"file {name!r} is empty (0 bytes)")
    sniffed = sniff_problem(path, encoding=encoding, delimiter=delimiter)
    if sniffed:
        raise BatchReadError(sniffed)
    if path.suffix == ".csv":
        frame = _read_csv(path, encoding=encoding, delimiter=delimiter)
    else:
        frame = _read_parquet(path)
    columns = [str(c) for c in frame.columns]
    blank = [i + 1 for i, c in enumerate(columns) if not c.strip() or c.startswith("Unnamed: ")]
    if blank:
        raise BatchReadError(f"file {name!r}: column(s) at position {blank} have no name in the header")
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise BatchReadError(f"file {name!r}: the header repeats column name(s) {duplicated}")
    if ROW_COLUMN in columns:
        raise BatchReadError(f"file {name!r}: column name {ROW_COLUMN!r} is reserved by the platform; rename it")
    if len(frame) == 0:
        raise BatchReadError(f"file {name!r} has a header ({len(columns)} columns) but no data rows")
    frame.columns = columns
    frame.insert(0, ROW_COLUMN, range(1, len(frame) + 1))
    return frame


def _read_csv(path: Path, *, encoding: str, delimiter: str) -> pd.DataFrame:
    name = path.name
    data = path.read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        line = _line_of_offset(data, error.start)
        snippet = data[max(0, error.start - 10) : error.start + 10]
        raise BatchReadError(
            f"file {name!r} is not valid {encoding} text: byte 0x{data[error.start]:02x} at offset "
            f"{error.start} (line {line}, near {snippet!r}); save it as {encoding} or set dataset.encoding"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise BatchReadError(f"file {name!r} holds only whitespace, no header and no rows")
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise BatchReadError(f"file {name!r} contains NUL bytes (line {line}); it is binary, not CSV text")
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            dtype=str,
            keep_default_na=True,
            skipinitialspace=False,
            on_bad_lines="error",
            engine="c",
        )
    except pd.errors.ParserError as error:
        raise BatchReadError(f"file {name!r} is not a well-formed CSV: {error}") from None
    except pd.errors.EmptyDataError:
        raise BatchReadError(f"file {name!r} has no header and no rows") from None
    except csv.Error as error:  # pragma: no cover - the C engine raises ParserError instead
        raise BatchReadError(f"file {name!r} is not a well-formed CSV: {error}") from None
    # pandas renames a repeated header name ("a", "a" -> "a", "a.1"), so look at the header as written.
    try:
        header = next(csv.reader(io.StringIO(text), delimiter=delimiter), [])
    except csv.Error as error:
        raise BatchReadError(f"file {name!r} has an unreadable header: {error}") from None
    repeated = sorted({c for c in header if c.strip() and header.count(c) > 1})
    if repeated:
        raise BatchReadError(f"file {name!r}: the header repeats column name(s) {repeated}")
    short = _short_row(text, delimiter, len(header))
    if short is not None:
        line, fields = short
        raise BatchReadError(
            f"file {name!r}: line {line} has {fields} field(s) where the header has {len(header)}: the row was cut "
            "short or a delimiter is missing (pandas would fill the gap with empty values); fix the row and land the "
            "file again"
        )
    return frame.astype(object).where(frame.notna(), None)


def _short_row(text: str, delimiter: str, width: int) -> tuple[int, int] | None:
    """(line, fields) of the first data row with fewer fields than the header (blank lines aside), or None."""
    if csv.field_size_limit() < len(text):  # one long cell is validation's to judge (max_cell_chars), not the reader's
        csv.field_size_limit(min(len(text), 2**31 - 1))
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    next(reader, None)
    for row in reader:
        if row and len(row) < width and any(cell.strip() for cell in row):
            return reader.line_num, len(row)
    return None


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as error:
        raise BatchReadError(f"file {path.name!r} is not a readable Parquet file: {error}") from None
    return table.to_pandas()


# --- Refusing files ------------------------------------------------------------------------


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


# --- Deciding what is new --------------------------------------------------------------------


@dataclass
class LandingState:
    """What the landing sensor remembers between ticks (kept in its cursor as JSON).

    Attributes:
        accepted: batch id -> fingerprint of the file a run was requested for.
        stat_cache: file name -> [size, mtime_ns, fingerprint], so unchanged files are not re-hashed.
        sizes: batch id -> size in bytes of the accepted file (to tell a file that grew from a changed one).
        reported: file name -> the notice already logged about it, so a file left in place is logged once.
        given_up: batch id -> the failed ingest run after which retries stopped (alerted once).
        labels_seen: storage id of the newest validated_data event looked at for labels files.
    """

    accepted: dict[str, str] = field(default_factory=dict)
    stat_cache: dict[str, list] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    reported: dict[str, str] = field(default_factory=dict)
    given_up: dict[str, str] = field(default_factory=dict)
    labels_seen: int | None = None

    def to_json(self) -> str:
        """Serialise for the sensor cursor."""
        data = {"accepted": self.accepted, "stat_cache": self.stat_cache}
        if self.sizes:
            data["sizes"] = self.sizes
        if self.reported:
            data["reported"] = self.reported
        if self.given_up:
            data["given_up"] = self.given_up
        if self.labels_seen is not None:
            data["labels_seen"] = self.labels_seen
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> LandingState:
        """Parse a sensor cursor (an empty or missing cursor is a fresh state)."""
        if not text:
            return cls()
        data = json.loads(text)
        return cls(
            accepted=dict(data.get("accepted", {})),
            stat_cache=dict(data.get("stat_cache", {})),
            sizes=dict(data.get("sizes", {})),
            reported=dict(data.get("reported", {})),
            given_up=dict(data.get("given_up", {})),
            labels_seen=data.get("labels_seen"),
        )


@dataclass(frozen=True)
class NewBatch:
    """A settled file to ingest."""

    batch_id: str
    path: Path
    fingerprint: str

    @property
    def run_key(self) -> str:
        """Batch id plus file fingerprint: an identical re-drop maps to the same run."""
        return f"{self.batch_id}:{self.fingerprint[:16]}"


@dataclass(frozen=True)
class RefusedFile:
    """A file the sensor will not ingest, and why."""

    path: Path
    reason: str
    fingerprint: str | None = None
    extends: bool = False


@dataclass
class LandingPlan:
    """The outcome of one look at the landing folder.

    Attributes:
        new: Settled files to ingest.
        refused: Files to move to the rejected area, with the reason.
        already_done: Batch ids whose file was already taken in.
        settling: Files changed within ``settle_seconds``.
        ignored: Temporary names and ready markers (see :data:`IGNORED_RULE`).
        waiting_marker: Files waiting for their ``.done`` marker (automation.ready_marker).
        left: Entries that cannot be taken and are left where they are (unreadable files,
            folders, dangling links, links out of the folder, a missing landing folder), name -> why.
        new_notices: The ``left`` notices not logged on an earlier tick.
        out_of_order: New batch id -> the latest batch id taken in before it, when that sorts after it.
        state: The state to store after acting on the plan.
    """

    new: list[NewBatch] = field(default_factory=list)
    refused: list[RefusedFile] = field(default_factory=list)
    already_done: list[str] = field(default_factory=list)
    settling: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    waiting_marker: list[str] = field(default_factory=list)
    left: dict[str, str] = field(default_factory=dict)
    new_notices: list[str] = field(default_factory=list)
    out_of_order: dict[str, str] = field(default_factory=dict)
    state: LandingState = field(default_factory=LandingState)


def extension_of(path: Path, prior_fingerprint: str, prior_size: int | None) -> tuple[int, int] | None:
    """How much a file grew when its first ``prior_size`` bytes are exactly the earlier file.

    Args:
        path: The file now.
        prior_fingerprint: SHA-256 of the file that was taken in.
        prior_size: Its size in bytes (None: unknown).

    Returns:
        (bytes appended, lines appended), or None when the file does not extend the earlier one.
    """
    if not prior_size or path.stat().st_size <= prior_size:
        return None
    digest = hashlib.sha256()
    remaining = prior_size
    with open(path, "rb") as handle:
        while remaining:
            chunk = handle.read(min(remaining, 1 << 20))
            if not chunk:
                return None
            digest.update(chunk)
            remaining -= len(chunk)
        if digest.hexdigest() != prior_fingerprint:
            return None
        added_bytes, added_lines, last = 0, 0, b""
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            added_bytes += len(chunk)
            added_lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last not in (b"\n", b""):
        added_lines += 1
    return added_bytes, added_lines


def extension_message(batch_id: str, file_name: str, added: tuple[int, int], prior_size: int, settle_seconds: float | None) -> str:
    """The refusal of a file that extends an ingested batch, with the command that replaces the batch."""
    added_bytes, added_lines = added
    pause = (f" (the writer probably paused longer than automation.settle_seconds = {settle_seconds:g} s: consider "
             "automation.ready_marker: done_file)") if settle_seconds is not None else ""
    return (
        f"{file_name!r} extends the ingested batch {batch_id!r}: {added_lines} more rows/lines ({added_bytes} bytes) "
        f"appended after the {prior_size} bytes that were ingested{pause}. The ingested batch is kept as it was. "
        f"To replace it with the complete file, run the replace_batch job (launchpad config "
        f"'ops: {{replace_ingested_batch: {{config: {{batch_id: {batch_id}}}}}}}', or "
        f"`dagster job execute -m retrain_assets.definitions -j replace_batch -c replace.yaml` with that config); "
        "the old rows and file are kept in the rejected area"
    )


def out_of_order_message(batch_id: str, latest: str, reference_batches: int) -> str:
    """What a batch id that sorts before batches already taken in means for the windows."""
    return (
        f"batch {batch_id!r} arrived out of order: it sorts before {latest!r}, already taken in. Batches are "
        f"ordered by id, so it counts as older than {latest!r}: before a champion exists it can join the drift "
        f"reference (the first {reference_batches} passed batches by id); it is never the holdout of a retrain "
        "(the newest labelled batch is) and it is among the oldest batches of the training window (dropped first "
        "by last_n_batches, weighted least by half_life). If it is new data, land it under an id that sorts after "
        f"{latest!r}."
    )


def _entry_problem(path: Path, landing_dir: Path) -> str | None:
    """Why a folder entry is left where it is (not a readable regular file inside the folder), or None."""
    name = path.name
    if path.is_symlink():
        if not path.exists():
            return (f"{name!r} is a dangling symbolic link (to {os.readlink(path)}): nothing to read; replace it with "
                    "the file itself. It is left in place")
        try:
            contained(path, landing_dir, what="link")
        except UnsafePathError:
            return (f"{name!r} is a symbolic link to {path.resolve()}, outside the landing folder: it is never read; "
                    "copy the file itself into the landing folder. The link is left in place")
    if path.is_dir():
        return (f"{name!r} is a directory, not a batch file: batches land as single .csv or .parquet files "
                "(a folder of part files is not read). It is left in place")
    if not path.is_file():
        return f"{name!r} is not a regular file (a pipe, socket or device): it is never read. It is left in place"
    return None


def scan_landing(
    landing_dir: Path,
    state: LandingState,
    *,
    now_ts: float,
    settle_seconds: float,
    was_rejected: Callable[[str, str], bool] = lambda batch_id, fp: False,
    ready_marker: str = "none",
) -> LandingPlan:
    """Decide what to do with every file in the landing folder.

    Rules, in order: hidden/temporary names are ignored (:data:`IGNORED_RULE`); folders, links
    that dangle or lead out of the folder, and unreadable files are left in place with a notice
    (logged once); with ``ready_marker="done_file"`` a file waits for ``<name>.done``; files
    changed within ``settle_seconds`` wait; wrong extensions and bad batch ids are refused; a batch
    id landing as two files at once is refused (ambiguous); an accepted batch id whose file now
    has different bytes is refused (history is immutable, and a file that grew is named as an
    extension) unless that earlier version was itself rejected; an identical re-drop is skipped;
    anything else is new (and flagged when its id sorts before one already taken in).

    Args:
        landing_dir: The landing folder (a missing one gives a notice).
        state: What earlier ticks accepted (not modified; the new state is in the plan).
        now_ts: Current time as a POSIX timestamp.
        settle_seconds: How long a file must be unchanged before it is read.
        was_rejected: ``(batch_id, fingerprint) -> bool``: whether that version was refused later
            (by ingestion or validation) or replaced, which allows a new file under the same id.
        ready_marker: ``none`` or ``done_file`` (automation.ready_marker).

    Returns:
        The plan; ``plan.state`` is the state to store after acting on it.
    """
    new_state = LandingState(accepted=dict(state.accepted), stat_cache={}, sizes=dict(state.sizes),
                             given_up=dict(state.given_up), labels_seen=state.labels_seen)
    plan = LandingPlan(state=new_state)

    def leave(key: str, why: str) -> None:
        plan.left[key] = why
        new_state.reported[key] = why
        if state.reported.get(key) != why:
            plan.new_notices.append(why)

    try:
        entries = sorted(landing_dir.iterdir()) if landing_dir.is_dir() else None
    except OSError as error:
        entries = None
        leave(str(landing_dir), f"cannot list the landing folder {landing_dir}: {error.strerror or error}")
    if entries is None:
        if not plan.left:
            leave(str(landing_dir), f"the landing folder {landing_dir} (dataset.landing_dir) does not exist or is not "
                                    "a folder: create it or correct the setting")
        return plan

    candidates: dict[str, list[tuple[Path, str, int]]] = {}
    for path in entries:
        if is_ignored_name(path.name) or path.name.endswith(READY_SUFFIX):
            plan.ignored.append(path.name)
            continue
        problem = _entry_problem(path, landing_dir)
        if problem:
            leave(path.name, problem)
            continue
        try:
            st = path.stat()
            cached = state.stat_cache.get(path.name)
            unchanged = bool(cached) and cached[0] == st.st_size and cached[1] == st.st_mtime_ns
            if (ready_marker == "done_file" and not unchanged and not name_problem(path)
                    and not (landing_dir / f"{path.name}{READY_SUFFIX}").exists()):
                plan.waiting_marker.append(path.name)  # a marker removed after the file was taken in is fine
                continue
            if now_ts - st.st_mtime < settle_seconds:
                plan.settling.append(path.name)
                continue
            if unchanged:
                fp = cached[2]
            else:
                fp = fingerprint(path)
        except FileNotFoundError:
            continue
        except OSError as error:
            leave(path.name, f"cannot read {path.name!r} ({error.strerror or error}): make it readable by the user "
                             "running Dagster; it is left in place and taken once readable")
            continue
        new_state.stat_cache[path.name] = [st.st_size, st.st_mtime_ns, fp]
        problem = name_problem(path)
        if problem:
            plan.refused.append(RefusedFile(path, problem, fp))
            continue
        candidates.setdefault(batch_id_of(path), []).append((path, fp, st.st_size))

    for batch_id in sorted(candidates):
        files = candidates[batch_id]
        known = state.accepted.get(batch_id)
        if len(files) > 1:
            keep = [f for f in files if f[1] == known]
            names = ", ".join(repr(p.name) for p, _, _ in files)
            for path, fp, size in files:
                if keep and (path, fp, size) == keep[0]:
                    plan.already_done.append(batch_id)
                    continue
                plan.refused.append(
                    RefusedFile(
                        path,
                        f"batch id {batch_id!r} landed as several files ({names}); one batch id must be one file",
                        fp,
                    )
                )
            continue
        path, fp, size = files[0]
        if known == fp:
            plan.already_done.append(batch_id)
        elif known is not None and not was_rejected(batch_id, known):
            prior_size = state.sizes.get(batch_id) or next(  # cursors written before `sizes` existed
                (entry[0] for entry in state.stat_cache.values() if len(entry) == 3 and entry[2] == known), None
            )
            try:
                added = extension_of(path, known, prior_size)
            except OSError:
                added = None
            if added:
                reason = extension_message(batch_id, path.name, added, prior_size, settle_seconds)
            else:
                reason = (
                    f"batch {batch_id!r} was already ingested from a file with sha256 {known[:12]}…; "
                    f"{path.name!r} now has different contents (sha256 {fp[:12]}…). Ingested batches are "
                    "never overwritten: land the corrected data under a new batch id (or replace the batch with "
                    f"the replace_batch job, batch_id: {batch_id}; the old one is kept)"
                )
            plan.refused.append(RefusedFile(path, reason, fp, extends=bool(added)))
        else:
            later = sorted(b for b in state.accepted if b > batch_id)
            if later:
                plan.out_of_order[batch_id] = later[-1]
            plan.new.append(NewBatch(batch_id, path, fp))
            new_state.accepted[batch_id] = fp
            new_state.sizes[batch_id] = size
    for refused in plan.refused:
        new_state.stat_cache.pop(refused.path.name, None)
    return plan


def find_batch_file(landing_dir: Path, batch_id: str, extensions: Iterable[str] = BATCH_EXTENSIONS) -> list[Path]:
    """The landed files that could hold ``batch_id`` (normally one); ``batch_id`` is checked first.

    Raises:
        UnsafePathError: ``batch_id`` is not a batch id.
    """
    check_batch_id(batch_id, source="batch id")
    return [landing_dir / f"{batch_id}{ext}" for ext in extensions if (landing_dir / f"{batch_id}{ext}").is_file()]


def file_arrival_time(path: Path) -> datetime:
    """When the file landed (its modification time, UTC)."""
    return datetime.fromtimestamp(os.stat(path).st_mtime, tz=timezone.utc)
