"""Seeded synthetic batches of the churn problem (:mod:`retrain_assets.core.synthetic` holds its
schema and its known labelling rules): clean, drifted, noisy, corrupt or unlabelled, written as a
landed file would be. Pure Python (NumPy, pandas; pyarrow for Parquet)."""

from __future__ import annotations

import numbers
import os
from pathlib import Path

import numpy as np
import pandas as pd

from retrain_assets.core.synthetic import (
    CATEGORIES,
    CORRUPTION_KINDS,
    ID_COLUMN,
    MULTICLASS_TARGET,
    PLAN_LABELS,
    PLANS,
    RANGES,
    REGRESSION_TARGET,
    SCENARIOS,
    TARGET,
    TASKS,
    TIME_COLUMN,
    check_choice,
    check_fraction,
    check_int,
    expected_monthly_spend,
    true_churn_probability,
    true_plan_probabilities,
)


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


_REG_NOISE_SD = 6.0


_WRITERS = (".csv", ".parquet")


MAX_ROWS = 1_000_000


_MAX_BATCH_INDEX = 9_999


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
    n_rows = check_int("n_rows", n_rows, low=1, high=MAX_ROWS)
    seed = check_int("seed", seed, low=0)
    scenario = check_choice("scenario", scenario, SCENARIOS)
    task = check_choice("task", task, TASKS)
    plan_labels = check_choice("plan_labels", plan_labels, PLAN_LABELS)
    batch_index = check_int("batch_index", batch_index, low=0, high=_MAX_BATCH_INDEX)
    if isinstance(drift_strength, bool) or not isinstance(drift_strength, numbers.Real):
        raise TypeError(f"drift_strength must be a float, got {type(drift_strength).__name__}.")
    drift_strength = float(drift_strength)
    if not np.isfinite(drift_strength) or drift_strength < 0:
        raise ValueError(f"drift_strength must be a finite number >= 0, got {drift_strength}.")
    label_noise = check_fraction("label_noise", label_noise)
    corrupt_fraction = check_fraction("corrupt_fraction", corrupt_fraction)
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
