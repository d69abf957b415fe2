"""One feature, reference vs current: significance, effect size and the drifted/not verdict with
its reason, for numbers (KS, Wasserstein, PSI) and categories (chi-square, JS, TV, PSI), and the
prediction drift of a model's scores. Pure Python."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from retrain_assets.core.drift_columns import CategoryCounts, SortedColumn, category_counts, sorted_column
from retrain_assets.core.drift_grid import ks_and_wasserstein_grid
from retrain_assets.core.drift_settings import FEATURE_COLUMNS, INSUFFICIENT, DriftSettings
from retrain_assets.core.drift_stats import (
    js_distance,
    js_excess,
    ks_and_wasserstein,
    ks_p_value,
    ks_statistic_as_scipy,
    psi,
    sorted_quantiles,
    tv_excess,
    two_proportion_p,
)

MAX_UNSEEN_LISTED = 20


def _blank(kind: str) -> dict[str, Any]:
    row: dict[str, Any] = {c: np.nan for c in FEATURE_COLUMNS if c != "feature"}
    row.update(kind=kind, test=INSUFFICIENT, effect_metric="wasserstein" if kind == "numeric" else "js",
               unseen_categories=[], drifted=False, reason="", ref_top=None, cur_top=None,
               n_ref=0, n_cur=0, inf_ref=0, inf_cur=0, unseen_count=0, unseen_share=0.0)
    return row


def _missing(row: dict[str, Any], missing_ref: int, total_ref: int, missing_cur: int, total_cur: int) -> None:
    row["missing_ref"] = missing_ref / total_ref if total_ref else np.nan
    row["missing_cur"] = missing_cur / total_cur if total_cur else np.nan
    row["missing_change"] = row["missing_cur"] - row["missing_ref"]
    row["missing_p_value"] = two_proportion_p(missing_ref, total_ref, missing_cur, total_cur)
    row["missing_p_adjusted"] = row["missing_p_value"]


def _too_few(row: dict[str, Any], settings: DriftSettings) -> str:
    """Why a feature cannot be tested ('' when both sides have ``min_rows`` values)."""
    short = [f"{row[key]} in {side}" for key, side in (("n_ref", "reference"), ("n_cur", "current"))
             if row[key] < settings.min_rows]
    return f"too few values to test: {' and '.join(short)} (need {settings.min_rows} per side)" if short else ""


def _fmt(value: float, digits: int = 2) -> str:
    return "nan" if value is None or not np.isfinite(value) else f"{value:.{digits}g}"


def describe(row: dict[str, Any], settings: DriftSettings) -> str:
    """A few words on a feature's change (the effect that crossed its threshold, if one did)."""
    if row["effect_metric"] == "share_changed":
        return f"reference constant, {row['effect_size']:.0%} of current differ"
    if row["kind"] == "numeric":
        w = row["wasserstein"]
        if not w >= settings.min_wasserstein and row["psi"] >= settings.min_psi:
            return f"PSI {row['psi']:.2f}"
        return "σ shift n/a" if not np.isfinite(w) else f"{w:.2f}σ shift" if w < 1 else f"{w:.1f}σ shift"
    if not row["js_excess"] >= settings.min_js and row["psi"] >= settings.min_psi:
        text = f"PSI {row['psi']:.2f}"
    elif not row["js_excess"] >= settings.min_js and row["tv_excess"] >= settings.min_tv:
        text = f"{row['tv']:.0%} of rows changed category (TV {row['tv']:.2f})"
    else:
        text = f"JS {_fmt(row['js'])}" if not np.isfinite(row["js"]) else f"JS {row['js']:.2f}"
    if row["unseen_count"]:
        names = ", ".join(map(str, row["unseen_categories"][:3]))
        more = "…" if row["unseen_count"] > 3 else ""
        text += f", unseen {names}{more}"
    return text


def flags(row: dict[str, Any], settings: DriftSettings) -> tuple[bool, bool, bool]:
    """``(missing rate moved, distribution test significant, effect large enough)`` for one row."""
    s = settings
    missing = bool(
        np.isfinite(row["missing_change"])
        and abs(row["missing_change"]) >= s.min_missing_change
        and row["missing_p_adjusted"] < s.alpha
    )
    significant = bool(row["test"] != INSUFFICIENT and row["p_adjusted"] < s.alpha)
    if row["effect_metric"] == "share_changed":
        large = bool(row["effect_size"] > 0)
    elif row["kind"] == "numeric":
        large = bool(row["wasserstein"] >= s.min_wasserstein or row["psi"] >= s.min_psi)
    else:
        large = bool(row["js_excess"] >= s.min_js or row["tv_excess"] >= s.min_tv or row["psi"] >= s.min_psi)
    return missing, significant, large


