"""Tests for the grid behind a prepared reference's KS statistic and Wasserstein distance.

The grid must give the numbers of the full merge (drift_stats.ks_and_wasserstein, itself checked
against scipy in test_drift.py): the KS statistic bit for bit, the distance to rounding, on every
shape of data (ties, clipped tails, a batch outside the reference's range, a constant reference,
values far from zero, a batch of one value) and at every size ratio.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrain_assets.core import drift_grid
from retrain_assets.core.drift_grid import GRID_MIN_VALUES, ReferenceGrid, ks_and_wasserstein_grid, reference_grid, \
    segment_sums
from retrain_assets.core.drift_stats import ks_and_wasserstein

pytestmark = pytest.mark.filterwarnings("error")


def _both(ref: np.ndarray, cur: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    ref_sorted, cur_sorted = np.sort(ref), np.sort(cur)
    grid = reference_grid(ref_sorted)
    assert grid is not None
    return ks_and_wasserstein_grid(ref_sorted, grid, cur_sorted), ks_and_wasserstein(ref_sorted, cur_sorted)


def _assert_same(got: tuple[float, float], expected: tuple[float, float], rel: float = 1e-9) -> None:
    assert got[0] == expected[0]  # bit for bit
    assert got[1] == pytest.approx(expected[1], rel=rel, abs=1e-300)


CASES = {
    "no drift": lambda rng: (rng.normal(size=200_000), rng.normal(size=200_000)),
    "shifted": lambda rng: (rng.normal(size=150_000), rng.normal(0.2, 1.0, 180_000)),
    "ties": lambda rng: (np.round(rng.normal(size=120_000), 1), np.round(rng.normal(0.05, 1.0, 90_000), 1)),
    "few values": lambda rng: (rng.integers(0, 4, 100_000).astype(float), rng.integers(0, 5, 70_000).astype(float)),
    "clipped tails": lambda rng: (np.clip(rng.normal(size=200_000), -1.5, 2.0), np.clip(rng.normal(0.5, 1.0, 150_000), -1, 2.6)),
    "batch beyond both ends": lambda rng: (rng.uniform(0, 1, 100_000), rng.uniform(-0.5, 1.5, 40_000)),
    "batch inside one interval": lambda rng: (rng.normal(size=100_000), rng.uniform(0.0001, 0.00011, 500)),
    "small batch": lambda rng: (rng.normal(size=300_000), rng.normal(0.1, 1.0, 1_000)),
    "one value": lambda rng: (rng.normal(size=60_000), np.array([0.3])),
    "large batch": lambda rng: (rng.normal(size=60_000), rng.normal(size=600_000)),
    "constant reference": lambda rng: (np.full(80_000, 2.5), np.round(rng.normal(2.5, 1.0, 5_000))),
    "far from zero": lambda rng: (1e6 + rng.normal(size=100_000), 1e6 + rng.normal(0.01, 1.0, 100_000)),
    "lognormal": lambda rng: (rng.lognormal(size=100_000), rng.lognormal(0.1, 1.2, 50_000)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_grid_gives_the_merge_numbers(case):
    ref, cur = CASES[case](np.random.default_rng(list(CASES).index(case)))
    got, expected = _both(ref, cur)
    # far from zero: the per-interval sums carry ~1e-16 of 1e6 each (module docstring)
    _assert_same(got, expected, rel=1e-7 if case == "far from zero" else 1e-9)


def test_the_batch_value_in_the_last_interval_counts(monkeypatch):
    """The batch's two largest values alone in the reference's last interval, none at or above
    the reference's maximum: that interval's closed form must include them."""
    monkeypatch.setattr(drift_grid, "grid_stride", lambda n: 1)  # every reference value is a grid value
    rng = np.random.default_rng(12)
    ref, cur = np.r_[rng.normal(size=100_000), 60.0, 100.0], np.r_[rng.normal(size=250_000), 70.0, 80.0]
    got, expected = _both(ref, cur)
    _assert_same(got, expected)


def test_grid_statistic_is_scipys_and_distance_too():
    rng = np.random.default_rng(11)
    ref, cur = rng.normal(size=70_000), rng.standard_t(5, size=65_000)
    got, _ = _both(ref, cur)
    assert got[0] == scipy.stats.ks_2samp(ref, cur).statistic
    assert got[1] == pytest.approx(scipy.stats.wasserstein_distance(ref, cur), rel=1e-9)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n1=st.integers(2, 400), n2=st.integers(1, 400), decimals=st.sampled_from([None, 0, 1]),
       shift=st.sampled_from([0.0, 0.3, 3.0]), scale=st.sampled_from([1.0, 0.1, 5.0]),
       stride=st.sampled_from([1, 2, 3, 7, 40]), outliers=st.sampled_from(["none", "reference", "current", "both"]),
       seed=st.integers(0, 2**32 - 1))
def test_grid_on_small_samples_matches_the_merge(n1, n2, decimals, shift, scale, stride, outliers, seed):
    """With the size floor lowered and any stride, every corner a small sample reaches (a grid of one
    interval, intervals holding only the batch, ties at grid values, far outliers on either side)
    must give the merge's numbers."""
    rng = np.random.default_rng(seed)
    ref, cur = rng.normal(size=n1), rng.normal(shift, scale, n2)
    if decimals is not None:
        ref, cur = np.round(ref, decimals), np.round(cur, decimals)
    if outliers in ("reference", "both"):
        ref = np.r_[ref, -50.0, 60.0, 100.0]
    if outliers in ("current", "both"):
        cur = np.r_[cur, -70.0, 70.0, 80.0]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(drift_grid, "GRID_MIN_VALUES", 2)
        patch.setattr(drift_grid, "grid_stride", lambda n: stride)
        got, expected = _both(ref, cur)
    _assert_same(got, expected)


def test_small_references_get_no_grid_and_overflowing_ones_fall_back_to_the_merge():
    assert reference_grid(np.sort(np.random.default_rng(0).normal(size=GRID_MIN_VALUES - 1))) is None
    assert reference_grid(np.sort(np.r_[np.full(GRID_MIN_VALUES, -1e308), 1e308])) is None
    ref = np.sort(np.random.default_rng(1).normal(size=GRID_MIN_VALUES))
    grid = reference_grid(ref)
    cur = np.array([-1e308, 0.0, 1e308])
    with np.errstate(over="ignore", invalid="ignore"):
        expected = ks_and_wasserstein(ref, cur)
    got = ks_and_wasserstein_grid(ref, grid, cur)
    assert got[0] == expected[0] and (got[1] == expected[1] or (np.isnan(got[1]) and np.isnan(expected[1])))


def test_grid_round_trips_through_its_array():
    grid = reference_grid(np.sort(np.random.default_rng(2).normal(size=GRID_MIN_VALUES * 2)))
    back = ReferenceGrid.from_array(grid.to_array())
    for name in ("values", "at_or_below", "below", "offsets"):
        assert np.array_equal(getattr(back, name), getattr(grid, name))
        assert getattr(back, name).dtype == getattr(grid, name).dtype


@pytest.mark.parametrize("bounds", [[0, 3, 3, 7, 10], [0, 0, 10], [2, 5, 9], [0, 10, 10], [4, 4, 4]])
def test_segment_sums_are_plain_slice_sums(bounds):
    values = np.arange(10, dtype=np.float64) ** 2
    expected = [values[a:b].sum() for a, b in zip(bounds[:-1], bounds[1:])]
    assert segment_sums(values, np.array(bounds)).tolist() == expected
