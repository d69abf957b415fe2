"""Policy backtester: replay a stream of batches under several retrain policies and compare them.

``python -m retrain_assets.backtest`` replays batches in arrival order — a seeded synthetic demo
stream by default, or the files of a landing folder with ``--landing`` — with the same ``core/``
functions the platform runs (no Dagster, no daemon, no MLflow), under five policies:

* ``never`` — keep the first model for ever;
* ``every_batch`` — retrain after every batch;
* ``every_k`` — retrain after every ``k``-th batch (a cron job);
* ``textbook`` — retrain when any feature's two-sample KS / chi-square test against the deployed
  model's training data gives an uncorrected p < 0.05, or when the deployed model's accuracy on
  the labelled batch is below 0.85 (classification);
* ``platform`` — the platform as its sensors, schedule and gates act: per batch, what
  ``drift_report`` (:func:`~retrain_assets.core.monitoring.monitor_batch`) and
  ``production_metrics`` (:func:`~retrain_assets.core.watch.measure_batch`, with the
  post-promotion watch and its rollback) compute, merged into a
  :class:`~retrain_assets.core.policy.BatchSignal`; then
  :func:`~retrain_assets.core.policy.next_action` (the sensors' own decision), the safety-net schedule
  (``automation.schedule_cron`` ticks, :func:`~retrain_assets.core.policy.schedule_due`) and
  :func:`~retrain_assets.core.policy.decide` with the configured ``automation.*`` controls. A
  candidate replaces the deployed model only if it passes
  :func:`~retrain_assets.core.gates.champion_comparison` against it on the newest labelled batch
  (the holdout), as in production (the other five gates are not replayed). The other policies
  replace the model unconditionally, as a cron script does.

For each batch ``i`` the deployed model is first scored on it (the metric the policy *earned* on
that batch), then the policy decides whether to retrain having seen it. A retrain trains, like the
product, on every labelled batch so far except the newest, which is the holdout
(:func:`~retrain_assets.core.training_window.select_training_window` with the configured window). The first
model is trained on the first ``--initial`` batches for every policy and is not counted as a
retrain. Replayed batches have no wall-clock time: the clock advances one day per batch, so the
cooldown and budget of the policy work as they would with daily batches.

A **false retrain** is a retrain whose candidate was not better than the model deployed when it
started by at least :data:`FALSE_RETRAIN_MARGIN` on the next labelled batch (both scored on the
same rows) — compute spent for nothing. For the platform, candidates blocked by the gate are also
counted separately (a blocked candidate is a false retrain when it would not have helped either).

The output is a Markdown table per policy (mean and final-third metric, retrains, training
seconds, false retrains), the verdict on the platform's targets, a PNG of the metric per batch
per policy and a CSV of the same numbers. Example::

    python -m retrain_assets.backtest                       # 30 demo batches x 2000 rows
    python -m retrain_assets.backtest --batches 8 --rows 400 --out /tmp/bt.png
    python -m retrain_assets.backtest --landing data/landing
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from retrain_assets.core.columns import BATCH_COLUMN, ROW_COLUMN
from retrain_assets.constants import BATCH_EXTENSIONS
from retrain_assets.core import cron, synthetic
from retrain_assets.core.synthetic import (  # the stream's generator lives with the other demo data
    DEMO_BLIP_STRENGTH,
    DEMO_COVARIATE_STRENGTH,
    DEMO_LABEL_NOISE,
    DemoBatchSpec,
    demo_batch,
    demo_plan,
    stream_batch_seed,
)
from retrain_assets.core.candidate import holdout_scores
from retrain_assets.core.drift import textbook_rule
from retrain_assets.core.holdout import holdout_rows
from retrain_assets.core.gates import absolute_tolerance, better_by, champion_comparison
from retrain_assets.core.ingestion import BatchReadError, batch_id_of, is_ignored_name, name_problem, read_batch
from retrain_assets.core.monitoring import concept_record, monitor_batch
from retrain_assets.core.performance import HIGHER_IS_BETTER, score_metric
from retrain_assets.core.policy import (
    BatchSignal,
    PolicySettings,
    PolicyState,
    RetrainRecord,
    decide,
    next_action,
    schedule_due,
)
from retrain_assets.core.registry import (
    TAG_HOLDOUT_BATCHES,
    TAG_HOLDOUT_METRIC,
    TAG_HOLDOUT_SHARE,
    TAG_METRIC,
    TAG_TRAINING_BATCHES,
    Champion,
)

from retrain_assets.core.schema import DatasetSchema, normalise_labels, numeric_parse, with_classes
from retrain_assets.core.train import train
from retrain_assets.core.training_data import feature_columns
from retrain_assets.core.training_data import check_training_data
from retrain_assets.core.training_window import select_training_window
from retrain_assets.core.validation import validate_batch
from retrain_assets.core.watch import measure_batch
from retrain_assets.core.markdown import markdown_table
from retrain_assets.settings import Settings, load_settings

DEFAULT_BATCHES = synthetic.STREAM_BATCHES
DEFAULT_ROWS = 2000
DEFAULT_SEED = 7
DEFAULT_EVERY = 5
DEFAULT_INITIAL = synthetic.STREAM_INITIAL
"""The first model learns from the first two batches and is judged on the third, for every policy."""

FALSE_RETRAIN_MARGIN = 0.005
"""A retrain is false when its candidate beats the model it replaces by less than this on the next
labelled batch (metric units for roc_auc/accuracy/f1; a fraction of the old model's value for
rmse/mae). Half a point of AUC: a smaller gain is inside the noise of one 2,000-row batch."""

TEXTBOOK_ALPHA = 0.05
TEXTBOOK_MIN_ACCURACY = 0.85
"""The textbook rule: any uncorrected per-feature p < 0.05, or accuracy below 0.85."""

TARGET_METRIC_GAP = 0.005
"""Target: the platform's mean metric within half a point of retraining after every batch."""

