"""The retrain policies a backtest compares (never, every batch, every k, the textbook rule, the
platform) and :func:`run_policy`, which replays one of them over a stream."""

from __future__ import annotations

import dataclasses

from retrain_assets.core import cron
from retrain_assets.core.scoring import IncomparableModels, comparable_holdout, holdout_scores
from retrain_assets.core.drift import textbook_rule
from retrain_assets.core.gates import champion_comparison
from retrain_assets.core.performance import absolute_tolerance, better_by
from retrain_assets.core.monitoring import concept_record, monitor_batch
from retrain_assets.core.policy import (
    BatchSignal,
    PolicySettings,
    PolicyState,
    RetrainRecord,
    decide,
    next_action,
    schedule_due,
)

from retrain_assets.core.watch import measure_batch
from retrain_assets.settings import Settings
from retrain_assets.backtest.replay import Deployed, FALSE_RETRAIN_MARGIN, PolicyRun, Replay, RetrainEvent

TEXTBOOK_ALPHA = 0.05
TEXTBOOK_MIN_ACCURACY = 0.85
"""The textbook rule: any uncorrected per-feature p < 0.05, or accuracy below 0.85."""


# --------------------------------------------------------------------------
# Policies
# --------------------------------------------------------------------------


class Policy:
    """A retrain policy: after each batch, retrain or not; then keep the candidate or not."""

    name = "policy"
    description = ""

    def reset(self, replay: Replay, deployed: Deployed) -> None:
        """Start a replay (the first model is deployed after the initial batches)."""

    def after_batch(self, replay: Replay, index: int, deployed: Deployed) -> tuple[str | None, str]:
        """(trigger, reason) to retrain after batch ``index``, or (None, why not)."""
        raise NotImplementedError

    def adaptation(self, replay: Replay, trigger: str) -> dict[str, float | None]:
        """How its retrains adapt to a changed concept (:meth:`Replay.fit` arguments): not at all
        for the baselines, which retrain the way a cron script would."""
        return {"holdout_share": None, "half_life": None}

    def accept(self, replay: Replay, index: int, candidate: Deployed, deployed: Deployed) -> tuple[bool, str | None]:
        """Whether the candidate replaces the deployed model, and the gate's sentence."""
        return True, None

    def rollback(self) -> Deployed | None:
        """A model to go back to, decided on the batch just seen (platform only)."""
        return None


class Never(Policy):
    """Keep the first model."""

    name = "never"
    description = "never retrain"

    def after_batch(self, replay, index, deployed):
        return None, "never retrains"


class EveryBatch(Policy):
    """Retrain after every batch."""

    name = "every_batch"
    description = "retrain after every batch"

    def after_batch(self, replay, index, deployed):
        return "schedule", "after every batch"


class EveryBatchNewest(Policy):
    """Retrain after every batch on the newest labelled batch before the holdout only."""

    name = "every_batch_newest"
    description = "retrain after every batch on the newest batch only"

    def after_batch(self, replay, index, deployed):
        return "schedule", "after every batch"

    def adaptation(self, replay, trigger):
        return {"holdout_share": None, "half_life": None, "window": "last_n_batches", "last_n": 1}


class EveryK(Policy):
    """Retrain after every k-th batch."""

    name = "every_k"

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self.description = f"retrain after every {k} batches"

    def after_batch(self, replay, index, deployed):
        if (index - replay.initial + 1) % self.k == 0:
            return "schedule", f"every {self.k} batches"
        return None, f"not a multiple of {self.k}"


class Textbook(Policy):
    """Retrain on any uncorrected p < 0.05 against the training data, or accuracy below 0.85."""

    name = "textbook"
    description = (f"any feature KS/chi-square p<{TEXTBOOK_ALPHA:g} (uncorrected) vs the training data, "
                   f"or accuracy<{TEXTBOOK_MIN_ACCURACY:g}")

    def after_batch(self, replay, index, deployed):
        batch_id = replay.ids[index]
        columns = replay.numeric + replay.categorical
        reference = replay.frame(deployed.train_batches)[columns]
        if textbook_rule(reference, replay.frames[batch_id][columns], replay.numeric, replay.categorical):
            return "data_drift", f"a feature's KS/chi-square p < {TEXTBOOK_ALPHA:g} on {batch_id}"
        if replay.task == "classification" and replay.labelled[batch_id]:
            accuracy = replay.score(deployed.model, batch_id, "accuracy")
            if accuracy < TEXTBOOK_MIN_ACCURACY:
                return "performance_decline", f"accuracy {accuracy:.3f} < {TEXTBOOK_MIN_ACCURACY:g} on {batch_id}"
        return None, "no p < 0.05 and accuracy fine"


