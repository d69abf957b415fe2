"""Promotion gates: may the candidate replace the champion? Pure Python (no Dagster, no MLflow).

Each gate takes arrays or frames (the caller computes the predictions on the holdout), decides,
and returns a :class:`GateResult` whose summary is one sentence with the numbers in it.

1. :func:`metric_floor` — the candidate is good enough in absolute terms.
2. :func:`champion_comparison` — on the *same* holdout rows the candidate is not worse than the
   champion beyond a tolerance, judged by a paired bootstrap interval of the difference (a
   non-inferiority test: the candidate must show it is not worse, noise does not get it through);
   McNemar's test is reported for accuracy.
3. :func:`slice_regression` — nor is it worse on any large enough slice (e.g. per contract type).
4. :func:`prediction_stability` — it does not flip too many of the champion's predictions
   (waivable when concept drift is confirmed: then flips are the point).
5. :func:`serving_latency` — it scores fast enough.
6. :func:`data_sufficiency` — it learnt from enough rows of every class.

Metric direction: every difference is signed so that **positive = candidate better**, for
higher-is-better metrics (roc_auc, accuracy, f1) and lower-is-better ones (rmse, mae) alike.
Tolerances are in the metric's own units for the bounded metrics; for rmse and mae, whose scale is
the target's, a tolerance is a *fraction of the champion's value* (0.005 = 0.5 % worse).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from retrain_assets.core.performance import HIGHER_IS_BETTER, predicted_class, resampled_metrics, score_metric
from retrain_assets.core.schema import DatasetSchema
from retrain_assets.core.training_data import DEFAULT_MIN_ROWS, DEFAULT_MIN_ROWS_PER_CLASS
from retrain_assets.core.markdown import markdown_table

Task = Literal["classification", "regression"]

DEFAULT_FLOORS: dict[str, float | None] = {"roc_auc": 0.6, "accuracy": 0.6, "f1": 0.3, "rmse": None, "mae": None}
"""Smallest acceptable value per metric. roc_auc 0.6: clearly better than ranking at random (0.5).
accuracy 0.6 and f1 0.3: a sanity floor only — with imbalanced classes the majority-class accuracy
is higher than 0.6, so set a floor from your data. rmse/mae: none, their scale is the target's."""

DEFAULT_COMPARISON_TOLERANCE = 0.02
"""How much worse than the champion the candidate may be (lower 95% bound of the paired
difference): two points of roc_auc/accuracy/f1, or 2 % of the champion's rmse/mae. The interval
has to fit the holdout: on the demo's 800-row holdout two equally good models give a difference
of ±0.005 with an interval ±0.01 wide, so a 0.005 tolerance blocked about half of all equally
good retrains (measured); 0.02 blocks ~2.5% of them and every candidate worse by ≥0.03."""

DEFAULT_BOOTSTRAP_RESAMPLES = 1000
"""Paired bootstrap resamples: the 2.5 % quantile of 1000 draws moves by ~0.1 SE between seeds."""

DEFAULT_CONFIDENCE = 0.95
"""Two-sided coverage of the difference's interval; the gate uses its lower bound."""

DEFAULT_SLICE_TOLERANCE = 0.02
"""How much worse than the champion the candidate may be on one slice, when significantly worse."""

DEFAULT_SLICE_MIN_ROWS = 50
"""Slices with fewer holdout rows are listed as skipped, not judged."""

DEFAULT_SLICE_MIN_CLASS_ROWS = 20
"""Classification slices need this many rows of each class to be judged: an AUC over 3 positives
(the demo's two_year contracts: 203 rows, 3 churners) moved by 0.18 between two equally good
models, and a bootstrap of those 3 rows cannot show how unstable that is."""

DEFAULT_SLICE_BOOTSTRAP_RESAMPLES = 300
"""Paired bootstrap resamples per slice (only the sign of the interval's upper end is used)."""

DEFAULT_MAX_SLICES = 2
"""How many categorical columns :func:`default_slice_columns` picks."""

DEFAULT_MAX_SLICE_LEVELS = 20
"""Columns with more levels are not picked as default slices (their slices would be tiny)."""

DEFAULT_MAX_FLIP_RATE = 0.15
"""Largest share of holdout predictions that may differ from the champion's. Two equally good
gradient-boosted models retrained a batch apart on the demo data flip 7–10% of 800 holdout
predictions (rows near the 0.5 threshold); 0.15 lets such retrains through and stops a model
that changes its mind on one customer in six or more."""

