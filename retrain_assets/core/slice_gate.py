"""Promotion gate 3, slice regression: the candidate is not significantly worse than the champion
on any large enough slice of the holdout (e.g. per contract type). Pure Python."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from retrain_assets.core.gate_defaults import (
    DEFAULT_MAX_SLICES,
    DEFAULT_MAX_SLICE_LEVELS,
    DEFAULT_SLICE_BOOTSTRAP_RESAMPLES,
    DEFAULT_SLICE_MIN_CLASS_ROWS,
    DEFAULT_SLICE_MIN_ROWS,
    DEFAULT_SLICE_TOLERANCE,
)
from retrain_assets.core.gates import BOUNDED, GateResult, arrays, fmt, paired_bootstrap
from retrain_assets.core.performance import HIGHER_IS_BETTER, absolute_tolerance, better_by, check_metric, score_metric
from retrain_assets.core.schema import DatasetSchema


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
    check_metric(metric)
    y, cand, champ = arrays(y_true, candidate_scores, champion_scores)
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
        if metric in BOUNDED and cand.ndim == 2:  # multiclass: every class vs the rest
            counts = np.bincount(y[rows][y[rows] >= 0].astype(int), minlength=cand.shape[1])
            if min(min(int(k), n - int(k)) for k in counts) < min_class_rows:
                skipped.append({"slice": value, "n": n, "reason": (
                    f"class rows {counts.tolist()}; judging needs {min_class_rows} of each class and of the rest")})
                continue
        elif metric in BOUNDED:
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
            f"{r['slice']} {metric} {fmt(metric, r['candidate'])} vs {fmt(metric, r['champion'])} "
            f"({fmt(metric, r['difference'], True)}, n={r['n']})" for r in failed
        )
        summary = (f"the candidate is worse than the champion beyond the {tol_text} tolerance on {len(failed)} of "
                   f"{len(table)} {column} slices: {listed}{skipped_text}")
    else:
        summary = (f"no {column} slice is worse than the champion beyond the {tol_text} tolerance "
                   f"({len(table)} compared{skipped_text}; worst {worst['slice']} "
                   f"{fmt(metric, worst['difference'], True)}, n={worst['n']})")
    return GateResult("slice_regression", not failed, summary, metrics)
