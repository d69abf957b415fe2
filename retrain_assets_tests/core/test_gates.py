"""Promotion gates on constructed holdouts: each passes and fails, with its numbers in the summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from retrain_assets.core.gates import GateResult, champion_comparison, mcnemar, metric_floor
from retrain_assets.core.gate_defaults import DEFAULT_FLOORS
from retrain_assets.core.stability_gates import data_sufficiency, prediction_stability, serving_latency
from retrain_assets.core.performance import flip_rate
from retrain_assets.core.slice_gate import default_slice_columns, slice_regression
from retrain_assets.core.performance import score_metric
from retrain_assets.core.schema import infer_schema
from retrain_assets.core.synthetic import ID_COLUMN, TARGET, TIME_COLUMN
from retrain_assets.core.synthetic_batches import make_batch

N_BOOT = 200  # the gate's 1000 costs ~1.8 s per roc_auc comparison of 2000 rows; 200 decide these cases


def _classification(n: int = 1000, seed: int = 0):
    """Labels and a champion whose positive-class probabilities carry real signal (AUC ≈ 0.8)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-2 * x))).astype(int)
    champion = 1 / (1 + np.exp(-2 * (x + rng.normal(0, 0.5, n))))
    return y, champion, rng


def _regression(n: int = 1000, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.normal(100, 20, n)
    champion = y + rng.normal(0, 5, n)
    return y, champion, rng


def _plain(value) -> bool:
    return isinstance(value, (bool, int, float, str))


# --------------------------------------------------------------------------
# 1. Floor
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metric, value, floor, passed, words",
    [
        ("roc_auc", 0.71, None, True, "roc_auc 0.710 is at least the floor of 0.600"),
        ("roc_auc", 0.55, None, False, "roc_auc 0.550 is below the floor of 0.600"),
        ("accuracy", 0.80, 0.85, False, "accuracy 0.800 is below the floor of 0.850"),
        ("f1", 0.31, None, True, "f1 0.310 is at least the floor of 0.300"),
        ("rmse", 5.2, None, True, "no floor configured for rmse (candidate 5.2)"),
        ("rmse", 5.2, 4.0, False, "rmse 5.2 is above the ceiling of 4"),
        ("mae", 3.5, 4.0, True, "mae 3.5 is at most the ceiling of 4"),
        ("roc_auc", float("nan"), None, False, "undefined"),
    ],
)
def test_metric_floor(metric, value, floor, passed, words):
    result = metric_floor(metric, value, floor)
    assert (result.name, result.passed, result.waived) == ("metric_floor", passed, False)
    assert words in result.summary


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(DEFAULT_FLOORS)), st.floats(0, 100), st.floats(0, 100))
def test_metric_floor_direction(metric, value, floor):
    higher = metric in ("roc_auc", "accuracy", "f1")
    assert metric_floor(metric, value, floor).passed == (value >= floor if higher else value <= floor)


# --------------------------------------------------------------------------
# 2. Champion comparison
# --------------------------------------------------------------------------


def test_identical_candidate_passes_with_zero_difference():
    y, champion, _ = _classification()
    result = champion_comparison("roc_auc", y, champion.copy(), champion, n_boot=N_BOOT)
    assert result.passed and not result.waived
    m = result.metrics
    assert m["difference"] == m["ci_low"] == m["ci_high"] == 0.0
    assert m["candidate"] == m["champion"] == pytest.approx(score_metric("roc_auc", y, champion))
    assert m["n"] == 1000
    assert f"candidate roc_auc {m['candidate']:.3f} vs champion {m['champion']:.3f} on the same 1000 holdout rows" in result.summary


def test_label_shuffled_candidate_fails():
    y, champion, rng = _classification()
    result = champion_comparison("roc_auc", y, rng.permutation(champion), champion, n_boot=N_BOOT)
    m = result.metrics
    assert not result.passed
    assert m["ci_high"] < 0 and m["ci_low"] <= m["difference"] <= m["ci_high"]
    assert f"difference {m['difference']:+.3f}" in result.summary
    assert f"95% CI {m['ci_low']:+.3f} to {m['ci_high']:+.3f}" in result.summary
    assert "worse than the champion by more than the 0.02 tolerance" in result.summary


def test_clearly_better_candidate_passes_with_a_positive_interval():
    y, champion, rng = _classification()
    # the candidate sees the same signal with less noise
    better = np.clip(champion + 0.6 * (y - champion) + rng.normal(0, 0.02, len(y)), 0, 1)
    result = champion_comparison("roc_auc", y, better, champion, n_boot=N_BOOT)
    assert result.passed and result.metrics["ci_low"] > 0


