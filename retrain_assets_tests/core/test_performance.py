"""Metrics with intervals, concept drift with River's detectors, and the CBPE estimate."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from retrain_assets.core.performance import metric_with_ci, score_metric
from retrain_assets.core.estimation import estimate_performance, expected_roc_auc
from retrain_assets.core.concept_drift import concept_drift, error_stream, stream_detectors


def _calibrated(n: int, seed: int, auc_shift: float = 1.5):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    p = 1 / (1 + np.exp(-auc_shift * x))
    y = (rng.uniform(size=n) < p).astype(int)
    return y, p


def test_expected_roc_auc_matches_the_pairwise_definition():
    p = np.round(np.random.default_rng(0).uniform(size=60), 1)  # ties included
    num = den = 0.0
    for i in range(len(p)):
        for j in range(len(p)):
            if i != j:
                w = p[i] * (1 - p[j])
                den += w
                num += w * ((p[i] > p[j]) + 0.5 * (p[i] == p[j]))
    assert expected_roc_auc(p) == pytest.approx(num / den, abs=1e-12)


@pytest.mark.parametrize("metric", ["roc_auc", "accuracy"])
def test_cbpe_estimate_is_close_to_the_realised_metric_when_calibrated(metric):
    y, p = _calibrated(20_000, seed=1)
    realised = score_metric(metric, y, p)
    estimate = estimate_performance(metric, p)
    assert estimate["estimate"] == pytest.approx(realised, abs=0.01)
    assert "CBPE" in estimate["method"]


def test_cbpe_refuses_metrics_it_cannot_estimate():
    with pytest.raises(ValueError, match="no label-free estimate for 'f1'"):
        estimate_performance("f1", [0.2, 0.8])


def test_metric_with_ci_covers_the_truth_and_is_seeded():
    y, p = _calibrated(2000, seed=2)
    a = metric_with_ci("roc_auc", y, p, n_boot=200, seed=3)
    b = metric_with_ci("roc_auc", y, p, n_boot=200, seed=3)
    assert a == b
    assert a.low < a.value < a.high
    assert a.value == pytest.approx(roc_auc_score(y, p))


@pytest.mark.parametrize(
    "metric, y, s, expected",
    [
        ("accuracy", [1, 0, 1, 0], [0.9, 0.2, 0.4, 0.6], 0.5),
        ("f1", [1, 1, 0, 0], [0.9, 0.8, 0.7, 0.1], 0.8),
        ("rmse", [1.0, 2.0], [1.0, 4.0], np.sqrt(2.0)),
        ("mae", [1.0, 2.0], [2.0, 4.0], 1.5),
    ],
)
def test_score_metric_values(metric, y, s, expected):
    assert score_metric(metric, np.array(y), np.array(s)) == pytest.approx(expected)


def test_roc_auc_on_one_class_is_nan_not_an_error():
    assert np.isnan(score_metric("roc_auc", np.array([1, 1]), np.array([0.2, 0.9])))


def test_metric_inputs_are_checked():
    with pytest.raises(ValueError, match="y_true has 3 rows but scores has 2"):
        metric_with_ci("accuracy", [1, 0, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="not available for regression"):
        concept_drift("regression", "roc_auc", [1.0], [1.0], holdout_metric=1.0)


def test_no_concept_drift_on_data_like_the_holdout():
    y_h, p_h = _calibrated(3000, seed=4)
    holdout_auc = score_metric("roc_auc", y_h, p_h)
    y, p = _calibrated(2000, seed=5)
    result = concept_drift("classification", "roc_auc", y, p, holdout_metric=holdout_auc,
                           warmup_errors=error_stream("classification", y_h, p_h), n_boot=200)
    assert not result.degraded
    assert not result.drift_detected, result.summary


def test_concept_drift_when_the_label_rule_changes():
    y_h, p_h = _calibrated(3000, seed=6)
    holdout_auc = score_metric("roc_auc", y_h, p_h)
    rng = np.random.default_rng(7)
    x = rng.normal(size=2000)
    p_model = 1 / (1 + np.exp(-1.5 * x))
    y_new = (rng.uniform(size=2000) < 1 / (1 + np.exp(1.5 * x))).astype(int)  # the rule flipped
    result = concept_drift("classification", "roc_auc", y_new, p_model, holdout_metric=holdout_auc,
                           warmup_errors=error_stream("classification", y_h, p_h), n_boot=200)
    assert result.degraded and result.drift_detected
    assert result.detector_fired
    assert "significantly worse" in result.summary


def test_a_small_noisy_batch_is_not_called_degraded():
    y, p = _calibrated(60, seed=8)
    result = concept_drift("classification", "roc_auc", y, p, holdout_metric=score_metric("roc_auc", y, p) + 0.03,
                           n_boot=200)
    assert not result.degraded, "a 0.03 gap on 60 rows is inside the interval"


def test_regression_concept_drift_uses_rmse_lower_is_better():
    rng = np.random.default_rng(9)
    y = rng.normal(size=1500)
    good = y + rng.normal(scale=0.5, size=1500)
    bad = y + rng.normal(scale=1.5, size=1500)
    assert not concept_drift("regression", "rmse", y, good, holdout_metric=0.5, n_boot=200).degraded
    assert concept_drift("regression", "rmse", y, bad, holdout_metric=0.5, n_boot=200).degraded


def test_streaming_detectors_fire_only_inside_the_batch():
    rng = np.random.default_rng(10)
    warmup = (rng.uniform(size=3000) < 0.15).astype(float)
    same = (rng.uniform(size=2000) < 0.15).astype(float)
    worse = (rng.uniform(size=2000) < 0.45).astype(float)
    quiet = stream_detectors("classification", warmup, same)
    loud = stream_detectors("classification", warmup, worse)
    assert {d.detector for d in quiet} == {"ADWIN", "PageHinkley", "DDM"}
    assert not any(d.fired for d in quiet), quiet
    assert all(d.fired for d in loud), loud
    assert all(1 <= d.first_row <= 2000 for d in loud)


def test_errors_that_fall_are_not_concept_drift():
    # The champion scored on a batch it was trained on: far fewer errors than on its holdout. The
    # detectors see the error rate change, but a model doing better is nothing to retrain for.
    rng = np.random.default_rng(11)
    y_h, p_h = _calibrated(3000, seed=12)
    holdout_auc = score_metric("roc_auc", y_h, p_h)
    y = rng.integers(0, 2, 2000)
    p = np.clip(np.where(y == 1, 0.9, 0.1) + rng.normal(0, 0.05, 2000), 0.01, 0.99)  # almost perfect
    result = concept_drift("classification", "roc_auc", y, p, holdout_metric=holdout_auc,
                           warmup_errors=error_stream("classification", y_h, p_h), n_boot=200)
    assert result.detector_fired and not result.worse
    assert not result.drift_detected and "but it fell: not drift" in result.summary


def test_a_lucky_holdout_does_not_make_clean_batches_look_degraded():
    """The holdout metric is itself an estimate: judged against it as if exact, clean batches from
    the holdout's own distribution were called degraded whenever the holdout happened to score high.
    Bootstrapping both samples keeps those false alarms near the 2.5% one-sided level."""
    exact = two_sample = 0
    for seed in range(40):
        y_h, p_h = _calibrated(300, seed=1000 + seed)
        y, p = _calibrated(1000, seed=2000 + seed)
        holdout_auc = score_metric("roc_auc", y_h, p_h)
        exact += concept_drift("classification", "roc_auc", y, p, holdout_metric=holdout_auc,
                               tolerance=0.02, n_boot=200, seed=seed).degraded
        result = concept_drift("classification", "roc_auc", y, p, holdout_metric=holdout_auc,
                               tolerance=0.02, holdout=(y_h, p_h), n_boot=200, seed=seed)
        two_sample += result.degraded
        assert result.difference is not None and result.difference.low < result.difference.value < result.difference.high
    assert two_sample <= 1 and two_sample <= exact, (two_sample, exact)


def test_a_real_loss_is_still_caught_with_both_samples_bootstrapped():
    y_h, p_h = _calibrated(300, seed=13)
    rng = np.random.default_rng(14)
    y, p = _calibrated(1000, seed=15)
    flip = rng.uniform(size=1000) < 0.25  # a quarter of the labels follow another rule
    y = np.where(flip, 1 - y, y)
    result = concept_drift("classification", "roc_auc", y, p, holdout_metric=score_metric("roc_auc", y_h, p_h),
                           holdout=(y_h, p_h), n_boot=200)
    assert result.degraded and result.difference.high < 0
    assert "difference -0." in result.summary


def test_a_detector_alarm_within_the_tolerance_is_not_drift():
    from retrain_assets.core.concept_drift import ConceptDriftResult, DetectorOutcome
    from retrain_assets.core.performance import MetricEstimate

    fired = [DetectorOutcome("ADWIN", True, 3, 120)]
    dip = ConceptDriftResult("roc_auc", MetricEstimate("roc_auc", 0.830, 0.81, 0.85, 1000, ""), 0.844, 0.02, False, fired)
    assert dip.worse and not dip.drift_detected and "within the 0.02 tolerance" in dip.summary
    drop = ConceptDriftResult("roc_auc", MetricEstimate("roc_auc", 0.81, 0.79, 0.85, 1000, ""), 0.844, 0.02, False, fired)
    assert drop.drift_detected and "streaming detectors fired: ADWIN" in drop.summary
