"""What a replay keeps: the deployed model, each retrain and what it earned, and the replay of one
stream (scoring a model on a batch, training a candidate as the product does)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Sequence

import pandas as pd

from retrain_assets.core.columns import BATCH_COLUMN
from retrain_assets.core.scoring import holdout_scores
from retrain_assets.core.holdout import holdout_rows
from retrain_assets.core.performance import score_metric
from retrain_assets.core.registry import (
    TAG_HOLDOUT_BATCHES,
    TAG_HOLDOUT_METRIC,
    TAG_HOLDOUT_SHARE,
    TAG_METRIC,
    TAG_TRAINING_BATCHES,
    Champion,
)

from retrain_assets.core.schema import DatasetSchema
from retrain_assets.core.retrain import fit_candidate
from retrain_assets.core.training_data import feature_columns
from retrain_assets.core.training_data import check_training_data
from retrain_assets.core.training_window import select_training_window
from retrain_assets.settings import Settings
from retrain_assets.backtest.stream import Batch, DEFAULT_INITIAL

FALSE_RETRAIN_MARGIN = 0.005
"""A retrain is false when its candidate beats the model it replaces by less than this on the next
labelled batch (metric units for roc_auc/accuracy/f1; a fraction of the old model's value for
rmse/mae). Half a point of AUC: a smaller gain is inside the noise of one 2,000-row batch."""

CLOCK_START = datetime(2024, 1, 1)
"""Day 0 of the replay clock (one batch per day)."""


@dataclass
class Deployed:
    """A fitted model as a policy holds it (a :class:`Champion` with the registry's tags)."""

    model: Champion
    train_batches: list[str]
    holdout_batches: list[str]
    seconds: float
    holdout_share: float | None = None
    window_choice: str | None = None
    """The window variant chosen, when the retrain chose among several."""


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
        window: The training window the candidate chose (platform), or None.
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
    window: str | None = None


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

    def fit(self, upto: int, holdout_share: float | None = None, half_life: float | None = None, *,
            choose: bool = False, window: str | None = None, last_n: int | None = None) -> Deployed:
        """The model a retrain after batch ``upto`` produces (cached by training window).

        Args:
            upto: Index of the newest batch seen.
            holdout_share: Learn from the oldest part of the newest labelled batch and hold out
                this share of it (``training.adapt_on``), or None to hold it all out.
            half_life: Recency weighting of the training rows, in batches (``training.adapt_on``).
            choose: Choose the window among variants by evidence, as candidate_model does
                (:func:`~retrain_assets.core.retrain.fit_candidate`); False trains the window as given.
            window, last_n: A window forced on this fit (a baseline's), instead of ``training.window``.

        Raises:
            ValueError: Fewer than two labelled batches so far, or training data the platform
                would refuse (the message says why).
        """
        training = self.cfg.training
        base = select_training_window(
            self.ids[: upto + 1], self.labelled, window=window or training.window,
            last_n=last_n if window else training.last_n, holdout_share=holdout_share, half_life=half_life,
        )
        key = (*base.train_batches, "|", *base.holdout_batches, base.window, base.last_n, holdout_share, half_life,
               choose)
        if key in self._fits:
            return self._fits[key]
        frame, holdout = base.frames(self.frame(base.train_batches), self.frame(base.holdout_batches),
                                     time_column=self.cfg.dataset.time_column)
        problems = check_training_data(frame, self.schema, self.target, self.task, min_rows=training.min_rows,
                                       min_rows_per_class=training.min_rows_per_class)
        if problems:
            raise ValueError(f"cannot train on {base.summary}: " + "; ".join(problems))
        choice = fit_candidate(self.cfg, self.schema, base, frame, holdout, choose=choose)
        chosen = choice.window
        # version: how many batches it had seen, so messages read "champion v7"
        wrapped = Champion(self.cfg.registered_model_name, str(upto + 1), choice.trained.pipeline, None)
        holdout_value = self.score_rows(wrapped, holdout)
        wrapped.tags = {
            TAG_TRAINING_BATCHES: json.dumps(chosen.train_batches),
            TAG_HOLDOUT_BATCHES: json.dumps(chosen.holdout_batches),
            TAG_METRIC: self.metric,
            TAG_HOLDOUT_METRIC: repr(holdout_value),
        }
        if holdout_share is not None:
            wrapped.tags[TAG_HOLDOUT_SHARE] = repr(holdout_share)
        # a choice is charged every variant it fitted
        fitted = Deployed(wrapped, list(chosen.train_batches), list(chosen.holdout_batches), choice.seconds,
                          holdout_share, choice.name if len(choice.variants) > 1 else None)
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

