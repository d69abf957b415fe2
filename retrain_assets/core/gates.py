"""Promotion gates: may the candidate replace the champion? Pure Python (no Dagster, no MLflow).

Each gate takes arrays or frames (the caller computes the predictions on the holdout), decides,
and returns a :class:`GateResult` whose summary is one sentence with the numbers in it.

1. :func:`metric_floor` — the candidate is good enough in absolute terms.
2. :func:`champion_comparison` — on the *same* holdout rows the candidate is not worse than the
   champion beyond a tolerance, judged by a paired bootstrap interval of the difference (a
   non-inferiority test: the candidate must show it is not worse, noise does not get it through);
   McNemar's test is reported for accuracy.
3. ``slice_regression`` — nor is it worse on any large enough slice (e.g. per contract type):
   :mod:`retrain_assets.core.slice_gate`.
4. ``prediction_stability`` — it does not flip too many of the champion's predictions
   (waivable when concept drift is confirmed: then flips are the point); 5. ``serving_latency`` —
   it scores fast enough; 6. ``data_sufficiency`` — it learnt from enough rows of every class:
   :mod:`retrain_assets.core.stability_gates`.

Metric direction: every difference is signed so that **positive = candidate better**, for
higher-is-better metrics (roc_auc, accuracy, f1) and lower-is-better ones (rmse, mae) alike.
Tolerances are in the metric's own units for the bounded metrics; for rmse and mae, whose scale is
the target's, a tolerance is a *fraction of the champion's value* (0.005 = 0.5 % worse).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy import stats

from retrain_assets.core.performance import absolute_tolerance, better_by, check_metric
from retrain_assets.core.gate_defaults import (
    DEFAULT_BOOTSTRAP_RESAMPLES,
    DEFAULT_COMPARISON_TOLERANCE,
    DEFAULT_CONFIDENCE,
    DEFAULT_FLOORS,
)
from retrain_assets.core.performance import HIGHER_IS_BETTER, predicted_class, resampled_metrics, score_metric
from retrain_assets.core.markdown import markdown_table


BOUNDED = ("roc_auc", "accuracy", "f1")


@dataclass
class GateResult:
    """One gate's verdict.

    Attributes:
        name: The gate (e.g. ``champion_comparison``).
        passed: Whether promotion may go ahead as far as this gate is concerned.
        summary: One sentence with the numbers.
        metrics: The numbers (and tables, as lists of dicts).
        waived: The gate passed without judging (no champion yet, or waived by the caller).
    """

    name: str
    passed: bool
    summary: str
    metrics: dict[str, Any] = field(default_factory=dict)
    waived: bool = False

    def as_metadata(self) -> dict[str, Any]:
        """Plain numbers and strings: lists of dicts become Markdown tables, dicts JSON, None "none"."""
        out: dict[str, Any] = {"passed": bool(self.passed), "waived": bool(self.waived), "summary": self.summary}
        for key, value in self.metrics.items():
            out[key] = _plain(value)
        return out


def _plain(value: Any) -> Any:
    if value is None:
        return "none"
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, dict) for v in value):
        return markdown_table(list(value))
    if isinstance(value, (list, tuple)) and not value:
        return "none"
    return json.dumps(value, default=lambda v: v.item() if isinstance(v, np.generic) else str(v))


def fmt(metric: str, value: float, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "undefined"
    spec = ".3f" if metric in BOUNDED else ".4g"
    return format(value, ("+" if signed else "") + spec)


def arrays(y_true: Sequence, *scores: Sequence | None) -> tuple[np.ndarray, ...]:
    y = np.asarray(y_true)
    out = [y]
    for s in scores:
        if s is None:
            out.append(None)
            continue
        a = np.asarray(s, dtype=float)
        if a.shape[:1] != y.shape:  # a multiclass model's scores are a matrix, one row per label
            raise ValueError(f"y_true has {len(y)} rows but scores have {len(a)}: score the same holdout rows")
        out.append(a)
    if len(y) == 0:
        raise ValueError("no holdout rows to compare on")
    return tuple(out)


def _tolerance_text(metric: str, tolerance: float, absolute: float) -> str:
    if HIGHER_IS_BETTER[metric]:
        return f"{tolerance:g}"
    return f"{tolerance:.1%} of the champion's {metric} (= {absolute:.4g})"


# --------------------------------------------------------------------------
# 1. Floor
# --------------------------------------------------------------------------


def metric_floor(metric: str, value: float, floor: float | None = None) -> GateResult:
    """The candidate's holdout metric is at least the floor (at most, for rmse/mae).

    Args:
        metric: roc_auc, accuracy, f1, rmse or mae.
        value: The candidate's value on the holdout.
        floor: The limit; None takes ``DEFAULT_FLOORS[metric]``, and when that is None too (rmse,
            mae) the gate passes saying no floor is configured.

    Returns:
        The verdict; metrics ``metric``, ``value``, ``floor``, ``higher_is_better``.
    """
    check_metric(metric)
    limit = DEFAULT_FLOORS.get(metric) if floor is None else floor
    higher = HIGHER_IS_BETTER[metric]
    metrics = {"metric": metric, "value": float(value), "floor": limit, "higher_is_better": higher}
    if limit is None:
        summary = f"no floor configured for {metric} (candidate {fmt(metric, value)})"
        return GateResult("metric_floor", True, summary, metrics)
    if value is None or math.isnan(value):
        summary = f"candidate {metric} is undefined on the holdout; the floor is {fmt(metric, limit)}"
        return GateResult("metric_floor", False, summary, metrics)
    passed = value >= limit if higher else value <= limit
    relation = ("at least" if higher else "at most") if passed else ("below" if higher else "above")
    word = "floor" if higher else "ceiling"
    return GateResult(
        "metric_floor", bool(passed),
        f"candidate {metric} {fmt(metric, value)} is {relation} the {word} of {fmt(metric, limit)}", metrics,
    )


# --------------------------------------------------------------------------
# 2. Champion comparison
# --------------------------------------------------------------------------


def paired_bootstrap(
    metric: str,
    y_true: np.ndarray,
    candidate_scores: np.ndarray,
    champion_scores: np.ndarray,
    *,
    n_boot: int = DEFAULT_BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> np.ndarray:
    """Bootstrap draws of :func:`better_by`: both models scored on the same resampled rows.

    Pairing removes the variation both models share (hard rows are hard for both), so the interval
    of the difference is far narrower than two separate intervals would suggest.

    Returns:
        The finite draws (resamples where the metric is undefined, e.g. one class, are dropped).
    """
    candidate, champion = resampled_metrics(metric, y_true, candidate_scores, champion_scores, n_boot=n_boot,
                                            seed=seed)
    draws = better_by(metric, candidate, champion)
    return draws[np.isfinite(draws)]


def mcnemar(y_true: np.ndarray, candidate_scores: np.ndarray, champion_scores: np.ndarray) -> dict[str, float]:
    """McNemar's exact and mid-p tests on the rows where exactly one model is right (its predicted
    class, :func:`retrain_assets.core.performance.predicted_class`).

    Returns:
        ``candidate_only_correct``, ``champion_only_correct``, two-sided ``p_exact`` and ``p_mid``.
    """
    y = np.asarray(y_true).astype(int)
    cand_right = predicted_class(candidate_scores) == y
    champ_right = predicted_class(champion_scores) == y
    b = int(np.sum(cand_right & ~champ_right))
    c = int(np.sum(~cand_right & champ_right))
    n, k = b + c, min(b, c)
    if n == 0:
        p_exact = p_mid = 1.0
    else:
        p_exact = min(1.0, 2.0 * float(stats.binom.cdf(k, n, 0.5)))
        p_mid = min(1.0, 2.0 * float(stats.binom.cdf(k, n, 0.5)) - float(stats.binom.pmf(k, n, 0.5)))
    return {"candidate_only_correct": b, "champion_only_correct": c, "p_exact": p_exact, "p_mid": p_mid}


def champion_comparison(
    metric: str,
    y_true: Sequence,
    candidate_scores: Sequence,
    champion_scores: Sequence | None,
    *,
    tolerance: float = DEFAULT_COMPARISON_TOLERANCE,
    n_boot: int = DEFAULT_BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
) -> GateResult:
    """The candidate is not worse than the champion beyond ``tolerance``, with confidence.

    Passes when the lower bound of the paired bootstrap interval of :func:`better_by` is at least
    −tolerance (rmse/mae: −tolerance × the champion's value). A candidate that is merely not
    *proven* worse on a small holdout therefore fails; enlarge the holdout rather than the
    tolerance.

    Args:
        metric: roc_auc, accuracy, f1 (scores: positive-class probabilities, labels 0/1 with the
            same positive class for both models; or both models' probability matrices over the same
            classes, labels the class index: roc_auc one-vs-rest macro, f1 macro) or rmse, mae
            (scores: predictions).
        y_true: Holdout labels/values.
        candidate_scores: The candidate's scores on those rows.
        champion_scores: The champion's scores on the same rows, or None when there is no champion
            (the gate passes, waived).
        tolerance: See above.
        n_boot: Bootstrap resamples.
        seed: Random seed.
        confidence: Interval coverage.

    Returns:
        The verdict; metrics ``candidate``, ``champion``, ``difference``, ``ci_low``, ``ci_high``,
        ``n`` (plus ``mcnemar_*`` for accuracy).
    """
    check_metric(metric)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    y, cand, champ = arrays(y_true, candidate_scores, champion_scores)
    n = len(y)
    candidate = score_metric(metric, y, cand)
    if champ is None:
        return GateResult(
            "champion_comparison", True,
            f"no champion yet: comparison waived (candidate {metric} {fmt(metric, candidate)} on {n} holdout rows)",
            {"metric": metric, "candidate": candidate, "champion": "none (no champion yet)", "n": n,
             "waived_reason": "no champion yet"},
            waived=True,
        )
    champion = score_metric(metric, y, champ)
    difference = better_by(metric, candidate, champion)
    tol = absolute_tolerance(metric, tolerance, champion)
    metrics: dict[str, Any] = {"metric": metric, "candidate": candidate, "champion": champion,
                               "difference": difference, "tolerance": tol, "n": n, "confidence": confidence}
    if metric == "accuracy":
        metrics.update({f"mcnemar_{k}": v for k, v in mcnemar(y, cand, champ).items()})
    if math.isnan(candidate) or math.isnan(champion):
        metrics.update(ci_low=float("nan"), ci_high=float("nan"))
        return GateResult(
            "champion_comparison", False,
            f"{metric} is undefined on the {n} holdout rows (e.g. a single class), so the candidate cannot be compared",
            metrics,
        )
    draws = paired_bootstrap(metric, y, cand, champ, n_boot=n_boot, seed=seed)
    tail = (1 - confidence) / 2
    low, high = (float(q) for q in np.quantile(draws, [tail, 1 - tail])) if len(draws) else (float("nan"),) * 2
    metrics.update(ci_low=low, ci_high=high, n_boot=int(len(draws)))
    passed = bool(low >= -tol)
    head = (
        f"candidate {metric} {fmt(metric, candidate)} vs champion {fmt(metric, champion)} "
        f"on the same {n} holdout rows: "
        f"difference {fmt(metric, difference, True)} (positive = candidate better; "
        f"{confidence:.0%} CI {fmt(metric, low, True)} to {fmt(metric, high, True)})"
    )
    tol_text = _tolerance_text(metric, tolerance, tol)
    if passed:
        tail_text = f", not worse than the champion beyond the {tol_text} tolerance"
    else:
        tail_text = f"; the candidate may be worse than the champion by more than the {tol_text} tolerance"
    if "mcnemar_p_mid" in metrics:
        tail_text += f" (McNemar mid-p {metrics['mcnemar_p_mid']:.3g})"
    return GateResult("champion_comparison", passed, head + tail_text, metrics)


# --------------------------------------------------------------------------
# 3. Slices
# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# 4. Stability
# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# 5. Latency, 6. Data
# --------------------------------------------------------------------------


