"""Seeded synthetic customer-churn data with a known signal.

This module generates realistic tabular batches for a customer-churn problem
whose data-generating process is fully known, so that every part of the
retraining platform (validation, quarantine, drift detection, training,
evaluation) can be exercised and checked against ground truth.

It is deliberately free of any Dagster dependency: it only needs numpy and
pandas (plus pyarrow when writing Parquet).

Scenarios produced by :func:`make_batch`:

* ``clean`` - the reference distribution and the base labelling rule.
* ``covariate_drift`` - feature distributions move (higher charges, more
  month-to-month contracts, lower tenure); the labelling rule is unchanged.
* ``concept_drift`` - same feature distribution as ``clean`` but labels follow
  the ``"shifted"`` rule (support calls now *reduce* churn, price sensitivity
  doubles).
* ``label_noise`` - clean data with a share of labels flipped (classification)
  or shuffled (regression).
* ``corrupt`` - clean data where a share of rows carry realistic defects; the
  affected rows are listed in ``df.attrs["corrupted_rows"]``.
* ``unlabelled`` - clean features without any target column.

Example:
    >>> from retrain_assets.core.synthetic import make_batch
    >>> df = make_batch(1000, seed=0)
    >>> list(df.columns)[:3]
    ['customer_id', 'event_time', 'tenure_months']
"""

from __future__ import annotations

import numbers
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "SCENARIOS",
    "TASKS",
    "FEATURES",
    "CATEGORIES",
    "RANGES",
    "ID_COLUMN",
    "TIME_COLUMN",
    "TARGET",
    "REGRESSION_TARGET",
    "MULTICLASS_TARGET",
    "PLANS",
    "CONCEPTS",
    "CORRUPTION_KINDS",
    "true_churn_probability",
    "expected_monthly_spend",
    "true_plan_probabilities",
]

# --------------------------------------------------------------------------
# Public schema
# --------------------------------------------------------------------------

SCENARIOS: tuple[str, ...] = (
    "clean",
    "covariate_drift",
    "concept_drift",
    "label_noise",
    "corrupt",
    "unlabelled",
)
"""Names accepted by ``make_batch(scenario=...)``."""

TASKS: tuple[str, ...] = ("classification", "regression", "multiclass")
"""Names accepted by ``make_batch(task=...)``: ``multiclass`` is a classification with three classes
(:data:`PLANS`), labelled as text or as integers (``make_batch(plan_labels=...)``)."""

CONCEPTS: tuple[str, ...] = ("base", "shifted")
"""Labelling rules accepted by :func:`true_churn_probability`."""

ID_COLUMN = "customer_id"
TIME_COLUMN = "event_time"
TARGET = "churned"
REGRESSION_TARGET = "monthly_spend_next"
MULTICLASS_TARGET = "plan_next"
PLANS: tuple[str, ...] = ("bronze", "silver", "gold")
"""Classes of the multiclass target, in the order of :func:`true_plan_probabilities`' columns; as
integers they are 0, 1, 2 in this order."""
PLAN_LABELS: tuple[str, ...] = ("text", "integer")

FEATURES: dict[str, str] = {
    "tenure_months": "numeric",
    "monthly_charges": "numeric",
    "support_calls": "numeric",
    "age": "numeric",
    "contract": "categorical",
    "payment_method": "categorical",
    "region": "categorical",
}
"""Feature columns in output order, mapped to ``"numeric"`` or ``"categorical"``."""

CATEGORIES: dict[str, list[str]] = {
    "contract": ["month_to_month", "one_year", "two_year"],
    "payment_method": ["electronic_check", "mailed_check", "bank_transfer", "credit_card"],
    "region": ["north", "south", "east", "west", "central"],
}
"""Allowed values of every categorical feature."""

RANGES: dict[str, tuple[float, float]] = {
    "tenure_months": (0.0, 72.0),
    "monthly_charges": (18.0, 120.0),
    "support_calls": (0.0, 20.0),
    "age": (18.0, 90.0),
}
"""Valid closed range of every numeric feature (what a config hint would say)."""

CORRUPTION_KINDS: tuple[str, ...] = (
    "negative_tenure",
    "absurd_tenure",
    "infinite_charges",
    "unknown_category",
    "missing_target",
    "non_numeric_age",
    "duplicate_id",
)
"""Defect names used as values of ``df.attrs["corrupted_rows"]``."""

