"""Tests for the drift verdict: significance AND effect size, missing rates, a joint-shift classifier.

Behaviour first (no drift never alarms, a large shift always does and names the feature, a joint
shift is caught by the domain classifier only), then the numerics against scipy, then every odd
input (NaN, inf, empty, constant, single category, tiny) giving a clear result or a clear error.
Every test here fails on any warning: a verdict must not come with a warning spew.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrain_assets.core.drift import DriftResult, detect_drift, textbook_rule
from retrain_assets.core.drift_settings import FEATURE_COLUMNS, INSUFFICIENT, DriftSettings
from retrain_assets.core.feature_drift import compare_categorical, compare_numeric
from retrain_assets.core.drift_stats import KOLMOGOROV_LIMIT_FROM, adjust, ks_2samp_sorted, ks_p_value

pytestmark = pytest.mark.filterwarnings("error")

NUMERIC = ["x0", "x1", "x2", "x3", "x4"]


def make_frame(rng: np.random.Generator, n: int, *, shift: dict[str, float] | None = None, rho: float = 0.0,
               categories: tuple[float, ...] = (0.5, 0.3, 0.2)) -> pd.DataFrame:
    """Five N(0, 1) features (x0/x1 with correlation rho) and one 3-level categorical."""
    cols = {name: rng.standard_normal(n) for name in NUMERIC}
    cols["x1"] = rho * cols["x0"] + np.sqrt(1 - rho**2) * cols["x1"]
    for name, delta in (shift or {}).items():
        cols[name] = cols[name] + delta
    cols["plan"] = np.asarray(["basic", "plus", "pro"], dtype=object)[rng.choice(3, n, p=categories)]
    return pd.DataFrame(cols)


# --- behaviour -------------------------------------------------------------------------------


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 400), seed=st.integers(0, 2**32 - 1), nan_share=st.sampled_from([0.0, 0.1, 0.9]))
def test_identical_frames_never_drift(n, seed, nan_share):
    rng = np.random.default_rng(seed)
    frame = make_frame(rng, n)
    frame.loc[rng.random(n) < nan_share, "x2"] = np.nan
    frame.loc[rng.random(n) < nan_share, "plan"] = None
    result = detect_drift(frame, frame.copy())
    assert not result.drift_detected
    assert result.drifted_features == [] and not result.features["drifted"].any()
    assert not result.multivariate.get("drifted", False)
    assert result.score == 0.0
    assert result.summary.startswith("no actionable drift")


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(500, 3000), seed=st.integers(0, 2**32 - 1), feature=st.sampled_from(NUMERIC),
       sign=st.sampled_from([-1.0, 1.0]))
def test_large_shift_always_drifts_and_names_the_feature(n, seed, feature, sign):
    rng = np.random.default_rng(seed)
    result = detect_drift(make_frame(rng, n), make_frame(rng, n, shift={feature: 2.0 * sign}))
    assert result.drift_detected
    assert feature in result.drifted_features
    row = result.features.set_index("feature").loc[feature]
    assert row["effect_metric"] == "wasserstein" and 1.7 < row["wasserstein"] < 2.3  # ≈ the shift in σ
    assert f"{feature}: " in result.summary and "σ shift" in result.summary


@pytest.mark.parametrize("n", [1_000, 20_000])
def test_no_drift_batches_do_not_alarm(n):
    """Five fresh no-drift batches per size: the textbook rule's 40% would alarm on ~2 of them."""
    for seed in range(5):
        rng = np.random.default_rng(seed)
        result = detect_drift(make_frame(rng, n), make_frame(rng, n), domain_classifier=False)
        assert not result.drift_detected, result.summary


def test_trivial_shift_at_large_n_is_significant_but_not_actionable():
    rng = np.random.default_rng(3)
    ref, cur = make_frame(rng, 200_000), make_frame(rng, 200_000, shift={"x3": 0.03})
    assert textbook_rule(ref, cur)  # KS p ≪ 0.05 at this n
    result = detect_drift(ref, cur, domain_classifier=False)
    row = result.features.set_index("feature").loc["x3"]
    assert row["p_adjusted"] < 0.05 and row["wasserstein"] < 0.05
    assert not result.drift_detected
    assert "below" in row["reason"]
    assert result.summary.startswith("no actionable drift: 1 of 6 features differ significantly")


