"""Decide whether a batch has drifted from the reference data enough to retrain on.

The textbook rule, "retrain if any feature has a two-sample KS p < 0.05", cannot be automated:
with 10 features it flags 36–40% of batches that have not drifted at all (ten tests at 5% each),
and at 100k rows it flags shifts of 0.05σ that no model notices (a p-value measures how sure we
are that *something* changed, not how much). Here a feature counts as drifted only when both hold:

* the change is **significant** after correcting for the number of features tested
  (Benjamini–Hochberg by default; two-sample KS for numbers, chi-square for categories), and
* the change is **large enough to matter**: the Wasserstein distance in units of the reference
  spread (≈ the mean shift in σ) or the PSI for numbers; the Jensen–Shannon distance or the PSI
  for categories.

A jump in a feature's missing rate counts too, and a gradient-boosted *domain classifier* that
tries to tell reference rows from current rows catches joint shifts that no single column shows
(two features whose correlation flips sign). Thresholds, and the measurements behind them, are
documented on :class:`DriftSettings`; ``bench/drift.py`` re-measures them.

Numerics are column by column (memory stays bounded) and sort-based: each column is sorted once
per side; the KS statistic, the exact 1-D Wasserstein distance, the PSI and the summaries all
come from the two sorted arrays. Pure Python (no Dagster).

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

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

from retrain_assets.core.stats import delong_auc

__all__ = [
    "DriftSettings",
    "DriftResult",
    "FEATURE_COLUMNS",
    "detect_drift",
    "compare_numeric",
    "compare_categorical",
    "ks_2samp_sorted",
    "textbook_rule",
]

INSUFFICIENT = "insufficient data"
_QUANTILES = (0.05, 0.5, 0.95)
_PSEUDO_COUNT = 0.5  # added to every PSI bin so an empty bin (e.g. an unseen category) stays finite
_MAX_UNSEEN_LISTED = 20
_DOMAIN_MIN_ROWS = 50  # per side, below which the domain classifier is skipped
_DOMAIN_MAX_CATEGORIES = 250  # HistGradientBoosting takes at most max_bins (255) categories
_TOP_FEATURES = 5
_IMPORTANCE_ROWS = 1000  # held-out rows per fold used to rank features of a joint shift

FEATURE_COLUMNS: tuple[str, ...] = (
    "feature", "kind", "test", "statistic", "p_value", "p_adjusted",
    "effect_size", "effect_metric", "wasserstein", "psi", "js",
    "missing_ref", "missing_cur", "missing_change", "missing_p_value", "missing_p_adjusted",
    "unseen_categories", "drifted", "reason",
    "ref_mean", "cur_mean", "ref_std", "cur_std",
    "ref_q05", "ref_q50", "ref_q95", "cur_q05", "cur_q50", "cur_q95",
    "ref_top", "cur_top",
    "n_ref", "n_cur", "inf_ref", "inf_cur", "wasserstein_raw", "scale", "categories", "unseen_count", "unseen_share",
    "tv", "tv_excess", "js_excess",
)  # fmt: skip
"""Columns of :attr:`DriftResult.features`, in order (the spec'd ones, then extras)."""


# --- settings and result ---------------------------------------------------------------------


@dataclass(frozen=True)
class DriftSettings:
    """Thresholds of the drift verdict, chosen so that a team can retrain on it automatically.

    A feature is drifted when its multiplicity-corrected p-value is below ``alpha`` **and** its
    effect size reaches a threshold (numeric: ``wasserstein >= min_wasserstein`` or
    ``psi >= min_psi``; categorical: ``js >= min_js`` or ``psi >= min_psi``), or when its missing
    rate moved by at least ``min_missing_change`` with a significant (corrected) two-proportion
    test. The batch has drifted when any feature has, or when the domain classifier's
    cross-validated ROC AUC reaches ``domain_min_auc`` and its 95% CI lower bound exceeds
    ``0.5 + domain_ci_margin``.

    How the defaults were chosen (``bench/drift.py``: 10 independent features, 8 N(0, 1) numeric
    and 2 categorical, reference and current both n rows; targets ≤1% false alarms at every n
    from 1k to 1M, ≤10% alarms on a 0.02σ shift at 1M, ≥95% detection of a 0.2σ shift from 5k):

    * ``alpha=0.05`` with Benjamini–Hochberg: the p-value only has to say "this is not noise".
      Corrected over the features, noise passes that gate in ≈5% of batches instead of the
      textbook rule's 36–40%; the effect thresholds below remove the rest.
    * ``min_wasserstein=0.15``: the Wasserstein distance divided by the reference standard
      deviation is ≈ the mean shift in σ units at every n, so this reads "at least a 0.15σ shift".
      0.1σ would be the natural line (smaller shifts rarely change a model's predictions) but is
      inside the noise at 1k rows: there, a KS test that survives the correction already implies
      a distance of 0.1–0.2, and 0.1 let 3–5% of no-drift batches through. Over 10,000 no-drift
      batches of 1k rows, 0.14 gave 0.96% false alarms, 0.15 0.50%, 0.16 0.25%, 0.17 0.11%; at
      5k rows (noise ≈0.015) the share of 0.2σ shifts caught was 99.8%, 99.1%, 98.1%, 94%
      (1,500 batches). 0.15 keeps both targets with room. At 1M rows the KS test flags a 0.02σ
      shift every time; this rule never does.
      Shifts between 0.1σ and 0.15σ are not flagged at any n: raise the sensitivity with a
      lower ``min_wasserstein`` only where batches have ≥5k rows.
    * ``min_psi=0.25``: the conventional "major shift" PSI (10 reference-quantile bins give ≈0.25
      for a 0.5σ shift). For numbers it is a backstop for shape changes the Wasserstein distance
      underrates (mass moved into a spike); location and scale changes trip the Wasserstein
      threshold first.
    * ``min_js=0.1``: a Jensen–Shannon distance (base 2) of 0.1 is, for example, a bit less than
      ten points of share moving from one category to another (.30/.10 → .20/.20 of a 5-level
      feature gives 0.14), and matches a ≈0.24σ normal shift in information terms. With no drift, the largest of two
      categorical features stays under 0.071 in 99% of batches at 1k rows. The distance is taken
      less its sampling bias (:func:`_js_excess`), which for many rare levels alone exceeds 0.1
      (50 Zipf levels at 1k rows: ≈0.13 with no drift).
    * ``min_tv=0.07``: the total variation distance (share of rows that changed category) beyond
      sampling noise (:func:`_tv_excess`). A JS floor alone caught ten points of share moving
      (.5/.3/.2 → .4/.3/.3, JS ≈ 0.106) only 83% of the time at 5k rows, right at its 0.1 line;
      with TV its ≈0.09 excess clears 0.07 in 99.7% of 300 batches, and with no drift the share
      of alarmed 1k-row batches was 0.6% of 2,000 in the full bench (0.8% with a
      50-level Zipf column). 0.07 is the TV of a ≈0.18σ normal shift, next to the numeric 0.15σ.
    * ``min_missing_change=0.05``: five points of missing rate is where imputation starts to
      change what a model sees; smaller moves are everyday noise in real pipelines.
    * ``domain_min_auc=0.55``: a classifier AUC of 0.55 is what a 0.18σ shift of one feature gives
      (AUC = Φ(δ/√2)), so the joint test asks for about the same size of change as the
      per-feature one. ``domain_ci_margin=0.02``: the DeLong CI treats the out-of-fold scores as
      coming from one fixed model, but they come from ``domain_folds`` models fitted on
      overlapping data; with no drift the measured spread of the AUC is 1.1–1.3× the DeLong
      standard error (200 to 5k rows per side), and 0.02 covers that gap down to ≈200 rows per
      side. A correlation flip of ±0.5 between two features gives an AUC of ≈0.69 at 1k rows and
      ≈0.73 at 5k.
    * ``domain_max_rows=20_000`` per side: the AUC's standard error is then ≈0.003, far below the
      0.05 it has to clear, and the classifier costs ≈0.5 s without drift (early stopping) and a
      few seconds with, whatever n is.

    Below ≈1k rows per side the effect thresholds are inside the noise, so the false-alarm rate
    climbs back toward ``alpha`` (≈4% of no-drift batches at 200 rows): use a lower ``alpha``
    for small batches.

    Attributes:
        alpha: Level for the multiplicity-corrected p-values (distribution and missing-rate tests).
        correction: ``"bh"`` (Benjamini–Hochberg) or ``"bonferroni"``; applied across features,
            separately for the distribution tests and the missing-rate tests.
        min_wasserstein: Numeric effect threshold: Wasserstein distance / reference spread (σ).
        min_psi: PSI threshold, on ``psi_bins`` reference-quantile bins (numeric) or on the
            categories (categorical); every bin gets a 0.5 pseudo-count.
        min_js: Jensen–Shannon distance (base 2, in [0, 1]) threshold for categoricals.
        min_tv: Categorical effect threshold on the total variation distance (the share of rows
            that changed category) in excess of what sampling alone gives at these sizes.
        min_missing_change: Absolute change in missing rate (NaN/None) that counts as drift.
        psi_bins: Number of reference-quantile bins for the numeric PSI.
        domain_classifier: Whether to run the domain classifier (joint shift).
        domain_max_rows: Rows sampled per side for the domain classifier.
        domain_min_auc: Cross-validated ROC AUC that counts as a joint shift.
        domain_ci_margin: The AUC's 95% CI lower bound must exceed ``0.5 + domain_ci_margin``.
        domain_folds: Stratified folds for the out-of-fold probabilities.
        min_rows: Non-missing finite values needed per side to test a feature.
        seed: Seed of every random choice (sampling, folds, the classifier, permutations).
    """

    alpha: float = 0.05
    correction: Literal["bh", "bonferroni"] = "bh"
    min_wasserstein: float = 0.15
    min_psi: float = 0.25
    min_js: float = 0.1
    min_tv: float = 0.07
    min_missing_change: float = 0.05
    psi_bins: int = 10
    domain_classifier: bool = True
    domain_max_rows: int = 20_000
    domain_min_auc: float = 0.55
    domain_ci_margin: float = 0.02
    domain_folds: int = 5
    min_rows: int = 30
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.alpha < 1:
            problems.append(f"alpha must be in (0, 1), got {self.alpha!r}")
        if self.correction not in ("bh", "bonferroni"):
            problems.append(f"correction must be 'bh' or 'bonferroni', got {self.correction!r}")
        for name in ("min_wasserstein", "min_psi", "min_js", "min_tv", "min_missing_change", "domain_ci_margin"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                problems.append(f"{name} must be a finite number >= 0, got {value!r}")
        if isinstance(self.min_js, (int, float)) and self.min_js > 1:
            problems.append(f"min_js is a Jensen–Shannon distance in [0, 1], got {self.min_js!r}")
        if isinstance(self.min_missing_change, (int, float)) and self.min_missing_change > 1:
            problems.append(f"min_missing_change is a change of rate in [0, 1], got {self.min_missing_change!r}")
        if not 0.5 < self.domain_min_auc < 1:
            problems.append(f"domain_min_auc must be in (0.5, 1), got {self.domain_min_auc!r}")
        for name, low in (("psi_bins", 2), ("domain_folds", 2), ("domain_max_rows", _DOMAIN_MIN_ROWS), ("min_rows", 2)):
            value = getattr(self, name)
            if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low):
                problems.append(f"{name} must be an integer >= {low}, got {value!r}")
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool):
            problems.append(f"seed must be an integer, got {self.seed!r}")
        if problems:
            raise ValueError("invalid DriftSettings: " + "; ".join(problems))


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


