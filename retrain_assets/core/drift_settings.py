"""The drift verdict's thresholds (:class:`DriftSettings`) and the columns of its per-feature table.
A leaf module: the per-feature tests, the domain classifier and the verdict all read it. Pure Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

INSUFFICIENT = "insufficient data"
DOMAIN_MIN_ROWS = 50  # per side, below which the domain classifier is skipped


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

    The defaults and the measurements behind them: docs/decisions.md, "Drift thresholds"
    (``bench/drift.py`` re-measures them).

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
        for name, low in (("psi_bins", 2), ("domain_folds", 2), ("domain_max_rows", DOMAIN_MIN_ROWS), ("min_rows", 2)):
            value = getattr(self, name)
            if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low):
                problems.append(f"{name} must be an integer >= {low}, got {value!r}")
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool):
            problems.append(f"seed must be an integer, got {self.seed!r}")
        if problems:
            raise ValueError("invalid DriftSettings: " + "; ".join(problems))