DEFAULT_REGRESSION_CHANGE = 0.1
"""A regression prediction "flips" when it moves by more than 10 % of the champion's prediction
(or of the champion's median absolute prediction, when that is larger: near-zero predictions
would otherwise count every tiny change)."""

DEFAULT_MIN_HOLDOUT_ROWS = 100
"""Fewest holdout rows: the paired interval of a difference of AUCs on fewer rows is too wide to
tell a better candidate from a worse one."""

DEFAULT_LATENCY_BUDGET_MS_PER_1000 = 500.0
"""Milliseconds to score 1000 rows in a fresh process; the demo's models take 5–60 ms."""

_BOUNDED = ("roc_auc", "accuracy", "f1")


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


def _fmt(metric: str, value: float, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "undefined"
    spec = ".3f" if metric in _BOUNDED else ".4g"
    return format(value, ("+" if signed else "") + spec)


def _check_metric(metric: str) -> None:
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"unknown metric {metric!r}; choose one of {sorted(HIGHER_IS_BETTER)}")


def _arrays(y_true: Sequence, *scores: Sequence | None) -> tuple[np.ndarray, ...]:
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


def better_by(metric: str, candidate: float, champion: float) -> float:
    """How much better the candidate is: candidate − champion for higher-is-better metrics,
    champion − candidate for error metrics (positive = candidate better either way)."""
    _check_metric(metric)
    return (candidate - champion) if HIGHER_IS_BETTER[metric] else (champion - candidate)