TARGET_RETRAIN_SHARE = 1 / 3
"""Target: the platform retrains at most a third as often as retraining after every batch."""

POLICIES = ("never", "every_batch", "every_k", "textbook", "platform")

CLOCK_START = datetime(2024, 1, 1)
"""Day 0 of the replay clock (one batch per day)."""


# --------------------------------------------------------------------------
# The stream
# --------------------------------------------------------------------------


@dataclass
class Batch:
    """One batch of the replayed stream.

    Attributes:
        batch_id: Its id (streams are replayed in list order).
        frame: Its validated rows (the target present; a missing target means an unlabelled row).
        labelled_rows: Rows with a target.
        note: What the batch carries (demo stream) or whether it is labelled (landing).
    """

    batch_id: str
    frame: pd.DataFrame
    labelled_rows: int
    note: str = ""

    @property
    def labelled(self) -> bool:
        """Whether any row has a label."""
        return self.labelled_rows > 0


def demo_stream(n_batches: int = DEFAULT_BATCHES, n_rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED,
                *, initial: int = DEFAULT_INITIAL) -> list[Batch]:
    """The seeded demo stream of :func:`demo_plan` (synthetic churn data, every batch labelled)."""
    return [
        Batch(spec.batch_id, frame, int(frame[synthetic.TARGET].notna().sum()), spec.note)
        for i, spec in enumerate(demo_plan(n_batches, initial=initial))
        for frame in [demo_batch(spec, n_rows, stream_batch_seed(seed, i))]
    ]


def _labels_as_validated(raw: pd.Series, schema: DatasetSchema) -> pd.Series:
    """The target parsed as validation parses it; unparseable or unknown labels become missing."""
    if schema.task == "regression":
        values = numeric_parse(raw)
        return values.mask(~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan)))
    labels = normalise_labels(raw)
    if schema.classes is not None:
        labels = labels.where(labels.isin(list(schema.classes)))
    return labels


