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

from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np

from sklearn import metrics as skm

from retrain_assets.core.stats import rank_auc, weighted_auc

Task = Literal["classification", "regression"]
HIGHER_IS_BETTER = {"roc_auc": True, "accuracy": True, "f1": True, "rmse": False, "mae": False}
DEFAULT_METRIC = {"classification": "roc_auc", "regression": "rmse"}


def _check_metric(metric: str, task: Task) -> None:
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

    def as_dict(self) -> dict:
        """Plain values for metadata and JSON."""
        return {"metric": self.metric, "value": self.value, "ci_low": self.low, "ci_high": self.high,
                "n": self.n, "method": self.method}


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


def error_stream(task: Task, y_true: Sequence, scores: Sequence) -> np.ndarray:
    """Per-row error: 0/1 misclassification (:func:`predicted_class`) or absolute error (regression)."""
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=float)
    if task == "classification":
        return (predicted_class(s) != y).astype(float)
    return np.abs(y.astype(float) - s)


@dataclass(frozen=True)
class DetectorOutcome:
    """What one streaming detector saw on the current batch."""

    detector: str
    fired: bool
    detections: int
    first_row: int | None  # 1-based position in the current batch of the first detection


def stream_detectors(task: Task, warmup: np.ndarray, current: np.ndarray) -> list[DetectorOutcome]:
    """Run River's ADWIN, DDM (classification only) and Page-Hinkley over an error stream.

    The detectors first see ``warmup`` (the champion's errors on its holdout rows: the error level
    it was promoted with), then ``current``; only detections inside ``current`` count.

    Args:
        task: classification or regression.
        warmup: Errors on reference rows.
        current: Errors on the batch, in event order.

    Returns:
        One outcome per detector.
    """
    from river import drift
    from river.drift import binary

    detectors = {"ADWIN": drift.ADWIN(), "PageHinkley": drift.PageHinkley(mode="up")}
    if task == "classification":
        detectors["DDM"] = binary.DDM()
    scale = float(np.mean(warmup)) if task == "regression" and len(warmup) and np.mean(warmup) > 0 else 1.0
    outcomes = []
    for name, detector in detectors.items():
        for value in warmup / scale:
            detector.update(bool(value) if name == "DDM" else float(value))
        hits = []
        for i, value in enumerate(current / scale):
            detector.update(bool(value) if name == "DDM" else float(value))
            if detector.drift_detected:
                hits.append(i + 1)
        outcomes.append(DetectorOutcome(name, bool(hits), len(hits), hits[0] if hits else None))
    return outcomes


@dataclass
class ConceptDriftResult:
    """The champion's performance on a labelled batch against what it was promoted with."""

    metric: str
    batch: MetricEstimate
    holdout_metric: float
    tolerance: float
    degraded: bool
    detectors: list[DetectorOutcome] = field(default_factory=list)
    difference: MetricEstimate | None = None
    """Batch minus holdout metric with a 95% interval from bootstrapping both samples (when the
    holdout rows were given)."""

    @property
    def detector_fired(self) -> bool:
        """Whether any streaming detector fired inside the batch."""
        return any(d.fired for d in self.detectors)

    @property
    def worse(self) -> bool:
        """The point estimate on the batch is worse than the holdout metric (any amount)."""
        if HIGHER_IS_BETTER[self.metric]:
            return bool(self.batch.value < self.holdout_metric)
        return bool(self.batch.value > self.holdout_metric)

    @property
    def worse_beyond_tolerance(self) -> bool:
        """The point estimate on the batch is worse than the holdout metric by more than the tolerance."""
        loss = self.holdout_metric - self.batch.value if HIGHER_IS_BETTER[self.metric] else self.batch.value - self.holdout_metric
        return bool(loss > self.tolerance)

    @property
    def drift_detected(self) -> bool:
        """Degradation with statistical support, or a detector firing while the metric got worse
        by more than the tolerance.

        The detectors see a change in the error rate in either direction; errors that *fell*
        (e.g. a batch the champion was trained on) are not drift to act on, and neither is a loss
        smaller than the tolerance (a detector alarm on a 0.014 AUC dip started a useless retrain
        in the backtest).
        """
        return self.degraded or (self.detector_fired and self.worse_beyond_tolerance)

    @property
    def summary(self) -> str:
        """One sentence."""
        b = self.batch
        sentence = (
            f"champion {self.metric} {b.value:.3f} on this batch (95% CI {b.low:.3f}–{b.high:.3f}) vs "
            f"{self.holdout_metric:.3f} on its holdout"
        )
        if self.difference is not None:
            d = self.difference
            sentence += f" (difference {d.value:+.3f}, 95% CI {d.low:+.3f} to {d.high:+.3f})"
        if self.degraded:
            sentence += f": significantly worse, by more than the {self.tolerance:g} tolerance"
        fired = [d.detector for d in self.detectors if d.fired]
        if fired and self.worse_beyond_tolerance:
            sentence += f"; streaming detectors fired: {', '.join(fired)}"
        elif fired and self.worse:
            sentence += (f"; streaming detectors fired ({', '.join(fired)}), but the loss is within the "
                         f"{self.tolerance:g} tolerance: not drift")
        elif fired:
            sentence += f"; streaming detectors saw the error rate change ({', '.join(fired)}), but it fell: not drift"
        return sentence


