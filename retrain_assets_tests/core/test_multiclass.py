"""Multiclass classification in every place a metric is computed: one-vs-rest macro ROC AUC, macro F1,
accuracy, the error stream, CBPE, the paired bootstrap and McNemar, slices, flip rate, label codes,
prediction drift, concept drift, shadow scoring; and the seeded multiclass data behind them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, roc_auc_score

from retrain_assets.core import gates, performance, shadow, slice_gate, stability_gates



from retrain_assets.core.feature_drift import prediction_drift
from retrain_assets.core.performance import absent_classes, predicted_class, score_metric
from retrain_assets.core.estimation import estimate_performance
from retrain_assets.core.concept_drift import concept_drift, error_stream
from retrain_assets.core.registry import Champion
from retrain_assets.core.synthetic import MULTICLASS_TARGET, PLANS, true_plan_probabilities
from retrain_assets.core.synthetic_batches import make_batch
from retrain_assets.settings import load_settings
from retrain_assets_tests.conftest import write_config

NUMERIC = ["tenure_months", "monthly_charges", "support_calls", "age"]


def calibrated(n: int, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels drawn from them (so the probabilities are calibrated by construction)."""
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.full(k, 0.7), n)
    labels = (rng.random(n)[:, None] > np.cumsum(proba, axis=1)).sum(axis=1).clip(max=k - 1)
    return labels, proba


# --------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------


def test_roc_auc_is_one_vs_rest_macro_as_sklearn_computes_it():
    y, p = calibrated(600, seed=1)
    expected = roc_auc_score(y, p, multi_class="ovr", average="macro", labels=[0, 1, 2])
    assert score_metric("roc_auc", y, p) == pytest.approx(expected, abs=1e-12)
    assert 0.6 < expected < 1


def test_a_class_absent_from_the_labels_makes_roc_auc_undefined_and_is_named():
    y, p = calibrated(300, seed=2)
    y = np.where(y == 2, 0, y)  # no row of the third class
    assert math.isnan(score_metric("roc_auc", y, p))
    assert absent_classes(y, ["bronze", "silver", "gold"]) == ["gold"]
    assert not math.isnan(score_metric("accuracy", y, p)) and not math.isnan(score_metric("f1", y, p))


def test_accuracy_and_f1_use_the_most_probable_class_and_f1_is_macro():
    y, p = calibrated(500, seed=3)
    predicted = p.argmax(axis=1)
    assert score_metric("accuracy", y, p) == pytest.approx(np.mean(predicted == y))
    assert score_metric("f1", y, p) == pytest.approx(f1_score(y, predicted, average="macro"))
    assert list(predicted_class(np.array([0.2, 0.5, 0.7]))) == [0, 1, 1]  # binary keeps its 0.5 threshold
    assert list(error_stream("classification", y[:5], p[:5])) == list((predicted[:5] != y[:5]).astype(float))


@pytest.mark.parametrize("metric", ["roc_auc", "accuracy"])
def test_cbpe_estimates_multiclass_metrics_close_to_the_realised_ones(metric):
    y, p = calibrated(20_000, seed=4)
    estimate = estimate_performance(metric, p)["estimate"]
    assert estimate == pytest.approx(score_metric(metric, y, p), abs=0.01)
    assert estimate_performance("accuracy", p)["estimate"] == pytest.approx(p.max(axis=1).mean())


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("metric", ["roc_auc", "accuracy"])
def test_cbpe_calibrated_on_the_holdout_corrects_over_confident_probabilities(metric, k):
    def sample(n, seed):
        y, p = calibrated(n, k=k, seed=seed)
        sharp = p ** 3 / (p ** 3).sum(axis=1, keepdims=True)  # an over-confident model's probabilities
        return (y, sharp[:, 1]) if k == 2 else (y, sharp)

    holdout, batch = sample(3000, 30), sample(3000, 31)
    realised = score_metric(metric, *batch)
    raw = estimate_performance(metric, batch[1])
    fixed = estimate_performance(metric, batch[1], reference=holdout)
    assert abs(raw["estimate"] - realised) > 0.04  # the uncalibrated estimate is far off
    assert fixed["estimate"] == pytest.approx(realised, abs=0.02)
    assert "calibrated on the champion's holdout" in fixed["method"]
    too_few = estimate_performance(metric, batch[1], reference=(holdout[0][:50], holdout[1][:50]))
    assert too_few["estimate"] == raw["estimate"]


# --------------------------------------------------------------------------
# Gates
# --------------------------------------------------------------------------


