"""Tests for the seeded synthetic churn generator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from retrain_assets.core import synthetic as syn
from retrain_assets.core.synthetic import CATEGORIES, CORRUPTION_KINDS, FEATURES, ID_COLUMN, RANGES, REGRESSION_TARGET, SCENARIOS, TARGET, TIME_COLUMN, true_churn_probability
from retrain_assets.core.synthetic_batches import make_batch, write_batch
from retrain_assets.core.demo_data import DEMO_PLAN, write_demo_batches

BASE_COLUMNS = [ID_COLUMN, TIME_COLUMN, *FEATURES]
NUMERIC = [c for c, kind in FEATURES.items() if kind == "numeric"]
CATEGORICAL = [c for c, kind in FEATURES.items() if kind == "categorical"]


def _design(df: pd.DataFrame) -> pd.DataFrame:
    """Numeric features plus a fixed one-hot encoding of the categoricals."""
    parts = [df[NUMERIC].astype(float)]
    for col in CATEGORICAL:
        for cat in CATEGORIES[col]:
            parts.append((df[col] == cat).astype(float).rename(f"{col}={cat}"))
    return pd.concat(parts, axis=1)


def _detect_defects(df: pd.DataFrame, target: str = TARGET) -> dict[int, set[str]]:
    """Independent defect detector working on the data only (not on attrs)."""
    found: dict[int, set[str]] = {}

    def mark(mask, kind):
        for pos in np.flatnonzero(np.asarray(mask)):
            found.setdefault(int(pos), set()).add(kind)

    tenure = pd.to_numeric(df["tenure_months"], errors="coerce")
    mark(tenure < RANGES["tenure_months"][0], "negative_tenure")
    mark(tenure > RANGES["tenure_months"][1], "absurd_tenure")
    mark(np.isinf(pd.to_numeric(df["monthly_charges"], errors="coerce")), "infinite_charges")
    unknown = np.zeros(len(df), dtype=bool)
    for col in CATEGORICAL:
        unknown |= ~df[col].isin(CATEGORIES[col]).to_numpy()
    mark(unknown, "unknown_category")
    mark(df[target].isna(), "missing_target")
    mark(pd.to_numeric(df["age"], errors="coerce").isna() & df["age"].notna(), "non_numeric_age")
    mark(df[ID_COLUMN].duplicated(keep="first"), "duplicate_id")
    return found


def _assert_defects_match(df: pd.DataFrame, listed: dict[int, str], target: str = TARGET) -> None:
    """Every listed defect is really in the data and nothing unlisted is broken."""
    detected = _detect_defects(df, target)
    dup_rows = set(np.flatnonzero(df[ID_COLUMN].duplicated(keep=False)))
    for pos, kind in listed.items():
        if kind == "duplicate_id":  # the copy may come before its original
            assert pos in dup_rows, pos
        else:
            assert kind in detected.get(pos, set()), (pos, kind)
    n_dup_listed = sum(kind == "duplicate_id" for kind in listed.values())
    assert df[ID_COLUMN].duplicated().sum() == n_dup_listed
    unlisted = {pos for pos, kinds in detected.items() if pos not in listed and kinds != {"duplicate_id"}}
    assert unlisted == set()


# --------------------------------------------------------------------------
# Reproducibility and schema
# --------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_same_arguments_give_identical_frame(scenario, task):
    a = make_batch(300, seed=11, scenario=scenario, task=task, batch_index=3)
    b = make_batch(300, seed=11, scenario=scenario, task=task, batch_index=3)
    pdt.assert_frame_equal(a, b)
    assert a.attrs == b.attrs


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_different_seeds_give_different_data(scenario):
    a = make_batch(300, seed=1, scenario=scenario)
    b = make_batch(300, seed=2, scenario=scenario)
    assert not a.equals(b)
    assert not np.array_equal(a["monthly_charges"].to_numpy(), b["monthly_charges"].to_numpy())


@pytest.mark.parametrize("task, target", [("classification", TARGET), ("regression", REGRESSION_TARGET)])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_has_documented_columns(scenario, task, target):
    df = make_batch(200, seed=5, scenario=scenario, task=task)
    assert len(df) == 200
    if scenario == "unlabelled":
        assert list(df.columns) == BASE_COLUMNS
        assert TARGET not in df.columns and REGRESSION_TARGET not in df.columns
    else:
        assert list(df.columns) == [*BASE_COLUMNS, target]
    assert df.attrs["scenario"] == scenario


def test_clean_batch_types_and_ranges():
    df = make_batch(2000, seed=3)
    assert df[ID_COLUMN].str.fullmatch(r"C\d{10}").all()
    assert pd.api.types.is_datetime64_any_dtype(df[TIME_COLUMN])
    for col in ("tenure_months", "support_calls", "age", TARGET):
        assert pd.api.types.is_integer_dtype(df[col]), col
    assert pd.api.types.is_float_dtype(df["monthly_charges"])
    assert np.allclose(df["monthly_charges"], df["monthly_charges"].round(2))
    for col, (low, high) in RANGES.items():
        assert df[col].between(low, high).all(), col
    for col, cats in CATEGORIES.items():
        assert set(df[col]) == set(cats), col
    assert set(df[TARGET]) == {0, 1}
    assert df[ID_COLUMN].is_unique


def test_features_are_realistically_correlated():
    df = make_batch(4000, seed=8)
    tenure = df.groupby("contract")["tenure_months"].mean()
    assert tenure["month_to_month"] < tenure["one_year"] < tenure["two_year"]
    charges = df.groupby("contract")["monthly_charges"].mean()
    assert charges["month_to_month"] > charges["two_year"]
    echeck = df.groupby("contract")["payment_method"].apply(lambda s: (s == "electronic_check").mean())
    assert echeck["month_to_month"] > echeck["two_year"]


def test_ids_unique_across_batches_and_times_in_day():
    a = make_batch(500, seed=1, batch_index=1, start_time="2024-03-01")
    b = make_batch(500, seed=1, batch_index=2, start_time="2024-03-01")
    ids = pd.concat([a[ID_COLUMN], b[ID_COLUMN]])
    assert ids.is_unique
    for df, day in ((a, "2024-03-02"), (b, "2024-03-03")):
        start = pd.Timestamp(day)
        assert (df[TIME_COLUMN] >= start).all()
        assert (df[TIME_COLUMN] < start + pd.Timedelta(days=1)).all()
        assert df[TIME_COLUMN].is_monotonic_increasing


# --------------------------------------------------------------------------
# Signal
# --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_churn_rate_is_realistic(seed):
    rate = make_batch(4000, seed=seed)[TARGET].mean()
    assert 0.25 <= rate <= 0.35


def test_logistic_regression_learns_the_signal():
    train = make_batch(3000, seed=21)
    test = make_batch(3000, seed=22)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(_design(train), train[TARGET])
    auc = roc_auc_score(test[TARGET], model.predict_proba(_design(test))[:, 1])
    assert auc > 0.70


def test_true_probability_explains_labels():
    df = make_batch(4000, seed=4)
    p = true_churn_probability(df)
    assert p.shape == (len(df),) and np.all((p > 0) & (p < 1))
    assert np.corrcoef(p, df[TARGET])[0, 1] > 0.3
    assert abs(p.mean() - df[TARGET].mean()) < 0.03  # calibrated: labels are Bernoulli(p)


def test_regression_target_follows_expected_spend():
    df = make_batch(3000, seed=4, task="regression")
    expected = syn.expected_monthly_spend(df)
    assert np.corrcoef(expected, df[REGRESSION_TARGET])[0, 1] > 0.9
    assert (df[REGRESSION_TARGET] >= 0).all()


# --------------------------------------------------------------------------
# Drift
# --------------------------------------------------------------------------


def test_covariate_drift_moves_features_not_rule():
    clean = make_batch(4000, seed=31)
    drift = make_batch(4000, seed=32, scenario="covariate_drift")
    shift = (drift["monthly_charges"].mean() - clean["monthly_charges"].mean()) / clean["monthly_charges"].std()
    assert shift > 0.5
    mix_clean = clean["contract"].value_counts(normalize=True)
    mix_drift = drift["contract"].value_counts(normalize=True)
    assert mix_drift["month_to_month"] - mix_clean["month_to_month"] > 0.1
    assert drift["tenure_months"].mean() < clean["tenure_months"].mean()
    # the labelling rule is unchanged: the base rule stays calibrated
    assert abs(true_churn_probability(drift).mean() - drift[TARGET].mean()) < 0.03


def test_drift_strength_scales_shift_and_zero_is_clean():
    clean = make_batch(1000, seed=9)
    weak = make_batch(1000, seed=9, scenario="covariate_drift", drift_strength=0.5)
    strong = make_batch(1000, seed=9, scenario="covariate_drift", drift_strength=2.0)
    none = make_batch(1000, seed=9, scenario="covariate_drift", drift_strength=0.0)
    assert clean["monthly_charges"].mean() < weak["monthly_charges"].mean() < strong["monthly_charges"].mean()
    pdt.assert_frame_equal(none[BASE_COLUMNS], clean[BASE_COLUMNS])


def test_concept_drift_changes_rule_not_features():
    clean = make_batch(4000, seed=41)
    concept = make_batch(4000, seed=42, scenario="concept_drift")
    for col in NUMERIC:
        diff = abs(concept[col].mean() - clean[col].mean()) / clean[col].std()
        assert diff < 0.1, col
    auc_clean = roc_auc_score(clean[TARGET], true_churn_probability(clean))
    auc_concept = roc_auc_score(concept[TARGET], true_churn_probability(concept))
    assert auc_clean - auc_concept > 0.05
    # the shifted rule is the one that generated the labels
    assert roc_auc_score(concept[TARGET], true_churn_probability(concept, "shifted")) > auc_concept
    # support calls now go with *less* churn
    assert np.corrcoef(concept["support_calls"], concept[TARGET])[0, 1] < 0
    assert np.corrcoef(clean["support_calls"], clean[TARGET])[0, 1] > 0


# --------------------------------------------------------------------------
# Label noise
# --------------------------------------------------------------------------


@pytest.mark.parametrize("share", [0.05, 0.2, 0.4])
def test_label_noise_flips_requested_share(share):
    clean = make_batch(2000, seed=51)
    noisy = make_batch(2000, seed=51, scenario="label_noise", label_noise=share)
    pdt.assert_frame_equal(noisy[BASE_COLUMNS], clean[BASE_COLUMNS])
    flipped = np.flatnonzero(noisy[TARGET].to_numpy() != clean[TARGET].to_numpy())
    assert abs(len(flipped) / len(clean) - share) < 0.01
    assert flipped.tolist() == noisy.attrs["noisy_rows"]


def test_label_noise_regression_shuffles_values():
    clean = make_batch(2000, seed=52, task="regression")
    noisy = make_batch(2000, seed=52, task="regression", scenario="label_noise", label_noise=0.3)
    rows = noisy.attrs["noisy_rows"]
    assert len(rows) == 600
    changed = (noisy[REGRESSION_TARGET] != clean[REGRESSION_TARGET]).mean()
    assert 0.25 < changed <= 0.3
    # shuffled, not invented: same multiset of values
    assert sorted(noisy[REGRESSION_TARGET]) == sorted(clean[REGRESSION_TARGET])


# --------------------------------------------------------------------------
# Corruption
# --------------------------------------------------------------------------


@pytest.mark.parametrize("task, target", [("classification", TARGET), ("regression", REGRESSION_TARGET)])
@pytest.mark.parametrize("fraction", [0.05, 0.12, 0.3])
def test_corrupt_records_and_really_contains_defects(fraction, task, target):
    n = 1000
    df = make_batch(n, seed=61, scenario="corrupt", corrupt_fraction=fraction, task=task)
    listed = df.attrs["corrupted_rows"]
    assert abs(len(listed) / n - fraction) < 0.01
    assert set(listed.values()) == set(CORRUPTION_KINDS)
    assert df["age"].dtype == object  # a string in a numeric column
    assert not df[ID_COLUMN].is_unique

    _assert_defects_match(df, listed, target)

    # spot-check concrete values
    inf_rows = [p for p, k in listed.items() if k == "infinite_charges"]
    assert np.isinf(df["monthly_charges"].iloc[inf_rows]).all()
    bad_tenure = [p for p, k in listed.items() if k in ("negative_tenure", "absurd_tenure")]
    assert not df["tenure_months"].iloc[bad_tenure].between(0, 72).any()


def test_corrupt_leaves_other_rows_clean():
    clean = make_batch(800, seed=62)
    bad = make_batch(800, seed=62, scenario="corrupt")
    untouched = np.setdiff1d(np.arange(800), list(bad.attrs["corrupted_rows"]))
    pdt.assert_frame_equal(
        bad.iloc[untouched].astype({"age": "int64", TARGET: "int64"}), clean.iloc[untouched]
    )


def test_corrupt_fraction_zero_gives_clean_data():
    bad = make_batch(300, seed=63, scenario="corrupt", corrupt_fraction=0.0)
    pdt.assert_frame_equal(bad, make_batch(300, seed=63))
    assert bad.attrs["corrupted_rows"] == {}


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"scenario": "drifty"}, ValueError, "clean.*covariate_drift.*unlabelled"),
        ({"task": "ranking"}, ValueError, "classification.*regression"),
        ({"n_rows": 0}, ValueError, "n_rows"),
        ({"n_rows": 10.5}, TypeError, "n_rows"),
        ({"seed": -1}, ValueError, "seed"),
        ({"label_noise": 1.5}, ValueError, "label_noise"),
        ({"corrupt_fraction": -0.1}, ValueError, "corrupt_fraction"),
        ({"drift_strength": -1.0}, ValueError, "drift_strength"),
        ({"batch_index": 10_000}, ValueError, "batch_index"),
        ({"start_time": "not a date"}, ValueError, "start_time"),
    ],
)
def test_make_batch_rejects_bad_arguments(kwargs, exc, match):
    args = {"n_rows": 10, "seed": 0, **kwargs}
    n_rows = args.pop("n_rows")
    with pytest.raises(exc, match=match):
        make_batch(n_rows, **args)


def test_true_probability_rejects_bad_input():
    df = make_batch(10, seed=0)
    with pytest.raises(ValueError, match="base.*shifted"):
        true_churn_probability(df, concept="future")
    with pytest.raises(ValueError, match="support_calls"):
        true_churn_probability(df.drop(columns="support_calls"))


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_write_batch_round_trips(tmp_path, suffix):
    df = make_batch(200, seed=71)
    path = write_batch(df, tmp_path / "nested" / "dir" / f"batch{suffix}")
    assert path.exists() and path.suffix == suffix
    if suffix == ".csv":
        back = pd.read_csv(path, parse_dates=[TIME_COLUMN])
    else:
        back = pd.read_parquet(path)
    pdt.assert_frame_equal(back, df, check_dtype=False)


def test_write_batch_csv_keeps_corrupt_values(tmp_path):
    df = make_batch(500, seed=72, scenario="corrupt")
    back = pd.read_csv(write_batch(df, tmp_path / "bad.csv"))
    _assert_defects_match(back, df.attrs["corrupted_rows"])


@pytest.mark.parametrize("name", ["batch.txt", "batch.json", "batch"])
def test_write_batch_rejects_unknown_suffix(tmp_path, name):
    with pytest.raises(ValueError, match=r"\.csv, \.parquet"):
        write_batch(make_batch(5, seed=0), tmp_path / name)
    assert not (tmp_path / name).exists()


def test_write_demo_batches(tmp_path):
    paths = write_demo_batches(tmp_path / "landing", n_rows=400, seed=7)
    assert len(paths) == len(DEMO_PLAN) == 11
    assert all(p.exists() for p in paths)
    stems = [p.stem for p in paths]
    assert stems == sorted(stems) == [f"batch_{i:04d}" for i in range(1, 12)]
    scenarios = [scenario for _, scenario, _ in DEMO_PLAN]
    assert scenarios[:5] == ["clean"] * 5
    assert scenarios[5:] == ["corrupt", "covariate_drift", "concept_drift", "label_noise", "corrupt", "unlabelled"]
    for pos, (path, scenario) in enumerate(zip(paths, scenarios)):
        expected = ".csv" if scenario == "corrupt" else (".csv", ".parquet")[pos % 2]
        assert path.suffix == expected, path.name

    frames = [pd.read_csv(p) if p.suffix == ".csv" else pd.read_parquet(p) for p in paths]
    assert pd.concat([f[ID_COLUMN] for f in frames if f[ID_COLUMN].is_unique]).is_unique
    assert TARGET not in frames[10].columns
    # each batch has its own seed
    assert not np.array_equal(frames[0]["monthly_charges"], frames[1]["monthly_charges"])
    # quarantine gate of 5%: batch_0006 passes, batch_0010 fails
    share = {i: len(_detect_defects(frames[i])) / len(frames[i]) for i in (5, 9)}
    assert 0 < share[5] <= 0.05
    assert share[9] > 0.05
    # deterministic
    again = write_demo_batches(tmp_path / "again", n_rows=400, seed=7)
    assert [p.read_bytes() for p in again if p.suffix == ".csv"] == [
        p.read_bytes() for p in paths if p.suffix == ".csv"
    ]


def test_write_demo_batches_rejects_bad_format(tmp_path):
    with pytest.raises(ValueError, match="csv.*parquet"):
        write_demo_batches(tmp_path, n_rows=10, fmt_cycle=("csv", "xlsx"))
    with pytest.raises(ValueError, match="at least one"):
        write_demo_batches(tmp_path, n_rows=10, fmt_cycle=())