def decide(row: dict[str, Any], settings: DriftSettings) -> None:
    """Set ``drifted`` and ``reason`` from the (adjusted) p-values and the effect sizes."""
    s = settings
    missing_flag, significant, large = flags(row, s)
    row["drifted"] = missing_flag or (significant and large)
    if row["kind"] == "numeric":
        wanted = f"{s.min_wasserstein:g}σ shift or PSI {s.min_psi:g}"
    else:
        wanted = f"JS {s.min_js:g}, TV {s.min_tv:g} beyond noise or PSI {s.min_psi:g}"

    parts = []
    if row["test"] == INSUFFICIENT:
        parts.append(_too_few(row, s) or "too few values to test")
    elif row["kind"] == "categorical" and row["categories"] == 1:
        parts.append(f"one category in both frames: {row['ref_top']}")
    elif significant and large:
        parts.append(f"{describe(row, s)} (p_adj={row['p_adjusted']:.2g})")
    elif significant:
        parts.append(f"significant (p_adj={row['p_adjusted']:.2g}) but small: {describe(row, s)}, below {wanted}")
    else:
        parts.append(f"no significant change (p_adj={_fmt(row['p_adjusted'])}; {describe(row, s)})")
    if row["effect_metric"] == "share_changed":
        parts[-1] = f"reference is constant; {parts[-1]}"
    if missing_flag:
        parts.insert(0, f"missing rate {row['missing_ref']:.1%} → {row['missing_cur']:.1%} "
                        f"(p_adj={row['missing_p_adjusted']:.2g})")
    elif np.isfinite(row["missing_change"]) and abs(row["missing_change"]) >= s.min_missing_change:
        parts.append(f"missing rate {row['missing_ref']:.1%} → {row['missing_cur']:.1%}, not significant")
    if row["inf_ref"] or row["inf_cur"]:
        parts.append(f"inf values left out: {row['inf_ref']} in reference, {row['inf_cur']} in current")
    if row["unseen_count"] and not (significant and large):
        parts.append(f"{row['unseen_count']} unseen categories")
    row["reason"] = "; ".join(parts)


def compare_numeric(reference: np.ndarray, current: np.ndarray, settings: DriftSettings | None = None) -> dict:
    """Compare one numeric feature (or a model's scores) between reference and current.

    NaN counts as missing; ±inf is counted (``inf_ref``/``inf_cur``) and left out of the
    distribution tests. Each side is sorted once; the KS test, the exact Wasserstein distance,
    the PSI on reference-quantile bins and the summaries all come from the sorted arrays.

    The Wasserstein distance is divided by the reference standard deviation (or IQR/1.349 when
    that is not finite), so it reads as a shift in σ units. A constant reference has no spread:
    then the feature drifts iff the KS test says current differs significantly, and
    ``effect_size`` is the share of current values away from the constant
    (``effect_metric="share_changed"``).

    Args:
        reference: Reference values (array-like of numbers).
        current: Current values.
        settings: Thresholds; defaults to ``DriftSettings()``.

    Returns:
        One row of :attr:`DriftResult.features` as a dict (without ``feature``), judged as a
        single test: ``p_adjusted`` equals ``p_value``. :func:`detect_drift` re-judges it with
        the corrected p-values.

    Raises:
        ValueError: If an input is not 1-D numbers.
    """
    return compare_sorted(sorted_column(reference, "reference", grid=True), sorted_column(current, "current"),
                          settings)