def test_champion_comparison_passes_an_equal_candidate_and_blocks_a_worse_one():
    y, good = calibrated(800, seed=5)
    noise = np.random.default_rng(6).dirichlet(np.ones(3), 800)
    worse = 0.5 * good + 0.5 * noise
    same = gates.champion_comparison("roc_auc", y, good, good, n_boot=300)
    assert same.passed and same.metrics["difference"] == 0 and same.metrics["ci_low"] == 0
    blocked = gates.champion_comparison("roc_auc", y, worse, good, n_boot=300)
    assert not blocked.passed and blocked.metrics["ci_high"] < 0
    assert blocked.metrics["candidate"] == pytest.approx(score_metric("roc_auc", y, worse))


@pytest.mark.parametrize("metric", ["roc_auc", "accuracy", "f1"])
def test_paired_bootstrap_draws_match_the_metric_on_the_resampled_rows(metric):
    y, a = calibrated(200, seed=7)
    _, b = calibrated(200, seed=8)
    draws = gates.paired_bootstrap(metric, y, a, b, n_boot=5, seed=3)
    rng = np.random.default_rng(3)
    for draw in draws:
        idx = rng.integers(0, 200, 200)
        expected = score_metric(metric, y[idx], a[idx]) - score_metric(metric, y[idx], b[idx])
        assert draw == pytest.approx(expected, abs=1e-9)


def test_mcnemar_counts_rows_by_the_predicted_class():
    y = np.array([0, 1, 2, 2])
    candidate = np.eye(3)[[0, 1, 2, 0]]  # right on rows 0-2
    champion = np.eye(3)[[0, 2, 1, 2]]  # right on rows 0 and 3
    result = gates.mcnemar(y, candidate, champion)
    assert (result["candidate_only_correct"], result["champion_only_correct"]) == (2, 1)


def test_slices_need_enough_rows_of_every_class_and_the_rest():
    y, p = calibrated(600, seed=9)
    slices = pd.Series(np.where(np.arange(600) < 500, "big", "small"), name="contract")
    y = y.copy()
    y[500:] = 0  # the small slice has one class only
    result = slice_gate.slice_regression("roc_auc", y, p, p, slices, min_rows=50, min_class_rows=20)
    assert [row["slice"] for row in result.metrics["slices"]] == ["big"]
    assert result.metrics["skipped"][0]["slice"] == "small" and "class rows [100, 0, 0]" in result.metrics["skipped"][0]["reason"]
    assert result.passed


def test_flip_rate_is_the_share_of_changed_predicted_classes_with_text_labels():
    rate, flipped, task = performance.flip_rate(np.array(["gold", "silver", "bronze", "gold"], dtype=object),
                                          np.array(["gold", "bronze", "bronze", "silver"], dtype=object),
                                          task="classification")
    assert (rate, flipped, task) == (0.5, 2, "classification")


# --------------------------------------------------------------------------
# Models, monitoring, shadow
# --------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["text", "integer"])
def plan_model(request):
    """A multinomial logistic regression on the numeric features of 3,000 seeded rows."""
    train = make_batch(3000, seed=11, task="multiclass", plan_labels=request.param)
    model = LogisticRegression(max_iter=1000).fit(train[NUMERIC], train[MULTICLASS_TARGET])
    return Champion("plans", "1", model, None), request.param


def test_a_multiclass_champion_scores_a_probability_matrix_and_codes_labels_by_its_classes(plan_model):
    champion, labels = plan_model
    batch = make_batch(400, seed=12, task="multiclass", plan_labels=labels)
    scores = champion.scores(batch[NUMERIC])
    assert scores.shape == (400, 3) and np.allclose(scores.sum(axis=1), 1)
    codes = champion.label_codes(batch[MULTICLASS_TARGET])
    classes = champion.classes
    assert [classes[c] for c in codes[:20]] == batch[MULTICLASS_TARGET].tolist()[:20]
    unknown = "platinum" if labels == "text" else 7
    assert champion.label_codes(pd.Series([unknown, classes[2]], dtype=object)).tolist() == [-1, 2]
    if labels == "integer":  # integers read back as text (e.g. from CSV) are the same classes
        assert champion.label_codes(pd.Series(["0", "2"])).tolist() == [0, 2]
    assert score_metric("roc_auc", codes, scores) > 0.7


def test_a_binary_champion_still_scores_the_positive_class():
    train = make_batch(1000, seed=13)
    model = LogisticRegression(max_iter=1000).fit(train[NUMERIC], train["churned"])
    champion = Champion("churn", "1", model, None)
    assert champion.scores(train[NUMERIC]).shape == (1000,)
    assert champion.label_codes(pd.Series([0, 1, 1])).tolist() == [0, 1, 1]


