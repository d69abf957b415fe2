"""Moving the ``champion`` alias: which version may be promoted or restored, and the crash-safe move.

A move is written to the ledger as ``pending`` first, then alias ``previous`` goes to the old
champion and ``champion`` to the new one (one atomic registry call: it always names a gated
version), then the entry settles ``done``. A run killed in between leaves the entry pending for
:func:`retrain_assets.core.ledger.reconcile_ledger`. Automatic promotion, an approved promotion and
a rollback all move the alias through :func:`move_champion`. Pure Python (no Dagster).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Callable

import duckdb
import pandas as pd

from retrain_assets.core.ledger import open_ledger_entry, read_ledger, settle_ledger_entry
from retrain_assets.core.model_registry import RegistryClient
from retrain_assets.core.registry import (
    CHALLENGER_ALIAS,
    CHAMPION_ALIAS,
    PREVIOUS_ALIAS,
    TAG_COMPARED_TO,
    TAG_FAILED_GATES,
    TAG_GATES,
    TAG_GATES_PASSED,
    TAG_REASON,
    TAG_TRIGGER,
)

Connect = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]
"""Opens a short connection to the warehouse (e.g. ``Warehouse.get_connection``)."""


class Refused(Exception):
    """A move the rules do not allow; the message says why and what to do. The champion is untouched."""


class GatesFailed(Refused):
    """The version was judged by its gates and failed at least one: the rule working as designed (the
    retrain that trained it ends with the champion where it was), not a fault to alert as one."""


def _v(version: str | None, none: str = "unset") -> str:
    return f"v{version}" if version else none


def check_promotable(tags: dict[str, str], version: str, champion: str | None) -> None:
    """Refuse ``version`` unless it passed its gates, judged against the champion of the moment.

    Raises:
        GatesFailed: it failed at least one of its gates.
        Refused: it was never judged by its gates, or it was judged against another champion than
            ``champion`` (retrain to judge a candidate against the current one).
    """
    passed = tags.get(TAG_GATES_PASSED)
    if passed == "false":
        raise GatesFailed(f"v{version} did not pass its gates ({tags.get(TAG_FAILED_GATES) or 'unnamed'}); "
                          f"the champion stays {_v(champion)}")
    if passed != "true":
        raise Refused(f"v{version} did not pass its gates (not judged); the champion stays {_v(champion)}")
    judged_against = tags.get(TAG_COMPARED_TO, "none")
    if judged_against != (champion or "none"):
        against = _v(judged_against if judged_against != "none" else None, "no champion")
        raise Refused(
            f"v{version} was judged against {against}, but the champion is now {_v(champion)}; retrain to judge "
            "a candidate against the current champion"
        )


def rollback_target(ledger: pd.DataFrame, champion: str, requested: str | None, promoted: list[str]) -> str:
    """The version a rollback restores: ``requested``, or the champion before ``champion``.

    Raises:
        Refused: there is no earlier champion, the version is already the champion, or it was never
            promoted (a rollback only restores a version that passed its gates and served before).
    """
    target = requested
    if target is None:
        moves = ledger[(ledger["status"] == "done") & (ledger["to_version"] == champion)]
        target = moves["from_version"].iloc[-1] if len(moves) else None
        if target is None or pd.isna(target):
            raise Refused(f"v{champion} has no previous champion to roll back to; give to_version")
    target = str(target)
    if target == champion:
        raise Refused(f"v{target} is already the champion")
    if target not in promoted:
        raise Refused(
            f"v{target} was never promoted (promoted versions: {', '.join('v' + v for v in promoted) or 'none'}); "
            "rollback only restores a version that passed its gates and served before"
        )
    return target


def move_champion(
    registry: RegistryClient, connect: Connect, entry: dict[str, Any], *, champion: str | None, version: str,
    drop_challenger: bool = False,
) -> pd.DataFrame:
    """Move alias ``champion`` from ``champion`` to ``version``, crash-safe; returns the model's ledger.

    Args:
        registry: The registered model.
        connect: Opens a warehouse connection (kept short: DuckDB allows one writer per file).
        entry: The ledger entry (``action`` promote/rollback, trigger, reason, run ids, ...);
            ``model_name``, ``from_version`` and ``to_version`` are filled in here.
        champion: The champion now (None before the first promotion).
        version: The version to make champion.
        drop_challenger: Remove alias ``challenger`` when it names the old champion (a rollback, so
            that production_model cannot promote the version just rolled back again).
    """
    entry = {**entry, "model_name": registry.model_name, "from_version": champion, "to_version": version}
    with connect() as conn:
        entry_id = open_ledger_entry(conn, entry)
    if champion is not None:
        registry.move_alias(PREVIOUS_ALIAS, champion)
    registry.move_alias(CHAMPION_ALIAS, version)
    if drop_challenger and champion is not None and registry.version(CHALLENGER_ALIAS) == champion:
        registry.move_alias(CHALLENGER_ALIAS, None)
    with connect() as conn:
        settle_ledger_entry(conn, entry_id, "done")
        return read_ledger(conn, registry.model_name)


def promote(
    registry: RegistryClient, connect: Connect, entry: dict[str, Any], *, champion: str | None, version: str,
    run_id: str,
) -> pd.DataFrame:
    """Promote ``version`` (:func:`move_champion` with action ``promote``) and mark the version and
    the tracking run that logged it as promoted by Dagster run ``run_id``; returns the ledger. The
    automatic promotion and an approved one both use it."""
    tracking_run = registry.run_id(version)
    ledger = move_champion(registry, connect, {**entry, "action": "promote", "mlflow_run_id": tracking_run,
                                               "dagster_run_id": run_id}, champion=champion, version=version)
    registry.set_tags(version, {"retrain.promoted_by_run": run_id})
    if tracking_run:
        registry.tag_run(tracking_run, {"retrain.promoted": "true", "retrain.promoted_by_run": run_id})
    return ledger


def promotion_entry(
    tags: dict[str, str], *, trigger: str, reason: str, launched_by: str, approver: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """The ledger entry of a promotion: the trigger and reason of the retrain that made the version
    (from its tags; else the promoting run's), its gates, who launched the run and who approved."""
    return {
        "trigger": tags.get(TAG_TRIGGER, trigger), "reason": tags.get(TAG_REASON, reason), "gates_passed": True,
        "gates_json": tags.get(TAG_GATES, "[]"), "launched_by": launched_by, "approver": approver, "note": note,
    }
