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
from dataclasses import dataclass
import os
from pathlib import Path
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
    "DEMO_PLAN",
    "make_batch",
    "true_churn_probability",
    "expected_monthly_spend",
    "true_plan_probabilities",
    "write_batch",
    "write_demo_batches",
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

_CONTRACT_P = np.array([0.50, 0.27, 0.23])
_CONTRACT_P_DRIFTED = np.array([0.80, 0.13, 0.07])
_TENURE_MEAN = np.array([14.0, 32.0, 48.0])  # per contract
_TENURE_SHAPE = 2.0
_CHARGES_BASE = 62.0
_CHARGES_BY_CONTRACT = np.array([6.0, -2.0, -8.0])
_CHARGES_NOISE_SD = 20.0
_CHARGES_SHIFT_PER_STRENGTH = 22.0  # ~1 std of clean monthly_charges
_TENURE_FACTOR_PER_STRENGTH = 0.7  # tenure mean multiplied by 0.7 ** strength
# payment-method probabilities per contract (rows) - e-check is favoured by
# month-to-month customers, automatic payments by long contracts
_PAYMENT_P = np.array(
    [
        [0.45, 0.20, 0.17, 0.18],
        [0.25, 0.25, 0.25, 0.25],
        [0.15, 0.25, 0.30, 0.30],
    ]
)
_REGION_P = np.array([0.22, 0.20, 0.20, 0.18, 0.20])

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
_REG_NOISE_SD = 6.0

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

_DEMO_FORMATS = ("csv", "parquet")
_WRITERS = (".csv", ".parquet")
_MAX_ROWS = 1_000_000
_MAX_BATCH_INDEX = 9_999

DEMO_PLAN: list[tuple[str, str, dict]] = [
    ("batch_0001", "clean", {}),
    ("batch_0002", "clean", {}),
    ("batch_0003", "clean", {}),
    ("batch_0004", "clean", {}),
    ("batch_0005", "clean", {}),
    ("batch_0006", "corrupt", {"corrupt_fraction": 0.01}),
    ("batch_0007", "covariate_drift", {}),
    ("batch_0008", "concept_drift", {}),
    ("batch_0009", "label_noise", {}),
    ("batch_0010", "corrupt", {}),
    ("batch_0011", "unlabelled", {}),
]
"""Demo landing sequence: ``(batch_id, scenario, extra make_batch kwargs)``.

Batch ids sort in arrival order. ``batch_0006`` carries ~1 % corrupt rows (it
should pass a 5 % quarantine gate), ``batch_0010`` carries the default 12 %
(it should fail it).
"""


# --------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------


def _check_int(name: str, value: object, *, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} ({value!r}).")
    value = int(value)
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"{name} must be {bounds}, got {value}.")
    return value


