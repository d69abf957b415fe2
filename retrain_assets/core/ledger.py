"""The promotion ledger: every move of the ``champion`` alias and every approval request.

A move (promotion or rollback) is written ``pending`` before the alias moves and settled
(``done``/``aborted``) after, so a killed run leaves a trace that the next promotion reconciles
with the registry. When promotions need a person's approval, every request (action ``approval``)
is ``awaiting_approval`` until it is ``approved``, ``rejected``, ``expired`` or ``superseded``
(the rules: :mod:`retrain_assets.core.approval`). Pure Python (duckdb, no Dagster).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any, Sequence

import duckdb
import pandas as pd

from retrain_assets.core import approval
from retrain_assets.core.storage import ensure_tables, jsonable, transaction

LEDGER_COLUMNS = (
    "entry_id", "recorded_at", "settled_at", "model_name", "action", "status", "from_version", "to_version",
    "trigger", "reason", "gates_passed", "gates_json", "dagster_run_id", "mlflow_run_id", "launched_by", "note",
    "approver",
)
MOVE_ACTIONS = ("promote", "rollback")
"""Actions that move the ``champion`` alias: ``pending`` → ``done`` / ``aborted``."""
MOVE_STATUSES = ("pending", "done", "aborted")
LEDGER_ACTIONS = (*MOVE_ACTIONS, approval.ACTION)
LEDGER_STATUSES = (*MOVE_STATUSES, approval.AWAITING, *approval.DECISIONS)


def _ledger_row(entry: dict[str, Any], actions: Sequence[str], status: str) -> dict[str, Any]:
    unknown = sorted(set(entry) - set(LEDGER_COLUMNS))
    if unknown:
        raise ValueError(f"unknown ledger column(s) {unknown}")
    if entry.get("action") not in actions:
        raise ValueError(f"ledger action must be one of {tuple(actions)}, got {entry.get('action')!r}")
    row = {c: None for c in LEDGER_COLUMNS}
    row.update(entry)
    row["entry_id"] = row["entry_id"] or uuid.uuid4().hex
    row["recorded_at"] = row["recorded_at"] or datetime.now(timezone.utc)
    row["status"] = status
    if row["gates_json"] is not None and not isinstance(row["gates_json"], str):
        row["gates_json"] = json.dumps(jsonable(row["gates_json"]))
    for key in ("from_version", "to_version"):
        row[key] = None if row[key] is None else str(row[key])
    return row


def _insert_ledger_row(conn: duckdb.DuckDBPyConnection, row: dict[str, Any]) -> None:
    conn.execute(
        f"INSERT INTO promotion_ledger ({', '.join(LEDGER_COLUMNS)}) VALUES ({', '.join('?' for _ in LEDGER_COLUMNS)})",
        [row[c] for c in LEDGER_COLUMNS],
    )


def open_ledger_entry(conn: duckdb.DuckDBPyConnection, entry: dict[str, Any]) -> str:
    """Record a champion move as ``pending`` before the alias is moved; returns its ``entry_id``.

    Args:
        conn: The warehouse.
        entry: ``model_name``, ``action`` (promote/rollback), ``to_version`` and any other
            :data:`LEDGER_COLUMNS` (``gates_json`` may be a list/dict: it is stored as JSON).
    """
    ensure_tables(conn)
    row = _ledger_row(entry, MOVE_ACTIONS, "pending")
    _insert_ledger_row(conn, row)
    return row["entry_id"]


def request_approval(conn: duckdb.DuckDBPyConnection, entry: dict[str, Any]) -> tuple[str, list[str]]:
    """Record that ``to_version`` passed its gates and awaits a person's approval.

    Any earlier request of the same model still awaiting approval is ``superseded`` by this one, in
    the same transaction (one candidate awaits at a time: the one holding alias ``challenger``).

    Args:
        conn: The warehouse.
        entry: ``model_name``, ``to_version``, ``from_version`` (the champion it was judged
            against) and any other :data:`LEDGER_COLUMNS`; ``action`` is ``approval``.

    Returns:
        (the new ``entry_id``, the ids of the requests it superseded).
    """
    ensure_tables(conn)
    row = _ledger_row({"action": approval.ACTION, **entry}, (approval.ACTION,), approval.AWAITING)
    with transaction(conn, f"recording the approval request of {row['model_name']} v{row['to_version']}"):
        superseded = [r[0] for r in conn.execute(
            "UPDATE promotion_ledger SET status = 'superseded', settled_at = ?, "
            "note = 'superseded by v' || ? || ', a newer candidate that passed its gates' "
            "WHERE model_name = ? AND action = ? AND status = ? RETURNING entry_id",
            [row["recorded_at"], row["to_version"], row["model_name"], approval.ACTION, approval.AWAITING],
        ).fetchall()]
        _insert_ledger_row(conn, row)
    return row["entry_id"], superseded


def decide_approval(
    conn: duckdb.DuckDBPyConnection, entry_id: str, status: str, *, note: str | None = None,
    approver: str | None = None,
) -> None:
    """End a request that awaits approval: ``approved``, ``rejected``, ``expired`` or ``superseded``.

    Raises:
        ValueError: for another status, or when the entry does not await approval (any more).
    """
    if status not in approval.DECISIONS:
        raise ValueError(f"an approval request ends as one of {approval.DECISIONS}, not {status!r}")
    ensure_tables(conn)
    updated = conn.execute(
        "UPDATE promotion_ledger SET status = ?, settled_at = ?, note = coalesce(?, note), "
        "approver = coalesce(?, approver) WHERE entry_id = ? AND status = ? RETURNING entry_id",
        [status, datetime.now(timezone.utc), note, approver, entry_id, approval.AWAITING],
    ).fetchall()
    if not updated:
        raise ValueError(f"no ledger entry {entry_id!r} awaiting approval")


def settle_approval_requests(
    conn: duckdb.DuckDBPyConnection,
    model_name: str,
    *,
    champion: str | None,
    challenger: str | None,
    max_age_hours: float,
    now: datetime | None = None,
) -> list[approval.Settlement]:
    """End the requests that can no longer be approved (see :func:`approval.settlements`); returns them."""
    ledger = read_ledger(conn, model_name)
    ended = approval.settlements(ledger, champion=champion, challenger=challenger,
                                 max_age_hours=max_age_hours, now=now)
    for settlement in ended:
        decide_approval(conn, settlement.entry_id, settlement.status, note=settlement.note,
                        approver=settlement.approver)
    return ended


def settle_ledger_entry(conn: duckdb.DuckDBPyConnection, entry_id: str, status: str, note: str | None = None) -> None:
    """Mark a pending entry ``done`` (the alias moved) or ``aborted`` (it did not), with a note."""
    if status not in ("done", "aborted"):
        raise ValueError(f"a ledger entry settles as 'done' or 'aborted', not {status!r}")
    ensure_tables(conn)
    updated = conn.execute(
        "UPDATE promotion_ledger SET status = ?, settled_at = ?, note = coalesce(?, note) "
        "WHERE entry_id = ? AND status = 'pending' RETURNING entry_id",
        [status, datetime.now(timezone.utc), note, entry_id],
    ).fetchall()
    if not updated:
        raise ValueError(f"no pending ledger entry {entry_id!r}")


def read_ledger(conn: duckdb.DuckDBPyConnection, model_name: str | None = None) -> pd.DataFrame:
    """The promotion ledger, oldest first (all models, or one)."""
    ensure_tables(conn)
    if model_name is None:
        return conn.execute("SELECT * FROM promotion_ledger ORDER BY recorded_at, entry_id").df()
    return conn.execute(
        "SELECT * FROM promotion_ledger WHERE model_name = ? ORDER BY recorded_at, entry_id", [model_name]
    ).df()


def reconcile_ledger(conn: duckdb.DuckDBPyConnection, model_name: str, champion_version: str | None) -> list[dict]:
    """Settle entries left ``pending`` by a killed run, using where the alias points now.

    A pending entry whose ``to_version`` is the champion now did move the alias (``done``); any
    other pending entry did not, or was superseded (``aborted``). Returns the settled entries.
    """
    ensure_tables(conn)
    pending = conn.execute(
        "SELECT entry_id, to_version, dagster_run_id FROM promotion_ledger "
        "WHERE model_name = ? AND status = 'pending' ORDER BY recorded_at", [model_name]
    ).fetchall()
    settled = []
    for index, (entry_id, to_version, run_id) in enumerate(pending):
        newest = index == len(pending) - 1
        moved = newest and champion_version is not None and str(to_version) == str(champion_version)
        status = "done" if moved else "aborted"
        note = (
            f"settled later: run {run_id} stopped after moving the alias (champion is v{champion_version})"
            if moved else
            f"settled later: run {run_id} stopped before moving the alias to v{to_version} "
            f"(champion is {'v' + str(champion_version) if champion_version else 'unset'})"
        )
        settle_ledger_entry(conn, entry_id, status, note)
        settled.append({"entry_id": entry_id, "to_version": to_version, "status": status, "note": note})
    return settled


def promoted_versions(conn: duckdb.DuckDBPyConnection, model_name: str) -> list[str]:
    """Versions that have held the champion alias (done entries), oldest move first, no repeats."""
    ensure_tables(conn)
    rows = conn.execute(
        "SELECT to_version FROM promotion_ledger WHERE model_name = ? AND status = 'done' ORDER BY recorded_at",
        [model_name],
    ).fetchall()
    seen: list[str] = []
    for (version,) in rows:
        if version not in seen:
            seen.append(version)
    return seen
