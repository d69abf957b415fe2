"""A model is never scored on rows it trained on (issue 14, honest scoring): the drift report, the
champion's production metrics, the post-promotion watch and shadow scoring all score a model only
on rows it never learnt from. Each scored frame is checked against the model's own training rows
(their customer ids), so any path that scores training rows fails here."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from retrain_assets.core import registry as reg
from retrain_assets.core.columns import BATCH_COLUMN, ROW_COLUMN
from retrain_assets.core.holdout import unseen_rows
from retrain_assets.core.monitoring import monitor_batch
from retrain_assets.core.registry import Champion
from retrain_assets.core.schema import infer_schema
from retrain_assets.core.shadow import shadow_score
from retrain_assets.core.synthetic import ID_COLUMN, TARGET, TIME_COLUMN
from retrain_assets.core.synthetic_batches import make_batch
from retrain_assets.core.training import train
from retrain_assets.core.training_window import select_training_window
from retrain_assets.core.watch import measure_batch
from retrain_assets.settings import load_settings
from retrain_assets_tests.conftest import write_config


def _batch(index: int, rows: int = 400) -> pd.DataFrame:
    frame = make_batch(rows, seed=500 + index, batch_index=index)
    frame.insert(0, ROW_COLUMN, np.arange(1, rows + 1))
    frame.insert(0, BATCH_COLUMN, f"b{index}")
    return frame


class Recorded(Champion):
    """A champion that remembers every customer it was asked to score."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.scored: set[str] = set()

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        self.scored |= set(frame[ID_COLUMN])
        return super().scores(frame)


def _model(version: str, batches: dict[str, pd.DataFrame], labelled: list[str], schema, holdout_share=None):
    window = select_training_window(labelled, {b: True for b in labelled}, holdout_share=holdout_share)
    train_rows, holdout = window.frames(pd.concat([batches[b] for b in window.train_batches]),
                                        pd.concat([batches[b] for b in window.holdout_batches]), time_column=TIME_COLUMN)
    fitted = train(train_rows, schema, TARGET, "classification", "logistic_regression", seed=0)
    tags = {reg.TAG_TRAINING_BATCHES: json.dumps(window.train_batches),
            reg.TAG_HOLDOUT_BATCHES: json.dumps(window.holdout_batches), reg.TAG_METRIC: "roc_auc",
            reg.TAG_HOLDOUT_METRIC: "0.8"}
    if holdout_share is not None:
        tags[reg.TAG_HOLDOUT_SHARE] = repr(holdout_share)
    model = Recorded("churn", version, fitted.pipeline, None, tags)
    return model, set(train_rows[ID_COLUMN]), holdout


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    cfg = load_settings(write_config(tmp_path_factory.mktemp("ws")))
    batches = {f"b{i}": _batch(i) for i in range(1, 5)}
    schema = infer_schema(batches["b1"], target=TARGET, task="classification", time_column=TIME_COLUMN,
                          id_columns=[ID_COLUMN])
    # v2 learnt from b1, b2 and the oldest half of b3 (an adapt_on retrain); v1 from b1 only.
    champion, trained_on, holdout = _model("2", batches, ["b1", "b2", "b3"], schema, holdout_share=0.5)
    previous, previous_trained_on, _ = _model("1", batches, ["b1", "b2"], schema)
    return cfg, schema, batches, (champion, trained_on, holdout), (previous, previous_trained_on)


def test_unseen_rows_follow_the_model_tags(world):
    cfg, _, batches, (champion, trained_on, _), _ = world
    rows, why = unseen_rows(champion, "b2", batches["b2"], time_column=TIME_COLUMN)
    assert rows.empty and "trained on batch b2" in why
    rows, why = unseen_rows(champion, "b3", batches["b3"], time_column=TIME_COLUMN)
    assert len(rows) == 200 and not set(rows[ID_COLUMN]) & trained_on and "newest 200 rows" in why
    rows, why = unseen_rows(champion, "b4", batches["b4"], time_column=TIME_COLUMN)
    assert len(rows) == 400 and why is None


@pytest.mark.parametrize("batch_id", ["b2", "b3", "b4"])
def test_no_report_scores_a_model_on_its_own_training_rows(world, batch_id):
    cfg, schema, batches, (champion, trained_on, holdout), (previous, previous_trained_on) = world
    champion.scored.clear(), previous.scored.clear()
    reference = pd.concat([batches["b1"], batches["b2"]])
    monitored = monitor_batch(cfg, schema, batch_id=batch_id, current=batches[batch_id], reference=reference,
                              reference_ids=["b1", "b2"], champion=champion, holdout=holdout)
    measured = measure_batch(cfg, batch_id, batches[batch_id], champion, holdout=holdout, previous=previous)
    try:
        shadow_score(cfg, batch_id, batches[batch_id], previous, champion)
    except ValueError as error:
        assert "both never trained on" in str(error)
    assert not champion.scored & trained_on, f"v2 scored on {len(champion.scored & trained_on)} of its training rows"
    assert not previous.scored & previous_trained_on
    if batch_id == "b2":
        assert measured.batch_metric is None and "not scored on its own training rows" in measured.summary
        assert monitored.concept is None and any("not scored on its own training rows" in n for n in monitored.notes)
    else:  # what is unseen is still measured
        assert measured.batch_metric is not None and monitored.concept is not None
        assert len(champion.scored & set(batches[batch_id][ID_COLUMN])) == (200 if batch_id == "b3" else 400)


def test_candidate_and_champion_are_compared_on_rows_the_champion_never_trained_on(world):
    """A second retrain on the same newest batch: the candidate holds out all of b3, but the champion
    learnt from b3's oldest half, so only b3's newest half can compare them fairly."""
    from retrain_assets.core.scoring import IncomparableModels, comparable_holdout, holdout_scores

    cfg, schema, batches, (champion, trained_on, _), _ = world
    champion.scored.clear()
    candidate = Champion("churn", "candidate", champion.model, None)
    holdout = comparable_holdout(batches["b3"], champion, time_column=TIME_COLUMN)
    holdout_scores("classification", TARGET, candidate, champion, holdout)
    assert len(holdout) == 200 and champion.scored and not champion.scored & trained_on
    with pytest.raises(IncomparableModels, match="trained on every row of the holdout"):
        comparable_holdout(batches["b2"], champion, time_column=TIME_COLUMN)
    assert len(comparable_holdout(batches["b4"], champion, time_column=TIME_COLUMN)) == 400