def concept_drift(
    task: Task,
    metric: str,
    y_true: Sequence,
    scores: Sequence,
    *,
    holdout_metric: float,
    tolerance: float = 0.02,
    warmup_errors: np.ndarray | None = None,
    holdout: tuple[Sequence, Sequence] | None = None,
    n_boot: int = 500,
    seed: int = 0,
) -> ConceptDriftResult:
    """Is the champion worse on this labelled batch than on its holdout?

    Degraded means the point estimate is worse by more than ``tolerance`` and the 95% interval
    says so too: with the holdout rows given, the interval of the *difference* (batch minus
    holdout), both samples bootstrapped — the holdout metric is an estimate from a few hundred rows
    as well, and treating it as exact raised false alarms (3 in 40 clean 1k-row batches); without
    them, the batch's interval must lie on the bad side of ``holdout_metric``.

    Args:
        task: classification or regression.
        metric: The metric the champion was promoted on.
        y_true: Labels of the batch.
        scores: The champion's probabilities/predictions on the batch.
        holdout_metric: The champion's metric on its holdout.
        tolerance: Smallest loss that matters.
        warmup_errors: The champion's per-row errors on its holdout (primes the detectors).
        holdout: The champion's (labels, scores) on its holdout rows, if known.
        n_boot: Bootstrap resamples for the interval.
        seed: Random seed.

    Returns:
        The comparison and the detectors' outcomes.
    """
    _check_metric(metric, task)
    estimate = metric_with_ci(metric, y_true, scores, n_boot=n_boot, seed=seed)
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    difference = None
    if holdout is not None and len(holdout[0]):
        batch_draws = bootstrap_draws(metric, y_true, scores, n_boot=n_boot, seed=seed)
        holdout_draws = bootstrap_draws(metric, holdout[0], holdout[1], n_boot=n_boot, seed=seed + 1)
        diffs = batch_draws - holdout_draws
        diffs = diffs[np.isfinite(diffs)]
        low, high = np.quantile(diffs, [0.025, 0.975]) if len(diffs) else (np.nan, np.nan)
        difference = MetricEstimate(metric, float(estimate.value - holdout_metric), float(low), float(high),
                                    len(np.asarray(y_true)), f"two-sample bootstrap {n_boot}×, 95% CI")
        bad_side = difference.high < 0 if sign > 0 else difference.low > 0
    else:
        bad_side = estimate.high < holdout_metric if sign > 0 else estimate.low > holdout_metric
    degraded = bool(bad_side and sign * (holdout_metric - estimate.value) > tolerance)
    errors = error_stream(task, y_true, scores)
    detectors = stream_detectors(task, np.asarray(warmup_errors if warmup_errors is not None else []), errors)
    return ConceptDriftResult(metric, estimate, float(holdout_metric), tolerance, degraded, detectors, difference)