def test_joint_shift_caught_by_domain_classifier_only():
    rng = np.random.default_rng(11)
    ref, cur = make_frame(rng, 5000, rho=0.5), make_frame(rng, 5000, rho=-0.5)
    result = detect_drift(ref, cur)
    assert result.drifted_features == []
    assert result.drift_detected and result.multivariate["drifted"]
    assert result.multivariate["auc"] > 0.6 and result.multivariate["auc_ci"][0] > 0.52
    assert set(result.multivariate["top_features"][:2]) == {"x0", "x1"}
    assert result.multivariate["rows_used"] == 10_000
    assert re.match(r"drift: joint shift: domain classifier AUC 0\.\d\d \(95% CI 0\.\d\d–0\.\d\d\), led by x[01], x[01]; "
                    r"no single feature drifted \(of 6\)$", result.summary), result.summary
    assert result.score == 0.0


def test_domain_classifier_is_seeded_and_samples_at_most_max_rows():
    rng = np.random.default_rng(5)
    ref, cur = make_frame(rng, 3000), make_frame(rng, 2500)
    first = detect_drift(ref, cur, domain_max_rows=1000)
    second = detect_drift(ref, cur, domain_max_rows=1000)
    assert first.multivariate == second.multivariate
    assert first.multivariate["rows_used"] == 2000
    assert detect_drift(ref, cur, domain_max_rows=1000, seed=1).multivariate["auc"] != first.multivariate["auc"]


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"domain_classifier": False}, "turned off"),
        ({}, "needs 50 rows per side"),
    ],
)
def test_domain_classifier_skipped_with_reason(kwargs, reason):
    rng = np.random.default_rng(0)
    n = 40 if not kwargs else 500
    result = detect_drift(make_frame(rng, n), make_frame(rng, n), **kwargs)
    assert reason in result.multivariate["skipped"]
    assert "domain classifier skipped" in result.summary


def test_summary_names_drifted_features_with_their_effect():
    rng = np.random.default_rng(2)
    ref = make_frame(rng, 4000)
    cur = make_frame(rng, 4000, shift={"x1": 1.2}, categories=(0.2, 0.3, 0.5))
    result = detect_drift(ref, cur, domain_classifier=False)
    assert result.drifted_features == ["x1", "plan"]
    assert re.match(r"drift in 2 of 6 features \(x1: 1\.\dσ shift; plan: JS 0\.\d\d\)$", result.summary), result.summary
    assert result.score == pytest.approx(2 / 6)


def test_unseen_categories_are_named_and_count_as_their_own_bin():
    rng = np.random.default_rng(4)
    ref = pd.Series(rng.choice(["a", "b", "c"], 3000))
    cur = pd.Series(np.concatenate([rng.choice(["a", "b", "c"], 2400), ["zz"] * 500, ["yy"] * 100]))
    row = compare_categorical(ref, cur)
    assert row["unseen_categories"] == ["zz", "yy"]
    assert row["unseen_count"] == 2 and row["unseen_share"] == pytest.approx(0.2)
    assert row["categories"] == 5
    assert row["drifted"] and row["js"] > 0.2 and np.isfinite(row["psi"])
    assert "unseen zz, yy" in row["reason"]


def test_a_rare_unseen_category_is_listed_without_drift():
    rng = np.random.default_rng(4)
    ref = pd.Series(rng.choice(["a", "b", "c"], 5000))
    cur = pd.Series(np.concatenate([rng.choice(["a", "b", "c"], 4995), ["new"] * 5]))
    row = compare_categorical(ref, cur)
    assert row["unseen_categories"] == ["new"] and not row["drifted"]
    assert "1 unseen categories" in row["reason"]


