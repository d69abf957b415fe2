"""Human approval of promotions (``promotion.require_approval``), as pure functions of the
promotion ledger. No Dagster, no DuckDB.

A candidate that passed every gate is recorded in the ledger as an *approval request* (action
``approval``, status ``awaiting_approval``) instead of becoming champion. A request ends in one of:

* ``approved`` — a person ran ``approve_promotion``; the champion moved (its own ``promote`` row),
* ``rejected`` — a person ran ``reject_promotion``; the champion did not move,
* ``expired`` — nobody approved it within ``promotion.approval_max_age_hours``,
* ``superseded`` — it can no longer be promoted as judged: a newer candidate holds ``challenger``,
  or the champion it was judged against is no longer the champion.

:func:`settlements` says which open requests end, and why, from the ledger and where the aliases
point now; :func:`current_request` is the one request that still awaits a decision, if any.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pandas as pd

ACTION = "approval"
AWAITING = "awaiting_approval"
DECISIONS = ("approved", "rejected", "expired", "superseded")
APPROVE_JOB_OP = "approve_challenger"
REJECT_JOB_OP = "reject_challenger"


def _text(value: Any) -> str | None:
    """A ledger cell as text, None for SQL NULL / NaN."""
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return None
    return str(value)


def _utc(value: Any) -> datetime:
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def _v(version: str | None) -> str:
    return f"v{version}" if version else "none"


@dataclass(frozen=True)
class ApprovalRequest:
    """One candidate waiting for a person's decision (a ledger row with action ``approval``).

    Attributes:
        entry_id: The ledger entry.
        from_version: The champion it was judged against (None: there was no champion).
        to_version: The candidate.
        recorded_at: When it started waiting (UTC).
        status: ``awaiting_approval`` or the decision.
        trigger: Why the retrain that produced it ran.
        reason: The retrain's reason.
        note: The decision's note, if decided.
        approver: Who decided, if a person did.
    """

    entry_id: str
    from_version: str | None
    to_version: str
    recorded_at: datetime
    status: str
    trigger: str | None = None
    reason: str | None = None
    note: str | None = None
    approver: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> ApprovalRequest:
        """From a ledger row (a pandas Series or a dict)."""
        get = row.get if hasattr(row, "get") else row.__getitem__
        return cls(
            entry_id=str(get("entry_id")), from_version=_text(get("from_version")), to_version=str(get("to_version")),
            recorded_at=_utc(get("recorded_at")), status=str(get("status")), trigger=_text(get("trigger")),
            reason=_text(get("reason")), note=_text(get("note")), approver=_text(get("approver")),
        )

    def expires_at(self, max_age_hours: float) -> datetime:
        """When it can no longer be approved."""
        return self.recorded_at + timedelta(hours=max_age_hours)

    def age_hours(self, now: datetime) -> float:
        """Hours it has waited at ``now``."""
        return (now - self.recorded_at).total_seconds() / 3600.0

    def describe(self) -> str:
        """One line: which version, against which champion, since when, and its status."""
        line = (f"v{self.to_version} (judged against champion {_v(self.from_version)}), "
                f"requested {self.recorded_at:%Y-%m-%d %H:%M} UTC: {self.status}")
        if self.approver:
            line += f" by {self.approver}"
        if self.note:
            line += f" — {self.note}"
        return line


@dataclass(frozen=True)
class Settlement:
    """An open request that ends now, and why."""

    entry_id: str
    to_version: str
    status: str
    note: str
    approver: str | None = None


def requests(ledger: pd.DataFrame) -> list[ApprovalRequest]:
    """Every approval request in the ledger, oldest first."""
    if ledger.empty or "action" not in ledger:
        return []
    rows = ledger[ledger["action"] == ACTION]
    return [ApprovalRequest.from_row(row) for _, row in rows.iterrows()]


def open_requests(ledger: pd.DataFrame) -> list[ApprovalRequest]:
    """Requests still ``awaiting_approval``, oldest first."""
    return [r for r in requests(ledger) if r.status == AWAITING]


def latest_request(ledger: pd.DataFrame, version: str | None = None) -> ApprovalRequest | None:
    """The newest request (of ``version``, if given), whatever its status."""
    found = [r for r in requests(ledger) if version is None or r.to_version == str(version)]
    return found[-1] if found else None


def _approver_of_move(ledger: pd.DataFrame, request: ApprovalRequest) -> str | None:
    """Who approved the promotion to the request's version (its done ``promote`` row), if recorded."""
    if "approver" not in ledger:
        return None
    moves = ledger[(ledger["action"] == "promote") & (ledger["status"] == "done")
                   & (ledger["to_version"].astype(str) == request.to_version)]
    approvers = [a for a in moves["approver"].map(_text) if a]
    return approvers[-1] if approvers else None


