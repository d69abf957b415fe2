"""The first champion: as soon as the labelled rows allow, train on part of them and hold out the
newest (the drift sensor's and candidate_model's one rule). Pure Python."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class FirstChampionPlan:
    """How the first champion can be trained, or what is still missing.

    Attributes:
        ready: The labelled data allows a first retrain now.
        holdout_share: None: learn from every labelled batch but the newest and judge on the whole
            newest one; a share: also learn from the oldest rows of the newest batch and judge on
            its newest ``holdout_share`` (by event time, then landing order).
        reason: One sentence: what it learns from and is judged on, or exactly what is missing.
    """

    ready: bool
    holdout_share: float | None
    reason: str


def split_sizes(rows: int, holdout_share: float) -> tuple[int, int]:
    """(rows learnt from, rows held out) when the newest ``holdout_share`` of a batch of ``rows`` is
    held out; the same rounding as :func:`retrain_assets.core.holdout.split_newest`."""
    held = min(rows, max(1, int(round(rows * holdout_share)))) if rows else 0
    if rows >= 2:
        held = min(held, rows - 1)
    return rows - held, held


def first_champion_plan(
    labelled: Sequence[tuple[str, int]], *, min_rows: int, min_holdout_rows: int, holdout_share: float
) -> FirstChampionPlan:
    """When and on what the first champion is trained: as soon as the labelled data allows it.

    With no champion there is nothing to replace, so none of the minimums for a *replacing* retrain
    (new labelled rows, cooldown) apply; what matters is enough rows to learn from and enough newer
    rows to judge on (``training.min_rows`` and ``training.min_holdout_rows``, the
    ``data_sufficiency`` gate's own). Preferred: learn from every labelled batch but the newest and
    judge on the whole newest batch (the candidate is judged on data newer than anything it learnt
    from). Otherwise — one large first batch, say a history file — hold out the newest
    ``holdout_share`` of the newest batch by time, the same split ``training.adapt_on`` uses.

    Args:
        labelled: (batch id, labelled valid rows) of each labelled batch, in arrival order.
        min_rows: Fewest rows to learn from.
        min_holdout_rows: Fewest rows to judge on.
        holdout_share: Share of the newest batch held out when it is split.

    Returns:
        The plan.
    """
    batches = [(batch_id, int(rows)) for batch_id, rows in labelled if rows > 0]
    need = f"at least {min_rows} rows to learn from and {min_holdout_rows} newer rows to judge on"
    if not batches:
        return FirstChampionPlan(False, None, f"no champion yet and no labelled rows; the first retrain needs {need}")
    newest_id, newest_rows = batches[-1]
    older = sum(rows for _, rows in batches[:-1])
    older_ids = [batch_id for batch_id, _ in batches[:-1]]
    if older_ids and older >= min_rows and newest_rows >= min_holdout_rows:
        return FirstChampionPlan(True, None, (
            f"no champion yet: learn from {', '.join(older_ids)} ({older} labelled rows) and judge on "
            f"{newest_id} ({newest_rows} rows)"
        ))
    learn_part, held = split_sizes(newest_rows, holdout_share)
    learn = older + learn_part
    if learn >= min_rows and held >= min_holdout_rows:
        learnt_from = ", ".join([*older_ids, f"the oldest {learn_part} rows of {newest_id}"])
        return FirstChampionPlan(True, holdout_share, (
            f"no champion yet: learn from {learnt_from} ({learn} labelled rows) and judge on the newest "
            f"{held} rows of {newest_id} (by time; {holdout_share:.0%} of it)"
        ))
    total = older + newest_rows
    whole = (f"; or, holding out the whole newest batch, {older} to learn from and {newest_rows} to judge on"
             if older_ids else "")
    return FirstChampionPlan(False, None, (
        f"no champion yet: {total} labelled rows in {len(batches)} batch(es) ({', '.join(b for b, _ in batches)}); "
        f"the first retrain needs {need}, and they give {learn} to learn from and {held} to judge on "
        f"(the newest {holdout_share:.0%} of {newest_id} held out){whole}. Waiting for more labelled rows"
    ))


def first_champion_signal(plan: FirstChampionPlan, *, automatic: bool = True) -> tuple[str | None, str]:
    """The trigger for a first retrain (``bootstrap``), or (None, what is missing / who starts it).

    Args:
        plan: From :func:`first_champion_plan`.
        automatic: ``automation.first_champion`` is ``automatic`` (else a person starts it).
    """
    if not plan.ready:
        return None, plan.reason
    if not automatic:
        return None, (f"{plan.reason} — automation.first_champion is by_hand: start the first retrain yourself "
                      "(job request_retrain, or Materialize candidate_model)")
    return "bootstrap", plan.reason