def absolute_tolerance(metric: str, tolerance: float, champion: float) -> float:
    """The tolerance in metric units: as given for bounded metrics, × |champion| for rmse/mae."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    return tolerance if HIGHER_IS_BETTER[metric] else tolerance * abs(champion)


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
    _check_metric(metric)
    limit = DEFAULT_FLOORS.get(metric) if floor is None else floor
    higher = HIGHER_IS_BETTER[metric]
    metrics = {"metric": metric, "value": float(value), "floor": limit, "higher_is_better": higher}
    if limit is None:
        summary = f"no floor configured for {metric} (candidate {_fmt(metric, value)})"
        return GateResult("metric_floor", True, summary, metrics)
    if value is None or math.isnan(value):
        summary = f"candidate {metric} is undefined on the holdout; the floor is {_fmt(metric, limit)}"
        return GateResult("metric_floor", False, summary, metrics)
    passed = value >= limit if higher else value <= limit
    relation = ("at least" if higher else "at most") if passed else ("below" if higher else "above")
    word = "floor" if higher else "ceiling"
    return GateResult(
        "metric_floor", bool(passed),
        f"candidate {metric} {_fmt(metric, value)} is {relation} the {word} of {_fmt(metric, limit)}", metrics,
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
    _check_metric(metric)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    y, cand, champ = _arrays(y_true, candidate_scores, champion_scores)
    n = len(y)
    candidate = score_metric(metric, y, cand)
    if champ is None:
        return GateResult(
            "champion_comparison", True,
            f"no champion yet: comparison waived (candidate {metric} {_fmt(metric, candidate)} on {n} holdout rows)",
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
        f"candidate {metric} {_fmt(metric, candidate)} vs champion {_fmt(metric, champion)} "
        f"on the same {n} holdout rows: "
        f"difference {_fmt(metric, difference, True)} (positive = candidate better; "
        f"{confidence:.0%} CI {_fmt(metric, low, True)} to {_fmt(metric, high, True)})"
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


def default_slice_columns(
    schema: DatasetSchema,
    frame: pd.DataFrame,
    max_slices: int = DEFAULT_MAX_SLICES,
    *,
    max_levels: int = DEFAULT_MAX_SLICE_LEVELS,
) -> list[str]:
    """Categorical columns to slice by when none are configured.

    Columns with fewer levels come first (their slices are larger, so judged on more rows); among
    equals, the column whose smallest level is largest. Columns with one level or more than
    ``max_levels`` are not picked.

    Args:
        schema: The dataset schema (which columns are categorical).
        frame: The holdout rows.
        max_slices: How many columns to return.
        max_levels: Most levels a picked column may have.

    Returns:
        Up to ``max_slices`` column names.
    """
    ranked = []
    for spec in schema.columns:
        if spec.kind != "categorical" or spec.name not in frame.columns:
            continue
        counts = frame[spec.name].value_counts(dropna=True)
        if 2 <= len(counts) <= max_levels:
            ranked.append((len(counts), -int(counts.min()), spec.name))
    return [name for *_, name in sorted(ranked)[:max_slices]]


def slice_regression(
    metric: str,
    y_true: Sequence,
    candidate_scores: Sequence,
    champion_scores: Sequence | None,
    slices: pd.Series | Sequence,
    *,
    tolerance: float = DEFAULT_SLICE_TOLERANCE,
    min_rows: int = DEFAULT_SLICE_MIN_ROWS,
    n_boot: int = DEFAULT_SLICE_BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    min_class_rows: int = DEFAULT_SLICE_MIN_CLASS_ROWS,
) -> GateResult:
    """On no slice with at least ``min_rows`` rows is the candidate worse than the champion by more
    than ``tolerance`` (rmse/mae: a fraction of the champion's value on the slice) **and**
    significantly worse (the upper end of the paired bootstrap 95% interval of the difference is
    below zero). A slice is small and, for ROC AUC, may hold few positives: its point estimate
    alone swings by 0.1–0.2 between two equally good models (measured on the demo's two_year
    contracts, 200 rows, 20 churners), so a noisy dip is reported, not blocked.

    Args:
        metric: See :func:`champion_comparison`.
        y_true: Holdout labels/values.
        candidate_scores: The candidate's scores.
        champion_scores: The champion's scores on the same rows, or None (waived).
        slices: The slice value of every row (e.g. the holdout's ``contract`` column); missing
            values form the slice ``(missing)``.
        tolerance: See above.
        min_rows: Smaller slices are listed under ``skipped``.

    Returns:
        The verdict; metrics ``column``, ``slices`` (rows: slice, n, candidate, champion,
        difference, passed), ``skipped`` (slice, n, reason), ``compared``, ``failed``.
    """
    _check_metric(metric)
    y, cand, champ = _arrays(y_true, candidate_scores, champion_scores)
    values = pd.Series(slices).reset_index(drop=True)
    if len(values) != len(y):
        raise ValueError(f"slices has {len(values)} rows but y_true has {len(y)}")
    column = str(values.name) if values.name is not None else "slice"
    labels = values.astype(object).where(values.notna(), "(missing)").map(str)
    table, skipped = [], []
    for value, count in labels.value_counts().items():
        rows = (labels == value).to_numpy()
        n = int(count)
        if n < min_rows:
            skipped.append({"slice": value, "n": n, "reason": f"fewer than {min_rows} rows"})
            continue
        if metric in _BOUNDED and cand.ndim == 2:  # multiclass: every class vs the rest
            counts = np.bincount(y[rows][y[rows] >= 0].astype(int), minlength=cand.shape[1])
            if min(min(int(k), n - int(k)) for k in counts) < min_class_rows:
                skipped.append({"slice": value, "n": n, "reason": (
                    f"class rows {counts.tolist()}; judging needs {min_class_rows} of each class and of the rest")})
                continue
        elif metric in _BOUNDED:
            positives = int(np.sum(y[rows] == 1))
            fewest = min(positives, n - positives)
            if fewest < min_class_rows:
                skipped.append({"slice": value, "n": n, "reason": (
                    f"{positives} positive and {n - positives} negative rows; judging needs {min_class_rows} of each")})
                continue
        candidate = score_metric(metric, y[rows], cand[rows])
        champion = score_metric(metric, y[rows], champ[rows]) if champ is not None else float("nan")
        if math.isnan(candidate) or (champ is not None and math.isnan(champion)):
            skipped.append({"slice": value, "n": n, "reason": f"{metric} undefined (e.g. one class)"})
            continue
        if champ is None:
            table.append({"slice": value, "n": n, "candidate": candidate, "champion": None, "difference": None,
                          "passed": True})
            continue
        difference = better_by(metric, candidate, champion)
        tol = absolute_tolerance(metric, tolerance, champion)
        draws = paired_bootstrap(metric, y[rows], cand[rows], champ[rows], n_boot=n_boot, seed=seed)
        low, high = (float(q) for q in np.quantile(draws, [0.025, 0.975])) if len(draws) else (float("nan"),) * 2
        significant = bool(high < 0) if len(draws) else True
        table.append({"slice": value, "n": n, "candidate": candidate, "champion": champion,
                      "difference": difference, "ci_low": low, "ci_high": high,
                      "passed": not (difference < -tol and significant)})
    metrics: dict[str, Any] = {"metric": metric, "column": column, "tolerance": tolerance, "min_rows": min_rows,
                               "slices": table, "skipped": skipped, "compared": len(table)}
    skipped_list = "; ".join(f"{r['slice']}: {r['reason']}" for r in skipped)
    skipped_text = f", {len(skipped)} skipped ({skipped_list})" if skipped else ""
    if champ is None:
        metrics.update(failed=0, waived_reason="no champion yet")
        return GateResult(
            "slice_regression", True,
            f"no champion yet: slice comparison by {column} waived ({len(table)} slices scored{skipped_text})",
            metrics, waived=True,
        )
    failed = [r for r in table if not r["passed"]]
    metrics["failed"] = len(failed)
    if not table:
        return GateResult(
            "slice_regression", True,
            f"no slice of {column} has {min_rows} holdout rows with a defined {metric}: nothing compared{skipped_text}",
            metrics,
        )
    worst = min(table, key=lambda r: r["difference"])
    metrics.update(worst_slice=worst["slice"], worst_difference=worst["difference"])
    tol_text = (f"{tolerance:g}" if HIGHER_IS_BETTER[metric]
                else f"{tolerance:.1%} (of the champion's {metric} on the slice)")
    if failed:
        listed = "; ".join(
            f"{r['slice']} {metric} {_fmt(metric, r['candidate'])} vs {_fmt(metric, r['champion'])} "
            f"({_fmt(metric, r['difference'], True)}, n={r['n']})" for r in failed
        )
        summary = (f"the candidate is worse than the champion beyond the {tol_text} tolerance on {len(failed)} of "
                   f"{len(table)} {column} slices: {listed}{skipped_text}")
    else:
        summary = (f"no {column} slice is worse than the champion beyond the {tol_text} tolerance "
                   f"({len(table)} compared{skipped_text}; worst {worst['slice']} "
                   f"{_fmt(metric, worst['difference'], True)}, n={worst['n']})")
    return GateResult("slice_regression", not failed, summary, metrics)


# --------------------------------------------------------------------------
# 4. Stability
# --------------------------------------------------------------------------


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


def prediction_stability(
    candidate_pred: Sequence,
    champion_pred: Sequence | None,
    *,
    max_flip_rate: float = DEFAULT_MAX_FLIP_RATE,
    waive: bool = False,
    waive_reason: str = "",
    task: Task | None = None,
    relative_change: float = DEFAULT_REGRESSION_CHANGE,
) -> GateResult:
    """At most ``max_flip_rate`` of the holdout predictions differ from the champion's.

    Args:
        candidate_pred: The candidate's predictions on the holdout (labels or values).
        champion_pred: The champion's on the same rows, or None (no champion: waived).
        max_flip_rate: Largest share allowed.
        waive: Pass whatever the rate (the caller waives it when concept drift is confirmed: then
            the old predictions are the ones that are wrong); the rate is still reported.
        waive_reason: Why, for the summary.
        task: See :func:`flip_rate`.
        relative_change: See :func:`flip_rate`.

    Returns:
        The verdict; metrics ``flip_rate``, ``flipped``, ``n``, ``max_flip_rate``.
    """
    if champion_pred is None:
        return GateResult(
            "prediction_stability", True, "no champion yet: stability check waived",
            {"n": len(np.asarray(candidate_pred)), "max_flip_rate": max_flip_rate, "waived_reason": "no champion yet"},
            waived=True,
        )
    rate, k, task = flip_rate(candidate_pred, champion_pred, task=task, relative_change=relative_change)
    n = len(np.asarray(candidate_pred))
    what = "predicted classes differ from" if task == "classification" else \
        f"predictions move by more than {relative_change:.0%} from"
    metrics: dict[str, Any] = {"flip_rate": rate, "flipped": k, "n": n, "max_flip_rate": max_flip_rate, "task": task}
    facts = f"{rate:.1%} of {n} holdout {what} the champion's ({k} rows; maximum {max_flip_rate:.1%})"
    if waive:
        reason = waive_reason or "waived by the caller"
        metrics["waived_reason"] = reason
        return GateResult("prediction_stability", True, f"waived ({reason}): {facts}", metrics, waived=True)
    passed = rate <= max_flip_rate
    return GateResult("prediction_stability", bool(passed), facts if passed else f"too many flips: {facts}", metrics)


# --------------------------------------------------------------------------
# 5. Latency, 6. Data
# --------------------------------------------------------------------------


def serving_latency(
    seconds_per_1000: float, budget_ms_per_1000: float = DEFAULT_LATENCY_BUDGET_MS_PER_1000
) -> GateResult:
    """Scoring 1000 rows (measured by the caller in a fresh process) fits the budget.

    Args:
        seconds_per_1000: Measured seconds per 1000 rows.
        budget_ms_per_1000: Allowed milliseconds per 1000 rows.

    Returns:
        The verdict; metrics ``ms_per_1000``, ``budget_ms_per_1000``.
    """
    if not math.isfinite(seconds_per_1000) or seconds_per_1000 < 0:
        raise ValueError(f"seconds_per_1000 must be a finite number >= 0, got {seconds_per_1000}")
    ms = seconds_per_1000 * 1000.0
    passed = ms <= budget_ms_per_1000
    return GateResult(
        "serving_latency", bool(passed),
        f"scoring 1000 rows takes {ms:.1f} ms, {'within' if passed else 'over'} the {budget_ms_per_1000:g} ms budget",
        {"ms_per_1000": ms, "budget_ms_per_1000": float(budget_ms_per_1000)},
    )


def data_sufficiency(
    n_train: int,
    class_counts: dict[Any, int] | None,
    *,
    min_rows: int = DEFAULT_MIN_ROWS,
    min_rows_per_class: int = DEFAULT_MIN_ROWS_PER_CLASS,
    n_holdout: int | None = None,
    holdout_class_counts: dict[Any, int] | None = None,
    min_holdout_rows: int = DEFAULT_MIN_HOLDOUT_ROWS,
) -> GateResult:
    """The candidate learnt from enough rows, and (classification) from enough rows of each of at
    least two classes; and, when the holdout is given, it is judged on enough rows holding every
    class it learnt.

    Args:
        n_train: Training rows.
        class_counts: Class → training rows (classification), or None (regression).
        min_rows: Fewest rows.
        min_rows_per_class: Fewest rows per class.
        n_holdout: Holdout rows, or None to skip the holdout checks.
        holdout_class_counts: Class → holdout rows (classification).
        min_holdout_rows: Fewest holdout rows.

    Returns:
        The verdict; metrics ``n_train``, ``min_rows`` and, with classes, ``classes``,
        ``smallest_class``, ``smallest_class_rows``, ``min_rows_per_class``, ``class_counts``;
        with a holdout, ``n_holdout``, ``min_holdout_rows`` (and ``holdout_class_counts``).
    """
    problems, facts = [], [f"{n_train} training rows (minimum {min_rows})"]
    if n_train < min_rows:
        problems.append(f"only {n_train} training rows (minimum {min_rows})")
    metrics: dict[str, Any] = {"n_train": int(n_train), "min_rows": min_rows}
    if class_counts is not None:
        counts = {k: int(v) for k, v in class_counts.items()}
        metrics.update(classes=len(counts), min_rows_per_class=min_rows_per_class, class_counts=counts)
        if len(counts) < 2:
            listed = ", ".join(map(repr, counts)) or "none"
            problems.append(f"only {len(counts)} class ({listed}); at least 2 are needed")
        if counts:
            smallest = min(counts, key=lambda k: counts[k])
            metrics.update(smallest_class=str(smallest), smallest_class_rows=counts[smallest])
            facts.append(f"smallest class {smallest!r} has {counts[smallest]} rows (minimum {min_rows_per_class})")
            rare = {k: v for k, v in counts.items() if v < min_rows_per_class}
            if rare:
                problems.append(
                    "too few rows in class(es) " + ", ".join(f"{k!r} ({v})" for k, v in rare.items())
                    + f" (minimum {min_rows_per_class})"
                )
    if n_holdout is not None:
        metrics.update(n_holdout=int(n_holdout), min_holdout_rows=min_holdout_rows)
        facts.append(f"{n_holdout} holdout rows (minimum {min_holdout_rows})")
        if n_holdout < min_holdout_rows:
            problems.append(f"only {n_holdout} holdout rows to judge on (minimum {min_holdout_rows})")
        if class_counts is not None and holdout_class_counts is not None:
            held = {k: int(v) for k, v in holdout_class_counts.items() if v}
            metrics["holdout_class_counts"] = held
            absent = [k for k in class_counts if k not in held]
            if absent:
                problems.append(
                    "the holdout has no rows of class(es) " + ", ".join(map(repr, absent))
                    + ", so the candidate cannot be judged on them"
                )
    if problems:
        return GateResult("data_sufficiency", False, "not enough data: " + "; ".join(problems), metrics)
    return GateResult("data_sufficiency", True, "enough data: " + "; ".join(facts), metrics)
