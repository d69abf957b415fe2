"""When to retrain: the retrain policy, as pure functions of what happened so far. No Dagster.

The sensors, the schedule and the backtester ask the same question — *given the signals since the
last retrain, should a retrain start now?* — and get the same answer: after a batch from
:func:`next_action`, for the schedule and a person's request from :func:`decide`:

1. A **signal** must call for it: actionable drift confirmed in ``confirm_k`` of the last
   ``confirm_n`` batches, a performance decline of the champion, a person's request (business
   change), or the safety-net schedule.
2. The **policy controls** must allow it: no retrain already queued or running; a cooldown since
   the last retrain (``cooldown_minutes``, and ``cooldown_batches`` new batches — which a
   champion that got significantly worse, concept drift or a metric below the floor, does not
   wait for); at least
   ``min_new_labelled_rows`` labelled rows the last retrain did not have; and at most
   ``max_retrains_per_period`` retrains in the last ``period_days``. A person's request skips the
   cooldown and the minimum of new rows (they know why) but not the concurrency limit or the budget;
   so does the first retrain (``bootstrap``: there is no champion to replace), which waits only
   for enough rows to learn from and judge on (:func:`first_champion_plan`).

Every decision carries the trigger and a one-sentence reason, used as the run's tags
(``retrain/trigger``, ``retrain/reason``) and, when it says no, as the sensor's skip message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Sequence

from retrain_assets.core.first_champion import FirstChampionPlan, first_champion_signal

URGENT_TRIGGERS = ("concept_drift", "performance_decline")
"""Triggers that do not wait for ``cooldown_batches``: the champion itself got significantly worse,
so every batch of waiting is served by a model known to be wrong. On the backtest's demo stream,
letting them through turned +0.39 into +0.85 AUC points over every-batch retraining (9 retrains
instead of 8): the concept change was acted on one batch earlier."""

TRIGGERS = ("bootstrap", "data_drift", "concept_drift", "performance_decline", "business_change", "schedule", "manual")
"""Values of the ``retrain/trigger`` tag. ``concept_drift`` is what waives the stability gate;
``bootstrap`` is the first retrain, as soon as the labelled data allows one (:func:`first_champion_plan`)."""


@dataclass(frozen=True)
class PolicySettings:
    """The policy controls (``automation.*`` in the config).

    Attributes:
        cooldown_minutes: Minutes after a retrain started before a signal may start another.
        cooldown_batches: New validated batches needed since the last retrain before data drift may
            start another (not :data:`URGENT_TRIGGERS`). 3: under a lasting
            covariate shift every batch still differs from the model's training data, and on the
            demo stream retraining after each of them (23 retrains in 30 batches) bought 0.3 AUC
            points over retraining at most every third batch (8 retrains); see ``python -m
            retrain_assets.backtest``.
        confirm_k: Drift must be actionable in at least k ...
        confirm_n: ... of the last n batches (1 of 1: act on one report; the drift verdict already
            controls false alarms).
        min_new_labelled_rows: Labelled rows the last retrain did not learn from.
        max_retrains_per_period: Budget of retrains (any trigger) per period.
        period_days: The budget's and the schedule's period.
    """

    cooldown_minutes: float = 60.0
    cooldown_batches: int = 3
    confirm_k: int = 1
    confirm_n: int = 1
    min_new_labelled_rows: int = 500
    max_retrains_per_period: int = 7
    period_days: float = 7.0

    def __post_init__(self) -> None:
        if not 1 <= self.confirm_k <= self.confirm_n:
            raise ValueError(f"confirm_k must be between 1 and confirm_n ({self.confirm_n}), got {self.confirm_k}")
        for name in ("cooldown_minutes", "cooldown_batches", "min_new_labelled_rows", "period_days"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_retrains_per_period < 1:
            raise ValueError(f"max_retrains_per_period must be >= 1, got {self.max_retrains_per_period}")


@dataclass(frozen=True)
class BatchSignal:
    """What monitoring said about one validated batch (from its drift report / production metrics).

    Attributes:
        batch_id: The batch.
        data_drift: Actionable per-feature or joint drift in the inputs.
        prediction_drift: The champion's scores moved (None without a champion).
        concept_drift: The champion got significantly worse on this labelled batch (None without labels).
        below_floor: The champion's metric on this batch is below the metric floor (None without labels).
        labelled_rows: Labelled valid rows in the batch.
        summary: The report's sentence.
    """

    batch_id: str
    data_drift: bool = False
    prediction_drift: bool | None = None
    concept_drift: bool | None = None
    below_floor: bool | None = None
    labelled_rows: int = 0
    summary: str = ""

    @classmethod
    def from_monitoring(
        cls,
        batch_id: str,
        *,
        data_drift: bool | None,
        prediction_drift: bool | None,
        concept_drift: bool | None,
        degraded: bool | None,
        below_floor: bool | None,
        labelled_rows: int,
        summary: str,
    ) -> "BatchSignal":
        """One batch's signal from its drift report (data/prediction/concept drift) and its
        production metrics (``degraded``, ``below_floor``; production_metrics reads its concept verdict from the
        drift report, so the two agree when both exist): the champion's concept drift is
        called when either says so, and is unknown (None) only when neither could judge."""
        judged = [flag for flag in (concept_drift, degraded) if flag is not None]
        return cls(
            batch_id, data_drift=bool(data_drift), prediction_drift=prediction_drift,
            concept_drift=any(judged) if judged else None, below_floor=below_floor,
            labelled_rows=labelled_rows, summary=summary,
        )

    @property
    def sentence(self) -> str:
        """The summary without its leading ``batch <id>: ``, for a reason that names the batch already."""
        return self.summary.removeprefix(f"batch {self.batch_id}: ")

    @property
    def actionable(self) -> bool:
        """Any drift worth a retrain on this batch."""
        return bool(self.data_drift or self.prediction_drift or self.concept_drift or self.below_floor)


@dataclass(frozen=True)
class RetrainRecord:
    """A retrain that was started (whatever its outcome).

    Attributes:
        started_at: When it started (timezone-aware or naive, consistently with ``now``).
        trigger: Its trigger.
        seen_batches: Validated batches that existed when it started (it could learn from them).
    """

    started_at: datetime
    trigger: str
    seen_batches: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Decision:
    """The policy's answer.

    Attributes:
        retrain: Start a retrain now.
        trigger: The trigger it would carry (also when ``retrain`` is False).
        reason: One sentence: why it retrains, or why not.
        signal: Whether a signal called for a retrain (False: nothing to do; True with
            ``retrain`` False: the policy held it back).
    """

    retrain: bool
    trigger: str
    reason: str
    signal: bool = False


def drift_signal(signals: Sequence[BatchSignal], settings: PolicySettings) -> tuple[str | None, str]:
    """The trigger and reason the recent batches call for, or (None, why not).

    Concept drift or a metric below the floor on the newest labelled batch acts at once (the model
    is measurably wrong); data or prediction drift must be confirmed in ``confirm_k`` of the last
    ``confirm_n`` batches.

    Args:
        signals: Batch signals in arrival order (the newest last), since the last retrain.
        settings: The policy.
    """
    if not signals:
        return None, "no new batches since the last retrain"
    newest = signals[-1]
    if newest.concept_drift:
        return "concept_drift", f"concept drift on batch {newest.batch_id}: {newest.sentence}"
    if newest.below_floor:
        return "performance_decline", f"the champion is below the metric floor on batch {newest.batch_id}: {newest.sentence}"
    window = list(signals[-settings.confirm_n:])
    drifted = [s for s in window if s.data_drift or s.prediction_drift]
    if len(drifted) >= settings.confirm_k and (newest.data_drift or newest.prediction_drift):
        listed = ", ".join(s.batch_id for s in drifted)
        confirm = (f" ({len(drifted)} of the last {len(window)} batches: {listed})"
                   if settings.confirm_n > 1 else "")
        return "data_drift", f"actionable drift on batch {newest.batch_id}{confirm}: {newest.sentence}"
    if drifted:
        return None, (f"drift in {len(drifted)} of the last {len(window)} batches, "
                      f"{settings.confirm_k} needed to confirm")
    return None, f"no actionable drift on batch {newest.batch_id}"


def decide(
    now: datetime,
    *,
    trigger: str | None,
    reason: str,
    history: Sequence[RetrainRecord],
    new_batches: int,
    new_labelled_rows: int,
    running: bool,
    settings: PolicySettings,
) -> Decision:
    """Apply the policy controls to a signal.

    Args:
        now: The current time.
        trigger: What calls for a retrain (see :data:`TRIGGERS`), or None when nothing does.
        reason: Why (or, with no trigger, why nothing calls for one).
        history: Retrains started so far (any order).
        new_batches: Validated batches since the last retrain started.
        new_labelled_rows: Labelled valid rows in those batches.
        running: A retrain is queued or running.
        settings: The policy.

    Returns:
        The decision.
    """
    if trigger is None:
        return Decision(False, "none", reason, signal=False)
    if trigger not in TRIGGERS:
        raise ValueError(f"unknown trigger {trigger!r}; one of {TRIGGERS}")
    if running:
        return Decision(False, trigger, f"{reason} — but a retrain is already queued or running", signal=True)
    period_start = now - timedelta(days=settings.period_days)
    in_period = [r for r in history if r.started_at > period_start]
    if len(in_period) >= settings.max_retrains_per_period:
        return Decision(False, trigger, (
            f"{reason} — but the budget of {settings.max_retrains_per_period} retrains per "
            f"{settings.period_days:g} days is spent ({len(in_period)} since {period_start:%Y-%m-%d %H:%M})"
        ), signal=True)
    last = max(history, key=lambda r: r.started_at, default=None)
    manual = trigger in ("business_change", "manual")
    if trigger == "bootstrap":
        # No champion to replace: the minimums of a replacing retrain do not apply (first_champion_plan
        # already required enough rows); one at a time and the budget still do.
        return Decision(True, trigger, reason, signal=True)
    if last is not None and not manual and trigger != "schedule":
        waited = (now - last.started_at).total_seconds() / 60
        if waited < settings.cooldown_minutes:
            return Decision(False, trigger, (
                f"{reason} — but the last retrain started {waited:.0f} min ago "
                f"(cooldown {settings.cooldown_minutes:g} min)"
            ), signal=True)
        if new_batches < settings.cooldown_batches and trigger not in URGENT_TRIGGERS:
            return Decision(False, trigger, (
                f"{reason} — but only {new_batches} new batch(es) since the last retrain "
                f"(cooldown {settings.cooldown_batches})"
            ), signal=True)
    if not manual and new_labelled_rows < settings.min_new_labelled_rows:
        return Decision(False, trigger, (
            f"{reason} — but only {new_labelled_rows} new labelled rows since the last retrain "
            f"({settings.min_new_labelled_rows} needed)"
        ), signal=True)
    return Decision(True, trigger, reason, signal=True)


@dataclass(frozen=True)
class PolicyState:
    """Everything the policy looks at after a batch (what the sensors read from Dagster and DuckDB,
    and what the backtester keeps while it replays).

    Attributes:
        history: Retrains started so far (any outcome, any order).
        running: A retrain is queued or running.
        signals: Batch signals since the last retrain started, in arrival order.
        first_champion: With no champion yet: the plan for the first one (:func:`first_champion_plan`);
            None once a champion exists.
        automatic_first: ``automation.first_champion`` is ``automatic``.
    """

    history: Sequence[RetrainRecord]
    running: bool
    signals: Sequence[BatchSignal]
    first_champion: FirstChampionPlan | None = None
    automatic_first: bool = True

    @property
    def new_labelled_rows(self) -> int:
        """Labelled rows in the batches since the last retrain started."""
        return sum(signal.labelled_rows for signal in self.signals)


def next_action(now: datetime, state: PolicyState, settings: PolicySettings) -> Decision:
    """The one retrain decision of the platform after a batch: the drift and performance sensors
    and the backtester all call this, so a backtest result is a statement about the sensors.

    With no champion, the first retrain comes as soon as the labelled data allows
    (:func:`first_champion_signal`); with one, the signals since the last retrain name a trigger
    (:func:`drift_signal`); then the controls apply (:func:`decide`). Rolling back a worse new
    champion is decided before (by the post-promotion watch), and the safety-net schedule and a
    person's request call :func:`decide` with their own trigger.
    """
    if state.first_champion is not None:
        trigger, reason = first_champion_signal(state.first_champion, automatic=state.automatic_first)
    else:
        trigger, reason = drift_signal(state.signals, settings)
    return decide(now, trigger=trigger, reason=reason, history=state.history, new_batches=len(state.signals),
                  new_labelled_rows=state.new_labelled_rows, running=state.running, settings=settings)


def schedule_due(now: datetime, history: Sequence[RetrainRecord], settings: PolicySettings) -> tuple[bool, str]:
    """The safety net: retrain unless any retrain already started within the last period.

    Returns:
        (due, reason).
    """
    period_start = now - timedelta(days=settings.period_days)
    recent = [r for r in history if r.started_at > period_start]
    if recent:
        latest = max(recent, key=lambda r: r.started_at)
        return False, (
            f"skipped: a {latest.trigger} retrain already started at {latest.started_at:%Y-%m-%d %H:%M} "
            f"within the last {settings.period_days:g} days"
        )
    return True, f"scheduled safety-net retrain: no retrain in the last {settings.period_days:g} days"


def already_trained(
    requested_at: float,
    fingerprint: str,
    versions: Sequence[tuple[str, float, str | None, str | None]],
    own_run: str,
) -> str | None:
    """The one-at-a-time rule for retrains however launched: the version another run registered
    from exactly this training data after this retrain was requested, or None.

    The sensors never start a retrain while one is queued or running; two launched by hand (or by
    the CLI) at once still queue on the ``retrain`` pool one after the other. The second then finds
    the first's version, trained on the same data, and does not train or promote again.

    Args:
        requested_at: When this retrain run was created (POSIX seconds).
        fingerprint: Fingerprint of this retrain's training data (``core.training_data.data_fingerprint``).
        versions: (version, registered at, data fingerprint, Dagster run id) of the registered versions.
        own_run: This run's id (its own version, if any, does not count).
    """
    for version, created, fp, run_id in versions:
        if fp == fingerprint and created >= requested_at and run_id != own_run:
            return version
    return None
