"""The label-quality rules (core.labels) on their own."""

import numpy as np
import pandas as pd

from retrain_assets.core import labels


def test_agreement_is_below_chance_only_for_labels_that_disagree_with_confident_predictions():
    rng = np.random.default_rng(0)
    n, k = 600, 3
    truth = rng.integers(0, k, n)
    proba = np.full((n, k), 0.1)
    proba[np.arange(n), truth] = 0.8
    honest = labels.agreement(truth, proba)
    assert honest.accuracy == 1.0 and not honest.below_chance
    permuted = labels.agreement((truth + 1) % k, proba)
    assert permuted.accuracy == 0.0 and permuted.below_chance and abs(permuted.chance - 1 / 3) < 0.05
    shuffled = labels.agreement(rng.permutation(truth), proba)  # unrelated labels: at chance, not below
    assert not shuffled.below_chance
    binary = labels.agreement(1 - (proba[:, 0] > 0.5).astype(int), proba[:, 0])
    assert binary.below_chance
    assert not labels.agreement(np.array([0, 1] * 10), np.array([0.9, 0.1] * 10)).below_chance, "too few rows"


def test_accuracy_deployments_get_the_agreement_verdict_and_mae_deployments_the_spread_rule():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, 500)
    proba = np.eye(3)[truth] * 0.7 + 0.1
    verdict = labels.label_verdict(pd.Series((truth + 1) % 3), task="classification", known_classes=[0, 1, 2],
                                   metric="accuracy", metric_value=0.0, metric_low=0.0, metric_high=0.01,
                                   agreement=labels.agreement((truth + 1) % 3, proba))
    assert verdict is not None and verdict.kind == "against_features"
    for metric in ("f1", "roc_auc"):  # roc_auc deployments keep their own rule (its interval under 0.5)
        judged = labels.label_verdict(pd.Series((truth + 1) % 3), task="classification", known_classes=[0, 1, 2],
                                      metric=metric, metric_value=0.6, metric_low=0.55, metric_high=0.65,
                                      agreement=labels.agreement((truth + 1) % 3, proba))
        assert (judged is not None) == (metric == "f1")
    y = pd.Series(rng.normal(10, 1, 400))
    mae = labels.label_verdict(y, task="regression", known_classes=None, metric="mae", metric_value=5.0,
                               metric_low=4.5, metric_high=5.5)
    assert mae is not None and "mean absolute deviation" in mae.reason
    assert labels.label_verdict(y, task="regression", known_classes=None, metric="mae", metric_value=0.8,
                                metric_low=0.7, metric_high=0.9) is None
