"""Approval requests in the promotion ledger: how each one ends (core/approval.py) and how the
ledger stores them (core/ledger.py), including a warehouse created before approvals existed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import duckdb
import pytest

from retrain_assets.core import approval, storage
from retrain_assets.core.ledger import (
    decide_approval,
    open_ledger_entry,
    promoted_versions,
    read_ledger,
    reconcile_ledger,
    request_approval,
    settle_approval_requests,
    settle_ledger_entry,
)

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc)


@pytest.fixture()
def conn(tmp_path):
    connection = duckdb.connect(str(tmp_path / "w.duckdb"))
    yield connection
    connection.close()


def promote(conn, version: str, from_version: str | None = None, approver: str | None = None) -> None:
    entry = open_ledger_entry(conn, {"model_name": "m", "action": "promote", "from_version": from_version,
                                             "to_version": version, "approver": approver,
                                             "recorded_at": NOW - timedelta(days=30 if from_version is None else 0)})
    settle_ledger_entry(conn, entry, "done")


def ask(conn, version: str, champion: str | None, hours_ago: float = 1.0) -> str:
    entry, _ = request_approval(conn, {"model_name": "m", "from_version": champion, "to_version": version,
                                               "recorded_at": NOW - timedelta(hours=hours_ago)})
    return entry


def statuses(conn) -> list[tuple[str, str, str]]:
    ledger = read_ledger(conn, "m")
    return list(zip(ledger["action"], ledger["status"], ledger["to_version"]))


def test_a_request_awaits_until_something_ends_it(conn):
    promote(conn, "1")
    entry = ask(conn, "2", "1")
    ledger = read_ledger(conn, "m")
    request = approval.current_request(ledger, champion="1", challenger="2", max_age_hours=72, now=NOW)
    assert request is not None and request.entry_id == entry and request.from_version == "1"
    assert request.expires_at(72) == NOW - timedelta(hours=1) + timedelta(hours=72)
    assert approval.settlements(ledger, champion="1", challenger="2", max_age_hours=72, now=NOW) == []


@pytest.mark.parametrize(
    ("champion", "challenger", "hours_ago", "status", "words"),
    [
        ("1", "2", 73.0, "expired", "awaited approval for 73.0 h, longer than promotion.approval_max_age_hours (72 h)"),
        ("1", "3", 1.0, "superseded", "v2 no longer holds alias challenger (now v3)"),
        ("1", None, 1.0, "superseded", "no longer holds alias challenger (now none)"),
        ("0", "2", 1.0, "superseded", "judged against champion v1, but the champion is now v0"),
        ("2", "2", 1.0, "approved", "v2 is the champion"),
    ],
)
def test_how_an_open_request_ends(conn, champion, challenger, hours_ago, status, words):
    promote(conn, "1")
    ask(conn, "2", "1", hours_ago=hours_ago)
    ended = settle_approval_requests(conn, "m", champion=champion, challenger=challenger, max_age_hours=72, now=NOW)
    assert [(s.to_version, s.status) for s in ended] == [("2", status)]
    assert words in ended[0].note
    assert statuses(conn)[-1] == ("approval", status, "2")
    ledger = read_ledger(conn, "m")
    assert approval.current_request(ledger, champion=champion, challenger=challenger, max_age_hours=72, now=NOW) is None
    assert ledger.iloc[-1]["settled_at"] is not None and words in ledger.iloc[-1]["note"]


def test_an_approval_recorded_after_a_crash_names_the_approver_of_the_move(conn):
    promote(conn, "1")
    ask(conn, "2", "1")
    promote(conn, "2", "1", approver="alice")  # the approving run moved the alias, then stopped
    ended = settle_approval_requests(conn, "m", champion="2", challenger="2", max_age_hours=72, now=NOW)
    assert [(s.status, s.approver) for s in ended] == [("approved", "alice")]


def test_a_newer_request_supersedes_the_awaiting_one(conn):
    promote(conn, "1")
    first = ask(conn, "2", "1", hours_ago=2)
    second, superseded = request_approval(conn, {"model_name": "m", "from_version": "1", "to_version": "3"})
    assert superseded == [first]
    assert statuses(conn) == [("promote", "done", "1"), ("approval", "superseded", "2"), ("approval", "awaiting_approval", "3")]
    ledger = read_ledger(conn, "m")
    assert "superseded by v3" in ledger.iloc[1]["note"]
    assert [r.entry_id for r in approval.open_requests(ledger)] == [second]


def test_decisions_only_end_an_awaiting_request(conn):
    entry = ask(conn, "1", None)
    decide_approval(conn, entry, "rejected", note="flaky on annual plans", approver="bob")
    last = read_ledger(conn, "m").iloc[-1]
    assert (last["status"], last["approver"], last["note"]) == ("rejected", "bob", "flaky on annual plans")
    with pytest.raises(ValueError, match="awaiting approval"):
        decide_approval(conn, entry, "approved", approver="alice")
    with pytest.raises(ValueError, match="ends as one of"):
        decide_approval(conn, entry, "done")
    with pytest.raises(ValueError, match="action must be one of"):
        open_ledger_entry(conn, {"model_name": "m", "action": "approval", "to_version": "1"})


def test_moves_and_reconcile_ignore_approval_requests(conn):
    """A request is not a move: reconcile, promoted_versions and pending rows are untouched by it."""
    promote(conn, "1")
    ask(conn, "2", "1")
    assert reconcile_ledger(conn, "m", "1") == []
    assert promoted_versions(conn, "m") == ["1"]
    assert statuses(conn)[-1] == ("approval", "awaiting_approval", "2")


def test_a_warehouse_from_before_approvals_gets_the_approver_column(tmp_path):
    path = str(tmp_path / "old.duckdb")
    with duckdb.connect(path) as old:
        storage.ensure_tables(old)
        old.execute("ALTER TABLE promotion_ledger DROP COLUMN approver")
        old.execute("INSERT INTO promotion_ledger (entry_id, recorded_at, model_name, action, status, to_version) "
                    "VALUES ('e1', TIMESTAMPTZ '2020-01-01 00:00:00+00', 'm', 'promote', 'done', '1')")
    with duckdb.connect(path) as conn:
        promote(conn, "2", "1", approver="alice")
        ledger = read_ledger(conn, "m")
    assert list(ledger["to_version"]) == ["1", "2"] and list(ledger["approver"].fillna("")) == ["", "alice"]


def test_describe_and_run_config_say_what_a_person_needs():
    request = approval.ApprovalRequest("e", "1", "2", NOW, "rejected", approver="bob", note="no")
    assert request.describe() == "v2 (judged against champion v1), requested 2026-11-02 12:00 UTC: rejected by bob — no"
    config = approval.run_config(approval.APPROVE_JOB_OP, version="2", approver="alice", note="ok")
    assert config == {"ops": {"approve_challenger": {"config": {"approver": "alice", "note": "ok", "version": "2"}}}}
