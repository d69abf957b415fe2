"""Shadow scoring (core/shadow.py): champion and challenger on the same batch, the evidence over
batches, and the metric-over-batches plot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retrain_assets.core import report, shadow

from retrain_assets.core.registry import Champion
from retrain_assets.core.synthetic_batches import make_batch
from retrain_assets.settings import load_settings
from retrain_assets_tests.conftest import churn_pipeline, write_config


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return load_settings(write_config(tmp_path_factory.mktemp("shadow")))


@pytest.fixture(scope="module")
def models():
    """A sound champion (trained on 2,000 rows) and a weak challenger (trained on 2,000 shuffled labels)."""
    train = make_batch(2000, seed=1, batch_index=1)
    X, y = train.drop(columns=["churned"]), train["churned"]
    good = churn_pipeline().fit(X, y)
    noise = churn_pipeline().fit(X, np.random.default_rng(0).permutation(y.to_numpy()))
    return Champion("churn", "1", good, None), Champion("churn", "2", noise, None)


def test_a_labelled_batch_gets_both_metrics_and_the_paired_difference(cfg, models):
    champion, challenger = models
    batch = make_batch(1500, seed=2, batch_index=2)
    scores = shadow.shadow_score(cfg, "batch_0002", batch, champion, challenger)
    assert scores.labelled and scores.rows == 1500 and scores.metric == "roc_auc"
    assert scores.champion_ci_low < scores.champion_metric < scores.champion_ci_high
    assert scores.challenger_ci_low < scores.challenger_metric < scores.challenger_ci_high
    assert scores.champion_metric > 0.75 and scores.challenger_metric < 0.65
    assert scores.difference == pytest.approx(scores.challenger_metric - scores.champion_metric)
    assert scores.difference_ci_high < 0  # the label-shuffled challenger is significantly worse
    assert scores.champion_estimated_metric is None  # labels beat an estimate
    assert 0 < scores.agreement < 1 and len(scores.champion_quantiles) == len(shadow.QUANTILES)
    assert "challenger v2 roc_auc" in scores.summary and "vs champion v1" in scores.summary
    table = scores.comparison()
    assert list(table[""]) == ["roc_auc", "predicted positive rate", "mean score", "score p10 / p50 / p90",
                               "predictions agree"]


def test_an_unlabelled_batch_gets_both_score_distributions(cfg, models):
    champion, challenger = models
    batch = make_batch(800, seed=3, batch_index=3).drop(columns=["churned"])
    scores = shadow.shadow_score(cfg, "batch_0003", batch, champion, challenger)
    assert not scores.labelled and scores.champion_metric is None and scores.difference is None
    assert 0 <= scores.champion_positive_rate <= 1 and 0 <= scores.challenger_positive_rate <= 1
    assert scores.champion_estimated_metric is not None and scores.challenger_estimated_metric is not None
    assert scores.champion_quantiles != scores.challenger_quantiles
    assert "no labels" in scores.summary and "predicted positive rate" in scores.summary


def test_the_same_model_on_both_sides_differs_by_nothing(cfg, models):
    champion, _ = models
    twin = Champion("churn", "9", champion.model, None)
    scores = shadow.shadow_score(cfg, "b", make_batch(600, seed=4, batch_index=4), champion, twin)
    assert scores.difference == 0 and scores.difference_ci_low == 0 == scores.difference_ci_high
    assert scores.agreement == 1.0 and scores.mean_abs_score_difference == 0


def test_classifiers_of_different_classes_are_refused(cfg, models):
    champion, _ = models
    batch = make_batch(300, seed=5, batch_index=5)
    other = churn_pipeline().fit(batch.drop(columns=["churned"]), batch["churned"].map({0: "no", 1: "yes"}))
    with pytest.raises(ValueError, match="cannot be scored on the same rows"):
        shadow.shadow_score(cfg, "b", batch, champion, Champion("churn", "3", other, None))


def test_combined_difference_weights_precise_batches_more():
    mean, low, high = shadow.combine_differences([0.02, -0.10], [0.01, -0.30], [0.03, 0.10])
    assert 0.015 < mean < 0.02 and low < mean < high  # the narrow first batch dominates
    se_first = 0.02 / (2 * shadow.Z95)
    assert high - low < 2 * shadow.Z95 * se_first  # combined, narrower than the best batch alone
    assert all(np.isnan(shadow.combine_differences([0.1], [0.1], [0.1])))  # zero-width: no weight


def _row(batch, labelled, difference=None, low=None, high=None, **more):
    base = dict(batch_id=batch, champion_version="1", challenger_version="2", labelled=labelled, metric="roc_auc",
                rows=500, difference=difference, difference_ci_low=low, difference_ci_high=high,
                champion_metric=0.8, champion_ci_low=0.78, champion_ci_high=0.82, challenger_metric=0.8,
                challenger_ci_low=0.78, challenger_ci_high=0.82, champion_estimated_metric=None,
                challenger_estimated_metric=None, champion_positive_rate=0.2, challenger_positive_rate=0.25,
                agreement=0.9)
    return base | more


@pytest.mark.parametrize(
    ("rows", "verdict", "words"),
    [
        ([("b1", 0.02, 0.01, 0.03), ("b2", 0.015, 0.005, 0.025)], "better",
         "over the last 2 labelled batch(es) (b1…b2, 1000 rows) challenger v2 is better than champion v1"),
        ([("b1", -0.03, -0.05, -0.01)], "worse", "challenger v2 is worse than champion v1: roc_auc difference -0.0300"),
        ([("b1", 0.01, -0.01, 0.03)], "no significant difference", "not significantly different from"),
    ],
)
def test_evidence_says_better_worse_or_no_difference(rows, verdict, words):
    frame = pd.DataFrame([_row(b, True, d, lo, hi) for b, d, lo, hi in rows]
                         + [_row("b9", False, champion_estimated_metric=0.8, challenger_estimated_metric=0.82)])
    evidence = shadow.shadow_evidence(frame)
    assert evidence.verdict == verdict and words in evidence.summary
    assert evidence.labelled_batches == len(rows) and evidence.unlabelled_batches == 1
    assert "on 1 unlabelled batch(es) the challenger predicts 25.0% positive vs 20.0%" in evidence.summary
    table = shadow.evidence_table(frame)
    assert list(table["batch"]) == [*[r[0] for r in rows], "b9"] and table["difference (+ = challenger better)"].iloc[-1] == "(no labels)"


def test_evidence_without_labels_says_so_and_refuses_mixed_pairs():
    evidence = shadow.shadow_evidence(pd.DataFrame([_row("b1", False)]))
    assert evidence.verdict == "no labelled batch yet" and evidence.difference is None
    with pytest.raises(ValueError, match="2 champion/challenger pairs"):
        shadow.shadow_evidence(pd.DataFrame([_row("b1", True, 0.1, 0, 0.2), _row("b2", True, 0.1, 0, 0.2, challenger_version="3")]))


def test_the_metric_plot_is_a_png(tmp_path):
    metrics = pd.DataFrame({
        "batch_id": ["b1", "b2", "b3"], "champion_version": ["1", "1", "2"], "batch_metric": [0.8, None, 0.82],
        "ci_low": [0.78, None, 0.8], "ci_high": [0.82, None, 0.84], "estimated_metric": [None, 0.79, None],
    })
    frame = pd.DataFrame([_row("b3", True, 0.01, 0.0, 0.02), _row("b2", False, challenger_estimated_metric=0.8)])
    path = report.plot_metric_history(metrics, frame, tmp_path / "p" / "m.png", metric="roc_auc", floor=0.6, title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