@pytest.mark.parametrize(("missing_cur", "drifted"), [(0.30, True), (0.02, False)])
def test_missing_rate_jump_is_drift_small_change_is_not(missing_cur, drifted):
    rng = np.random.default_rng(6)
    ref, cur = make_frame(rng, 5000), make_frame(rng, 5000)
    cur.loc[rng.random(5000) < missing_cur, "x4"] = np.nan
    result = detect_drift(ref, cur, domain_classifier=False)
    row = result.features.set_index("feature").loc["x4"]
    assert row["missing_change"] == pytest.approx(missing_cur, abs=0.02)
    assert row["drifted"] == drifted and result.drift_detected == drifted
    assert row["wasserstein"] < 0.1  # the values that are present did not move
    if drifted:
        assert re.match(r"missing rate 0\.0% → \d\d\.\d% \(p_adj=", row["reason"]), row["reason"]
        assert re.search(r"x4: missing 0%→\d\d%\)", result.summary), result.summary


def test_categorical_missing_rate_jump_is_drift():
    rng = np.random.default_rng(6)
    ref = pd.Series(rng.choice(["a", "b"], 2000), dtype=object)
    cur = ref.copy()
    cur[rng.random(2000) < 0.2] = None
    row = compare_categorical(ref, cur)
    assert row["drifted"] and row["missing_cur"] == pytest.approx(0.2, abs=0.03)


# --- numerics against scipy ------------------------------------------------------------------


@pytest.mark.parametrize(("n1", "n2"), [(30, 45), (200, 200), (1000, 700), (9000, 10_000), (12_000, 20_000)])
@pytest.mark.parametrize("data", ["continuous", "ties", "shifted"])
def test_ks_2samp_sorted_agrees_with_scipy(n1, n2, data):
    rng = np.random.default_rng(n1 + n2)
    a, b = rng.normal(size=n1), rng.normal(0.3 if data == "shifted" else 0.0, 1.0, size=n2)
    if data == "ties":
        a, b = np.round(a, 1), np.round(b, 1)
    statistic, p = ks_2samp_sorted(np.sort(a), np.sort(b))
    reference = scipy.stats.ks_2samp(a, b)
    assert statistic == reference.statistic  # bit for bit
    asymp = scipy.stats.ks_2samp(a, b, method="asymp").pvalue
    assert p == pytest.approx(asymp, rel=1e-9, abs=1e-300)
    # scipy's default p-value is exact up to 10k values per side; the asymptotic one is close
    assert p == pytest.approx(reference.pvalue, abs=0.05 if min(n1, n2) < 500 else 0.01)


@pytest.mark.parametrize("en", [KOLMOGOROV_LIMIT_FROM, KOLMOGOROV_LIMIT_FROM + 1, 500_000])
def test_ks_p_value_large_samples_take_the_kolmogorov_limit(en):
    # scipy's kstwo at en = 500,000 costs ~0.8 s per drifting column; its limit is within 0.6% relative
    # wherever the p-value is worth reading (≥ 1e-6), and exactly scipy's up to KOLMOGOROV_LIMIT_FROM
    n = 2 * en  # two samples of n values: effective size n·n/(2n) = en
    for x in (0.3, 1.0, 1.36, 1.9, 3.0, 5.0):
        statistic = x / np.sqrt(en)
        p = ks_p_value(statistic, n, n)
        kstwo = scipy.stats.kstwo.sf(statistic, en)
        if en <= KOLMOGOROV_LIMIT_FROM:
            assert p == pytest.approx(kstwo, rel=1e-12)
        else:
            assert p == scipy.stats.kstwobign.sf(statistic * np.sqrt(en))
            if kstwo >= 1e-6:
                assert p == pytest.approx(kstwo, rel=0.006 if en < 500_000 else 0.003)
    assert ks_p_value(0.0, n, n) == 1.0


@pytest.mark.parametrize(
    ("ref", "cur", "match"),
    [([np.nan, 1.0], [1.0], "NaN or inf"), ([2.0, 1.0], [1.0, 2.0], "not sorted"), ([], [1.0], "non-empty"),
     ([[1.0]], [1.0], "1-D")],
)
def test_ks_2samp_sorted_rejects_bad_input(ref, cur, match):
    with pytest.raises(ValueError, match=match):
        ks_2samp_sorted(np.array(ref), np.array(cur))


