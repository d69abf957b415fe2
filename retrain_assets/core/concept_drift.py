"""Concept drift: does the champion do worse on this batch than on its holdout? A bootstrap interval
of the difference, confirmed or not by streaming detectors (River's ADWIN and Page-Hinkley) fed the
champion's errors in time order. Pure Python."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from retrain_assets.core.performance import (
    HIGHER_IS_BETTER,
    MetricEstimate,
    Task,
    bootstrap_draws,
    check_metric,
    metric_with_ci,
    predicted_class,
)


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
    check_metric(metric, task)
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