def test_tolerance_decides_a_slightly_worse_candidate():
    y, champion, rng = _classification(2000)
    worse = np.clip(champion + rng.normal(0, 0.1, len(y)), 0, 1)
    loss = -champion_comparison("roc_auc", y, worse, champion, n_boot=N_BOOT).metrics["difference"]
    assert 0.005 < loss < 0.05
    assert not champion_comparison("roc_auc", y, worse, champion, n_boot=N_BOOT, tolerance=0.0).passed
    assert champion_comparison("roc_auc", y, worse, champion, n_boot=N_BOOT, tolerance=0.1).passed


def test_a_candidate_not_shown_to_be_non_inferior_fails_even_with_a_good_point_estimate():
    """Non-inferiority: on 300 rows an equally good (but different) model is not shown to be within tolerance."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=300)
    y = (rng.uniform(size=300) < 1 / (1 + np.exp(-2 * x))).astype(int)
    champion, candidate = (1 / (1 + np.exp(-2 * (x + rng.normal(0, 0.5, 300)))) for _ in range(2))
    result = champion_comparison("roc_auc", y, candidate, champion, n_boot=N_BOOT)
    assert result.metrics["difference"] > 0 > -0.005 > result.metrics["ci_low"]
    assert not result.passed


@pytest.mark.parametrize("metric", ["rmse", "mae"])
def test_error_metrics_count_a_lower_error_as_better(metric):
    y, champion, rng = _regression()
    better = y + rng.normal(0, 3, len(y))
    worse = y + rng.normal(0, 8, len(y))
    up = champion_comparison(metric, y, better, champion, n_boot=N_BOOT)
    down = champion_comparison(metric, y, worse, champion, n_boot=N_BOOT)
    assert up.passed and up.metrics["difference"] > 0 and up.metrics["ci_low"] > 0
    assert up.metrics["candidate"] < up.metrics["champion"]
    assert not down.passed and down.metrics["difference"] < 0 and down.metrics["ci_high"] < 0
    assert f"{metric} {down.metrics['candidate']:.4g} vs champion {down.metrics['champion']:.4g}" in down.summary


def test_error_metric_tolerance_is_relative_to_the_champion():
    y, champion, _ = _regression()
    slightly_worse = y + 1.002 * (champion - y)  # every error 0.2 % larger: rmse 0.2 % worse on every resample
    result = champion_comparison("rmse", y, slightly_worse, champion, n_boot=N_BOOT, tolerance=0.005)
    assert result.passed
    assert result.metrics["ci_low"] == pytest.approx(-0.002 * result.metrics["champion"], rel=0.2)
    assert result.metrics["tolerance"] == pytest.approx(0.005 * result.metrics["champion"])
    assert "0.5% of the champion's rmse" in result.summary
    assert not champion_comparison("rmse", y, slightly_worse, champion, n_boot=N_BOOT, tolerance=0.001).passed


def test_mcnemar_is_reported_for_accuracy_only():
    y, champion, rng = _classification()
    candidate = rng.permutation(champion)
    acc = champion_comparison("accuracy", y, candidate, champion, n_boot=N_BOOT)
    auc = champion_comparison("roc_auc", y, candidate, champion, n_boot=N_BOOT)
    keys = {"mcnemar_candidate_only_correct", "mcnemar_champion_only_correct", "mcnemar_p_exact", "mcnemar_p_mid"}
    assert keys <= set(acc.metrics) and not keys & set(auc.metrics)
    assert acc.metrics["mcnemar_champion_only_correct"] > acc.metrics["mcnemar_candidate_only_correct"]
    assert acc.metrics["mcnemar_p_exact"] < 0.001
    assert f"McNemar mid-p {acc.metrics['mcnemar_p_mid']:.3g}" in acc.summary


@pytest.mark.parametrize("b, c", [(10, 2), (2, 10), (0, 0), (5, 5), (30, 17)])
def test_mcnemar_matches_the_exact_binomial_test(b, c):
    # rows where only the candidate is right (b), only the champion (c), and 20 where both are right
    y = np.ones(b + c + 20, dtype=int)
    candidate = np.r_[np.ones(b), np.zeros(c), np.ones(20)]
    champion = np.r_[np.zeros(b), np.ones(c), np.ones(20)]
    result = mcnemar(y, candidate, champion)
    assert (result["candidate_only_correct"], result["champion_only_correct"]) == (b, c)
    expected = stats.binomtest(min(b, c), b + c, 0.5).pvalue if b + c else 1.0
    assert result["p_exact"] == pytest.approx(expected)
    assert result["p_mid"] <= result["p_exact"]


def test_no_champion_waives_the_comparison():
    y, champion, _ = _classification(300)
    result = champion_comparison("roc_auc", y, champion, None)
    assert result.passed and result.waived
    assert result.summary.startswith("no champion yet: comparison waived")
    assert result.metrics["waived_reason"] == "no champion yet" and result.metrics["n"] == 300
    assert "none" in result.metrics["champion"]


def test_undefined_metric_fails_rather_than_passes():
    y = np.ones(100, dtype=int)
    result = champion_comparison("roc_auc", y, np.linspace(0, 1, 100), np.linspace(1, 0, 100), n_boot=N_BOOT)
    assert not result.passed and "undefined" in result.summary


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"candidate_scores": np.zeros(5)}, "y_true has 10 rows but scores have 5"),
        ({"metric": "auc"}, "unknown metric 'auc'"),
        ({"confidence": 1.5}, "confidence must be between 0 and 1"),
    ],
)
def test_comparison_inputs_are_checked(kwargs, message):
    args = {"metric": "roc_auc", "y_true": np.r_[np.zeros(5), np.ones(5)], "candidate_scores": np.linspace(0, 1, 10),
            "champion_scores": np.linspace(0, 1, 10)} | kwargs
    metric, y, cand, champ = args.pop("metric"), args.pop("y_true"), args.pop("candidate_scores"), args.pop("champion_scores")
    with pytest.raises(ValueError, match=message):
        champion_comparison(metric, y, cand, champ, **args)


def test_comparison_is_seeded():
    y, champion, rng = _classification(500)
    candidate = np.clip(champion + rng.normal(0, 0.1, 500), 0, 1)
    a = champion_comparison("roc_auc", y, candidate, champion, n_boot=100, seed=3)
    b = champion_comparison("roc_auc", y, candidate, champion, n_boot=100, seed=3)
    c = champion_comparison("roc_auc", y, candidate, champion, n_boot=100, seed=4)
    assert a == b and a.metrics["ci_low"] != c.metrics["ci_low"]


# --------------------------------------------------------------------------
# 3. Slices
# --------------------------------------------------------------------------


def _sliced(seed: int = 0):
    """Slices A and B of 400 rows, C of 20; the candidate is the champion except on B, where it is noise."""
    y, champion, rng = _classification(820, seed)
    slices = pd.Series(["A"] * 400 + ["B"] * 400 + ["C"] * 20, name="contract")
    candidate = champion.copy()
    on_b = (slices == "B").to_numpy()
    candidate[on_b] = rng.permutation(candidate[on_b])
    return y, champion, candidate, slices


def test_slice_regression_names_the_worse_slice_and_skips_small_ones():
    y, champion, candidate, slices = _sliced()
    result = slice_regression("roc_auc", y, candidate, champion, slices)
    assert not result.passed
    table = {row["slice"]: row for row in result.metrics["slices"]}
    assert set(table) == {"A", "B"}
    assert table["A"]["passed"] and table["A"]["difference"] == 0.0
    b = table["B"]
    assert not b["passed"] and b["difference"] < -0.2 and b["n"] == 400
    assert set(b) == {"slice", "n", "candidate", "champion", "difference", "ci_low", "ci_high", "passed"}
    assert b["ci_high"] < 0  # significantly worse, not only a noisy dip
    assert result.metrics["skipped"] == [{"slice": "C", "n": 20, "reason": "fewer than 50 rows"}]
    assert f"B roc_auc {b['candidate']:.3f} vs {b['champion']:.3f} ({b['difference']:+.3f}, n=400)" in result.summary
    assert "on 1 of 2 contract slices" in result.summary and "1 skipped" in result.summary


def test_slice_regression_does_not_block_a_noisy_dip_on_a_small_slice():
    # An equally good candidate (independent noise on the same signal) dips on a small slice by
    # chance: beyond the tolerance as a point estimate, but not significantly worse.
    rng = np.random.default_rng(3)
    n = 600
    slices = pd.Series(np.where(np.arange(n) < 540, "big", "small"), name="contract")
    y = rng.integers(0, 2, n)
    signal = y + rng.normal(0, 1.2, n)
    champion = 1 / (1 + np.exp(-(signal + rng.normal(0, 0.6, n))))
    dips = []
    for seed in range(12):
        candidate = 1 / (1 + np.exp(-(signal + np.random.default_rng(seed).normal(0, 0.6, n))))
        result = slice_regression("roc_auc", y, candidate, champion, slices, tolerance=0.02)
        small = {r["slice"]: r for r in result.metrics["slices"]}["small"]
        if small["difference"] < -0.02:
            dips.append(result.passed)
    assert dips and all(dips), dips


def test_slice_regression_passes_an_equal_candidate():
    y, champion, _, slices = _sliced()
    result = slice_regression("roc_auc", y, champion, champion, slices)
    assert result.passed and result.metrics["compared"] == 2 and result.metrics["failed"] == 0
    assert "no contract slice is worse than the champion beyond the 0.02 tolerance (2 compared, 1 skipped" in result.summary


def test_slice_regression_error_metric_direction():
    y, champion, rng = _regression(400)
    slices = pd.Series(np.where(np.arange(400) < 200, "north", "south"), name="region")
    candidate = np.where(slices == "north", y + rng.normal(0, 1, 400), champion)  # better on north, equal on south
    result = slice_regression("rmse", y, candidate, champion, slices)
    table = {row["slice"]: row for row in result.metrics["slices"]}
    assert result.passed and table["north"]["difference"] > 0 and table["south"]["difference"] == 0
    worse = slice_regression("rmse", y, np.where(slices == "south", y + rng.normal(0, 9, 400), champion), champion, slices)
    assert not worse.passed and "south" in worse.summary


def test_slice_regression_without_champion_or_large_slices():
    y, champion, candidate, slices = _sliced()
    waived = slice_regression("roc_auc", y, candidate, None, slices)
    assert waived.passed and waived.waived and waived.summary.startswith("no champion yet")
    tiny = slice_regression("roc_auc", y, candidate, champion, slices, min_rows=1000)
    assert tiny.passed and tiny.metrics["compared"] == 0 and len(tiny.metrics["skipped"]) == 3
    assert "nothing compared" in tiny.summary


def test_missing_slice_values_form_their_own_slice():
    y, champion, _, slices = _sliced()
    slices = slices.where(slices != "A", None)
    result = slice_regression("roc_auc", y, champion, champion, slices)
    assert "(missing)" in {row["slice"] for row in result.metrics["slices"]}


def test_default_slice_columns():
    frame = make_batch(1000, seed=1)
    schema = infer_schema(frame, target=TARGET, task="classification", time_column=TIME_COLUMN, id_columns=[ID_COLUMN])
    assert default_slice_columns(schema, frame) == ["contract", "payment_method"]  # 3 and 4 levels; region has 5
    assert default_slice_columns(schema, frame, max_slices=5) == ["contract", "payment_method", "region"]
    one_level = frame.assign(contract="one_year")
    assert default_slice_columns(schema, one_level) == ["payment_method", "region"]
    assert default_slice_columns(schema, frame, max_levels=4) == ["contract", "payment_method"]
    assert default_slice_columns(schema, frame, max_levels=3, max_slices=5) == ["contract"]


# --------------------------------------------------------------------------
# 4. Stability
# --------------------------------------------------------------------------


@pytest.mark.parametrize("flips, passed", [(0, True), (5, True), (15, True), (16, False), (40, False)])
def test_flip_rate_of_class_labels(flips, passed):
    champion = np.array(["stay"] * 70 + ["leave"] * 30, dtype=object)
    candidate = champion.copy()
    candidate[:flips] = "leave"
    result = prediction_stability(candidate, champion)
    assert result.passed is passed and not result.waived
    assert result.metrics["flip_rate"] == flips / 100 and result.metrics["flipped"] == flips
    assert f"{flips / 100:.1%} of 100 holdout predicted classes differ from the champion's ({flips} rows; maximum 15.0%)" in result.summary


def test_flip_rate_waived_for_concept_drift():
    champion = np.zeros(100, dtype=int)
    candidate = np.r_[np.ones(30, dtype=int), np.zeros(70, dtype=int)]
    result = prediction_stability(candidate, champion, waive=True, waive_reason="concept drift confirmed on batch_0008")
    assert result.passed and result.waived
    assert result.metrics["flip_rate"] == 0.3
    assert result.summary.startswith("waived (concept drift confirmed on batch_0008): 30.0% of 100")
    assert not prediction_stability(candidate, champion).passed


def test_regression_change_is_relative():
    champion = np.full(100, 200.0)
    candidate = champion.copy()
    candidate[:5] *= 1.05  # within 10 %: not a flip
    candidate[5:25] *= 1.2  # 20 rows beyond 10 %
    rate, flipped, task = flip_rate(candidate, champion)
    assert (rate, flipped, task) == (0.2, 20, "regression")
    result = prediction_stability(candidate, champion, max_flip_rate=0.25)
    assert result.passed and "move by more than 10% from" in result.summary


def test_regression_change_near_zero_uses_the_typical_size():
    champion = np.r_[np.full(90, 100.0), np.full(10, 0.001)]
    candidate = champion + 1.0  # +1 % of a typical prediction; relative to 0.001 it would be huge
    assert flip_rate(candidate, champion)[1] == 0


def test_no_champion_waives_stability_and_lengths_must_match():
    assert prediction_stability(np.ones(5), None).waived
    with pytest.raises(ValueError, match="candidate has 3 predictions but the champion 4"):
        prediction_stability(np.ones(3), np.ones(4))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 2), min_size=1, max_size=50), st.data())
def test_flip_rate_properties(champion, data):
    champion = np.array(champion)
    candidate = np.array(data.draw(st.lists(st.integers(0, 2), min_size=len(champion), max_size=len(champion))))
    rate, flipped, _ = flip_rate(candidate, champion)
    assert 0 <= rate <= 1 and flipped == int(np.sum(candidate != champion))
    assert flip_rate(champion, champion)[0] == 0
    assert flip_rate(candidate, champion)[0] == flip_rate(champion, candidate)[0]


# --------------------------------------------------------------------------
# 5. Latency, 6. Data
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "seconds, budget, passed, words",
    [
        (0.012, 500, True, "12.0 ms, within the 500 ms budget"),
        (0.6, 500, False, "600.0 ms, over the 500 ms budget"),
        (0.05, 50, True, "50.0 ms, within the 50 ms budget"),
    ],
)
def test_serving_latency(seconds, budget, passed, words):
    result = serving_latency(seconds, budget)
    assert result.passed is passed and words in result.summary
    assert result.metrics["ms_per_1000"] == pytest.approx(seconds * 1000)


@pytest.mark.parametrize("seconds", [-1.0, float("nan"), float("inf")])
def test_serving_latency_refuses_nonsense(seconds):
    with pytest.raises(ValueError, match="seconds_per_1000"):
        serving_latency(seconds, 500)


@pytest.mark.parametrize(
    "n, counts, passed, words",
    [
        (2000, {0: 1400, 1: 600}, True, "2000 training rows (minimum 200); smallest class 1 has 600 rows (minimum 20)"),
        (150, {0: 100, 1: 50}, False, "only 150 training rows (minimum 200)"),
        (400, {0: 390, 1: 10}, False, "too few rows in class(es) 1 (10) (minimum 20)"),
        (400, {0: 400}, False, "only 1 class (0); at least 2 are needed"),
        (500, None, True, "500 training rows (minimum 200)"),
    ],
)
def test_data_sufficiency(n, counts, passed, words):
    result = data_sufficiency(n, counts)
    assert result.passed is passed and words in result.summary


def test_data_sufficiency_thresholds_are_arguments():
    assert data_sufficiency(150, {0: 100, 1: 50}, min_rows=100).passed
    assert not data_sufficiency(150, {0: 100, 1: 50}, min_rows=100, min_rows_per_class=60).passed


# --------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------


def test_as_metadata_is_plain():
    y, champion, candidate, slices = _sliced()
    results: list[GateResult] = [
        slice_regression("roc_auc", y, candidate, champion, slices),
        champion_comparison("accuracy", y, candidate, champion, n_boot=50),
        champion_comparison("roc_auc", y, candidate, None),
        data_sufficiency(800, {0: 500, 1: 300}),
        prediction_stability(candidate >= 0.5, champion >= 0.5),
    ]
    for result in results:
        metadata = result.as_metadata()
        assert metadata["summary"] == result.summary and metadata["passed"] == result.passed
        assert all(_plain(v) for v in metadata.values()), metadata
    table = results[0].as_metadata()["slices"]
    assert table.startswith("| slice | n | candidate | champion | difference | ci_low | ci_high | passed |")
    assert "| B | 400 |" in table
    assert results[3].as_metadata()["class_counts"] == '{"0": 500, "1": 300}'