def test_ks_2samp_sorted_one_value_per_side_says_nothing():
    assert ks_2samp_sorted(np.array([0.0]), np.array([1.0])) == (1.0, 1.0)


@pytest.mark.parametrize("data", ["normal", "ties", "different sizes", "skewed"])
def test_wasserstein_agrees_with_scipy(data):
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=3000), rng.normal(0.4, 1.3, size=3000)
    if data == "ties":
        a, b = np.round(a), np.round(b)
    elif data == "different sizes":
        b = b[:1234]
    elif data == "skewed":
        a, b = rng.lognormal(size=500), rng.lognormal(0.2, size=4000)
    row = compare_numeric(a, b)
    expected = scipy.stats.wasserstein_distance(a, b)
    assert row["wasserstein_raw"] == pytest.approx(expected, rel=1e-10)
    assert row["wasserstein"] == pytest.approx(expected / np.std(a, ddof=1), rel=1e-10)


def test_normalised_wasserstein_reads_as_a_shift_in_sigma():
    rng = np.random.default_rng(9)
    row = compare_numeric(rng.normal(50, 10, 50_000), rng.normal(53, 10, 50_000))
    assert row["wasserstein"] == pytest.approx(0.3, abs=0.02)
    assert row["psi"] == pytest.approx(0.09, abs=0.03)


def test_summaries_match_numpy():
    rng = np.random.default_rng(10)
    a, b = rng.gamma(2.0, size=999), rng.gamma(2.5, size=1001)
    row = compare_numeric(a, b)
    for prefix, values in (("ref", a), ("cur", b)):
        assert row[f"{prefix}_mean"] == pytest.approx(values.mean())
        assert row[f"{prefix}_std"] == pytest.approx(values.std(ddof=1))
        for q in (5, 50, 95):
            assert row[f"{prefix}_q{q:02d}"] == pytest.approx(np.quantile(values, q / 100))


def test_chi2_matches_scipy_contingency():
    rng = np.random.default_rng(12)
    ref = pd.Series(rng.choice(list("abcd"), 800, p=[0.4, 0.3, 0.2, 0.1]))
    cur = pd.Series(rng.choice(list("abcde"), 600, p=[0.3, 0.3, 0.2, 0.1, 0.1]))
    row = compare_categorical(ref, cur)
    table = pd.crosstab(np.r_[np.zeros(800), np.ones(600)], np.r_[ref.to_numpy(), cur.to_numpy()])
    expected = scipy.stats.chi2_contingency(table.to_numpy(), correction=False)
    assert row["statistic"] == pytest.approx(expected.statistic)
    assert row["p_value"] == pytest.approx(expected.pvalue)
    p = table.to_numpy()[0] / 800
    q = table.to_numpy()[1] / 600
    assert row["js"] == pytest.approx(scipy.spatial.distance.jensenshannon(p, q, base=2))


def test_bh_and_bonferroni_adjust_as_expected():
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.02, 0.5])
    bonferroni = adjust(p, "bonferroni")
    bh = adjust(p, "bh")
    np.testing.assert_allclose(bonferroni, [0.05, 0.2, 0.15, np.nan, 0.1, 1.0])
    np.testing.assert_allclose(bh, [0.05, 0.05, 0.05, np.nan, 0.05, 0.5])
    tested = ~np.isnan(p)
    assert (bh[tested] <= bonferroni[tested]).all() and (bh[tested] >= p[tested]).all()


@pytest.mark.parametrize("correction", ["bh", "bonferroni"])
def test_detect_drift_reports_corrected_p_values(correction):
    rng = np.random.default_rng(13)
    ref, cur = make_frame(rng, 800), make_frame(rng, 800, shift={"x0": 0.15, "x2": 0.12})
    features = detect_drift(ref, cur, correction=correction, domain_classifier=False).features
    p = features["p_value"].to_numpy()
    # The oracle is scipy's own Benjamini–Hochberg and Bonferroni's formula, not the module's helper.
    expected = scipy.stats.false_discovery_control(p, method="bh") if correction == "bh" else np.minimum(p * len(p), 1.0)
    assert len(p) == 6 and not np.isnan(p).any()
    np.testing.assert_allclose(features["p_adjusted"], expected)