def landing_stream(folder: Path, cfg: Settings) -> tuple[list[Batch], DatasetSchema | None, list[str]]:
    """The batches of a landing folder, in batch-id order, validated as the platform validates them.

    Each file is read with :func:`read_batch` and its features validated with
    :func:`validate_batch` against the config's schema (inferred from the first readable batch
    under the config's hints, as the platform does). Rows with a missing (or unparseable, or
    unknown-class) target count as unlabelled rather than being quarantined, so a partly
    labelled batch is replayed with the labels it has. Files that cannot be read and batches that
    fail validation are skipped and listed.

    Args:
        folder: The landing folder (``*.csv`` / ``*.parquet``; other files are ignored).
        cfg: The settings (dataset, schema hints, validation limit).

    Returns:
        (batches, the schema they were validated against, notes on skipped files).
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"landing folder {folder} does not exist")
    target = cfg.dataset.target
    paths = sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix in BATCH_EXTENSIONS and not is_ignored_name(p.name)),
        key=lambda p: (batch_id_of(p), p.suffix),
    )
    schema: DatasetSchema | None = None
    batches, skipped, seen = [], [], set()
    for path in paths:
        batch_id = batch_id_of(path)
        problem = name_problem(path)
        if problem or batch_id in seen:
            skipped.append(f"{path.name}: {problem or f'a second file for batch {batch_id}'}")
            continue
        try:
            raw = read_batch(path, encoding=cfg.dataset.encoding, delimiter=cfg.dataset.csv_delimiter)
        except BatchReadError as error:
            skipped.append(f"{path.name}: {error}")
            continue
        if schema is None:
            schema = cfg.schema_for(None, raw, batch_id)
        if schema.task == "classification" and schema.classes is None and target in raw.columns:
            schema = with_classes(schema, raw[target].tolist())
        labels = _labels_as_validated(raw[target], schema) if target in raw.columns else None
        report = validate_batch(
            raw.drop(columns=[target], errors="ignore"), schema, batch_id=batch_id,
            max_invalid_fraction=cfg.validation.max_invalid_fraction,
        )
        if not report.passed:
            skipped.append(f"{path.name}: {report.summary}")
            continue
        frame = report.valid
        if labels is not None:
            values = labels.set_axis(raw[ROW_COLUMN].to_numpy()).reindex(frame[ROW_COLUMN].to_numpy())
            if values.dropna().map(lambda v: isinstance(v, (int, float))).all():
                values = pd.to_numeric(values)  # NaN marks an unlabelled row
                if values.notna().all() and (values == values.round()).all():
                    values = values.astype("int64")
            frame[target] = values.to_numpy()
        labelled = int(frame[target].notna().sum()) if target in frame.columns else 0
        seen.add(batch_id)
        note = "labelled" if labelled == len(frame) else ("unlabelled" if not labelled else "partly labelled")
        batches.append(Batch(batch_id, frame, labelled, note))
    return batches, schema, skipped


# --------------------------------------------------------------------------
# Replay
# --------------------------------------------------------------------------


@dataclass
class Deployed:
    """A fitted model as a policy holds it (a :class:`Champion` with the registry's tags)."""

    model: Champion
    train_batches: list[str]
    holdout_batches: list[str]
    seconds: float
    holdout_share: float | None = None


@dataclass
class RetrainEvent:
    """One retrain a policy started.

    Attributes:
        after_batch: The batch it was decided on (it learnt from the batches before it).
        trigger: Why (the platform's trigger names; ``schedule`` for the cron policies).
        reason: One sentence.
        seconds: Training seconds (the fit only).
        deployed: Whether the candidate replaced the deployed model.
        gate: The comparison gate's sentence (platform only).
        next_batch: The next labelled batch, on which the gain is measured.
        gain: Candidate minus replaced model on ``next_batch`` (positive = candidate better).
        false_retrain: ``gain`` below the margin; None when there is no next labelled batch.
        failed: Why training failed (the deployed model is kept), or None.
    """

    after_batch: str
    trigger: str
    reason: str
    seconds: float = 0.0
    deployed: bool = False
    gate: str | None = None
    next_batch: str | None = None
    gain: float | None = None
    false_retrain: bool | None = None
    failed: str | None = None


@dataclass
class PolicyRun:
    """What one policy did over the stream.

    Attributes:
        policy: Its name.
        description: What it does.
        metrics: Batch id → metric of the deployed model on that batch (NaN when unlabelled),
            for every batch after the initial ones.
        retrains: The retrains it started.
        decisions: Batch id → the policy's reason for retraining or not.
        rollbacks: Batches after which the post-promotion watch rolled the model back (platform).
    """

    policy: str
    description: str
    metrics: dict[str, float] = field(default_factory=dict)
    retrains: list[RetrainEvent] = field(default_factory=list)
    decisions: dict[str, str] = field(default_factory=dict)
    rollbacks: list[str] = field(default_factory=list)

    @property
    def training_seconds(self) -> float:
        """Training compute of its retrains."""
        return float(sum(e.seconds for e in self.retrains))

    @property
    def false_retrains(self) -> int:
        """Retrains that did not pay (see :data:`FALSE_RETRAIN_MARGIN`)."""
        return sum(1 for e in self.retrains if e.false_retrain)

    @property
    def blocked(self) -> int:
        """Candidates the gate kept out."""
        return sum(1 for e in self.retrains if not e.deployed and e.failed is None)


class Replay:
    """The shared state of one backtest: the stream, the schema, and a cache of fitted models.

    A fit depends only on its training batches (and the configured estimator and seed), so two
    policies retraining on the same window get the same model; it is fitted once and each policy
    is charged its training seconds.

    Args:
        cfg: The settings (dataset, model, training window, gates, drift).
        batches: The stream, in arrival order.
        initial: Batches the first model learns from.
        schema: The dataset schema; default: inferred from the first batch under the config's hints.
    """

    def __init__(self, cfg: Settings, batches: Sequence[Batch], *, initial: int = DEFAULT_INITIAL,
                 schema: DatasetSchema | None = None) -> None:
        if len(batches) <= initial:
            raise ValueError(f"the stream has {len(batches)} batches; more than initial={initial} are needed")
        ids = [b.batch_id for b in batches]
        if len(set(ids)) != len(ids):
            raise ValueError("batch ids repeat in the stream")
        self.cfg = cfg
        self.batches = list(batches)
        self.ids = ids
        self.frames = {b.batch_id: b.frame for b in batches}
        self.labelled = {b.batch_id: b.labelled for b in batches}
        self.labelled_rows = {b.batch_id: b.labelled_rows for b in batches}
        self.initial = initial
        self.target, self.task, self.metric = cfg.dataset.target, cfg.dataset.task, cfg.metric
        self.schema = schema or cfg.schema_for(None, batches[0].frame, batches[0].batch_id)
        self.numeric, self.categorical = feature_columns(self.schema)
        self._fits: dict[tuple[str, ...], Deployed] = {}

    def now(self, index: int) -> datetime:
        """The replay clock: one batch per day."""
        return CLOCK_START + timedelta(days=index)

    def frame(self, batch_ids: Sequence[str]) -> pd.DataFrame:
        """The rows of these batches, stacked, with their ``_batch_id`` (as DuckDB stores them)."""
        return pd.concat([self.frames[b].assign(**{BATCH_COLUMN: b}) for b in batch_ids], ignore_index=True)

    def fit(self, upto: int, holdout_share: float | None = None, half_life: float | None = None) -> Deployed:
        """The model a retrain after batch ``upto`` produces (cached by training window).

        Args:
            upto: Index of the newest batch seen.
            holdout_share: Learn from the oldest part of the newest labelled batch and hold out
                this share of it (``training.adapt_on``), or None to hold it all out.
            half_life: Recency weighting of the training rows, in batches (``training.adapt_on``).

        Raises:
            ValueError: Fewer than two labelled batches so far, or training data the platform
                would refuse (the message says why).
        """
        training = self.cfg.training
        window = select_training_window(self.ids[: upto + 1], self.labelled, window=training.window,
                                        last_n=training.last_n, holdout_share=holdout_share, half_life=half_life)
        key = (*window.train_batches, "|", *window.holdout_batches, holdout_share, half_life)
        if key in self._fits:
            return self._fits[key]
        frame, holdout = window.frames(self.frame(window.train_batches), self.frame(window.holdout_batches),
                                       time_column=self.cfg.dataset.time_column)
        problems = check_training_data(frame, self.schema, self.target, self.task, min_rows=training.min_rows,
                                       min_rows_per_class=training.min_rows_per_class)
        if problems:
            raise ValueError(f"cannot train on {window.summary}: " + "; ".join(problems))
        model = self.cfg.model
        trained = train(frame, self.schema, self.target, self.task, model.estimator, model.params, model.seed,
                        sample_weight=window.weights(frame))
        # version: how many batches it had seen, so messages read "champion v7"
        wrapped = Champion(self.cfg.registered_model_name, str(upto + 1), trained.pipeline, None)
        holdout_value = self.score_rows(wrapped, holdout)
        wrapped.tags = {
            TAG_TRAINING_BATCHES: json.dumps(window.train_batches),
            TAG_HOLDOUT_BATCHES: json.dumps(window.holdout_batches),
            TAG_METRIC: self.metric,
            TAG_HOLDOUT_METRIC: repr(holdout_value),
        }
        if holdout_share is not None:
            wrapped.tags[TAG_HOLDOUT_SHARE] = repr(holdout_share)
        fitted = Deployed(wrapped, list(window.train_batches), list(window.holdout_batches), trained.seconds,
                          holdout_share)
        self._fits[key] = fitted
        return fitted

    def score(self, model: Champion, batch_ids: str | Sequence[str], metric: str | None = None) -> float:
        """The model's metric on the labelled rows of these batches (NaN when none is labelled)."""
        ids = [batch_ids] if isinstance(batch_ids, str) else list(batch_ids)
        return self.score_rows(model, self.frame(ids), metric)

    def score_rows(self, model: Champion, frame: pd.DataFrame, metric: str | None = None) -> float:
        """The model's metric on the labelled rows of a frame (NaN when none is labelled)."""
        if self.target not in frame.columns or not frame[self.target].notna().any():
            return float("nan")
        scores = holdout_scores(self.task, self.target, model, None, frame)
        return score_metric(metric or self.metric, scores.y_true, scores.candidate_scores)

    def holdout(self, deployed: Deployed) -> pd.DataFrame:
        """The rows a model was judged on (its holdout batch, or the newest share of it)."""
        return holdout_rows(self.frame(deployed.holdout_batches), deployed.holdout_share,
                            time_column=self.cfg.dataset.time_column)

    def next_labelled(self, index: int) -> int | None:
        """The first labelled batch after ``index``, or None."""
        return next((j for j in range(index + 1, len(self.ids)) if self.labelled[self.ids[j]]), None)


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
        weight recent batches more."""
        return replay.cfg.training.adaptation(trigger)

    def accept(self, replay, index, candidate, deployed):
        holdout = replay.holdout(candidate)
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
        event.seconds = candidate.seconds
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


@dataclass
class BacktestResult:
    """Every policy's run over one stream."""

    runs: list[PolicyRun]
    batches: list[Batch]
    metric: str
    initial: int
    policy_source: str
    seconds: float = 0.0

    def run(self, name: str) -> PolicyRun:
        """The run of one policy."""
        return next(r for r in self.runs if r.policy == name)

    @property
    def scored(self) -> list[str]:
        """Batches every policy was scored on."""
        return [b.batch_id for b in self.batches[self.initial:]]

    @property
    def final_period(self) -> list[str]:
        """The last third of the stream (at least one batch, only scored ones)."""
        tail = [b.batch_id for b in self.batches[-max(1, len(self.batches) // 3):]]
        return [b for b in tail if b in self.scored]

    def per_batch(self) -> pd.DataFrame:
        """One row per scored batch: its note and each policy's metric and retrain."""
        notes = {b.batch_id: b.note for b in self.batches}
        rows = []
        for batch_id in self.scored:
            row = {"batch_id": batch_id, "note": notes[batch_id]}
            for run in self.runs:
                row[run.policy] = run.metrics[batch_id]
                row[f"{run.policy}_retrain"] = next(
                    (e.trigger + ("" if e.deployed else " (kept out)") for e in run.retrains if e.after_batch == batch_id), "")
            rows.append(row)
        return pd.DataFrame(rows)

    def table(self) -> pd.DataFrame:
        """The comparison: one row per policy."""
        rows = []
        for run in self.runs:
            values = pd.Series(run.metrics, dtype=float)
            rows.append({
                "policy": run.policy,
                f"mean {self.metric}": round(float(values.mean()), 4),
                f"final-third {self.metric}": round(float(values[self.final_period].mean()), 4),
                "retrains": len(run.retrains),
                "training s": round(run.training_seconds, 1),
                "false retrains": run.false_retrains,
                "kept out by gate": run.blocked if run.policy == "platform" else "–",
                "rollbacks": len(run.rollbacks) if run.policy == "platform" else "–",
                "rule": run.description,
            })
        return pd.DataFrame(rows)

    def verdicts(self) -> list[tuple[str, bool]]:
        """The platform's targets, (sentence, passed) each; empty unless platform, every_batch and
        textbook all ran."""
        table = self.table().set_index("policy")
        if not {"platform", "every_batch", "textbook"} <= set(table.index):
            return []
        mean = f"mean {self.metric}"
        platform, every, textbook = (table.loc[p] for p in ("platform", "every_batch", "textbook"))
        gap = better_by(self.metric, platform[mean], every[mean])
        limit = math.floor(every["retrains"] * TARGET_RETRAIN_SHARE)
        vs_textbook = better_by(self.metric, platform[mean], textbook[mean])
        word = "points" if HIGHER_IS_BETTER[self.metric] else "units"
        return [
            (f"platform mean {self.metric} {platform[mean]:.4f} vs every_batch {every[mean]:.4f}: "
             f"{gap * 100:+.2f} {word} (target: within {TARGET_METRIC_GAP * 100:.1f})", bool(gap >= -TARGET_METRIC_GAP)),
            (f"platform retrains {platform['retrains']} vs every_batch {every['retrains']} "
             f"(target: at most a third, {limit})", bool(platform["retrains"] <= limit)),
            (f"platform mean {self.metric} {platform[mean]:.4f} vs textbook {textbook[mean]:.4f}: "
             f"{vs_textbook * 100:+.2f} {word} (target: better)", bool(vs_textbook > 0)),
            (f"platform retrains {platform['retrains']} vs textbook {textbook['retrains']} (target: fewer)",
             bool(platform["retrains"] < textbook["retrains"])),
        ]

    def plot(self, path: Path, *, title: str) -> Path:
        """A PNG: the metric per batch per policy (top) and when each policy retrained (bottom).

        Returns:
            The PNG path (folders are created).
        """
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path.parent.mkdir(parents=True, exist_ok=True)
        frame = self.per_batch()
        x = np.arange(self.initial + 1, self.initial + 1 + len(frame))
        position = dict(zip(frame["batch_id"], x))
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7), sharex=True,
                                          gridspec_kw={"height_ratios": [3, 1.1]})
        styles = {
            "never": dict(color="#7f7f7f", lw=1.2, ls=":"),
            "every_batch": dict(color="#1f77b4", lw=5, alpha=0.35),
            "every_k": dict(color="#2ca02c", lw=1.3),
            "textbook": dict(color="#d62728", lw=1.3, ls="--"),
            "platform": dict(color="#9467bd", lw=2.2),
        }
        for run in self.runs:
            top.plot(x, frame[run.policy].to_numpy(dtype=float), marker=".", label=self._label(run),
                     **styles.get(run.policy, {}))
        stretches: list[list] = []
        for k, note in enumerate(frame["note"]):
            if stretches and stretches[-1][2] == note:
                stretches[-1][1] = k
            else:
                stretches.append([k, k, note])
        for n, (first, last, note) in enumerate(stretches):
            if n % 2:
                for ax in (top, bottom):
                    ax.axvspan(x[first] - 0.5, x[last] + 0.5, color="#f2f2f2", zorder=0)
            top.text(x[first] - 0.4, 0.98, note, transform=top.get_xaxis_transform(), fontsize=6.5,
                     rotation=90, va="top", color="#555555")
        top.set_ylabel(f"{self.metric} of the deployed model")
        top.set_title(title, fontsize=9)
        top.grid(alpha=0.3)
        top.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        for row, run in enumerate(self.runs):
            done = [position[e.after_batch] for e in run.retrains if e.deployed]
            kept = [position[e.after_batch] for e in run.retrains if not e.deployed]
            colour = styles.get(run.policy, {}).get("color")
            bottom.scatter(done, [row] * len(done), marker="|", s=120, color=colour)
            bottom.scatter(kept, [row] * len(kept), marker="x", s=30, color=colour)
            back = [position[b] for b in run.rollbacks]
            bottom.scatter(back, [row] * len(back), marker="<", s=30, color=colour)
        bottom.set_yticks(range(len(self.runs)), [r.policy for r in self.runs], fontsize=8)
        bottom.set_ylim(-0.6, len(self.runs) - 0.4)
        bottom.set_title("retrains after the batch (| deployed, x kept out by the gate, < rolled back)", fontsize=8)
        bottom.set_xlabel("batch (arrival order)")
        bottom.grid(alpha=0.3, axis="x")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

    def _label(self, run: PolicyRun) -> str:
        mean = float(pd.Series(run.metrics, dtype=float).mean())
        return f"{run.policy} (mean {mean:.3f}, {len(run.retrains)} retrains)"


def run_backtest(
    cfg: Settings,
    batches: Sequence[Batch],
    *,
    every: int = DEFAULT_EVERY,
    initial: int = DEFAULT_INITIAL,
    settings: PolicySettings | None = None,
    policy_source: str = "",
    schedule: bool = True,
    policies: Sequence[str] = POLICIES,
    schema: DatasetSchema | None = None,
) -> BacktestResult:
    """Replay ``batches`` under the policies.

    Args:
        cfg: The settings (dataset, model, training window, gates, drift thresholds).
        batches: The stream in arrival order.
        every: k of the every-k policy.
        initial: Batches the first model learns from.
        settings: The platform's policy controls; default :func:`policy_settings` of ``cfg``.
        policy_source: Where ``settings`` came from (printed).
        schedule: Whether the platform's safety-net schedule runs.
        policies: Which policies to run (names from :data:`POLICIES`).
        schema: The dataset schema; default: inferred from the first batch under the config's hints.

    Returns:
        The result.
    """
    started = time.perf_counter()
    if settings is None:
        settings, policy_source = policy_settings(cfg)
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown policies {unknown}; choose from {POLICIES}")
    make = {
        "never": Never, "every_batch": EveryBatch, "every_k": lambda: EveryK(every), "textbook": Textbook,
        "platform": lambda: Platform(settings, schedule=schedule),
    }
    replay = Replay(cfg, batches, initial=initial, schema=schema)
    runs = [run_policy(replay, make[name]()) for name in policies]
    return BacktestResult(runs, list(batches), cfg.metric, initial, policy_source, time.perf_counter() - started)


def format_report(result: BacktestResult, *, command: str, out: Path | None) -> str:
    """The printed report: the table, the verdicts, the platform's retrains, the files."""
    lines = [f"$ {command}", ""]
    lines.append(f"{len(result.batches)} batches, the first {result.initial} train the first model for every policy; "
                 f"{len(result.scored)} scored, final third = {result.final_period[0]}…{result.final_period[-1]}")
    notes = [(b.batch_id, b.note) for b in result.batches]
    stretches = []
    for batch_id, note in notes:
        if stretches and stretches[-1][2] == note:
            stretches[-1][1] = batch_id
        else:
            stretches.append([batch_id, batch_id, note])
    lines.append("stream: " + "; ".join(f"{a}…{b}: {n}" if a != b else f"{a}: {n}" for a, b, n in stretches))
    lines.append(f"platform policy: {result.policy_source}")
    lines += ["", markdown_table(result.table()), ""]
    lines.append(f"false retrain = the candidate beat the model it replaced by < {FALSE_RETRAIN_MARGIN:g} {result.metric} "
                 "on the next labelled batch (a retrain after the last batch is not judged). Training s = fit time "
                 "of the retrains (the first model excluded).")
    lines.append("")
    for sentence, passed in result.verdicts():
        lines.append(f"[{'PASS' if passed else 'FAIL'}] {sentence}")
    for run in result.runs:
        if run.policy in ("textbook", "platform"):
            triggers = pd.Series([e.trigger for e in run.retrains], dtype=object).value_counts().to_dict()
            lines.append(f"{run.policy} retrain triggers: {triggers}")
    platform = next((r for r in result.runs if r.policy == "platform"), None)
    if platform is not None:
        lines += ["", "platform retrains (gain = candidate minus the model it replaced, on the next labelled batch):"]
        for e in platform.retrains:
            gain = "" if e.gain is None else f", gain on {e.next_batch} {e.gain:+.4f}"
            outcome = "failed: " + e.failed if e.failed else ("deployed" if e.deployed else "kept out by the gate")
            why = e.reason.split("actionable drift — ", 1)[-1]
            if e.trigger in ("concept_drift", "performance_decline") and "champion " in why:
                why = why[why.index("champion "):]
            lines.append(f"  after {e.after_batch}: {e.trigger} → {outcome}{gain} | {_shorten(why, 110)}")
        for batch_id in platform.rollbacks:
            lines.append(f"  rolled back after {batch_id}: {_shorten(platform.decisions[batch_id], 150)}")
    if out is not None:
        lines += ["", f"plot: {out}", f"per-batch metrics: {out.with_suffix('.csv')}"]
    lines.append(f"replay took {result.seconds:.1f} s")
    return "\n".join(lines)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _parse_overrides(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--policy-setting wants KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m retrain_assets.backtest", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None, help="config file (default: $RETRAIN_CONFIG or the demo config)")
    parser.add_argument("--landing", type=Path, default=None,
                        help="replay the CSV/Parquet batches of this folder (batch-id order) instead of the demo stream")
    parser.add_argument("--batches", type=int, default=DEFAULT_BATCHES, help="demo stream: number of batches")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="demo stream: rows per batch")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="demo stream: base seed")
    parser.add_argument("--every", type=int, default=DEFAULT_EVERY, help="k of the every-k policy")
    parser.add_argument("--initial", type=int, default=DEFAULT_INITIAL, help="batches the first model learns from")
    parser.add_argument("--policy-setting", action="append", default=[], metavar="KEY=VALUE",
                        help="override a PolicySettings field of the platform policy (repeatable)")
    parser.add_argument("--no-schedule", action="store_true", help="the platform policy without its safety-net schedule")
    parser.add_argument("--out", type=Path, default=None,
                        help="PNG to write (default: <storage.root>/reports/backtest.png); a CSV is written beside it")
    args = parser.parse_args(argv)

    cfg = load_settings(args.config)
    schema = None
    if args.landing is not None:
        batches, schema, skipped = landing_stream(args.landing, cfg)
        for note in skipped:
            print(f"skipped {note}")
    else:
        if (cfg.dataset.target, cfg.dataset.task) != (synthetic.TARGET, "classification"):
            parser.error(f"the demo stream is the synthetic churn data (target {synthetic.TARGET!r}); the config's "
                         f"dataset is {cfg.dataset.target!r} ({cfg.dataset.task}): pass --landing with your batches")
        batches = demo_stream(args.batches, args.rows, args.seed, initial=args.initial)
    try:
        settings, source = policy_settings(cfg, _parse_overrides(args.policy_setting))
    except ValueError as error:
        parser.error(str(error))
    result = run_backtest(cfg, batches, every=args.every, initial=args.initial, settings=settings,
                          policy_source=source, schedule=not args.no_schedule, schema=schema)
    out = args.out or cfg.reports_dir / "backtest.png"
    command = "python -m retrain_assets.backtest" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    result.plot(out, title=f"{command}\n{result.metric} of the deployed model per batch")
    result.per_batch().to_csv(out.with_suffix(".csv"), index=False)
    print(format_report(result, command=command, out=out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