class Platform(Policy):
    """The platform, as its sensors, schedule and gates act on each batch.

    Per batch: ``drift_report`` (:func:`monitor_batch`) and ``production_metrics``
    (:func:`measure_batch`, with the post-promotion watch) are computed against the deployed model;
    a new champion that the watch finds significantly worse is rolled back to the previous one
    (``performance_sensor``); otherwise the batch's :class:`BatchSignal` (merged as
    ``state.batch_signals`` merges the two tables) joins the signals since the last retrain,
    :func:`next_action` (the drift and performance sensors' own call) decides; with no retrain,
    the safety-net schedule (``automation.schedule_cron``) ticks that fall before the next batch
    ask :func:`schedule_due`. A candidate is deployed only if it passes the comparison gate.

    Args:
        settings: The policy controls.
        schedule: Whether the safety-net schedule runs.
    """

    name = "platform"

    def __init__(self, settings: PolicySettings, *, schedule: bool = True) -> None:
        self.settings = settings
        self.schedule = schedule
        self.description = "drift/performance signals + policy controls + comparison gate"
        self.history: list[RetrainRecord] = []
        self.signals: list[BatchSignal] = []
        self.previous: Deployed | None = None
        self.watch_left = 0
        self.rollback_to: Deployed | None = None
        self.rollbacks: list[str] = []

    def reset(self, replay, deployed):
        first = replay.initial - 1
        self.history = [RetrainRecord(replay.now(first), "bootstrap", frozenset(replay.ids[: first + 1]))]
        self.signals, self.previous, self.watch_left, self.rollback_to, self.rollbacks = [], None, 0, None, []

    def after_batch(self, replay, index, deployed):
        cfg, batch_id, now = replay.cfg, replay.ids[index], replay.now(index)
        current = replay.frames[batch_id]
        holdout = replay.frame(deployed.holdout_batches)
        report = monitor_batch(
            cfg, replay.schema, batch_id=batch_id, current=current, reference=replay.frame(deployed.train_batches),
            reference_ids=deployed.train_batches, champion=deployed.model, holdout=holdout,
        )
        labelled = replay.labelled[batch_id]
        previous = self.previous.model if self.previous is not None and self.watch_left > 0 and labelled else None
        measured = measure_batch(cfg, batch_id, current, deployed.model, holdout=holdout, previous=previous,
                                 concept=concept_record(report.concept) if report.concept is not None else None)
        if previous is not None:
            self.watch_left -= 1
        self.signals.append(BatchSignal.from_monitoring(
            batch_id, data_drift=report.data_drift, prediction_drift=report.prediction_drift,
            concept_drift=report.concept_drift, degraded=measured.degraded, below_floor=measured.below_floor,
            labelled_rows=replay.labelled_rows[batch_id], summary=report.summary,
        ))
        if measured.rollback_recommended:
            self.rollback_to, self.previous, self.watch_left = self.previous, None, 0
            self.rollbacks.append(batch_id)
            return None, f"rolled back: {measured.summary}"
        decision = next_action(now, self._state(), self.settings)  # what the drift/performance sensors decide
        if not decision.retrain and self.schedule:
            for tick in cron.ticks(cfg.automation.schedule_cron, now, replay.now(index + 1)):
                due, why = schedule_due(tick, self.history, self.settings)
                if not due:
                    continue
                state = self._state()
                decision = decide(tick, trigger="schedule", reason=why, history=state.history,
                                  new_batches=len(state.signals), new_labelled_rows=state.new_labelled_rows,
                                  running=False, settings=self.settings)
                if decision.retrain:
                    now = tick
                    break
        if not decision.retrain:
            return None, decision.reason
        self.history.append(RetrainRecord(now, decision.trigger, frozenset(replay.ids[: index + 1])))
        self.signals = []
        return decision.trigger, decision.reason

    def _state(self) -> PolicyState:
        """The policy's view, as the sensors read it: the retrains so far and the signals since the last
        (a replay runs one retrain at a time, so none is ever running when a batch arrives)."""
        return PolicyState(history=self.history, running=False, signals=list(self.signals))

    def rollback(self):
        back, self.rollback_to = self.rollback_to, None
        return back

    def adaptation(self, replay, trigger):
        """As ``candidate_model`` does: ``training.adapt_on`` triggers learn from the newest batch and
        weight recent batches more, and the window is chosen among variants by evidence."""
        return {**replay.cfg.training.adaptation(trigger), "choose": True}

    def accept(self, replay, index, candidate, deployed):
        try:
            holdout = comparable_holdout(replay.holdout(candidate), deployed.model,
                                         time_column=replay.cfg.dataset.time_column)
        except IncomparableModels as error:  # as candidate_model refuses it
            return False, str(error)
        scores = holdout_scores(replay.task, replay.target, candidate.model, deployed.model, holdout)
        gates = replay.cfg.gates
        result = champion_comparison(
            replay.metric, scores.y_true, scores.candidate_scores, scores.champion_scores,
            tolerance=gates.comparison_tolerance, n_boot=gates.bootstrap_resamples, seed=replay.cfg.model.seed,
        )
        if result.passed:
            self.previous, self.watch_left = deployed, replay.cfg.automation.watch_batches
        return result.passed, result.summary


