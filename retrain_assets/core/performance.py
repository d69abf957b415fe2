"""Model performance on new batches: metrics with confidence intervals, concept drift, and a
label-free estimate for batches that arrive without labels. Pure Python (no Dagster).

* :func:`metric_with_ci` — a metric with a seeded bootstrap confidence interval.
* :func:`concept_drift` — the champion's metric on a labelled batch against its holdout metric
  (significant *and* larger than a tolerance), plus River's streaming detectors (ADWIN, DDM,
  Page-Hinkley) over the per-row error stream, primed on the holdout rows so a change at the batch
  boundary is visible.
* :func:`estimate_performance` — CBPE-style confidence-based estimate of accuracy and ROC AUC for
  unlabelled batches (valid when the classifier's probabilities are calibrated).

Scores: a binary classifier's are its positive-class probabilities (1-D, labels 0/1); a multiclass
classifier's are its probability matrix (rows × classes, labels the class's column index, -1 for a
class the model does not know); a regressor's are its predictions. ``roc_auc`` of a multiclass
model is one-vs-rest, macro-averaged over the model's classes, and ``f1`` is macro-averaged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from sklearn import metrics as skm

from retrain_assets.core.gate_defaults import DEFAULT_REGRESSION_CHANGE
from retrain_assets.core.stats import rank_auc, weighted_auc

Task = Literal["classification", "regression"]
HIGHER_IS_BETTER = {"roc_auc": True, "accuracy": True, "f1": True, "rmse": False, "mae": False}
DEFAULT_METRIC = {"classification": "roc_auc", "regression": "rmse"}


def check_metric(metric: str, task: Task | None = None) -> None:
    """Refuse a metric that does not exist (or, given ``task``, that the task does not have)."""
    if task is None:
        if metric not in HIGHER_IS_BETTER:
            raise ValueError(f"unknown metric {metric!r}; choose one of {sorted(HIGHER_IS_BETTER)}")
        return
    allowed = ("roc_auc", "accuracy", "f1") if task == "classification" else ("rmse", "mae")
    if metric not in allowed:
        raise ValueError(f"metric {metric!r} is not available for {task}; choose one of {allowed}")


def predicted_class(scores: np.ndarray) -> np.ndarray:
    """The predicted class of every row: 1 where the positive-class probability is at least 0.5
    (binary, 1-D scores), else the column of the largest probability (multiclass, a matrix)."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim == 2:
        return np.argmax(scores, axis=1)
    return (scores >= 0.5).astype(int)


def score_values(scores: np.ndarray) -> np.ndarray:
    """One number per row for score distributions: the positive-class probability (binary), the
    largest class probability (multiclass: the model's confidence) or the prediction (regression)."""
    scores = np.asarray(scores, dtype=float)
    return scores.max(axis=1) if scores.ndim == 2 else scores


def ovr_macro_auc(codes: np.ndarray, proba: np.ndarray) -> float:
    """One-vs-rest ROC AUC averaged over the columns of ``proba`` (the model's classes).

    Equal to ``roc_auc_score(codes, proba, multi_class="ovr", average="macro", labels=range(k))``:
    NaN when a class has no rows (its one-vs-rest AUC is undefined; :func:`absent_classes` says
    which), rather than an average over fewer classes than the model knows.
    """
    codes = np.asarray(codes)
    proba = np.asarray(proba, dtype=float)
    return float(np.mean([rank_auc((codes == c).astype(int), proba[:, c]) for c in range(proba.shape[1])]))


def absent_classes(codes: np.ndarray, classes: Sequence) -> list:
    """The classes (of a multiclass model's ``classes``) with no row among the labels ``codes``."""
    present = set(np.asarray(codes).tolist())
    return [c for i, c in enumerate(classes) if i not in present]


def macro_f1(codes: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    """F1 averaged over the classes seen in the labels or the predictions (a class absent from both
    has no F1 and is left out, as sklearn's ``zero_division=np.nan`` does)."""
    codes, predicted = np.asarray(codes), np.asarray(predicted)
    f1s = []
    for c in range(n_classes):
        tp = np.sum((predicted == c) & (codes == c))
        wrong = np.sum((predicted == c) != (codes == c))  # false positives + false negatives
        if 2 * tp + wrong:
            f1s.append(2 * tp / (2 * tp + wrong))
    return float(np.mean(f1s)) if f1s else float("nan")


def score_metric(metric: str, y_true: np.ndarray, scores: np.ndarray) -> float:
    """One metric value.

    Args:
        metric: roc_auc, accuracy, f1 (classification; ``scores`` are positive-class probabilities
            or a multiclass probability matrix, see the module docstring) or rmse, mae (regression;
            ``scores`` are predictions).
        y_true: True labels (0/1 or class indices) or values.
        scores: Probabilities or predictions.

    Returns:
        The metric; NaN when undefined (e.g. ROC AUC on a single class, or with a class absent).
    """
    y_true = np.asarray(y_true)
    scores = np.asarray(scores, dtype=float)
    multiclass = scores.ndim == 2
    if metric == "roc_auc":
        return ovr_macro_auc(y_true, scores) if multiclass else rank_auc(y_true, scores)
    if metric == "accuracy":
        return float(np.mean(predicted_class(scores) == y_true))
    if metric == "f1":
        if multiclass:
            return macro_f1(y_true, predicted_class(scores), scores.shape[1])
        return float(skm.f1_score(y_true, predicted_class(scores), zero_division=0.0))
    if metric == "rmse":
        return float(np.sqrt(np.mean((y_true.astype(float) - scores) ** 2)))
    if metric == "mae":
        return float(np.mean(np.abs(y_true.astype(float) - scores)))
    raise ValueError(f"unknown metric {metric!r}; choose one of {sorted(HIGHER_IS_BETTER)}")


@dataclass(frozen=True)
class MetricEstimate:
    """A metric with a confidence interval."""

    metric: str
    value: float
    low: float
    high: float
    n: int
    method: str



def metric_with_ci(
    metric: str,
    y_true: Sequence,
    scores: Sequence,
    *,
    n_boot: int = 500,
    confidence: float = 0.95,
    seed: int = 0,
) -> MetricEstimate:
    """The metric on all rows and a percentile bootstrap interval (rows resampled, seeded).

    Args:
        metric: See :func:`score_metric`.
        y_true: True labels or values.
        scores: Probabilities or predictions.
        n_boot: Bootstrap resamples.
        confidence: Interval coverage.
        seed: Random seed.

    Returns:
        The estimate.
    """
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=float)
    if len(y) != len(s):
        raise ValueError(f"y_true has {len(y)} rows but scores has {len(s)}")
    if len(y) == 0:
        raise ValueError("no rows to score")
    value = score_metric(metric, y, s)
    draws = bootstrap_draws(metric, y, s, n_boot=n_boot, seed=seed)
    draws = draws[np.isfinite(draws)]
    tail = (1 - confidence) / 2
    low, high = (np.quantile(draws, [tail, 1 - tail]) if len(draws) else (np.nan, np.nan))
    return MetricEstimate(metric, value, float(low), float(high), len(y), f"bootstrap {n_boot}×, {confidence:.0%} CI")