# --------------------------------------------------------------------------
# Data-generating process (private constants)
# --------------------------------------------------------------------------


# logistic labelling rules: coefficients on centred features
_RULES: dict[str, dict[str, float]] = {
    "base": {
        "intercept": -1.8,
        "month_to_month": 1.1,
        "two_year": -0.8,
        "charges": 0.035,  # per currency unit above 65
        "calls": 0.65,  # per call above 1.5
        "tenure": -0.04,  # per month above 24
        "electronic_check": 0.6,
    },
    "shifted": {
        "intercept": -1.8,
        "month_to_month": 1.1,
        "two_year": -0.8,
        "charges": 0.07,  # price sensitivity doubles
        "calls": -0.65,  # support calls now retain customers
        "tenure": -0.04,
        "electronic_check": 0.6,
    },
}

# multinomial logit of the plan a customer takes next (bronze is the reference class: logit 0)
_PLAN_RULES: dict[str, dict[str, dict[str, float]]] = {
    "base": {
        "silver": {"intercept": 0.3, "charges": 0.08, "tenure": 0.03, "calls": 0.0, "one_year": 1.2, "two_year": 0.6},
        "gold": {"intercept": -0.8, "charges": 0.14, "tenure": 0.07, "calls": -0.5, "one_year": 0.9, "two_year": 2.4},
    },
    "shifted": {  # price now pushes customers down, support calls up
        "silver": {"intercept": 0.3, "charges": -0.08, "tenure": 0.03, "calls": 0.45, "one_year": 1.2, "two_year": 0.6},
        "gold": {"intercept": -0.8, "charges": -0.14, "tenure": 0.07, "calls": 0.7, "one_year": 0.9, "two_year": 2.4},
    },
}


# --------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------


def check_int(name: str, value: object, *, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} ({value!r}).")
    value = int(value)
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"{name} must be {bounds}, got {value}.")
    return value


def check_fraction(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float in [0, 1], got {type(value).__name__} ({value!r}).")
    value = float(value)
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be in [0, 1] (a share of rows), got {value}.")
    return value


def check_choice(name: str, value: object, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"Unknown {name} {value!r}; valid values are: {', '.join(map(repr, allowed))}.")
    return str(value)


# --------------------------------------------------------------------------
# Known rules
# --------------------------------------------------------------------------


def _numeric_column(df: pd.DataFrame, col: str) -> np.ndarray:
    values = df[col]
    if not pd.api.types.is_numeric_dtype(values):
        raise ValueError(
            f"Column {col!r} must be numeric but has dtype {values.dtype}; "
            "drop or repair non-numeric rows before scoring."
        )
    return values.to_numpy(dtype=float)


def _require_columns(df: pd.DataFrame, cols: Iterable[str], what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}.")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(
            f"{what} needs columns {missing} which are missing from the frame; "
            f"pass a frame produced by make_batch (features: {list(FEATURES)})."
        )


def true_churn_probability(df: pd.DataFrame, concept: str = "base") -> np.ndarray:
    """Return the true churn probability of every row under a known rule.

    The label of ``make_batch`` is drawn as ``Bernoulli(p)`` with ``p`` given by
    this function (concept ``"base"`` for every scenario except
    ``concept_drift``, which uses ``"shifted"``). Churn is more likely with
    month-to-month contracts, high charges, many support calls, low tenure and
    electronic-check payments. Under ``"shifted"`` support calls reduce churn
    and the price effect doubles.

    Unknown category values are treated like the reference level (they add
    nothing to the log-odds); non-finite numeric values propagate to the
    output (``inf`` charges give probability 1, ``NaN`` gives ``NaN``).

    Args:
        df: Frame with at least ``tenure_months``, ``monthly_charges``,
            ``support_calls``, ``contract`` and ``payment_method``.
        concept: ``"base"`` or ``"shifted"``.

    Returns:
        Array of shape ``(len(df),)`` with probabilities in [0, 1].

    Raises:
        ValueError: If ``concept`` is unknown, a required column is missing, or
            a numeric column is not numeric.
    """
    concept = check_choice("concept", concept, CONCEPTS)
    _require_columns(
        df,
        ["tenure_months", "monthly_charges", "support_calls", "contract", "payment_method"],
        "true_churn_probability",
    )
    c = _RULES[concept]
    tenure = _numeric_column(df, "tenure_months")
    charges = _numeric_column(df, "monthly_charges")
    calls = _numeric_column(df, "support_calls")
    contract = df["contract"].astype(object).to_numpy()
    payment = df["payment_method"].astype(object).to_numpy()
    logit = (
        c["intercept"]
        + c["month_to_month"] * (contract == "month_to_month")
        + c["two_year"] * (contract == "two_year")
        + c["charges"] * (charges - 65.0)
        + c["calls"] * (calls - 1.5)
        + c["tenure"] * (tenure - 24.0)
        + c["electronic_check"] * (payment == "electronic_check")
    )
    with np.errstate(over="ignore", invalid="ignore"):
        return 1.0 / (1.0 + np.exp(-logit))