def test_prediction_drift_is_seen_in_the_predicted_classes_and_not_in_clean_data(plan_model):
    champion, labels = plan_model
    reference = champion.scores(make_batch(1000, seed=14, task="multiclass")[NUMERIC])
    clean = champion.scores(make_batch(1000, seed=15, task="multiclass")[NUMERIC])
    drifted = champion.scores(make_batch(1000, seed=16, task="multiclass", scenario="covariate_drift")[NUMERIC])
    assert not prediction_drift(reference, clean, classes=champion.classes)["drifted"]
    moved = prediction_drift(reference, drifted, classes=champion.classes)
    assert moved["drifted"] and moved["predicted_class"]["drifted"]
    gold = champion.classes.index("gold" if labels == "text" else 2)  # higher charges: more gold predicted
    assert np.mean(drifted.argmax(axis=1) == gold) > np.mean(reference.argmax(axis=1) == gold) + 0.1


def test_concept_drift_is_detected_on_a_multiclass_champion(plan_model):
    champion, labels = plan_model
    holdout = make_batch(800, seed=17, task="multiclass", plan_labels=labels)
    shifted = make_batch(800, seed=18, task="multiclass", plan_labels=labels, scenario="concept_drift")
    h_y, h_s = champion.label_codes(holdout[MULTICLASS_TARGET]), champion.scores(holdout[NUMERIC])
    y, s = champion.label_codes(shifted[MULTICLASS_TARGET]), champion.scores(shifted[NUMERIC])
    result = concept_drift("classification", "roc_auc", y, s, holdout_metric=score_metric("roc_auc", h_y, h_s),
                           warmup_errors=error_stream("classification", h_y, h_s), holdout=(h_y, h_s), n_boot=200)
    assert result.drift_detected and result.degraded and result.batch.value < 0.6


def test_shadow_scoring_pairs_two_multiclass_models(plan_model, tmp_path):
    champion, labels = plan_model
    train = make_batch(3000, seed=19, task="multiclass", plan_labels=labels)
    weak = LogisticRegression(max_iter=1000).fit(train[["age", "support_calls"]].assign(
        tenure_months=0.0, monthly_charges=0.0)[NUMERIC], train[MULTICLASS_TARGET])
    challenger = Champion("plans", "2", weak, None)
    cfg = load_settings(write_config(tmp_path, **{"dataset.target": MULTICLASS_TARGET,
                                                  "schema.classes": list(PLANS) if labels == "text" else [0, 1, 2]}))
    batch = make_batch(1000, seed=20, task="multiclass", plan_labels=labels)
    scores = shadow.shadow_score(cfg, "batch_0002", batch[[*NUMERIC, MULTICLASS_TARGET]], champion, challenger)
    assert scores.metric == "roc_auc" and scores.difference_ci_high < 0  # the weak challenger is worse
    assert scores.champion_positive_rate is None  # no positive class among three
    assert 0 < scores.agreement < 1 and all(1 / 3 <= q <= 1 for q in scores.champion_quantiles)
    unlabelled = shadow.shadow_score(cfg, "batch_0003", batch[NUMERIC], champion, challenger)
    assert unlabelled.champion_estimated_metric > unlabelled.challenger_estimated_metric


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


@pytest.mark.parametrize("labels, classes", [("text", set(PLANS)), ("integer", {0, 1, 2})])
def test_multiclass_batches_are_seeded_and_follow_the_known_probabilities(labels, classes):
    a = make_batch(4000, seed=21, task="multiclass", plan_labels=labels)
    pd.testing.assert_frame_equal(a, make_batch(4000, seed=21, task="multiclass", plan_labels=labels))
    assert set(a[MULTICLASS_TARGET]) == classes
    expected = true_plan_probabilities(a).mean(axis=0)
    codes = a[MULTICLASS_TARGET].map({c: i for i, c in enumerate(PLANS)}) if labels == "text" else a[MULTICLASS_TARGET]
    observed = np.bincount(codes.to_numpy(dtype=int), minlength=3) / len(a)
    assert np.allclose(observed, expected, atol=0.03)
    noisy = make_batch(4000, seed=21, task="multiclass", plan_labels=labels, scenario="label_noise", label_noise=0.2)
    changed = noisy[MULTICLASS_TARGET] != a[MULTICLASS_TARGET]
    assert changed.sum() == 800 and sorted(np.flatnonzero(changed)) == noisy.attrs["noisy_rows"]
    corrupt = make_batch(1000, seed=21, task="multiclass", plan_labels=labels, scenario="corrupt")
    assert corrupt[MULTICLASS_TARGET].isna().sum() == list(corrupt.attrs["corrupted_rows"].values()).count("missing_target")
