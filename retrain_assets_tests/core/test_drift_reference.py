"""Tests for a drift reference prepared once and cached on disk.

A check against a prepared reference, fresh or read back from the cache, must give exactly the
result of the same check against the reference frame (every number of the feature table, the
domain classifier, the summary). The cache must refuse what it cannot trust: a flipped byte, a
truncated file, an edited manifest, an entry built for another key.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrain_assets.core.drift import DriftResult, detect_drift
from retrain_assets.core.drift_cache import KEEP, CacheEntryInvalid, NotCacheable, ReferenceCache, _digest
from retrain_assets.core.drift_grid import GRID_MIN_VALUES
from retrain_assets.core.drift_reference import prepare_reference, sample_frame
from retrain_assets.core.drift_settings import DriftSettings

pytestmark = pytest.mark.filterwarnings("error")

KEY = "ab" * 32
NUMERIC, CATEGORICAL = ["x", "gappy", "count", "wild"], ["plan", "city"]


def make_frame(rng: np.random.Generator, n: int, *, shift: float = 0.0, rho: float = 0.0,
               new_city: bool = False) -> pd.DataFrame:
    """Numbers with NaN, ±inf and ties, categories with None and (optionally) an unseen value."""
    x = rng.normal(shift, 1.0, n)
    wild = rng.standard_t(3, n)
    wild[rng.random(n) < 0.01] = np.inf
    cities = np.array(["Lyon", "Nice", "Pau", "Metz" if new_city else "Lyon"], dtype=object)
    frame = pd.DataFrame({
        "x": x,
        "gappy": np.where(rng.random(n) < 0.2, np.nan, rho * x + rng.normal(size=n)),
        "count": rng.poisson(3.0, n).astype(np.int64),
        "wild": wild,
        "plan": np.array(["basic", "plus", "pro"], dtype=object)[rng.choice(3, n, p=[0.5, 0.3, 0.2])],
        "city": cities[rng.integers(0, 4, n)],
    })
    frame.loc[rng.random(n) < 0.05, "plan"] = None
    return frame


def assert_same(got: DriftResult, expected: DriftResult) -> None:
    pd.testing.assert_frame_equal(got.features, expected.features, check_exact=True)
    assert got.multivariate == expected.multivariate
    assert (got.summary, got.drifted_features, got.score, got.drift_detected) == (
        expected.summary, expected.drifted_features, expected.score, expected.drift_detected)
    assert (got.n_reference, got.n_current) == (expected.n_reference, expected.n_current)


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    """A reference large enough for the search grid, and batches of several sizes and shifts."""
    rng = np.random.default_rng(5)
    return {
        "reference": make_frame(rng, GRID_MIN_VALUES + 10_000),
        "same": make_frame(rng, 40_000),
        "shifted": make_frame(rng, 70_000, shift=0.3, new_city=True),
        "joint": make_frame(rng, 30_000, rho=0.9),
        "small": make_frame(rng, 300, shift=1.0),
    }


@pytest.mark.parametrize("batch", ["same", "shifted", "joint", "small"])
def test_a_prepared_reference_gives_the_frames_result(frames, batch):
    reference, current = frames["reference"], frames[batch]
    expected = detect_drift(reference, current, numeric=NUMERIC, categorical=CATEGORICAL)
    prepared = prepare_reference(reference, NUMERIC, CATEGORICAL, DriftSettings())
    assert_same(detect_drift(prepared, current), expected)
    assert_same(detect_drift(prepared, current, numeric=NUMERIC, categorical=CATEGORICAL), expected)
    if batch == "shifted":
        assert {"x", "city"} <= set(expected.drifted_features)


@pytest.mark.parametrize("batch", ["same", "shifted", "joint", "small"])
def test_a_cached_reference_gives_the_frames_result_in_a_later_process(frames, tmp_path, batch):
    reference, current = frames["reference"], frames[batch]
    expected = detect_drift(reference, current, numeric=NUMERIC, categorical=CATEGORICAL)
    ReferenceCache(tmp_path).save(prepare_reference(reference, NUMERIC, CATEGORICAL, DriftSettings()), KEY)
    loaded = ReferenceCache(tmp_path).load(KEY)  # a new cache object reads only the disk
    assert loaded is not None and loaded.key == KEY
    assert_same(detect_drift(loaded, current), expected)


def test_only_listed_columns_are_compared_and_unprepared_ones_are_refused(frames):
    prepared = prepare_reference(frames["reference"], NUMERIC, CATEGORICAL)
    result = detect_drift(prepared, frames["same"], numeric=["x"], categorical=["plan"])
    assert list(result.features["feature"]) == ["x", "plan"]
    with pytest.raises(ValueError, match=r"columns \['zz'\] were not prepared as numeric"):
        detect_drift(prepared, frames["same"], numeric=["zz"])
    with pytest.raises(ValueError, match=r"columns \['plan'\] were not prepared as numeric"):
        detect_drift(prepared, frames["same"], numeric=["plan"])
    with pytest.raises(ValueError, match=r"not in current"):
        detect_drift(prepared, frames["same"].drop(columns=["x"]))


def test_a_reference_prepared_with_another_seed_or_sample_size_is_refused(frames):
    prepared = prepare_reference(frames["reference"], NUMERIC, CATEGORICAL, DriftSettings(seed=1))
    with pytest.raises(ValueError, match="prepared with seed=1, domain_max_rows=20000.*prepare it again"):
        detect_drift(prepared, frames["same"])
    with pytest.raises(ValueError, match="domain_max_rows=500"):
        detect_drift(prepared, frames["same"], seed=1, domain_max_rows=500)
    assert detect_drift(prepared, frames["same"], seed=1).multivariate["rows_used"] == 40_000


def test_the_domain_sample_is_a_seeded_prefix_that_does_not_depend_on_the_batch(frames):
    """The k reference rows a check needs are the first k drawn, whatever k the batch asks for."""
    reference = frames["reference"]
    prepared = prepare_reference(reference, NUMERIC, CATEGORICAL, DriftSettings(domain_max_rows=1000))
    again = prepare_reference(reference, NUMERIC, CATEGORICAL, DriftSettings(domain_max_rows=1000))
    assert np.array_equal(prepared.sample.positions, again.sample.positions)
    assert len(set(prepared.sample.positions)) == 1000
    for k in (300, 1000):
        rows = np.sort(prepared.sample.positions[:k])
        expected = sample_frame(reference.iloc[rows], NUMERIC, CATEGORICAL)
        pd.testing.assert_frame_equal(prepared.sample.first(k), expected)


def _entry(tmp_path: Path, frames) -> Path:
    ReferenceCache(tmp_path).save(prepare_reference(frames["reference"], NUMERIC, CATEGORICAL), KEY)
    return tmp_path / KEY


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flip a sorted value", "flip a grid value", "truncate", "remove a file",
                                    "flip a sampled value"])
def test_a_damaged_array_file_is_refused_when_read(frames, tmp_path, damage):
    entry = _entry(tmp_path, frames)
    target = {"flip a sorted value": "numeric_0.npy", "flip a grid value": "grid_0.npy", "truncate": "numeric_1.npy",
              "remove a file": "numeric_2.npy", "flip a sampled value": "sample_numeric.npy"}[damage]
    path = entry / target
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-8])
    elif damage == "remove a file":
        path.unlink()
    else:
        _flip_last_byte(path)
    with pytest.raises(CacheEntryInvalid):
        loaded = ReferenceCache(tmp_path).load(KEY)
        for column in loaded.numeric:  # array files are checked when their column is read
            loaded.numeric[column]


@pytest.mark.parametrize("damage", ["edit a count", "edit a summary", "not json", "other key", "no manifest"])
def test_a_damaged_or_foreign_manifest_is_refused(frames, tmp_path, damage):
    entry = _entry(tmp_path, frames)
    manifest = entry / "manifest.json"
    data = json.loads(manifest.read_text())
    if damage == "edit a count":
        data["body"]["categorical"]["plan"]["counts"][0][1] += 1
    elif damage == "edit a summary":
        data["body"]["numeric"]["x"]["mean"] += 1e-9
    elif damage == "other key":
        data["body"]["key"] = "cd" * 32
        data["checksum"] = _digest(data["body"])  # a well-formed manifest, for the wrong reference
    if damage == "not json":
        manifest.write_text("{")
    elif damage == "no manifest":
        manifest.unlink()
    else:
        manifest.write_text(json.dumps(data))
    with pytest.raises(CacheEntryInvalid):
        ReferenceCache(tmp_path).load(KEY)


def test_discard_removes_the_entry_and_a_missing_entry_is_none(frames, tmp_path):
    _entry(tmp_path, frames)
    cache = ReferenceCache(tmp_path)
    cache.discard(KEY)
    assert cache.load(KEY) is None and list(tmp_path.iterdir()) == []


def test_only_the_most_recently_used_entries_are_kept(frames, tmp_path):
    prepared = prepare_reference(frames["small"], NUMERIC, CATEGORICAL)
    cache = ReferenceCache(tmp_path)
    keys = [f"{i:064x}" for i in range(KEEP + 2)]
    for key in keys:
        cache.save(prepared, key)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keys[-KEEP:])
    (tmp_path / "notes.txt").write_text("mine")  # a file that is not an entry is never touched
    (tmp_path / "mine").mkdir()
    cache.save(prepared, "f" * 64)
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "mine").is_dir()


def test_dates_and_timestamps_are_cached_other_category_types_are_not(tmp_path):
    rng = np.random.default_rng(3)
    days = pd.to_datetime("2026-01-01") + pd.to_timedelta(rng.integers(0, 5, 500), unit="D")
    frame = pd.DataFrame({"x": rng.normal(size=500), "day": days})
    prepared = prepare_reference(frame, ["x"], ["day"])
    expected = detect_drift(frame, frame.iloc[:200], numeric=["x"], categorical=["day"])
    assert_same(detect_drift(ReferenceCache(tmp_path).save(prepared, KEY), frame.iloc[:200]), expected)

    odd = frame.assign(day=[frozenset([i % 3]) for i in range(500)])
    with pytest.raises(NotCacheable, match="frozenset"):
        ReferenceCache(tmp_path).save(prepare_reference(odd, ["x"], ["day"]), "cd" * 32)
    assert not (tmp_path / ("cd" * 32)).exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_keys_must_be_sha256_hex(tmp_path):
    with pytest.raises(ValueError, match="64 lower-case hex"):
        ReferenceCache(tmp_path).load("../escape")