def policy_settings(cfg: Settings, overrides: dict[str, str] | None = None) -> tuple[PolicySettings, str]:
    """The platform's policy controls: ``automation.*`` of the config, then ``overrides``.

    Returns:
        (settings, where they came from).
    """
    settings = cfg.automation.policy()
    source = "config automation.* (" + ", ".join(
        f"{f.name}={getattr(settings, f.name):g}" for f in dataclasses.fields(PolicySettings)
    ) + f", schedule_cron '{cfg.automation.schedule_cron}', watch_batches={cfg.automation.watch_batches})"
    if not overrides:
        return settings, source
    names = [f.name for f in dataclasses.fields(PolicySettings)]
    values = {}
    for key, text in overrides.items():
        if key not in names:
            raise ValueError(f"unknown policy setting {key!r}; one of {names}")
        values[key] = int(text) if isinstance(getattr(settings, key), int) else float(text)
    return dataclasses.replace(settings, **values), source + " overridden: " + ", ".join(
        f"{k}={v}" for k, v in overrides.items())


# --------------------------------------------------------------------------
# Running and reporting
# --------------------------------------------------------------------------


def run_policy(replay: Replay, policy: Policy) -> PolicyRun:
    """Replay the stream under one policy.

    Args:
        replay: The stream and model cache.
        policy: The policy.

    Returns:
        What it did and earned.
    """
    deployed = replay.fit(replay.initial - 1)
    policy.reset(replay, deployed)
    run = PolicyRun(policy.name, policy.description)
    for index in range(replay.initial, len(replay.ids)):
        batch_id = replay.ids[index]
        run.metrics[batch_id] = replay.score(deployed.model, batch_id)
        trigger, reason = policy.after_batch(replay, index, deployed)
        run.decisions[batch_id] = reason
        back = policy.rollback()
        if back is not None:
            run.rollbacks.append(batch_id)
            deployed = back
        if trigger is None:
            continue
        event = RetrainEvent(batch_id, trigger, reason)
        run.retrains.append(event)
        try:
            candidate = replay.fit(index, **policy.adaptation(replay, trigger))
        except ValueError as error:
            event.failed = str(error)
            continue
        event.seconds, event.window = candidate.seconds, candidate.window_choice
        event.deployed, event.gate = policy.accept(replay, index, candidate, deployed)
        following = replay.next_labelled(index)
        if following is not None:
            event.next_batch = replay.ids[following]
            new = replay.score(candidate.model, event.next_batch)
            old = replay.score(deployed.model, event.next_batch)
            event.gain = better_by(replay.metric, new, old)
            event.false_retrain = bool(event.gain < absolute_tolerance(replay.metric, FALSE_RETRAIN_MARGIN, old))
        if event.deployed:
            deployed = candidate
    return run