def expected_roc_auc(proba: np.ndarray) -> float:
    """CBPE expected ROC AUC of a binary classifier from its (calibrated) probabilities alone.

    Each row is a positive with probability p and a negative with 1 - p; the expected AUC is the
    expected share of (positive, negative) pairs ranked correctly, computed with one sort.
    """
    p = np.asarray(proba, dtype=float)
    if len(p) < 2:
        return float("nan")
    p_sorted = np.sort(p)
    neg = 1.0 - p_sorted
    cum = np.concatenate([[0.0], np.cumsum(neg)])
    start = np.searchsorted(p_sorted, p_sorted, side="left")  # first row with the same score
    stop = np.searchsorted(p_sorted, p_sorted, side="right")
    below = cum[start]  # expected negatives scored strictly lower
    tied = cum[stop] - below - neg  # expected negatives with the same score, other rows
    correct = np.sum(p_sorted * (below + 0.5 * tied))
    pairs = np.sum(p_sorted) * np.sum(neg) - np.sum(p_sorted * neg)
    return float(correct / pairs) if pairs > 0 else float("nan")


MIN_CALIBRATION_ROWS = 100
"""Fewest labelled reference rows to calibrate on; with fewer the estimate uses the raw probabilities."""


def calibrate(reference: tuple[Sequence, Sequence], proba: Sequence) -> np.ndarray:
    """Probabilities recalibrated on labelled reference rows (isotonic regression per class, fitted on
    the reference's labels and probabilities; multiclass rows renormalised to sum to 1).

    CBPE's estimate is right only for calibrated probabilities, and a boosted model's are over-confident
    (measured on the synthetic data, 800 training rows: expected ROC AUC 0.95 from the raw
    probabilities against 0.82 realised, binary and multiclass alike; 0.82 after this calibration).
    NannyML's CBPE calibrates on its reference data the same way.

    Args:
        reference: (labels, probabilities) of reference rows: 0/1 and positive-class probabilities
            (binary) or class indices and the probability matrix (multiclass).
        proba: The probabilities to calibrate, in the same form.
    """
    from sklearn.isotonic import IsotonicRegression

    y, ref = np.asarray(reference[0]), np.asarray(reference[1], dtype=float)
    p = np.asarray(proba, dtype=float)

    def fit(ref_column: np.ndarray, positive: np.ndarray, column: np.ndarray) -> np.ndarray:
        model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        return model.fit(ref_column, positive.astype(float)).predict(column)

    if p.ndim == 1:
        return fit(ref, y == 1, p)
    out = np.column_stack([fit(ref[:, c], y == c, p[:, c]) for c in range(p.shape[1])])
    total = out.sum(axis=1, keepdims=True)
    return np.where(total > 0, out / np.where(total > 0, total, 1.0), 1.0 / p.shape[1])


def estimate_performance(metric: str, proba: Sequence, reference: tuple[Sequence, Sequence] | None = None) -> dict:
    """Label-free estimate of a classifier's metric on a batch (CBPE-style).

    Binary: expected ROC AUC (:func:`expected_roc_auc`) and expected accuracy (mean probability of
    the predicted class). Multiclass: expected accuracy is the mean largest probability; expected
    one-vs-rest ROC AUC is :func:`expected_roc_auc` of each class's column (each row belongs to the
    class with its probability), macro-averaged — what :func:`ovr_macro_auc` measures with labels.

    Args:
        metric: roc_auc or accuracy (others are not estimated).
        proba: Positive-class probabilities (binary) or the probability matrix (multiclass).
        reference: (labels, probabilities) of labelled reference rows (the champion's holdout): the
            probabilities are first recalibrated on them (:func:`calibrate`) when there are at least
            :data:`MIN_CALIBRATION_ROWS`.

    Returns:
        ``{"metric", "estimate", "method", "n"}``; the estimate assumes calibrated probabilities.
    """
    p = np.asarray(proba, dtype=float)
    calibrated = reference is not None and len(reference[0]) >= MIN_CALIBRATION_ROWS and len(p) > 0
    if calibrated:
        p = calibrate(reference, p)
    if metric == "roc_auc":
        if p.ndim == 2:
            estimate = float(np.mean([expected_roc_auc(p[:, c]) for c in range(p.shape[1])]))
        else:
            estimate = expected_roc_auc(p)
    elif metric == "accuracy":
        confidence = p.max(axis=1) if p.ndim == 2 else np.maximum(p, 1 - p)
        estimate = float(np.mean(confidence)) if len(p) else float("nan")
    else:
        raise ValueError(f"no label-free estimate for {metric!r}; estimates exist for roc_auc and accuracy")
    method = ("CBPE (confidence-based; probabilities calibrated on the champion's holdout)" if calibrated
              else "CBPE (confidence-based; assumes calibrated probabilities)")
    return {"metric": metric, "estimate": estimate, "method": method, "n": int(len(p))}