def compare_sorted(reference: SortedColumn, current: SortedColumn, settings: DriftSettings | None = None) -> dict:
    """:func:`compare_numeric` on columns already summarised (a reference prepared once, e.g. cached).

    Args:
        reference: The reference column (:func:`~retrain_assets.core.drift_columns.sorted_column`
            with ``grid=True``).
        current: The current column.
        settings: Thresholds; defaults to ``DriftSettings()``.

    Returns:
        The same row as :func:`compare_numeric` on the raw values.
    """
    settings = settings or DriftSettings()
    ref_sorted, cur_sorted = reference.values, current.values
    row = _blank("numeric")
    row["inf_ref"], row["inf_cur"] = reference.infinite, current.infinite
    _missing(row, reference.missing, reference.total, current.missing, current.total)
    row["n_ref"], row["n_cur"] = len(ref_sorted), len(cur_sorted)
    for prefix, side in (("ref", reference), ("cur", current)):
        if len(side.values):
            row[f"{prefix}_mean"], row[f"{prefix}_std"] = side.mean, side.std
            for q, v in zip(("q05", "q50", "q95"), side.quantiles):
                row[f"{prefix}_{q}"] = v
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if not _too_few(row, settings):
            row["test"] = "ks"
            if reference.grid is not None:
                statistic, raw = ks_and_wasserstein_grid(ref_sorted, reference.grid, cur_sorted)
            else:
                statistic, raw = ks_and_wasserstein(ref_sorted, cur_sorted)
            statistic = ks_statistic_as_scipy(statistic, len(ref_sorted), len(cur_sorted))
            row["statistic"] = statistic
            row["p_value"] = row["p_adjusted"] = ks_p_value(statistic, len(ref_sorted), len(cur_sorted))
            row["wasserstein_raw"] = raw
            row["psi"] = _numeric_psi(ref_sorted, cur_sorted, settings.psi_bins)
            if ref_sorted[0] == ref_sorted[-1]:
                constant = ref_sorted[0]
                same = np.searchsorted(cur_sorted, constant, "right") - np.searchsorted(cur_sorted, constant, "left")
                row["effect_metric"] = "share_changed"
                row["effect_size"] = 1.0 - same / len(cur_sorted)
                row["scale"] = 0.0
            else:
                row["scale"] = _spread(row["ref_std"], ref_sorted)
                row["wasserstein"] = raw / row["scale"] if row["scale"] > 0 else np.nan
                row["effect_size"] = row["wasserstein"]
    decide(row, settings)
    return row


def prediction_drift(
    reference: np.ndarray, current: np.ndarray, settings: DriftSettings | None = None, classes: Sequence | None = None
) -> dict:
    """Whether a model's scores moved between reference and current rows.

    Binary classifier or regressor (1-D scores): :func:`compare_numeric` on the scores. Multiclass
    (a probability matrix): the predicted-class distribution (:func:`compare_categorical`) and the
    largest probability (the model's confidence, :func:`compare_numeric`), each at ``alpha / 2``
    (Bonferroni over the two tests); drifted when either is.

    Args:
        reference: The model's scores on the reference rows.
        current: Its scores on the current rows.
        settings: Thresholds; defaults to ``DriftSettings()``.
        classes: Names of the probability columns (multiclass), for the predicted-class table.

    Returns:
        A dict with ``drifted`` and ``reason`` (plus the per-test rows for a multiclass model).
    """
    settings = settings or DriftSettings()
    ref, cur = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    if ref.ndim == 1:
        return compare_numeric(ref, cur, settings)
    names = np.asarray(list(classes) if classes is not None else range(ref.shape[1]), dtype=object)
    half = replace(settings, alpha=settings.alpha / 2)
    predicted = compare_categorical(pd.Series(names[ref.argmax(axis=1)]), pd.Series(names[cur.argmax(axis=1)]), half)
    confidence = compare_numeric(ref.max(axis=1), cur.max(axis=1), half)
    return {
        "drifted": bool(predicted["drifted"] or confidence["drifted"]),
        "reason": f"predicted classes: {predicted['reason']}; largest probability: {confidence['reason']}",
        "test": "chi-square on the predicted class and KS on the largest probability, each at alpha/2",
        "predicted_class": predicted,
        "confidence": confidence,
    }


def _spread(std: float, ref_sorted: np.ndarray) -> float:
    """Reference standard deviation, or IQR/1.349 when the std is not a usable positive number."""
    if np.isfinite(std) and std > 0:
        return float(std)
    q25, q75 = sorted_quantiles(ref_sorted, (0.25, 0.75))
    with np.errstate(over="ignore", invalid="ignore"):
        iqr = (q75 - q25) / 1.349
    return float(iqr) if np.isfinite(iqr) and iqr > 0 else np.nan


