"""Decide whether a batch has drifted from the reference data enough to retrain on.

The textbook rule, "retrain if any feature has a two-sample KS p < 0.05", cannot be automated
(docs/decisions.md, "Drift: why not the textbook rule"). Here a feature counts as drifted only when
both hold:

* the change is **significant** after correcting for the number of features tested
  (Benjamini–Hochberg by default; two-sample KS for numbers, chi-square for categories), and
* the change is **large enough to matter**: the Wasserstein distance in units of the reference
  spread (≈ the mean shift in σ) or the PSI for numbers; the Jensen–Shannon distance or the PSI
  for categories.

A jump in a feature's missing rate counts too, and a gradient-boosted *domain classifier* that
tries to tell reference rows from current rows catches joint shifts that no single column shows
(two features whose correlation flips sign). The thresholds are on :class:`DriftSettings`.

Numerics are column by column (memory stays bounded) and sort-based: each column is sorted once
per side; the KS statistic, the exact 1-D Wasserstein distance, the PSI and the summaries all
come from the two sorted arrays. The reference side can be prepared once for many batches
(:func:`~retrain_assets.core.drift_reference.prepare_reference`, cached on disk by
:mod:`~retrain_assets.core.drift_cache`); then a check sorts only the current batch, and
:func:`drift_against` reads that batch one column at a time from wherever it lives (a frame, or
DuckDB: :mod:`~retrain_assets.core.drift_warehouse`). Pure Python (no Dagster).

Example:
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> ref = pd.DataFrame({"x": rng.normal(size=2000), "y": rng.normal(size=2000)})
    >>> cur = pd.DataFrame({"x": rng.normal(1.0, 1.0, 2000), "y": rng.normal(size=2000)})
    >>> result = detect_drift(ref, cur, domain_classifier=False)
    >>> result.drifted_features
    ['x']
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Protocol, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from retrain_assets.core.domain_shift import domain_classifier
from retrain_assets.core.drift_columns import (
    CategoryCounts,
    SortedColumn,
    category_counts,
    counts,
    finite_sorted,
    sorted_column,
)
from retrain_assets.core.drift_inputs import resolve_columns, resolve_prepared_columns
from retrain_assets.core.drift_reference import PreparedReference, prepare_reference, sample_frame
from retrain_assets.core.drift_settings import FEATURE_COLUMNS, INSUFFICIENT, DriftSettings
from retrain_assets.core.drift_stats import adjust, ks_2samp_sorted
from retrain_assets.core.feature_drift import compare_counts, compare_sorted, decide, describe, flags

__all__ = ["BatchColumns", "DriftResult", "FrameColumns", "detect_drift", "drift_against", "textbook_rule"]



# --- settings and result ---------------------------------------------------------------------


@dataclass
class DriftResult:
    """The verdict on one batch, with the evidence behind it.

    Attributes:
        drift_detected: True when any feature drifted or the domain classifier flagged a joint
            shift: the signal to retrain on.
        features: One row per feature, columns :data:`FEATURE_COLUMNS`: the test and its p-values,
            the effect sizes (``effect_size`` is the one compared with its threshold, named by
            ``effect_metric``: ``wasserstein`` in σ units, ``js``, or ``share_changed`` for a
            constant reference), missing rates, unseen categories, the verdict and its ``reason``,
            and reference/current summaries (mean, std, 5/50/95% quantiles for numbers; the most
            frequent value and its share for categories).
        drifted_features: Names of the drifted features, in column order.
        score: Share of the compared features that drifted, in [0, 1] (a joint shift alone
            leaves it at 0; ``drift_detected`` still says True).
        multivariate: The domain classifier: ``auc``, ``auc_ci`` (95% DeLong), ``drifted``,
            ``rows_used`` (both sides), ``top_features`` (largest AUC drop when permuted; filled
            when flagged) and ``feature_importance``; or ``{"skipped": reason}``.
        summary: One sentence a person reads.
        settings: The settings used.
        n_reference: Rows in the reference frame.
        n_current: Rows in the current frame.
    """

    drift_detected: bool
    features: pd.DataFrame
    drifted_features: list[str]
    score: float
    multivariate: dict
    summary: str
    settings: DriftSettings
    n_reference: int
    n_current: int


# --- the dataset-level verdict ---------------------------------------------------------------


def _resolve_settings(settings: DriftSettings | None, overrides: dict[str, Any]) -> DriftSettings:
    if settings is not None and not isinstance(settings, DriftSettings):
        raise TypeError(f"settings must be a DriftSettings, got {type(settings).__name__}")
    valid = [f.name for f in fields(DriftSettings)]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise TypeError(f"unknown DriftSettings field(s) {unknown}; valid names: {', '.join(valid)}")
    return replace(settings or DriftSettings(), **overrides)


class BatchColumns(Protocol):
    """One side of a drift check as it is read: one column at a time, and a few sampled rows."""

    rows: int

    def numeric(self, column: str) -> SortedColumn:
        """One numeric column, summarised (:func:`~retrain_assets.core.drift_columns.sorted_column`)."""

    def categorical(self, column: str) -> CategoryCounts:
        """One categorical column, counted."""

    def sample(self, positions: np.ndarray, numeric: list, categorical: list) -> pd.DataFrame:
        """The rows at ``positions`` (ascending), as :func:`~retrain_assets.core.drift_reference.sample_frame` gives them."""


class FrameColumns:
    """One side of a drift check held as a DataFrame (``side``: "current" or "reference", which
    also gets the search grid)."""

    def __init__(self, frame: pd.DataFrame, side: str = "current") -> None:
        self.frame, self.side = frame, side
        self.rows = len(frame)

    def numeric(self, column: str) -> SortedColumn:
        return sorted_column(self.frame[column], self.side, grid=self.side == "reference")

    def categorical(self, column: str) -> CategoryCounts:
        return category_counts(self.frame[column], self.side)

    def sample(self, positions: np.ndarray, numeric: list, categorical: list) -> pd.DataFrame:
        return sample_frame(self.frame.iloc[positions], numeric, categorical)


def detect_drift(
    reference: pd.DataFrame | PreparedReference,
    current: pd.DataFrame,
    *,
    numeric: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    settings: DriftSettings | None = None,
    **overrides: Any,
) -> DriftResult:
    """Decide whether ``current`` has drifted from ``reference`` enough to act on.

    Args:
        reference: The data the model was trained/validated on (or a trusted recent window), or
            that data prepared once (:func:`~retrain_assets.core.drift_reference.prepare_reference`,
            same result, only the current batch is sorted).
        current: The new batch.
        numeric: Columns compared as numbers. With ``categorical`` also None, the columns are
            inferred from the reference dtypes: numbers are numeric, everything else (strings,
            categories, booleans, datetimes) categorical; both frames must then have the same
            columns (a prepared reference: all its columns). When either list is given, only the
            listed columns are compared.
        categorical: Columns compared as categories.
        settings: Thresholds; defaults to ``DriftSettings()``.
        **overrides: Fields of :class:`DriftSettings` to change, e.g. ``alpha=0.01``.

    Returns:
        The verdict: see :class:`DriftResult`.

    Raises:
        TypeError: If an override is not a DriftSettings field, or a frame is not a DataFrame.
        ValueError: If a frame has no rows, columns are missing on one side, a numeric column
            does not hold numbers, or a prepared reference was drawn with another seed or sample size.
    """
    settings = _resolve_settings(settings, overrides)
    if isinstance(reference, PreparedReference):
        numeric, categorical = resolve_prepared_columns(reference, current, numeric, categorical)
        prepared = reference
    else:
        numeric, categorical = resolve_columns(reference, current, numeric, categorical)
        prepared = prepare_reference(reference, numeric, categorical, settings, keep_sorted=False)
    return drift_against(prepared, FrameColumns(current), numeric, categorical, settings)


def drift_against(reference: PreparedReference, current: BatchColumns, numeric: list, categorical: list,
                  settings: DriftSettings) -> DriftResult:
    """The verdict on a batch read one column at a time against a prepared reference.

    What :func:`detect_drift` computes, for a batch too large to hold whole: each column is read,
    compared and released before the next; the domain classifier reads a seeded sample of rows.

    Args:
        reference: The prepared reference (it must hold the listed columns).
        current: The current batch.
        numeric: Numeric columns to compare.
        categorical: Categorical columns to compare.
        settings: Thresholds.

    Returns:
        The verdict: see :class:`DriftResult`.

    Raises:
        ValueError: If the reference was prepared with another seed or sample size.
    """
    reference.check_settings(settings)
    rows = []
    for col in numeric:
        rows.append({"feature": col, **compare_sorted(reference.numeric[col], current.numeric(col), settings)})
    for col in categorical:
        rows.append({"feature": col, **compare_counts(reference.categorical[col], current.categorical(col), settings)})
    features = pd.DataFrame(rows, columns=list(FEATURE_COLUMNS))
    features["p_adjusted"] = adjust(features["p_value"].to_numpy(dtype=np.float64), settings.correction)
    features["missing_p_adjusted"] = adjust(features["missing_p_value"].to_numpy(dtype=np.float64), settings.correction)
    records = features.to_dict("records")
    for record in records:
        decide(record, settings)
    features["drifted"] = [r["drifted"] for r in records]
    features["reason"] = [r["reason"] for r in records]
    features["drifted"] = features["drifted"].astype(bool)
    drifted_features = [str(f) if not isinstance(f, str) else f for f in features.loc[features["drifted"], "feature"]]
    multivariate = domain_classifier(reference, lambda positions: current.sample(positions, numeric, categorical),
                                     current.rows, numeric, categorical, settings)
    drift_detected = bool(drifted_features) or bool(multivariate.get("drifted", False))
    score = len(drifted_features) / len(features)
    return DriftResult(
        drift_detected=drift_detected,
        features=features,
        drifted_features=drifted_features,
        score=float(score),
        multivariate=multivariate,
        summary=_summary(features, multivariate, drift_detected, settings),
        settings=settings,
        n_reference=reference.n_rows,
        n_current=current.rows,
    )


def _summary(features: pd.DataFrame, multivariate: dict, drift_detected: bool, settings: DriftSettings) -> str:
    """One sentence on the verdict."""
    total = len(features)
    noun = "feature" if total == 1 else "features"
    if "auc" in multivariate:
        lo, hi = multivariate["auc_ci"]
        auc = f"domain classifier AUC {multivariate['auc']:.2f} (95% CI {lo:.2f}–{hi:.2f})"
        lead = ", ".join(map(str, multivariate["top_features"][:3]))
        joint = f"joint shift: {auc}" + (f", led by {lead}" if lead else "") if multivariate["drifted"] else (
            f"{auc}, no joint shift")
    else:
        joint = f"domain classifier skipped: {multivariate['skipped']}"
    insufficient = int((features["test"] == INSUFFICIENT).sum())
    short = f"; {insufficient} of {total} {noun} had too little data to test" if insufficient else ""
    records = features.to_dict("records")
    drifted = [r for r in records if r["drifted"]]
    if drifted:
        items = []
        for r in drifted:
            missing_flag, significant, large = flags(r, settings)
            what = [f"missing {r['missing_ref']:.0%}→{r['missing_cur']:.0%}"] if missing_flag else []
            if significant and large:
                what.append(describe(r, settings))
            items.append(f"{r['feature']}: {', '.join(what)}")
        text = f"drift in {len(drifted)} of {total} {noun} ({'; '.join(items)})"
        return text + (f"; {joint}" if multivariate.get("drifted") else "") + short
    if drift_detected:
        return f"drift: {joint}; no single feature drifted (of {total}){short}"
    small = [r for r in records if flags(r, settings)[1]]
    if small:
        largest = max(small, key=lambda r: r["effect_size"] if np.isfinite(r["effect_size"]) else -1.0)
        detail = (f"{len(small)} of {total} {noun} differ significantly but below the effect thresholds "
                  f"(largest {largest['feature']}: {describe(largest, settings)})")
    else:
        detail = f"no significant change in {total} {noun}"
    return f"no actionable drift: {detail}; {joint}{short}"


# --- the domain classifier -------------------------------------------------------------------


def textbook_rule(reference: pd.DataFrame, current: pd.DataFrame, numeric: Sequence[str] | None = None,
                  categorical: Sequence[str] | None = None) -> bool:
    """The rule we replace: drift if any feature has an uncorrected p < 0.05.

    Two-sample KS for numeric columns (on the finite values), Pearson chi-square for categorical
    ones, no effect size, no correction. Used by the drift benchmark and the policy backtester as the baseline to beat.

    Args:
        reference: Reference frame.
        current: Current frame.
        numeric: Numeric columns (inferred as in :func:`detect_drift` when both are None).
        categorical: Categorical columns.

    Returns:
        True when any feature's p-value is below 0.05.
    """
    numeric, categorical = resolve_columns(reference, current, numeric, categorical)
    for col in numeric:
        ref, _, _ = finite_sorted(reference[col].to_numpy(dtype=np.float64, na_value=np.nan))
        cur, _, _ = finite_sorted(current[col].to_numpy(dtype=np.float64, na_value=np.nan))
        if len(ref) and len(cur) and ks_2samp_sorted(ref, cur)[1] < 0.05:
            return True
    for col in categorical:
        ref_counts, cur_counts = counts(reference[col]), counts(current[col])
        categories = ref_counts.index.append(cur_counts.index[~cur_counts.index.isin(ref_counts.index)])
        if len(categories) < 2 or not len(ref_counts) or not len(cur_counts):
            continue
        table = np.vstack([ref_counts.reindex(categories, fill_value=0), cur_counts.reindex(categories, fill_value=0)])
        if stats.chi2_contingency(table, correction=False).pvalue < 0.05:
            return True
    return False