def settlements(
    ledger: pd.DataFrame,
    *,
    champion: str | None,
    challenger: str | None,
    max_age_hours: float,
    now: datetime | None = None,
) -> list[Settlement]:
    """Open requests that end now, with the reason, in ledger order.

    Args:
        ledger: The model's promotion ledger (:func:`retrain_assets.core.ledger.read_ledger`).
        champion: The version holding alias ``champion`` now (None: none).
        challenger: The version holding alias ``challenger`` now (None: none).
        max_age_hours: ``promotion.approval_max_age_hours``.
        now: The time (default: now, UTC).

    Returns:
        For each open request that cannot be approved any more: ``approved`` when its version is the
        champion already (a run stopped between moving the alias and recording the approval),
        ``superseded`` when another version holds ``challenger`` or the champion it was judged
        against is no longer the champion, ``expired`` when it waited longer than ``max_age_hours``.
    """
    now = now or datetime.now(timezone.utc)
    out = []
    for request in open_requests(ledger):
        version = request.to_version
        if champion is not None and version == str(champion):
            out.append(Settlement(
                request.entry_id, version, "approved",
                f"settled later: v{version} is the champion (the approving run stopped before recording it)",
                _approver_of_move(ledger, request),
            ))
        elif challenger is None or version != str(challenger):
            out.append(Settlement(
                request.entry_id, version, "superseded",
                f"v{version} no longer holds alias challenger (now {_v(challenger)}): a newer candidate replaced it",
            ))
        elif request.from_version != (str(champion) if champion is not None else None):
            out.append(Settlement(
                request.entry_id, version, "superseded",
                f"v{version} was judged against champion {_v(request.from_version)}, but the champion is now "
                f"{_v(champion)}; retrain to judge a candidate against the current champion",
            ))
        elif request.age_hours(now) > max_age_hours:
            out.append(Settlement(
                request.entry_id, version, "expired",
                f"awaited approval for {request.age_hours(now):.1f} h, longer than promotion.approval_max_age_hours "
                f"({max_age_hours:g} h); retrain, or re-materialize production_model to ask again",
            ))
    return out


def current_request(
    ledger: pd.DataFrame,
    *,
    champion: str | None,
    challenger: str | None,
    max_age_hours: float,
    now: datetime | None = None,
) -> ApprovalRequest | None:
    """The request that still awaits a decision (at most one survives :func:`settlements`), or None."""
    ending = {s.entry_id for s in settlements(ledger, champion=champion, challenger=challenger,
                                              max_age_hours=max_age_hours, now=now)}
    alive = [r for r in open_requests(ledger) if r.entry_id not in ending]
    return alive[-1] if alive else None


def run_config(op_name: str, *, version: str, approver: str = "<your name>", note: str = "<why>") -> dict:
    """The run config of ``approve_promotion`` / ``reject_promotion`` for one version."""
    return {"ops": {op_name: {"config": {"approver": approver, "note": note, "version": str(version)}}}}


class NoDecision(ValueError):
    """A person's decision that cannot be taken; the message says why and what to give instead."""


def request_to_decide(
    ledger: pd.DataFrame, *, model_name: str, champion: str | None, challenger: str | None, max_age_hours: float,
    asked: str | None, require_approval: bool,
) -> ApprovalRequest:
    """The request a person's approval or rejection applies to.

    Args:
        ledger: The model's ledger, after :func:`settlements` were recorded.
        asked: The version the person reviewed (``v`` prefix allowed); None: the one awaiting.
        require_approval: ``promotion.require_approval``, named when nothing was ever put up.

    Raises:
        NoDecision: nothing awaits approval (with the last request, if any), or ``asked`` is not
            the version that awaits (so a newer candidate that arrived meanwhile is not decided by mistake).
    """
    request = current_request(ledger, champion=champion, challenger=challenger, max_age_hours=max_age_hours)
    asked = str(asked).removeprefix("v") if asked else None
    if request is None:
        last = latest_request(ledger, asked) or latest_request(ledger)
        if last is None:
            raise NoDecision(
                f"nothing awaits approval: no candidate of {model_name!r} was ever put up for approval "
                f"(promotion.require_approval is {str(require_approval).lower()})"
            )
        raise NoDecision(f"nothing awaits approval; the last request: {last.describe()}")
    if asked is not None and asked != request.to_version:
        raise NoDecision(
            f"v{asked} does not await approval: v{request.to_version} does ({request.describe()}); review it and give "
            f"version \"{request.to_version}\", or leave version out"
        )
    return request