def true_plan_probabilities(df: pd.DataFrame, concept: str = "base") -> np.ndarray:
    """Return the true probability of each plan (:data:`PLANS` order) for every row.

    The multiclass label of ``make_batch(task="multiclass")`` is drawn from these probabilities
    (a multinomial logit: higher charges, longer tenure and longer contracts lead to better plans,
    support calls away from gold). Under ``"shifted"`` charges push customers *down* and support
    calls push them up.

    Args:
        df: Frame with ``tenure_months``, ``monthly_charges``, ``support_calls`` and ``contract``.
        concept: ``"base"`` or ``"shifted"``.

    Returns:
        Array of shape ``(len(df), 3)``; rows sum to 1.

    Raises:
        ValueError: If ``concept`` is unknown, a required column is missing, or a numeric column is
            not numeric.
    """
    concept = check_choice("concept", concept, CONCEPTS)
    _require_columns(df, ["tenure_months", "monthly_charges", "support_calls", "contract"], "true_plan_probabilities")
    tenure = _numeric_column(df, "tenure_months")
    charges = _numeric_column(df, "monthly_charges")
    calls = _numeric_column(df, "support_calls")
    contract = df["contract"].astype(object).to_numpy()
    logits = [np.zeros(len(df))]
    for plan in PLANS[1:]:
        c = _PLAN_RULES[concept][plan]
        logits.append(
            c["intercept"] + c["charges"] * (charges - 65.0) + c["tenure"] * (tenure - 24.0)
            + c["calls"] * (calls - 1.5) + c["one_year"] * (contract == "one_year")
            + c["two_year"] * (contract == "two_year")
        )
    z = np.column_stack(logits)
    with np.errstate(over="ignore", invalid="ignore"):
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)


def expected_monthly_spend(df: pd.DataFrame, concept: str = "base") -> np.ndarray:
    """Return the noise-free regression target (next month's spend).

    ``monthly_spend_next`` is this value plus Gaussian noise (sd 6), clipped at
    zero. Under ``"shifted"`` the charge multiplier grows and support calls
    lower spend instead of raising it.

    Args:
        df: Frame with ``tenure_months``, ``monthly_charges``,
            ``support_calls``, ``age`` and ``contract``.
        concept: ``"base"`` or ``"shifted"``.

    Returns:
        Array of shape ``(len(df),)`` with the expected spend.

    Raises:
        ValueError: If ``concept`` is unknown, a required column is missing, or
            a numeric column is not numeric.
    """
    concept = check_choice("concept", concept, CONCEPTS)
    _require_columns(
        df,
        ["tenure_months", "monthly_charges", "support_calls", "age", "contract"],
        "expected_monthly_spend",
    )
    tenure = _numeric_column(df, "tenure_months")
    charges = _numeric_column(df, "monthly_charges")
    calls = _numeric_column(df, "support_calls")
    age = _numeric_column(df, "age")
    contract = df["contract"].astype(object).to_numpy()
    charge_coef, calls_coef = (0.95, 2.5) if concept == "base" else (1.15, -2.5)
    return (
        5.0
        + charge_coef * charges
        + 0.08 * tenure
        + calls_coef * calls
        - 0.05 * (age - 45.0)
        + 3.0 * (contract == "month_to_month")
        - 2.0 * (contract == "two_year")
    )


# --------------------------------------------------------------------------
# Batch generation
# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# The drifting demo stream the policy backtester replays (python -m retrain_assets.backtest)
# --------------------------------------------------------------------------