def bootstrap_draws(metric: str, y_true: Sequence, scores: Sequence, *, n_boot: int = 500, seed: int = 0) -> np.ndarray:
    """The metric on ``n_boot`` resamples of the rows (seeded); NaN where a resample cannot be scored."""
    return resampled_metrics(metric, y_true, scores, n_boot=n_boot, seed=seed)[0]


def resampled_metrics(metric: str, y_true: Sequence, *scores: Sequence, n_boot: int = 500,
                      seed: int = 0) -> list[np.ndarray]:
    """The metric of each model on the same ``n_boot`` resamples of the rows (seeded; NaN where a
    resample cannot be scored): one bootstrap for a metric's interval (one model), the gates'
    paired comparison and shadow scoring (two models, draw by draw).

    ``roc_auc`` is computed with row counts as weights on scores sorted once
    (:class:`~retrain_assets.core.stats.WeightedAuc`): the same value as re-ranking the resample,
    in O(n) per draw.
    """
    y = np.asarray(y_true)
    models = [np.asarray(s, dtype=float) for s in scores]
    rng = np.random.default_rng(seed)
    n = len(y)
    draws = [np.empty(n_boot) for _ in models]
    if metric == "roc_auc":
        aucs = [weighted_auc(y, s) for s in models]
        for b in range(n_boot):
            weights = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
            for out, auc in zip(draws, aucs):
                out[b] = auc(weights)
        return draws
    for b in range(n_boot):  # resamples, not rows: n_boot metric evaluations, each vectorised
        idx = rng.integers(0, n, n)
        for out, s in zip(draws, models):
            out[b] = score_metric(metric, y[idx], s[idx])
    return draws


def better_by(metric: str, candidate: float, champion: float) -> float:
    """How much better the candidate is: candidate − champion for higher-is-better metrics,
    champion − candidate for error metrics (positive = candidate better either way)."""
    check_metric(metric)
    return (candidate - champion) if HIGHER_IS_BETTER[metric] else (champion - candidate)


def absolute_tolerance(metric: str, tolerance: float, champion: float) -> float:
    """The tolerance in metric units: as given for bounded metrics, × |champion| for rmse/mae."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    return tolerance if HIGHER_IS_BETTER[metric] else tolerance * abs(champion)


def flip_rate(
    candidate_pred: Sequence,
    champion_pred: Sequence,
    *,
    task: Task | None = None,
    relative_change: float = DEFAULT_REGRESSION_CHANGE,
) -> tuple[float, int, str]:
    """Share of predictions that differ from the champion's.

    Classification: class labels differ. Regression: ``|candidate − champion|`` exceeds
    ``relative_change × max(|champion|, median |champion|)`` (see :data:`DEFAULT_REGRESSION_CHANGE`).

    Args:
        candidate_pred: The candidate's predictions (class labels, or values).
        champion_pred: The champion's on the same rows.
        task: classification or regression; None infers it (float predictions on both sides mean
            regression).
        relative_change: Regression threshold.

    Returns:
        (rate, number of rows that flipped, task used).
    """
    cand = np.asarray(candidate_pred)
    champ = np.asarray(champion_pred)
    if cand.shape != champ.shape:
        raise ValueError(f"candidate has {len(cand)} predictions but the champion {len(champ)}: predict the same rows")
    if len(cand) == 0:
        raise ValueError("no predictions to compare")
    if task is None:
        task = "regression" if cand.dtype.kind == "f" and champ.dtype.kind == "f" else "classification"
    if task == "classification":
        flipped = cand.astype(object) != champ.astype(object)
    else:
        a, b = cand.astype(float), champ.astype(float)
        scale = np.maximum(np.abs(b), np.median(np.abs(b)))
        flipped = np.abs(a - b) > relative_change * scale + 1e-12
    k = int(np.sum(flipped))
    return k / len(cand), k, task