# --- odd inputs: a clear result or a clear error ---------------------------------------------


@st.composite
def odd_frames(draw):
    """Two frames of 1–90 rows whose columns are NaN-ridden, infinite, constant, tiny or one-category."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    sizes = (draw(st.integers(1, 90)), draw(st.integers(1, 90)))
    kinds = draw(st.lists(st.sampled_from(["normal", "constant", "nan", "all_nan", "inf", "ties", "extreme"]),
                          min_size=1, max_size=3))
    cats = draw(st.lists(st.sampled_from(["few", "single", "none", "all_none", "unseen"]), max_size=2))
    extreme = draw(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=5))
    frames = []
    for side, n in enumerate(sizes):
        cols = {}
        for i, kind in enumerate(kinds):
            x = rng.standard_normal(n)
            if kind == "constant":
                x[:] = 3.0
            elif kind == "nan":
                x[rng.random(n) < 0.5] = np.nan
            elif kind == "all_nan" and side == 1:
                x[:] = np.nan
            elif kind == "inf":
                x[rng.random(n) < 0.3] = np.inf * rng.choice([-1, 1])
            elif kind == "ties":
                x = np.round(x)
            elif kind == "extreme":
                x = np.resize(np.array(extreme, dtype=np.float64), n)
            cols[f"n{i}_{kind}"] = x
        for i, kind in enumerate(cats):
            values = rng.choice(["a", "b", "c"], n).astype(object)
            if kind == "single":
                values[:] = "a"
            elif kind == "none":
                values[rng.random(n) < 0.5] = None
            elif kind == "all_none" and side == 0:
                values[:] = None
            elif kind == "unseen" and side == 1:
                values[:] = "new"
            cols[f"c{i}_{kind}"] = values
        frames.append(pd.DataFrame(cols))
    return frames


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=odd_frames())
def test_odd_columns_give_a_clear_result_never_a_crash(frames):
    ref, cur = frames
    result = detect_drift(ref, cur)
    assert isinstance(result, DriftResult)
    assert list(result.features.columns) == list(FEATURE_COLUMNS)
    assert len(result.features) == ref.shape[1]
    assert result.features["drifted"].dtype == bool
    assert result.features["reason"].str.len().gt(0).all()
    assert result.features["test"].isin(["ks", "chi2", INSUFFICIENT]).all()
    untested = result.features["test"] == INSUFFICIENT
    assert result.features.loc[untested, "p_value"].isna().all()
    assert result.features.loc[untested, "reason"].str.contains("too few values").all()
    assert 0.0 <= result.score <= 1.0 and isinstance(result.summary, str) and result.summary
    assert ("auc" in result.multivariate) != ("skipped" in result.multivariate)
    assert result.drift_detected == (bool(result.drifted_features) or result.multivariate.get("drifted", False))
    assert not detect_drift(ref, ref.copy(), domain_classifier=False).drift_detected


def test_too_few_values_is_insufficient_data_not_drift():
    rng = np.random.default_rng(0)
    row = compare_numeric(rng.normal(size=20), rng.normal(5.0, 1.0, 500))
    assert row["test"] == INSUFFICIENT and not row["drifted"]
    assert row["reason"] == "too few values to test: 20 in reference (need 30 per side)"
    assert np.isnan(row["p_value"]) and row["ref_mean"] == pytest.approx(0.0, abs=1.0)


def test_all_nan_column_on_one_side_is_a_missing_rate_drift():
    rng = np.random.default_rng(0)
    row = compare_numeric(rng.normal(size=300), np.full(300, np.nan))
    assert row["test"] == INSUFFICIENT and row["missing_cur"] == 1.0
    assert row["drifted"] and row["reason"].startswith("missing rate 0.0% → 100.0%")
    both = compare_numeric(np.full(300, np.nan), np.full(300, np.nan))
    assert both["test"] == INSUFFICIENT and not both["drifted"]


def test_inf_values_are_counted_and_left_out():
    rng = np.random.default_rng(1)
    ref, cur = rng.normal(size=1000), rng.normal(size=1000)
    cur[:50] = np.inf
    cur[50:60] = -np.inf
    row = compare_numeric(ref, cur)
    assert (row["inf_ref"], row["inf_cur"], row["n_cur"]) == (0, 60, 940)
    assert row["missing_cur"] == 0.0 and np.isfinite(row["cur_mean"]) and not row["drifted"]
    assert "inf values left out: 0 in reference, 60 in current" in row["reason"]


@pytest.mark.parametrize(("current", "drifted"), [(np.full(500, 3.0), False), (np.r_[np.full(250, 3.0), np.full(250, 4.0)], True)])
def test_constant_reference_drifts_iff_current_differs(current, drifted):
    row = compare_numeric(np.full(500, 3.0), current)
    assert row["effect_metric"] == "share_changed" and row["scale"] == 0.0
    assert row["drifted"] == drifted
    assert row["reason"].startswith("reference is constant")
    assert row["effect_size"] == pytest.approx(0.5 if drifted else 0.0)


def test_single_category_in_both_frames_is_no_drift():
    row = compare_categorical(pd.Series(["a"] * 100), pd.Series(["a"] * 80))
    assert row["test"] == "chi2" and row["p_value"] == 1.0 and not row["drifted"]
    assert row["reason"].startswith("one category in both frames: a (100.0%)")


@pytest.mark.parametrize(
    ("reference", "current", "error", "match"),
    [
        (pd.DataFrame({"a": []}), pd.DataFrame({"a": [1.0]}), ValueError, "reference has no rows"),
        (pd.DataFrame({"a": [1.0]}), pd.DataFrame({"a": []}), ValueError, "current has no rows"),
        (pd.DataFrame({"a": [1.0], "b": [2.0]}), pd.DataFrame({"a": [1.0], "c": [2.0]}), ValueError,
         r"only in reference \['b'\], only in current \['c'\]"),
        (pd.DataFrame(index=range(3)), pd.DataFrame(index=range(3)), ValueError, "no columns to compare"),
        (pd.DataFrame({"a": [1.0]}), pd.DataFrame({"a": ["x"]}), ValueError, "holds object in current"),
        ([[1.0]], pd.DataFrame({"a": [1.0]}), TypeError, "reference must be a pandas DataFrame"),
    ],
)
def test_bad_frames_raise_clear_errors(reference, current, error, match):
    with pytest.raises(error, match=match):
        detect_drift(reference, current)


def test_listed_columns_must_exist_and_not_overlap():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    with pytest.raises(ValueError, match=r"columns \['zz'\] are not in reference"):
        detect_drift(frame, frame, numeric=["a", "zz"])
    with pytest.raises(ValueError, match="both numeric and categorical"):
        detect_drift(frame, frame, numeric=["a"], categorical=["a"])
    with pytest.raises(TypeError, match=r"list of column names, e.g. \['a'\]"):
        detect_drift(frame, frame, numeric="a")
    with pytest.raises(ValueError, match="list it under categorical"):
        detect_drift(frame, frame, numeric=["b"])


def test_kinds_inferred_from_dtypes_and_listing_limits_the_columns():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"f": rng.normal(size=100), "i": rng.integers(0, 9, 100), "s": rng.choice(["u", "v"], 100),
                          "b": rng.random(100) < 0.5, "k": pd.Categorical(rng.choice(["p", "q"], 100))})
    kinds = detect_drift(frame, frame, domain_classifier=False).features.set_index("feature")["kind"]
    assert kinds.to_dict() == {"f": "numeric", "i": "numeric", "s": "categorical", "b": "categorical", "k": "categorical"}
    listed = detect_drift(frame, frame.drop(columns=["s"]), numeric=["f"], domain_classifier=False)
    assert list(listed.features["feature"]) == ["f"]


def test_unknown_override_raises_type_error_listing_valid_names():
    frame = pd.DataFrame({"a": [1.0, 2.0]})
    with pytest.raises(TypeError, match=r"unknown DriftSettings field\(s\) \['alhpa'\]; valid names: alpha, correction"):
        detect_drift(frame, frame, alhpa=0.01)


def test_overrides_apply_on_top_of_settings():
    rng = np.random.default_rng(0)
    frame = make_frame(rng, 100)
    base = DriftSettings(min_js=0.2)
    result = detect_drift(frame, frame, settings=base, alpha=0.01, domain_classifier=False)
    assert (result.settings.alpha, result.settings.min_js) == (0.01, 0.2)
    assert (result.n_reference, result.n_current) == (100, 100)


@pytest.mark.parametrize(
    ("field", "value"),
    [("alpha", 0.0), ("alpha", 1.5), ("correction", "holm"), ("min_wasserstein", -0.1), ("min_js", 1.5),
     ("psi_bins", 1), ("domain_folds", 1), ("domain_min_auc", 0.5), ("domain_max_rows", 10), ("min_rows", 1.5)],
)
def test_invalid_settings_raise_value_error(field, value):
    with pytest.raises(ValueError, match=f"invalid DriftSettings: {field}"):
        DriftSettings(**{field: value})


@pytest.mark.parametrize(("reference", "match"), [(np.ones((3, 2)), "1-D"), (np.array(["a", "b"]), "numbers")])
def test_compare_numeric_rejects_non_numbers(reference, match):
    with pytest.raises(ValueError, match=match):
        compare_numeric(reference, np.ones(3))


def test_compare_numeric_judges_model_scores_as_one_test():
    rng = np.random.default_rng(14)
    scores_ref, scores_cur = rng.beta(2, 5, 3000), rng.beta(2.8, 5, 3000)
    row = compare_numeric(scores_ref, scores_cur)
    assert row["p_adjusted"] == row["p_value"] < 1e-6 and row["drifted"]
    assert row["wasserstein"] >= DriftSettings().min_wasserstein


def test_no_warnings_on_degenerate_numbers():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row = compare_numeric(np.array([1e308, -1e308] * 40), np.array([1e308, 1.0] * 40))
    assert isinstance(row["drifted"], bool) and row["reason"]


# --- categorical shares: total variation beyond noise ----------------------------------------------


def _categorical_pair(seed: int, n: int, p_ref, p_cur, levels) -> tuple[pd.Series, pd.Series]:
    rng = np.random.default_rng(seed)
    return (pd.Series(np.asarray(levels, dtype=object)[rng.choice(len(levels), n, p=p_ref)]),
            pd.Series(np.asarray(levels, dtype=object)[rng.choice(len(levels), n, p=p_cur)]))


def test_ten_points_of_share_moving_are_flagged_at_5k_rows():
    """.5/.3/.2 → .4/.3/.3 (TV 0.1, JS ≈ 0.106): the JS floor of 0.1 alone caught it ~83% of the time."""
    flagged = sum(
        compare_categorical(*_categorical_pair(seed, 5000, (.5, .3, .2), (.4, .3, .3), list("abc")))["drifted"]
        for seed in range(40)
    )
    assert flagged >= 39, flagged
    row = compare_categorical(*_categorical_pair(0, 5000, (.5, .3, .2), (.4, .3, .3), list("abc")))
    assert 0.08 < row["tv"] < 0.12 and row["tv_excess"] < row["tv"]
    assert "changed category" in row["reason"] or "JS" in row["reason"]


def test_many_rare_categories_without_drift_are_not_flagged_at_1k_rows():
    """50 Zipf levels at 1k rows: the plain TV of two samples of one distribution is ≈0.1; its excess is not."""
    levels = [f"k{i}" for i in range(50)]
    p = 1 / np.arange(1, 51)
    p = p / p.sum()
    rows = [compare_categorical(*_categorical_pair(seed, 1000, p, p, levels)) for seed in range(40)]
    assert np.mean([r["tv"] for r in rows]) > 0.08  # what a plain TV floor would have flagged
    assert max(r["tv_excess"] for r in rows) < DriftSettings().min_tv
    assert np.mean([r["js"] for r in rows]) > 0.1  # ... and the plain JS distance too (its sampling bias)
    assert max(r["js_excess"] for r in rows) < DriftSettings().min_js
    assert sum(r["drifted"] for r in rows) <= 1
