""""Is my model healthy?" in one sentence, how fresh its data and labels are, and what retraining
cost by trigger. Pure Python (pandas), no Dagster: the model_health asset reads the warehouse and the
run history and calls these.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

import numpy as np
import pandas as pd

VERDICTS = ("no_champion", "degrading", "awaiting_approval", "drifting", "healthy")
"""From the most to the least urgent: the first that applies is the verdict."""

DEFAULT_MAX_HOURS_WITHOUT_BATCH = 48.0
DEFAULT_MAX_BATCHES_WITHOUT_LABELS = 5


@dataclass(frozen=True)
class Health:
    """The verdict (one of :data:`VERDICTS`) and the sentence a person reads."""

    verdict: str
    sentence: str


@dataclass(frozen=True)
class Freshness:
    """How long since a batch landed and how many batches since the last labelled one.

    Attributes:
        hours_since_batch: Hours since the newest batch arrived (None: none has).
        batches_since_labels: Validated batches newer than the newest labelled one (all of them
            when none is labelled; None when there is no batch).
        batch_fresh: Whether a batch landed within the limit.
        labels_fresh: Whether labels arrived within the limit.
        batch_sentence: Why, in words.
        labels_sentence: Why, in words.
    """

    hours_since_batch: float | None
    batches_since_labels: int | None
    batch_fresh: bool
    labels_fresh: bool
    batch_sentence: str
    labels_sentence: str


def _f(value) -> str:
    return "n/a" if value is None or not np.isfinite(float(value)) else f"{float(value):.3f}"


def _interval(row: pd.Series) -> str:
    low, high = row.get("ci_low"), row.get("ci_high")
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return ""
    return f" (95% CI {float(low):.3f}–{float(high):.3f})"


def health_verdict(
    *,
    champion: str | None,
    metrics: pd.DataFrame,
    drift: pd.DataFrame,
    awaiting: Sequence[str] = (),
    no_champion_reason: str | None = None,
    holdout_metric: float | None = None,
) -> Health:
    """The model's health in one sentence.

    The first that applies: no champion; the champion degrading (its newest labelled batch is
    significantly below its holdout, or below the floor: ``production_metrics``' own verdict); a
    candidate awaiting a person's approval; the newest batch drifted (``drift_report``'s verdict);
    else healthy.

    Args:
        champion: The champion's version, or None.
        metrics: Rows of ``production_metrics`` (batch order).
        drift: Rows of ``drift_reports`` (batch order).
        awaiting: Versions awaiting approval.
        no_champion_reason: Why there is no champion yet (the first-champion plan's reason).
        holdout_metric: The champion's holdout metric (its ``retrain.holdout_metric`` tag), for a
            batch row that does not carry it (an unlabelled batch).
    """
    if champion is None:
        return Health("no_champion", "No model is in production yet" + (f": {no_champion_reason}" if no_champion_reason
                                                                          else "."))
    own = metrics[metrics["champion_version"].astype(str) == str(champion)] if not metrics.empty else metrics
    labelled = own[own["labelled"].astype(bool) & own["batch_metric"].notna()] if not own.empty else own
    newest = labelled.iloc[-1] if not labelled.empty else None
    if newest is not None and (bool(newest.get("degraded")) or bool(newest.get("below_floor"))):
        why = "below the metric floor" if bool(newest.get("below_floor")) else "significantly below its holdout"
        return Health("degrading", (
            f"Champion v{champion} is degrading: {newest['metric']} {_f(newest['batch_metric'])} on "
            f"{newest['batch_id']}{_interval(newest)}, {why} ({_f(newest.get('holdout_metric'))})."))
    if awaiting:
        versions = ", ".join(f"v{v}" for v in awaiting)
        return Health("awaiting_approval", (
            f"Champion v{champion} serves; {versions} passed every gate and awaits a person's approval "
            "(job approve_promotion or reject_promotion)."))
    estimated = own[own["estimated_metric"].notna()] if not own.empty and "estimated_metric" in own else own.iloc[:0]
    if newest is not None:
        measured = (f"{newest['metric']} {_f(newest['batch_metric'])} on {newest['batch_id']}{_interval(newest)} "
                    f"against {_f(newest.get('holdout_metric'))} on its holdout")
    elif not estimated.empty:
        row = estimated.iloc[-1]
        reference = row.get("holdout_metric")
        reference = holdout_metric if reference is None or pd.isna(reference) else reference
        measured = (f"no labelled batch since it took over; estimated {row['metric']} without labels "
                    f"{_f(row['estimated_metric'])} on {row['batch_id']} against {_f(reference)} on its holdout")
    else:
        measured = "no batch scored since it took over"
    last = drift.iloc[-1] if not drift.empty else None
    if last is not None and bool(last["drift_detected"]):
        return Health("drifting", f"Champion v{champion} holds ({measured}), but the newest batch {last['batch_id']} "
                                  f"drifted: {str(last['summary'])[:300]}")
    newest_batch = f"; no drift on the newest batch {last['batch_id']}" if last is not None else ""
    return Health("healthy", f"Champion v{champion} is healthy: {measured}{newest_batch}.")


def freshness(
    arrivals: pd.DataFrame,
    labelled: dict[str, bool],
    now: datetime,
    *,
    max_hours_without_batch: float = DEFAULT_MAX_HOURS_WITHOUT_BATCH,
    max_batches_without_labels: int = DEFAULT_MAX_BATCHES_WITHOUT_LABELS,
) -> Freshness:
    """Whether batches and labels still arrive.

    Args:
        arrivals: ``ingestion_log`` rows (``batch_id``, ``arrived_at``, timezone-aware).
        labelled: Validated batch id → whether it has labels, oldest first.
        now: The time now (timezone-aware).
        max_hours_without_batch: ``health.max_hours_without_batch``.
        max_batches_without_labels: ``health.max_batches_without_labels``.
    """
    if arrivals.empty:
        hours, batch_fresh = None, False
        batch_sentence = "no batch has landed yet"
    else:
        arrived = pd.to_datetime(arrivals["arrived_at"], utc=True)
        hours = max(0.0, (pd.Timestamp(now).tz_convert("UTC") - arrived.max()).total_seconds() / 3600)
        batch_fresh = hours <= max_hours_without_batch
        name = arrivals.loc[arrived.idxmax(), "batch_id"]
        batch_sentence = (f"the newest batch, {name}, landed {hours:.1f} h ago"
                          + ("" if batch_fresh else f": no batch for more than {max_hours_without_batch:g} h "
                             "(health.max_hours_without_batch); check the feed that lands the files"))
    ids = list(labelled)
    if not ids:
        return Freshness(hours, None, batch_fresh, False, batch_sentence, "no batch has been validated yet")
    last = max((i for i, b in enumerate(ids) if labelled[b]), default=None)
    since = len(ids) if last is None else len(ids) - 1 - last
    labels_fresh = since <= max_batches_without_labels
    where = "no batch is labelled yet" if last is None else f"the newest labelled batch is {ids[last]}"
    labels_sentence = (f"{where}; {since} batch(es) since" + (
        "" if labels_fresh else f": more than {max_batches_without_labels} (health.max_batches_without_labels), "
        "so drift and performance are judged without ground truth; send the labels (labels_for_batches)"))
    return Freshness(hours, since, batch_fresh, labels_fresh, batch_sentence, labels_sentence)


COST_COLUMNS = ("started_at", "trigger", "version", "fit_seconds", "peak_memory_mb", "training_rows", "promoted",
                "bought")


def retrain_costs(retrains: pd.DataFrame, *, period: str = "W") -> tuple[pd.DataFrame, pd.DataFrame]:
    """What retraining cost, by trigger and by period, next to what it bought.

    Args:
        retrains: One row per retrain that trained (:data:`COST_COLUMNS`): when it started (UTC),
            its trigger, the version it registered, fit seconds (every window variant), the process's
            peak memory, training rows, whether it was promoted, and what it bought (the new
            champion minus the previous one on the first labelled batch after the promotion, from
            the post-promotion watch; None when not promoted or not yet measured).
        period: A pandas period alias for the second table (``W``: weeks).

    Returns:
        (per trigger, per period): retrains, fit seconds in all and on average, the largest peak
        memory, mean training rows, promotions, and the mean metric bought.
    """
    columns = ["retrains", "fit_seconds", "mean_fit_seconds", "max_peak_memory_mb", "mean_training_rows",
               "promoted", "mean_bought"]
    if retrains.empty:
        return (pd.DataFrame(columns=["trigger", *columns]), pd.DataFrame(columns=["period", *columns]))
    frame = retrains.copy()
    frame["bought"] = pd.to_numeric(frame["bought"], errors="coerce")

    def roll(groups) -> pd.DataFrame:
        return groups.agg(
            retrains=("trigger", "size"), fit_seconds=("fit_seconds", "sum"), mean_fit_seconds=("fit_seconds", "mean"),
            max_peak_memory_mb=("peak_memory_mb", "max"), mean_training_rows=("training_rows", "mean"),
            promoted=("promoted", "sum"), mean_bought=("bought", "mean"),
        ).reset_index()

    by_trigger = roll(frame.groupby("trigger", sort=True))
    started = pd.to_datetime(frame["started_at"], utc=True).dt.tz_localize(None)
    frame["period"] = started.dt.to_period(period).dt.start_time.dt.strftime("%Y-%m-%d")
    by_period = roll(frame.groupby("period", sort=True))
    for table in (by_trigger, by_period):
        for name in ("fit_seconds", "mean_fit_seconds", "max_peak_memory_mb", "mean_training_rows"):
            table[name] = table[name].astype(float).round(2)
        table["mean_bought"] = table["mean_bought"].astype(float).round(4)
        table["promoted"] = table["promoted"].astype(int)
    return by_trigger, by_period


def bought_by(metrics: pd.DataFrame, version: str) -> float | None:
    """What promoting ``version`` bought: its first post-promotion watch difference (new champion
    minus the previous one on the same labelled batch), or None."""
    if metrics.empty or "watch_difference" not in metrics:
        return None
    rows = metrics[(metrics["champion_version"].astype(str) == str(version)) & metrics["watch_difference"].notna()]
    return float(rows.iloc[0]["watch_difference"]) if not rows.empty else None
