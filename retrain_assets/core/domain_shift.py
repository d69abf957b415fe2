"""The domain classifier: a gradient-boosted model that tries to tell reference rows from current
rows, catching joint shifts no single column shows (two features whose correlation flips sign),
with a DeLong interval on its out-of-fold AUC and the features that separate the two most.
Pure Python (scikit-learn)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from retrain_assets.core.drift_reference import PreparedReference, current_sample_positions
from retrain_assets.core.drift_settings import DOMAIN_MIN_ROWS, DriftSettings
from retrain_assets.core.stats import delong_auc

DOMAIN_MAX_CATEGORIES = 250  # HistGradientBoosting takes at most max_bins (255) categories
TOP_FEATURES = 5
IMPORTANCE_ROWS = 1000  # held-out rows per fold used to rank features of a joint shift


def _domain_matrix(reference: pd.DataFrame, current: pd.DataFrame, numeric: list,
                   categorical: list) -> tuple[np.ndarray, np.ndarray, list]:
    """Stack the sampled rows: numbers as float (inf → NaN), categories ordinal-encoded."""
    columns = numeric + categorical
    k = len(reference)
    X = np.empty((k + len(current), len(columns)), dtype=np.float64)
    for j, col in enumerate(numeric):
        X[:k, j] = reference[col].to_numpy(dtype=np.float64, na_value=np.nan)
        X[k:, j] = current[col].to_numpy(dtype=np.float64, na_value=np.nan)
    for j, col in enumerate(categorical):
        values = np.concatenate([reference[col].to_numpy(dtype=object), current[col].to_numpy(dtype=object)])
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        if len(uniques) > DOMAIN_MAX_CATEGORIES:  # keep the most frequent, lump the rest
            freq = np.bincount(codes[codes >= 0], minlength=len(uniques))
            rank = np.empty(len(uniques), dtype=np.int64)
            rank[np.argsort(-freq, kind="stable")] = np.arange(len(uniques))
            codes = np.where(codes >= 0, np.minimum(rank[np.maximum(codes, 0)], DOMAIN_MAX_CATEGORIES - 1), -1)
        X[:, len(numeric) + j] = np.where(codes >= 0, codes, np.nan)
    X[~np.isfinite(X)] = np.nan
    is_categorical = np.array([False] * len(numeric) + [True] * len(categorical))
    return X, is_categorical, columns


def domain_classifier(reference: PreparedReference, current_rows: Callable[[np.ndarray], pd.DataFrame],
                      n_current: int, numeric: list, categorical: list, settings: DriftSettings) -> dict:
    """Cross-validated AUC of a classifier telling reference rows from current rows.

    Args:
        reference: The prepared reference (its seeded sample of rows).
        current_rows: Returns the current rows at the given positions (numeric and categorical
            columns, as :func:`~retrain_assets.core.drift_reference.sample_frame` gives them).
        n_current: Rows in the current batch.
        numeric: Numeric columns.
        categorical: Categorical columns.
        settings: Thresholds, seed and sample size.

    Returns:
        ``auc``, ``auc_ci``, ``drifted``, ``rows_used``, ``top_features``, ``feature_importance``;
        or ``{"skipped": reason}``.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    if not settings.domain_classifier:
        return {"skipped": "turned off (domain_classifier=False)"}
    n_ref, n_cur = reference.n_rows, n_current
    if min(n_ref, n_cur) < DOMAIN_MIN_ROWS:
        return {"skipped": f"needs {DOMAIN_MIN_ROWS} rows per side, reference has {n_ref} and current {n_cur}"}
    k = min(n_ref, n_cur, settings.domain_max_rows)
    X, is_categorical, columns = _domain_matrix(
        reference.sample.first(k), current_rows(current_sample_positions(n_cur, k, settings)), numeric, categorical)
    usable = ~np.isnan(X).all(axis=0)
    if not usable.any():
        return {"skipped": "every feature is missing in the sampled rows"}
    X, is_categorical, columns = X[:, usable], is_categorical[usable], [c for c, u in zip(columns, usable) if u]
    y = np.r_[np.zeros(k, dtype=np.int8), np.ones(k, dtype=np.int8)]
    folds = StratifiedKFold(settings.domain_folds, shuffle=True, random_state=settings.seed)
    scores = np.empty(len(y))
    fitted = []
    # One OpenMP thread: the sample is small (≤ 2 × domain_max_rows), and parallel Dagster steps
    # would otherwise oversubscribe the cores, where OpenMP's spinning threads slow down tenfold.
    with threadpool_limits(limits=1, user_api="openmp"):
        for train, test in folds.split(X, y):
            model = HistGradientBoostingClassifier(
                categorical_features=is_categorical if is_categorical.any() else None,
                early_stopping=True, validation_fraction=0.1, n_iter_no_change=10, random_state=settings.seed,
            ).fit(X[train], y[train])
            scores[test] = model.predict_proba(X[test])[:, 1]
            fitted.append((model, test))
        auc, se = delong_auc(y, scores)
        lo, hi = max(0.0, auc - 1.96 * se), min(1.0, auc + 1.96 * se)
        flagged = bool(auc >= settings.domain_min_auc and lo > 0.5 + settings.domain_ci_margin)
        importance: dict[str, float] = {}
        if flagged:  # which features carry the shift: AUC lost when one is permuted in the held-out folds
            importance = _permutation_importance(X, y, scores, fitted, columns, settings.seed)
    # a feature "leads" when permuting it costs at least a tenth of the AUC's lift over 0.5
    top = [c for c, drop in sorted(importance.items(), key=lambda kv: -kv[1])
           if drop > 0 and drop >= 0.1 * (auc - 0.5)][:TOP_FEATURES]
    return {
        "auc": round(auc, 4),
        "auc_ci": (round(lo, 4), round(hi, 4)),
        "drifted": flagged,
        "rows_used": int(2 * k),
        "top_features": top,
        "feature_importance": importance,
    }


def _permutation_importance(X: np.ndarray, y: np.ndarray, scores: np.ndarray, fitted: list, columns: list,
                            seed: int) -> dict[str, float]:
    """AUC lost when one feature is permuted within each held-out fold (on ≤1000 rows per fold)."""
    rng = np.random.default_rng(seed + 1)
    rows = np.concatenate([np.sort(rng.choice(test, min(len(test), IMPORTANCE_ROWS), replace=False))
                           for _, test in fitted])
    base = delong_auc(y[rows], scores[rows])[0]
    importance = {}
    for j, col in enumerate(columns):
        permuted = []
        for model, test in fitted:
            held = np.intersect1d(test, rows, assume_unique=True)
            Xt = X[held]
            Xt[:, j] = rng.permutation(Xt[:, j])
            permuted.append((held, model.predict_proba(Xt)[:, 1]))
        out = scores.copy()
        for held, p in permuted:
            out[held] = p
        importance[str(col)] = round(base - delong_auc(y[rows], out[rows])[0], 4)
    return importance