def _numeric_psi(ref_sorted: np.ndarray, cur_sorted: np.ndarray, bins: int) -> float:
    """PSI on ``bins`` reference-quantile bins, right-closed; tied edges are merged."""
    edges = np.unique(sorted_quantiles(ref_sorted, np.arange(1, bins) / bins))
    ref_counts = np.diff(np.concatenate([[0], np.searchsorted(ref_sorted, edges, "right"), [len(ref_sorted)]]))
    cur_counts = np.diff(np.concatenate([[0], np.searchsorted(cur_sorted, edges, "right"), [len(cur_sorted)]]))
    return psi(ref_counts.astype(np.float64), cur_counts.astype(np.float64))


def _top(counts: pd.Series) -> str | None:
    if counts.empty or counts.sum() == 0:
        return None
    value = counts.idxmax()
    return f"{value} ({counts.max() / counts.sum():.1%})"


def compare_categorical(reference: pd.Series, current: pd.Series, settings: DriftSettings | None = None) -> dict:
    """Compare one categorical feature between reference and current.

    Missing values (NaN/None) count toward the missing rate, not as a category. Categories seen
    only in current are listed by name (``unseen_categories``, most frequent first, up to 20;
    ``unseen_count`` and ``unseen_share`` give the totals) and are their own bins in the
    chi-square test (Pearson, no continuity correction), the PSI and the Jensen–Shannon distance.

    Args:
        reference: Reference values (a Series or 1-D array of any hashable values).
        current: Current values.
        settings: Thresholds; defaults to ``DriftSettings()``.

    Returns:
        One row of :attr:`DriftResult.features` as a dict (without ``feature``), judged as a
        single test: ``p_adjusted`` equals ``p_value``.

    Raises:
        ValueError: If an input is not 1-D.
    """
    return compare_counts(category_counts(reference, "reference"), category_counts(current, "current"), settings)


def compare_counts(reference: CategoryCounts, current: CategoryCounts, settings: DriftSettings | None = None) -> dict:
    """:func:`compare_categorical` on columns already counted (a reference prepared once, e.g. cached).

    Args:
        reference: The reference column's counts (:func:`~retrain_assets.core.drift_columns.category_counts`).
        current: The current column's counts.
        settings: Thresholds; defaults to ``DriftSettings()``.

    Returns:
        The same row as :func:`compare_categorical` on the raw values.
    """
    settings = settings or DriftSettings()
    row = _blank("categorical")
    ref_counts, cur_counts = reference.counts, current.counts
    _missing(row, reference.missing, reference.total, current.missing, current.total)
    row["n_ref"], row["n_cur"] = int(ref_counts.sum()), int(cur_counts.sum())
    row["ref_top"], row["cur_top"] = _top(ref_counts), _top(cur_counts)
    categories = ref_counts.index.append(cur_counts.index[~cur_counts.index.isin(ref_counts.index)])
    row["categories"] = len(categories)
    r = ref_counts.reindex(categories, fill_value=0).to_numpy(dtype=np.float64)
    c = cur_counts.reindex(categories, fill_value=0).to_numpy(dtype=np.float64)
    unseen = (r == 0) & (c > 0)
    if unseen.any():
        order = np.argsort(-c[unseen], kind="stable")
        names = categories[unseen][order]
        row["unseen_categories"] = [_plain(v) for v in names[:MAX_UNSEEN_LISTED]]
        row["unseen_count"] = int(unseen.sum())
        row["unseen_share"] = float(c[unseen].sum() / c.sum())
    if not _too_few(row, settings):
        row["test"] = "chi2"
        if len(categories) == 1:
            row.update(statistic=0.0, p_value=1.0, p_adjusted=1.0, js=0.0, psi=0.0, effect_size=0.0, tv=0.0,
                       tv_excess=0.0, js_excess=0.0)
        else:
            test = stats.chi2_contingency(np.vstack([r, c]), correction=False)  # Pearson, k−1 degrees of freedom
            row["statistic"] = float(test.statistic)
            row["p_value"] = row["p_adjusted"] = float(test.pvalue)
            row["js"] = row["effect_size"] = js_distance(r, c)
            row["psi"] = psi(r, c)
            row["tv"], row["tv_excess"] = tv_excess(r, c)
            row["js_excess"] = js_excess(row["js"], len(categories), r.sum(), c.sum())
    decide(row, settings)
    return row


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value