def _check_fraction(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float in [0, 1], got {type(value).__name__} ({value!r}).")
    value = float(value)
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be in [0, 1] (a share of rows), got {value}.")
    return value


def _check_choice(name: str, value: object, allowed: Sequence[str]) -> str:
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
    concept = _check_choice("concept", concept, CONCEPTS)
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
    concept = _check_choice("concept", concept, CONCEPTS)
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
    concept = _check_choice("concept", concept, CONCEPTS)
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


def _features(
    rng: np.random.Generator, n: int, *, drift: float
) -> dict[str, np.ndarray]:
    """Draw the feature columns; ``drift`` = 0 gives the clean distribution.

    Every call draws the same number of variates in the same order whatever
    ``drift`` is, so a drifted batch is a deterministic shift of the clean batch
    with the same seed.
    """
    w = min(1.0, 0.5 * drift)
    contract_p = (1.0 - w) * _CONTRACT_P + w * _CONTRACT_P_DRIFTED
    contract_idx = np.searchsorted(np.cumsum(contract_p), rng.random(n) * contract_p.sum(), side="right")
    contract_idx = np.minimum(contract_idx, 2)

    tenure_mean = _TENURE_MEAN[contract_idx] * (_TENURE_FACTOR_PER_STRENGTH**drift)
    tenure = rng.gamma(_TENURE_SHAPE, 1.0, n) * tenure_mean / _TENURE_SHAPE
    tenure = np.clip(np.rint(tenure), *RANGES["tenure_months"]).astype(np.int64)

    charges = (
        _CHARGES_BASE
        + _CHARGES_BY_CONTRACT[contract_idx]
        + rng.normal(0.0, _CHARGES_NOISE_SD, n)
        + _CHARGES_SHIFT_PER_STRENGTH * drift
    )
    charges = np.round(np.clip(charges, *RANGES["monthly_charges"]), 2)

    # more expensive plans and fresh customers call support more often
    lam = np.clip(1.2 + 0.012 * (charges - 60.0) + 0.4 * (tenure < 6), 0.2, None)
    calls = np.minimum(rng.poisson(lam), int(RANGES["support_calls"][1])).astype(np.int64)

    age = np.clip(np.rint(rng.normal(45.0, 15.0, n) + 0.1 * tenure), *RANGES["age"]).astype(np.int64)

    cum_pay = np.cumsum(_PAYMENT_P, axis=1)[contract_idx]
    payment_idx = np.minimum((rng.random(n)[:, None] >= cum_pay).sum(axis=1), 3)
    region_idx = np.minimum(
        np.searchsorted(np.cumsum(_REGION_P), rng.random(n) * _REGION_P.sum(), side="right"), 4
    )
    return {
        "tenure_months": tenure,
        "monthly_charges": charges,
        "support_calls": calls,
        "age": age,
        "contract": np.asarray(CATEGORIES["contract"], dtype=object)[contract_idx],
        "payment_method": np.asarray(CATEGORIES["payment_method"], dtype=object)[payment_idx],
        "region": np.asarray(CATEGORIES["region"], dtype=object)[region_idx],
    }


def _corrupt(df: pd.DataFrame, rng: np.random.Generator, fraction: float, target: str) -> dict[int, str]:
    """Inject defects in place into ``fraction`` of the rows; return {row: kind}."""
    n = len(df)
    k = int(round(fraction * n))
    if k == 0:
        return {}
    kinds = list(CORRUPTION_KINDS)
    if n < 2:  # nothing to duplicate an id from
        kinds.remove("duplicate_id")
    rows = np.sort(rng.choice(n, size=k, replace=False))
    assigned = rng.permutation(np.resize(rng.permutation(np.array(kinds, dtype=object)), k))
    by_row = {int(r): str(kind) for r, kind in zip(rows, assigned)}

    def rows_of(kind: str) -> np.ndarray:
        return np.array([r for r, kd in by_row.items() if kd == kind], dtype=np.int64)

    r = rows_of("negative_tenure")
    if r.size:
        df.iloc[r, df.columns.get_loc("tenure_months")] = rng.choice([-1, -5, -12], size=r.size)
    r = rows_of("absurd_tenure")
    if r.size:
        df.iloc[r, df.columns.get_loc("tenure_months")] = rng.choice([999, 1200, 9999], size=r.size)
    r = rows_of("infinite_charges")
    if r.size:
        df.iloc[r, df.columns.get_loc("monthly_charges")] = np.inf
    r = rows_of("unknown_category")
    if r.size:
        unknown = {"contract": "lifetime", "payment_method": "paypal", "region": "atlantis"}
        cols = rng.choice(list(unknown), size=r.size)
        for row, col in zip(r, cols):
            df.iloc[row, df.columns.get_loc(col)] = unknown[col]
    r = rows_of("missing_target")
    if r.size:
        df[target] = df[target].astype(float if pd.api.types.is_numeric_dtype(df[target]) else object)
        df.iloc[r, df.columns.get_loc(target)] = np.nan
    r = rows_of("non_numeric_age")
    if r.size:
        df["age"] = df["age"].astype(object)
        # strings that pandas.read_csv does not turn into NaN, so they survive CSV
        values = rng.choice(np.array(["twelve", "unknown", "?", "forty-two"], dtype=object), size=r.size)
        for row, value in zip(r, values):
            df.iloc[row, df.columns.get_loc("age")] = str(value)
    r = rows_of("duplicate_id")
    if r.size:
        clean_rows = np.setdiff1d(np.arange(n), rows)
        donors = clean_rows if clean_rows.size else np.setdiff1d(np.arange(n), r)
        sources = rng.choice(donors, size=r.size)
        id_loc = df.columns.get_loc(ID_COLUMN)
        df.iloc[r, id_loc] = df.iloc[sources, id_loc].to_numpy()
    return by_row


def make_batch(
    n_rows: int,
    *,
    seed: int,
    scenario: str = "clean",
    task: str = "classification",
    start_time: pd.Timestamp | str = "2024-01-01",
    batch_index: int = 0,
    drift_strength: float = 1.0,
    label_noise: float = 0.2,
    corrupt_fraction: float = 0.12,
    plan_labels: str = "text",
) -> pd.DataFrame:
    """Generate one seeded batch of synthetic customer-churn data.

    Columns, in order: ``customer_id``, ``event_time``, the features of
    :data:`FEATURES`, then the target - ``churned`` (0/1) for classification,
    ``monthly_spend_next`` (float) for regression or ``plan_next`` (one of
    :data:`PLANS`, or 0/1/2 with ``plan_labels="integer"``) for multiclass - except for the
    ``unlabelled`` scenario, which has no target column.

    Customer ids are ``f"C{batch_index:04d}{i:06d}"``, so they are unique within
    a batch and never collide between batches with different ``batch_index``.
    Event times are sorted and lie within the day starting at
    ``start_time + batch_index days``.

    The result depends only on the arguments (all randomness comes from
    ``numpy.random.default_rng`` streams derived from ``seed``). The feature
    and label streams are shared by all scenarios, so e.g. a ``label_noise``
    batch equals the ``clean`` batch of the same seed except for the flipped
    labels, and a ``concept_drift`` batch has exactly its features.

    ``df.attrs`` records ``scenario``, ``task``, ``seed`` and ``batch_index``;
    ``label_noise`` adds ``noisy_rows`` (sorted row positions whose target was
    altered) and ``corrupt`` adds ``corrupted_rows`` (``{row_position:
    defect_name}`` with names from :data:`CORRUPTION_KINDS`).

    Args:
        n_rows: Number of rows, 1 to 1,000,000.
        seed: Non-negative integer seed.
        scenario: One of :data:`SCENARIOS`.
        task: ``"classification"`` or ``"regression"``.
        start_time: Anything ``pd.Timestamp`` accepts; day 0 of the sequence.
        batch_index: 0 to 9999; shifts ids and event day.
        drift_strength: Non-negative size of the ``covariate_drift`` shift (1.0
            moves monthly charges up by about one standard deviation). Ignored
            by other scenarios.
        label_noise: Share of rows whose target is altered in ``label_noise``.
        corrupt_fraction: Share of rows given a defect in ``corrupt``.
        plan_labels: ``"text"`` or ``"integer"`` labels of the multiclass target.

    Returns:
        The generated frame.

    Raises:
        TypeError: If a numeric argument has the wrong type.
        ValueError: If an argument is out of range or a name is unknown.
    """
    n_rows = _check_int("n_rows", n_rows, low=1, high=_MAX_ROWS)
    seed = _check_int("seed", seed, low=0)
    scenario = _check_choice("scenario", scenario, SCENARIOS)
    task = _check_choice("task", task, TASKS)
    plan_labels = _check_choice("plan_labels", plan_labels, PLAN_LABELS)
    batch_index = _check_int("batch_index", batch_index, low=0, high=_MAX_BATCH_INDEX)
    if isinstance(drift_strength, bool) or not isinstance(drift_strength, numbers.Real):
        raise TypeError(f"drift_strength must be a float, got {type(drift_strength).__name__}.")
    drift_strength = float(drift_strength)
    if not np.isfinite(drift_strength) or drift_strength < 0:
        raise ValueError(f"drift_strength must be a finite number >= 0, got {drift_strength}.")
    label_noise = _check_fraction("label_noise", label_noise)
    corrupt_fraction = _check_fraction("corrupt_fraction", corrupt_fraction)
    try:
        day0 = pd.Timestamp(start_time)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"start_time {start_time!r} is not a valid timestamp; pass e.g. '2024-01-01' or a pd.Timestamp."
        ) from err
    if pd.isna(day0):
        raise ValueError("start_time must not be NaT; pass e.g. '2024-01-01'.")

    time_rng, feat_rng, label_rng, scen_rng = (
        np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(4)
    )

    seconds = np.sort(time_rng.integers(0, 86_400, n_rows))
    event_time = day0 + pd.Timedelta(days=batch_index) + pd.to_timedelta(seconds, unit="s")
    ids = np.array([f"C{batch_index:04d}{i:06d}" for i in range(n_rows)], dtype=object)

    drift = drift_strength if scenario == "covariate_drift" else 0.0
    feats = _features(feat_rng, n_rows, drift=drift)
    df = pd.DataFrame({ID_COLUMN: ids, TIME_COLUMN: event_time, **feats})

    concept = "shifted" if scenario == "concept_drift" else "base"
    u = label_rng.random(n_rows)
    noise = label_rng.normal(0.0, _REG_NOISE_SD, n_rows)
    target = {"classification": TARGET, "regression": REGRESSION_TARGET, "multiclass": MULTICLASS_TARGET}[task]
    plans = np.array(PLANS, dtype=object) if plan_labels == "text" else np.arange(len(PLANS), dtype=np.int64)
    if scenario != "unlabelled":
        if task == "classification":
            df[TARGET] = (u < true_churn_probability(df, concept)).astype(np.int64)
        elif task == "multiclass":  # the same uniform draw, inverted through the cumulative probabilities
            cumulative = np.cumsum(true_plan_probabilities(df, concept), axis=1)
            df[MULTICLASS_TARGET] = plans[np.minimum((u[:, None] > cumulative).sum(axis=1), len(PLANS) - 1)]
        else:
            spend = expected_monthly_spend(df, concept) + noise
            df[REGRESSION_TARGET] = np.round(np.clip(spend, 0.0, None), 2)

    df.attrs.update(scenario=scenario, task=task, seed=seed, batch_index=batch_index)
    if scenario == "label_noise":
        k = int(round(label_noise * n_rows))
        rows = np.sort(scen_rng.choice(n_rows, size=k, replace=False))
        col = df.columns.get_loc(target)
        if task == "classification":
            df.iloc[rows, col] = 1 - df.iloc[rows, col].to_numpy()
        elif task == "multiclass":  # another plan, drawn uniformly from the other two
            current = pd.Index(plans).get_indexer(df.iloc[rows, col].to_numpy())
            df.iloc[rows, col] = plans[(current + scen_rng.integers(1, len(PLANS), k)) % len(PLANS)]
        else:
            df.iloc[rows, col] = scen_rng.permutation(df.iloc[rows, col].to_numpy())
        df.attrs["noisy_rows"] = [int(r) for r in rows]
    elif scenario == "corrupt":
        df.attrs["corrupted_rows"] = _corrupt(df, scen_rng, corrupt_fraction, target)
    return df


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def write_batch(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a batch as CSV or Parquet, chosen by the file suffix.

    Parent folders are created. CSV is written without the index; Parquet needs
    columns of a single type each (write corrupt batches, whose numeric columns
    may hold strings, as CSV).

    Args:
        df: Frame to write.
        path: Destination ending in ``.csv`` or ``.parquet``.

    Returns:
        The destination as a :class:`pathlib.Path`.

    Raises:
        TypeError: If ``df`` is not a DataFrame.
        ValueError: If the suffix is not supported, or Parquet cannot store a
            mixed-type column.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}.")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _WRITERS:
        raise ValueError(
            f"Unsupported file suffix {path.suffix or '(none)'!r} for {str(path)!r}; "
            f"use one of {', '.join(_WRITERS)}."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        try:
            df.to_parquet(path, index=False)
        except (TypeError, ValueError) as err:  # pyarrow ArrowTypeError / ArrowInvalid
            raise ValueError(
                f"Cannot write {str(path)!r} as Parquet ({err}); a column mixes types - write it as .csv instead."
            ) from err
    return path


def _demo_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def write_demo_batches(
    landing_dir: str | os.PathLike,
    *,
    n_rows: int = 2000,
    seed: int = 7,
    fmt_cycle: Sequence[str] = ("csv", "parquet"),
) -> list[Path]:
    """Write the :data:`DEMO_PLAN` batches into a landing folder.

    Batch ``i`` (1-based, the number in its id) is generated with
    ``batch_index=i`` and its own seed derived from ``seed`` and ``i``, and
    written as ``<landing_dir>/<batch_id>.<fmt>`` where ``fmt`` cycles through
    ``fmt_cycle`` - except ``corrupt`` batches, which are always CSV so their
    mixed-type columns survive. Existing files of the same name are replaced.

    Args:
        landing_dir: Folder to write into (created if missing).
        n_rows: Rows per batch.
        seed: Base seed.
        fmt_cycle: Non-empty sequence of ``"csv"`` / ``"parquet"``.

    Returns:
        The written paths, in arrival order.

    Raises:
        ValueError: If ``fmt_cycle`` is empty or names an unknown format, or
            ``n_rows`` / ``seed`` are invalid.
    """
    n_rows = _check_int("n_rows", n_rows, low=1, high=_MAX_ROWS)
    seed = _check_int("seed", seed, low=0)
    if isinstance(fmt_cycle, str):
        fmt_cycle = (fmt_cycle,)
    fmt_cycle = tuple(fmt_cycle)
    if not fmt_cycle:
        raise ValueError(f"fmt_cycle must name at least one format from {_DEMO_FORMATS}.")
    for fmt in fmt_cycle:
        _check_choice("format in fmt_cycle", fmt, _DEMO_FORMATS)
    landing = Path(landing_dir)
    paths = []
    for pos, (batch_id, scenario, kwargs) in enumerate(DEMO_PLAN):
        index = int(batch_id.rsplit("_", 1)[1])
        df = make_batch(n_rows, seed=_demo_seed(seed, index), scenario=scenario, batch_index=index, **kwargs)
        fmt = "csv" if scenario == "corrupt" else fmt_cycle[pos % len(fmt_cycle)]
        paths.append(write_batch(df, landing / f"{batch_id}.{fmt}"))
    return paths


# --------------------------------------------------------------------------
# The drifting demo stream the policy backtester replays (python -m retrain_assets.backtest)
# --------------------------------------------------------------------------

STREAM_BATCHES = 30
"""Length of the backtester's demo stream."""

STREAM_INITIAL = 3
"""Batches the first model of the stream learns from (noise never falls on them)."""


@dataclass(frozen=True)
class DemoBatchSpec:
    """What one demo batch carries.

    Attributes:
        batch_id: ``batch_0001``…
        covariate: Size of the covariate shift (``make_batch``'s ``drift_strength``; 0 = clean
            features): monthly charges up by about this many standard deviations, more
            month-to-month contracts, shorter tenure.
        concept: ``base`` or ``shifted`` labelling rule (:func:`true_churn_probability`:
            support calls now retain customers and price sensitivity doubles).
        label_noise: Share of labels flipped.
    """

    batch_id: str
    covariate: float = 0.0
    concept: str = "base"
    label_noise: float = 0.0

    @property
    def note(self) -> str:
        """A short description."""
        parts = []
        if self.covariate:
            parts.append(f"covariate shift {self.covariate:g}")
        if self.concept != "base":
            parts.append(f"{self.concept} concept")
        if self.label_noise:
            parts.append(f"{self.label_noise:.0%} labels flipped")
        return ", ".join(parts) or "clean"


DEMO_COVARIATE_STRENGTH = 1.0
"""The lasting covariate shift: monthly charges up by ~1 standard deviation (a price rise)."""

DEMO_BLIP_STRENGTH = 0.5
"""A one-batch covariate blip (e.g. a one-day promotion) that goes away again."""

DEMO_LABEL_NOISE = 0.2
"""Share of labels flipped in a noisy batch (a labelling outage), which goes away again."""


def demo_plan(n_batches: int = STREAM_BATCHES, *, initial: int = STREAM_INITIAL) -> list[DemoBatchSpec]:
    """The demo stream: stable, then a covariate shift that lasts, then a concept change that lasts.

    Batches ``[0, 0.3 n)`` are clean; from ``0.3 n`` the features shift for good
    (:data:`DEMO_COVARIATE_STRENGTH`); from ``2n/3`` (the last third) the labelling rule changes for
    good as well, on top of the shifted features. Transient noise that a good policy should not
    chase: one covariate blip (:data:`DEMO_BLIP_STRENGTH`) in the clean stretch and a batch with
    :data:`DEMO_LABEL_NOISE` of its labels flipped in each stretch. Noise never falls on the first
    ``initial`` batches or on the first batch of a change.

    Args:
        n_batches: Length of the stream (>= ``initial + 3``).
        initial: Batches the first model learns from.

    Returns:
        One spec per batch, in arrival order.
    """
    if n_batches < initial + 3:
        raise ValueError(f"the demo stream needs at least {initial + 3} batches (initial {initial} + 3), got {n_batches}")
    covariate_start = max(initial + 1, round(0.3 * n_batches))
    concept_start = max(covariate_start + 1, round(2 * n_batches / 3))
    protected = set(range(initial)) | {covariate_start, concept_start}
    blips = {i for i in [round(0.13 * n_batches)] if i not in protected}
    noisy = {i for i in (round(0.2 * n_batches), round(0.5 * n_batches), round(0.83 * n_batches))
             if i not in protected | blips and i < n_batches}
    plan = []
    for i in range(n_batches):
        covariate = DEMO_COVARIATE_STRENGTH if i >= covariate_start else (DEMO_BLIP_STRENGTH if i in blips else 0.0)
        plan.append(DemoBatchSpec(
            batch_id=f"batch_{i + 1:04d}",
            covariate=covariate,
            concept="shifted" if i >= concept_start else "base",
            label_noise=DEMO_LABEL_NOISE if i in noisy else 0.0,
        ))
    return plan


def stream_batch_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def demo_batch(spec: DemoBatchSpec, n_rows: int, seed: int) -> pd.DataFrame:
    """Generate one demo batch with :func:`make_batch` (its features and, for the base
    concept, its labels), relabelled with the shifted rule and/or label noise as the spec says.

    Args:
        spec: What the batch carries.
        n_rows: Rows.
        seed: Seed of this batch.

    Returns:
        The batch as it would land (ids, event time, features, ``churned``).
    """
    index = int(spec.batch_id.rsplit("_", 1)[1])
    frame = make_batch(
        n_rows, seed=seed, scenario="covariate_drift", drift_strength=spec.covariate, batch_index=index
    )
    rng = np.random.default_rng([seed, index])
    if spec.concept != "base":
        probability = true_churn_probability(frame, spec.concept)
        frame[TARGET] = (rng.random(n_rows) < probability).astype(np.int64)
    if spec.label_noise:
        flip = rng.choice(n_rows, size=int(round(spec.label_noise * n_rows)), replace=False)
        frame.iloc[flip, frame.columns.get_loc(TARGET)] = 1 - frame[TARGET].to_numpy()[flip]
    return frame
