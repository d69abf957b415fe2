"""Landed batch files: naming, fingerprints, reading, refusing, and deciding what is new.

A batch lands as ``<batch_id>.csv`` or ``<batch_id>.parquet`` in the landing folder. Batch ids sort
in arrival order. A file is read once it has settled; a file that cannot be taken is *moved* to the
rejected area with a reason file beside it, never deleted. Pure Python (no Dagster).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

from retrain_assets.constants import BATCH_EXTENSIONS
from retrain_assets.core.ingestion import READY_SUFFIX, batch_id_of, fingerprint, is_ignored_name, name_problem
from retrain_assets.core.paths import UnsafePathError, check_batch_id, contained


# --- Refusing files ------------------------------------------------------------------------


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