# --- small numeric helpers -------------------------------------------------------------------


def _sorted_quantiles(values_sorted: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """Quantiles of an already-sorted array (linear interpolation, as ``np.quantile``)."""
    n = len(values_sorted)
    if n == 0:
        return np.full(len(qs), np.nan)
    pos = np.asarray(qs, dtype=np.float64) * (n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = pos - lo
    with np.errstate(over="ignore", invalid="ignore"):
        out = values_sorted[lo] * (1 - frac) + values_sorted[hi] * frac
    return np.where(frac == 0, values_sorted[lo], out)


def _adjust(p_values: np.ndarray, method: str) -> np.ndarray:
    """Multiplicity-corrected p-values; NaN entries are not tested and stay NaN."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    m = len(tested)
    if m == 0:
        return out
    pt = p[tested]
    if method == "bonferroni":
        out[tested] = np.minimum(pt * m, 1.0)
        return out
    out[tested] = stats.false_discovery_control(pt, method="bh")
    return out


def _two_proportion_p(count_a: int, n_a: int, count_b: int, n_b: int) -> float:
    """Two-sided p-value of a pooled two-proportion z-test (1.0 when the rates cannot differ)."""
    if n_a == 0 or n_b == 0:
        return float("nan")
    pooled = (count_a + count_b) / (n_a + n_b)
    if pooled <= 0 or pooled >= 1:
        return 1.0
    z = (count_b / n_b - count_a / n_a) / math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    return float(2 * stats.norm.sf(abs(z)))


def _psi(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Population stability index with a 0.5 pseudo-count per bin."""
    pr = (ref_counts + _PSEUDO_COUNT) / (ref_counts.sum() + _PSEUDO_COUNT * len(ref_counts))
    pc = (cur_counts + _PSEUDO_COUNT) / (cur_counts.sum() + _PSEUDO_COUNT * len(cur_counts))
    return float(np.sum((pc - pr) * np.log(pc / pr)))


def _js_distance(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Jensen–Shannon distance (base 2, in [0, 1]) between two count vectors (scipy's)."""
    return float(min(jensenshannon(ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum(), base=2), 1.0))


def _js_excess(js: float, categories: int, n_ref: float, n_cur: float) -> float:
    """The Jensen–Shannon distance less its sampling bias: for two samples of one distribution the
    plug-in divergence (bits) averages ≈ (k−1)(1/n₁+1/n₂)/(8 ln 2) — with 50 levels at 1k rows that is
    a distance of ≈0.13, over the 0.1 floor, with no drift at all."""
    bias = (categories - 1) * (1 / n_ref + 1 / n_cur) / (8 * math.log(2))
    return float(math.sqrt(max(js * js - bias, 0.0)))


def _tv_excess(ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[float, float]:
    """Total variation distance (half the summed share differences: the share of rows that changed
    category) and its excess over what sampling alone gives: each share difference of two samples
    of one distribution is ≈ normal with sd √(p(1−p)(1/n₁+1/n₂)), whose absolute value averages
    √(2/π)·sd. Subtracting that sum keeps many rare categories at 1k rows (where the plain TV of two
    samples of one distribution reaches 0.1) from looking like drift."""
    n_ref, n_cur = ref_counts.sum(), cur_counts.sum()
    tv = float(0.5 * np.abs(ref_counts / n_ref - cur_counts / n_cur).sum())
    pooled = (ref_counts + cur_counts) / (n_ref + n_cur)
    noise = float(0.5 * math.sqrt(2 / math.pi) * np.sqrt(pooled * (1 - pooled) * (1 / n_ref + 1 / n_cur)).sum())
    return tv, max(tv - noise, 0.0)


_SCIPY_EXACT_MAX_N = 10_000  # scipy.stats.ks_2samp(method="auto") is exact up to here


def _ks_statistic_as_scipy(statistic: float, n1: int, n2: int) -> float:
    """The statistic as ``scipy.stats.ks_2samp`` reports it by default.

    D is a multiple of 1/lcm(n1, n2); for samples of up to 10,000 values scipy's default
    (``method="auto"``, exact) snaps the float CDF difference to that rational, above it reports
    the float difference itself. Doing the same keeps the two bit-for-bit equal.
    """
    if max(n1, n2) > _SCIPY_EXACT_MAX_N:
        return statistic
    lcm = (n1 // math.gcd(n1, n2)) * n2
    return round(statistic * lcm) * 1.0 / lcm


def _ks_p_value(statistic: float, n1: int, n2: int) -> float:
    """Asymptotic two-sided KS p-value, computed as ``scipy.stats.ks_2samp(method='asymp')``."""
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = np.round(m * n / (m + n))
    if en < 1:  # one value per side: D is always 1, so it says nothing
        return 1.0
    return float(np.clip(stats.kstwo.sf(statistic, en), 0.0, 1.0))


def _ks_and_wasserstein(ref_sorted: np.ndarray, cur_sorted: np.ndarray) -> tuple[float, float]:
    """KS statistic and exact 1-D Wasserstein-1 distance of two sorted finite samples.

    The two sorted arrays are merged (a stable argsort of their concatenation: two sorted runs,
    merged in linear time), the running share of each sample gives both empirical CDFs at every
    merged point, and

    * KS = max |F_ref − F_cur| over the distinct values (inside a run of ties only the last point
      is a value of the CDFs, so the others are zeroed first), and
    * W1 = Σ |F_ref − F_cur| · (x_{k+1} − x_k), the integral of the CDF difference.

    The CDF values are computed as ``count / n`` in float64, as ``scipy.stats.ks_2samp`` does,
    so the statistic is bit-for-bit the one it computes (before its exact mode rounds it).
    """
    n1, n2 = len(ref_sorted), len(cur_sorted)
    # Three arrays of n1 + n2 values are allocated; each is reused once its content is spent
    # (fewer fresh pages: at 1M rows per side the page faults alone cost ~10% of the time).
    both = np.concatenate([ref_sorted, cur_sorted])
    order = np.argsort(both, kind="stable")
    merged = both[order]
    from_ref = order < n1
    cdf_cur = order.view(np.float64)  # order is spent: its memory holds F_cur, then the gaps
    np.cumsum(~from_ref, dtype=np.float64, out=cdf_cur)
    cdf_cur /= n2
    diff = np.cumsum(from_ref, dtype=np.float64, out=both)  # both is spent: it holds |F_ref − F_cur|
    diff /= n1
    diff -= cdf_cur
    np.abs(diff, out=diff)
    gaps = cdf_cur[:-1]
    with np.errstate(over="ignore", invalid="ignore"):
        np.subtract(merged[1:], merged[:-1], out=gaps)
    ties = np.equal(gaps, 0.0, out=from_ref[:-1])
    np.copyto(diff[:-1], 0.0, where=ties)  # inside a run of ties: not a CDF value
    statistic = float(diff.max())
    with np.errstate(over="ignore", invalid="ignore"):
        distance = float(np.dot(diff[:-1], gaps))
    return statistic, distance


def ks_2samp_sorted(ref_sorted: np.ndarray, cur_sorted: np.ndarray) -> tuple[float, float]:
    """Two-sided two-sample KS test on already-sorted finite arrays.

    Same statistic as ``scipy.stats.ks_2samp`` (bit for bit, as its default ``method="auto"``
    reports it) and the same p-value as its ``method="asymp"`` (``scipy.stats.kstwo`` at the
    rounded effective sample size; scipy's default computes an exact p-value up to 10,000 values
    per side, which differs from this by < 0.01), without re-sorting: the caller sorts each
    column once and reuses it for the other statistics.

    Args:
        ref_sorted: Reference values, finite, sorted ascending.
        cur_sorted: Current values, finite, sorted ascending.

    Returns:
        ``(statistic, p_value)``.

    Raises:
        ValueError: If an array is empty, not 1-D, holds NaN/inf or is not sorted.
    """
    arrays = []
    for name, values in (("ref_sorted", ref_sorted), ("cur_sorted", cur_sorted)):
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim != 1 or len(arr) == 0:
            raise ValueError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} holds NaN or inf: drop them first (np.sort(x[np.isfinite(x)]))")
        if len(arr) > 1 and not (arr[1:] >= arr[:-1]).all():
            raise ValueError(f"{name} is not sorted ascending: pass np.sort(values)")
        arrays.append(arr)
    n1, n2 = len(arrays[0]), len(arrays[1])
    statistic = _ks_statistic_as_scipy(_ks_and_wasserstein(*arrays)[0], n1, n2)
    return statistic, _ks_p_value(statistic, n1, n2)


# --- per-feature comparison ------------------------------------------------------------------


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
    row["missing_p_value"] = _two_proportion_p(missing_ref, total_ref, missing_cur, total_cur)
    row["missing_p_adjusted"] = row["missing_p_value"]


def _too_few(row: dict[str, Any], settings: DriftSettings) -> str:
    """Why a feature cannot be tested ('' when both sides have ``min_rows`` values)."""
    short = [f"{row[key]} in {side}" for key, side in (("n_ref", "reference"), ("n_cur", "current"))
             if row[key] < settings.min_rows]
    return f"too few values to test: {' and '.join(short)} (need {settings.min_rows} per side)" if short else ""


def _fmt(value: float, digits: int = 2) -> str:
    return "nan" if value is None or not np.isfinite(value) else f"{value:.{digits}g}"


def _describe(row: dict[str, Any], settings: DriftSettings) -> str:
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


def _flags(row: dict[str, Any], settings: DriftSettings) -> tuple[bool, bool, bool]:
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


def _decide(row: dict[str, Any], settings: DriftSettings) -> None:
    """Set ``drifted`` and ``reason`` from the (adjusted) p-values and the effect sizes."""
    s = settings
    missing_flag, significant, large = _flags(row, s)
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
        parts.append(f"{_describe(row, s)} (p_adj={row['p_adjusted']:.2g})")
    elif significant:
        parts.append(f"significant (p_adj={row['p_adjusted']:.2g}) but small: {_describe(row, s)}, below {wanted}")
    else:
        parts.append(f"no significant change (p_adj={_fmt(row['p_adjusted'])}; {_describe(row, s)})")
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


def _numeric_values(values: Any, name: str) -> np.ndarray:
    if isinstance(values, (pd.Series, pd.Index)):
        if not (pd.api.types.is_numeric_dtype(values.dtype) or values.dtype == object):
            raise ValueError(f"{name} must hold numbers, got dtype {values.dtype}")
        try:
            arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must hold numbers only (convert with pd.to_numeric first): {exc}") from None
    else:
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must hold numbers only (convert with pd.to_numeric first): {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one feature), got shape {arr.shape}")
    return arr


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
    settings = settings or DriftSettings()
    ref = _numeric_values(reference, "reference")
    cur = _numeric_values(current, "current")
    row = _blank("numeric")
    ref_sorted, missing_ref, row["inf_ref"] = _finite_sorted(ref)
    cur_sorted, missing_cur, row["inf_cur"] = _finite_sorted(cur)
    del ref, cur
    _missing(row, missing_ref, _row_total(ref_sorted, missing_ref, row["inf_ref"]),
             missing_cur, _row_total(cur_sorted, missing_cur, row["inf_cur"]))
    row["n_ref"], row["n_cur"] = len(ref_sorted), len(cur_sorted)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for prefix, values in (("ref", ref_sorted), ("cur", cur_sorted)):
            if len(values):
                row[f"{prefix}_mean"] = float(values.mean())
                row[f"{prefix}_std"] = float(values.std(ddof=1)) if len(values) > 1 else np.nan
                for q, v in zip(("q05", "q50", "q95"), _sorted_quantiles(values, _QUANTILES)):
                    row[f"{prefix}_{q}"] = float(v)
        if not _too_few(row, settings):
            row["test"] = "ks"
            statistic, raw = _ks_and_wasserstein(ref_sorted, cur_sorted)
            statistic = _ks_statistic_as_scipy(statistic, len(ref_sorted), len(cur_sorted))
            row["statistic"] = statistic
            row["p_value"] = row["p_adjusted"] = _ks_p_value(statistic, len(ref_sorted), len(cur_sorted))
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
    _decide(row, settings)
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


def _row_total(values_sorted: np.ndarray, missing: int, infinite: int) -> int:
    """All values of one side: finite + missing + infinite."""
    return len(values_sorted) + missing + infinite


def _finite_sorted(values: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Sorted finite values, the NaN count and the ±inf count (one pass when all are finite)."""
    finite = np.isfinite(values)
    if finite.all():
        return np.sort(values), 0, 0
    missing = int(np.isnan(values).sum())
    infinite = len(values) - int(finite.sum()) - missing
    kept = values[finite]
    kept.sort()
    return kept, missing, infinite


def _spread(std: float, ref_sorted: np.ndarray) -> float:
    """Reference standard deviation, or IQR/1.349 when the std is not a usable positive number."""
    if np.isfinite(std) and std > 0:
        return float(std)
    q25, q75 = _sorted_quantiles(ref_sorted, (0.25, 0.75))
    with np.errstate(over="ignore", invalid="ignore"):
        iqr = (q75 - q25) / 1.349
    return float(iqr) if np.isfinite(iqr) and iqr > 0 else np.nan


def _numeric_psi(ref_sorted: np.ndarray, cur_sorted: np.ndarray, bins: int) -> float:
    """PSI on ``bins`` reference-quantile bins, right-closed; tied edges are merged."""
    edges = np.unique(_sorted_quantiles(ref_sorted, np.arange(1, bins) / bins))
    ref_counts = np.diff(np.concatenate([[0], np.searchsorted(ref_sorted, edges, "right"), [len(ref_sorted)]]))
    cur_counts = np.diff(np.concatenate([[0], np.searchsorted(cur_sorted, edges, "right"), [len(cur_sorted)]]))
    return _psi(ref_counts.astype(np.float64), cur_counts.astype(np.float64))


def _as_series(values: Any, name: str) -> pd.Series:
    if isinstance(values, pd.Series):
        return values
    arr = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one feature), got shape {arr.shape}")
    return pd.Series(arr)


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
    settings = settings or DriftSettings()
    ref = _as_series(reference, "reference")
    cur = _as_series(current, "current")
    row = _blank("categorical")
    ref_counts = _counts(ref)
    cur_counts = _counts(cur)
    _missing(row, len(ref) - int(ref_counts.sum()), len(ref), len(cur) - int(cur_counts.sum()), len(cur))
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
        row["unseen_categories"] = [_plain(v) for v in names[:_MAX_UNSEEN_LISTED]]
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
            row["js"] = row["effect_size"] = _js_distance(r, c)
            row["psi"] = _psi(r, c)
            row["tv"], row["tv_excess"] = _tv_excess(r, c)
            row["js_excess"] = _js_excess(row["js"], len(categories), r.sum(), c.sum())
    _decide(row, settings)
    return row


def _counts(series: pd.Series) -> pd.Series:
    counts = series.value_counts(dropna=True, sort=True)
    counts = counts[counts > 0]
    counts.index = pd.Index(counts.index.astype(object), dtype=object)
    return counts


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- the dataset-level verdict ---------------------------------------------------------------


def _resolve_settings(settings: DriftSettings | None, overrides: dict[str, Any]) -> DriftSettings:
    if settings is not None and not isinstance(settings, DriftSettings):
        raise TypeError(f"settings must be a DriftSettings, got {type(settings).__name__}")
    valid = [f.name for f in fields(DriftSettings)]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise TypeError(f"unknown DriftSettings field(s) {unknown}; valid names: {', '.join(valid)}")
    return replace(settings or DriftSettings(), **overrides)


def _is_number(series: pd.Series) -> bool:
    dtype = series.dtype
    return bool(pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype))


def _resolve_columns(reference: pd.DataFrame, current: pd.DataFrame, numeric: Sequence[str] | None,
                     categorical: Sequence[str] | None) -> tuple[list, list]:
    for name, frame in (("reference", reference), ("current", current)):
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
        if frame.columns.duplicated().any():
            dups = list(frame.columns[frame.columns.duplicated()].unique())
            raise ValueError(f"{name} has duplicated column names {dups}: rename them")
        if len(frame) == 0:
            raise ValueError(f"{name} has no rows: drift needs rows on both sides (check the batch or the reference window)")
    for name, cols in (("numeric", numeric), ("categorical", categorical)):
        if isinstance(cols, str):
            raise TypeError(f"{name} must be a list of column names, e.g. [{cols!r}], not a string")
    if numeric is None and categorical is None:
        only_ref = [c for c in reference.columns if c not in current.columns]
        only_cur = [c for c in current.columns if c not in reference.columns]
        if only_ref or only_cur:
            raise ValueError(
                f"reference and current must have the same columns: only in reference {only_ref}, only in current "
                f"{only_cur}. Drop or rename them, or choose the columns with numeric=/categorical=."
            )
        numeric = [c for c in reference.columns if _is_number(reference[c])]
        categorical = [c for c in reference.columns if not _is_number(reference[c])]
    else:
        numeric, categorical = list(numeric or []), list(categorical or [])
        both = sorted(set(numeric) & set(categorical), key=str)
        if both:
            raise ValueError(f"columns listed as both numeric and categorical: {both}")
        for name, frame in (("reference", reference), ("current", current)):
            missing = [c for c in numeric + categorical if c not in frame.columns]
            if missing:
                raise ValueError(f"columns {missing} are not in {name} (it has {list(frame.columns)})")
    if not numeric and not categorical:
        raise ValueError("no columns to compare: the frames have no columns")
    for col in numeric:
        for name, frame in (("reference", reference), ("current", current)):
            if not (pd.api.types.is_numeric_dtype(frame[col].dtype)):
                raise ValueError(
                    f"column {col!r} is compared as numeric but holds {frame[col].dtype} in {name}: convert it "
                    f"(pd.to_numeric) or list it under categorical="
                )
    return numeric, categorical


def detect_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numeric: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    settings: DriftSettings | None = None,
    **overrides: Any,
) -> DriftResult:
    """Decide whether ``current`` has drifted from ``reference`` enough to act on.

    Args:
        reference: The data the model was trained/validated on (or a trusted recent window).
        current: The new batch.
        numeric: Columns compared as numbers. With ``categorical`` also None, the columns are
            inferred from the reference dtypes: numbers are numeric, everything else (strings,
            categories, booleans, datetimes) categorical; both frames must then have the same
            columns. When either list is given, only the listed columns are compared.
        categorical: Columns compared as categories.
        settings: Thresholds; defaults to ``DriftSettings()``.
        **overrides: Fields of :class:`DriftSettings` to change, e.g. ``alpha=0.01``.

    Returns:
        The verdict: see :class:`DriftResult`.

    Raises:
        TypeError: If an override is not a DriftSettings field, or a frame is not a DataFrame.
        ValueError: If a frame has no rows, columns are missing on one side, or a numeric column
            does not hold numbers.
    """
    settings = _resolve_settings(settings, overrides)
    numeric, categorical = _resolve_columns(reference, current, numeric, categorical)
    rows = []
    for col in numeric:
        rows.append({"feature": col, **compare_numeric(reference[col], current[col], settings)})
    for col in categorical:
        rows.append({"feature": col, **compare_categorical(reference[col], current[col], settings)})
    features = pd.DataFrame(rows, columns=list(FEATURE_COLUMNS))
    features["p_adjusted"] = _adjust(features["p_value"].to_numpy(dtype=np.float64), settings.correction)
    features["missing_p_adjusted"] = _adjust(features["missing_p_value"].to_numpy(dtype=np.float64), settings.correction)
    records = features.to_dict("records")
    for record in records:
        _decide(record, settings)
    features["drifted"] = [r["drifted"] for r in records]
    features["reason"] = [r["reason"] for r in records]
    features["drifted"] = features["drifted"].astype(bool)
    drifted_features = [str(f) if not isinstance(f, str) else f for f in features.loc[features["drifted"], "feature"]]
    multivariate = _domain_classifier(reference, current, numeric, categorical, settings)
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
        n_reference=len(reference),
        n_current=len(current),
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
            missing_flag, significant, large = _flags(r, settings)
            what = [f"missing {r['missing_ref']:.0%}→{r['missing_cur']:.0%}"] if missing_flag else []
            if significant and large:
                what.append(_describe(r, settings))
            items.append(f"{r['feature']}: {', '.join(what)}")
        text = f"drift in {len(drifted)} of {total} {noun} ({'; '.join(items)})"
        return text + (f"; {joint}" if multivariate.get("drifted") else "") + short
    if drift_detected:
        return f"drift: {joint}; no single feature drifted (of {total}){short}"
    small = [r for r in records if _flags(r, settings)[1]]
    if small:
        largest = max(small, key=lambda r: r["effect_size"] if np.isfinite(r["effect_size"]) else -1.0)
        detail = (f"{len(small)} of {total} {noun} differ significantly but below the effect thresholds "
                  f"(largest {largest['feature']}: {_describe(largest, settings)})")
    else:
        detail = f"no significant change in {total} {noun}"
    return f"no actionable drift: {detail}; {joint}{short}"


# --- the domain classifier -------------------------------------------------------------------


def _domain_matrix(reference: pd.DataFrame, current: pd.DataFrame, idx_ref: np.ndarray, idx_cur: np.ndarray,
                   numeric: list, categorical: list) -> tuple[np.ndarray, np.ndarray, list]:
    """Stack the sampled rows: numbers as float (inf → NaN), categories ordinal-encoded."""
    columns = numeric + categorical
    X = np.empty((len(idx_ref) + len(idx_cur), len(columns)), dtype=np.float64)
    for j, col in enumerate(numeric):
        for rows, frame, idx in ((slice(0, len(idx_ref)), reference, idx_ref), (slice(len(idx_ref), None), current, idx_cur)):
            X[rows, j] = frame[col].to_numpy(dtype=np.float64, na_value=np.nan)[idx]
    for k, col in enumerate(categorical):
        values = np.concatenate([reference[col].to_numpy(dtype=object)[idx_ref],
                                 current[col].to_numpy(dtype=object)[idx_cur]])
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        if len(uniques) > _DOMAIN_MAX_CATEGORIES:  # keep the most frequent, lump the rest
            freq = np.bincount(codes[codes >= 0], minlength=len(uniques))
            rank = np.empty(len(uniques), dtype=np.int64)
            rank[np.argsort(-freq, kind="stable")] = np.arange(len(uniques))
            codes = np.where(codes >= 0, np.minimum(rank[np.maximum(codes, 0)], _DOMAIN_MAX_CATEGORIES - 1), -1)
        X[:, len(numeric) + k] = np.where(codes >= 0, codes, np.nan)
    X[~np.isfinite(X)] = np.nan
    is_categorical = np.array([False] * len(numeric) + [True] * len(categorical))
    return X, is_categorical, columns


def _domain_classifier(reference: pd.DataFrame, current: pd.DataFrame, numeric: list, categorical: list,
                       settings: DriftSettings) -> dict:
    """Cross-validated AUC of a classifier telling reference rows from current rows."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    if not settings.domain_classifier:
        return {"skipped": "turned off (domain_classifier=False)"}
    n_ref, n_cur = len(reference), len(current)
    if min(n_ref, n_cur) < _DOMAIN_MIN_ROWS:
        return {"skipped": f"needs {_DOMAIN_MIN_ROWS} rows per side, reference has {n_ref} and current {n_cur}"}
    rng = np.random.default_rng(settings.seed)
    k = min(n_ref, n_cur, settings.domain_max_rows)
    idx_ref = np.sort(rng.choice(n_ref, k, replace=False)) if k < n_ref else np.arange(n_ref)
    idx_cur = np.sort(rng.choice(n_cur, k, replace=False)) if k < n_cur else np.arange(n_cur)
    X, is_categorical, columns = _domain_matrix(reference, current, idx_ref, idx_cur, numeric, categorical)
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
           if drop > 0 and drop >= 0.1 * (auc - 0.5)][:_TOP_FEATURES]
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
    rows = np.concatenate([np.sort(rng.choice(test, min(len(test), _IMPORTANCE_ROWS), replace=False))
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
    numeric, categorical = _resolve_columns(reference, current, numeric, categorical)
    for col in numeric:
        ref, _, _ = _finite_sorted(reference[col].to_numpy(dtype=np.float64, na_value=np.nan))
        cur, _, _ = _finite_sorted(current[col].to_numpy(dtype=np.float64, na_value=np.nan))
        if len(ref) and len(cur) and ks_2samp_sorted(ref, cur)[1] < 0.05:
            return True
    for col in categorical:
        ref_counts, cur_counts = _counts(reference[col]), _counts(current[col])
        categories = ref_counts.index.append(cur_counts.index[~cur_counts.index.isin(ref_counts.index)])
        if len(categories) < 2 or not len(ref_counts) or not len(cur_counts):
            continue
        table = np.vstack([ref_counts.reindex(categories, fill_value=0), cur_counts.reindex(categories, fill_value=0)])
        if stats.chi2_contingency(table, correction=False).pvalue < 0.05:
            return True
    return False
