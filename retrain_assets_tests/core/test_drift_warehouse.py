"""Tests for the data drift of a batch in the warehouse: cached reference, bounded memory.

Read whole or one column at a time, with the reference prepared now or read from the cache, the
verdict must be exactly the one :func:`detect_drift` gives on the two frames. The cache must be
used again for the same reference, and never when the reference changed (a batch re-validated,
another set of batches) or its entry is damaged.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml

from retrain_assets.core import drift_warehouse, storage
from retrain_assets.core.drift import detect_drift
from retrain_assets.core.drift_settings import DriftSettings
from retrain_assets.core.drift_warehouse import CACHE_FOLDER, batch_drift, drift_in_warehouse, read_rows
from retrain_assets.core.monitoring import monitor_batch
from retrain_assets.core.schema import ColumnSpec, DatasetSchema
from retrain_assets.settings import parse_settings
from retrain_assets_tests.conftest import write_config
from retrain_assets_tests.core.test_drift_reference import assert_same

pytestmark = pytest.mark.filterwarnings("error")

NUMERIC, CATEGORICAL = ["x", "gappy", "count"], ["plan"]
WHEN = datetime(2026, 11, 2, tzinfo=timezone.utc)


def batch(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    """Validated rows as the warehouse holds them: ``_row`` with gaps (quarantined rows), NaN, NULL ints."""
    count = pd.array(rng.poisson(3.0, n), dtype="Int64")
    count[rng.random(n) < 0.1] = pd.NA
    frame = pd.DataFrame({
        "_row": np.arange(n, dtype=np.int64) * 2 + 1,
        "x": rng.normal(shift, 1.0, n),
        "gappy": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
        "count": count,
        "plan": np.array(["basic", "plus", "pro"], dtype=object)[rng.choice(3, n, p=[0.5, 0.3, 0.2])],
        "churned": rng.integers(0, 2, n),
    })
    frame.loc[rng.random(n) < 0.05, "plan"] = None
    return frame.sample(frac=1.0, random_state=1)  # stored out of row order


def store(conn: duckdb.DuckDBPyConnection, batch_id: str, frame: pd.DataFrame, when: datetime = WHEN) -> None:
    """Publish a batch as validation does: its rows in ``validated``, its outcome in ``batch_validation``."""
    storage.ensure_tables(conn)
    if storage.table_exists(conn, "validated"):
        conn.execute("DELETE FROM validated WHERE _batch_id = ?", [batch_id])
    conn.register("_incoming", frame.assign(_batch_id=batch_id))
    conn.execute("CREATE TABLE IF NOT EXISTS validated AS SELECT * FROM _incoming LIMIT 0")
    conn.execute("INSERT INTO validated BY NAME SELECT * FROM _incoming")
    conn.unregister("_incoming")
    conn.execute("DELETE FROM batch_validation WHERE batch_id = ?", [batch_id])
    conn.execute("INSERT INTO batch_validation VALUES (?, ?, TRUE, TRUE, ?, ?, 0, 0.0, 0.05, [], [], 'passed', ?, NULL)",
                 [batch_id, f"sha-{batch_id}", len(frame), len(frame), when])


@pytest.fixture
def warehouse(tmp_path: Path) -> tuple[duckdb.DuckDBPyConnection, Path]:
    rng = np.random.default_rng(9)
    conn = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    store(conn, "b1", batch(rng, 6000))
    store(conn, "b2", batch(rng, 4500))
    store(conn, "b3", batch(rng, 5000, shift=0.4))
    yield conn, tmp_path / "cache"
    conn.close()


def check(conn, cache: Path, *, reference_ids=("b1", "b2"), read_whole=None, settings=None, limit=2048):
    return drift_in_warehouse(conn, batch_id="b3", reference_ids=list(reference_ids), numeric=NUMERIC,
                              categorical=CATEGORICAL, settings=settings or DriftSettings(), cache_dir=cache,
                              memory_limit_mb=limit, read_whole=read_whole)


def expected(conn, reference_ids=("b1", "b2"), settings=None):
    reference, current = storage.read_validated(conn, list(reference_ids)), storage.read_validated(conn, ["b3"])
    return detect_drift(reference, current, numeric=NUMERIC, categorical=CATEGORICAL, settings=settings)


@pytest.fixture
def builds(monkeypatch) -> list[int]:
    """Counts how often a reference is prepared (not read from the cache)."""
    calls: list[int] = []
    real = drift_warehouse.build_reference

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(drift_warehouse, "build_reference", counting)
    return calls


@pytest.mark.parametrize("read_whole", [True, False])
def test_whole_or_column_by_column_cold_or_cached_the_verdict_is_detect_drifts(warehouse, builds, read_whole):
    conn, cache = warehouse
    truth = expected(conn)
    cold = check(conn, cache, read_whole=read_whole)
    warm = check(conn, cache, read_whole=read_whole)
    other_way = check(conn, cache, read_whole=not read_whole)
    for got in (cold, warm, other_way):
        assert_same(got.result, truth)
    assert len(builds) == 1, "the reference was prepared once, then read from the cache"
    assert "x" in truth.drifted_features
    assert cold.n_current == 5000 and cold.n_reference == 10_500 and cold.sampled == (not read_whole)


def test_the_cache_serves_a_later_connection(warehouse, builds, tmp_path):
    conn, cache = warehouse
    first = check(conn, cache)
    conn.close()
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as again:
        assert_same(check(again, cache).result, first.result)
    assert len(builds) == 1


@pytest.mark.parametrize("read_whole", [True, False])
def test_a_revalidated_reference_batch_is_never_served_from_the_old_entry(warehouse, builds, read_whole):
    conn, cache = warehouse
    before = check(conn, cache, read_whole=read_whole)
    store(conn, "b1", batch(np.random.default_rng(4), 6000, shift=0.4), when=WHEN + timedelta(hours=1))
    after = check(conn, cache, read_whole=read_whole)
    assert_same(after.result, expected(conn))
    shift = {r.feature: r.wasserstein for r in before.result.features.itertuples()}
    assert after.result.features.set_index("feature").loc["x", "wasserstein"] < shift["x"] - 0.1  # b1 moved too
    assert len(builds) == 2


def test_rows_changed_under_the_same_validation_record_still_change_the_key(warehouse, builds):
    conn, cache = warehouse
    check(conn, cache)
    conn.execute("DELETE FROM validated WHERE _batch_id = 'b2' AND _row < 100")
    assert_same(check(conn, cache).result, expected(conn))
    assert len(builds) == 2


def test_another_set_of_reference_batches_gets_its_own_entry(warehouse, builds):
    conn, cache = warehouse
    check(conn, cache)
    assert_same(check(conn, cache, reference_ids=["b1"]).result, expected(conn, ["b1"]))
    assert len(builds) == 2 and len(list(cache.iterdir())) == 2


def test_other_drift_settings_seed_get_their_own_entry(warehouse, builds):
    conn, cache = warehouse
    check(conn, cache)
    settings = DriftSettings(seed=3, domain_max_rows=2000)
    assert_same(check(conn, cache, settings=settings).result, expected(conn, settings=settings))
    assert len(builds) == 2


@pytest.mark.parametrize("read_whole", [True, False])
def test_a_damaged_entry_is_rebuilt_and_the_report_says_so(warehouse, builds, read_whole):
    conn, cache = warehouse
    check(conn, cache, read_whole=read_whole)
    [entry] = cache.iterdir()
    numbers = entry / "numeric_0.npy"
    data = bytearray(numbers.read_bytes())
    data[-3] ^= 0x10
    numbers.write_bytes(bytes(data))
    again = check(conn, cache, read_whole=read_whole)
    assert_same(again.result, expected(conn))
    assert len(builds) == 2
    assert any("was unusable" in n and "checksum" in n and "rebuilt" in n for n in again.notes), again.notes


def test_column_by_column_the_other_monitoring_reads_seeded_samples(warehouse):
    conn, cache = warehouse
    settings = DriftSettings(domain_max_rows=1000)
    # 766 MB leaves ~2 MB for data (base 400, working 300, DuckDB 64): samples of a few thousand rows per side
    first = check(conn, cache, read_whole=False, settings=settings, limit=766)
    second = check(conn, cache, read_whole=False, settings=settings, limit=766)
    assert first.sampled and 1000 <= len(first.current) < 5000 and 1000 <= len(first.reference) < 10_500
    pd.testing.assert_frame_equal(first.current, second.current)
    assert first.current["_row"].is_monotonic_increasing
    whole = storage.read_validated(conn, ["b3"]).set_index("_row")
    pd.testing.assert_frame_equal(first.current.set_index("_row"), whole.loc[first.current["_row"]], check_dtype=False)
    assert_same(first.result, expected(conn, settings=settings))


def test_too_little_memory_for_one_column_says_which_setting_to_raise(warehouse):
    conn, cache = warehouse
    with pytest.raises(ValueError, match=r"needs ~.* MB for one numeric column.*storage\.memory_limit_mb = 401.*"
                                         r"raise it to at least"):
        check(conn, cache, read_whole=False, limit=401)


def test_duckdbs_memory_limit_is_put_back(warehouse):
    conn, cache = warehouse
    before = conn.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    check(conn, cache, read_whole=False)
    assert conn.execute("SELECT current_setting('memory_limit')").fetchone()[0] == before


def test_read_rows_returns_the_rows_at_positions_in_batch_and_row_order(warehouse):
    conn, _ = warehouse
    whole = storage.read_validated(conn, ["b1", "b2"])
    positions = np.array([0, 5, 5999, 6000, 10_499])
    got = read_rows(conn, ["b2", "b1"], positions)
    pd.testing.assert_frame_equal(got, whole.iloc[positions].reset_index(drop=True), check_dtype=False)


def test_batch_drift_compares_the_schemas_feature_columns(warehouse, tmp_path):
    conn, _ = warehouse
    cfg = parse_settings(yaml.safe_load(write_config(tmp_path).read_text()), tmp_path / "config.yaml")
    schema = DatasetSchema(
        columns=(ColumnSpec("x", "numeric"), ColumnSpec("plan", "categorical"), ColumnSpec("gone", "numeric")),
        target="churned", task="classification")
    got = batch_drift(conn, cfg, schema, batch_id="b3", reference_ids=["b1", "b2"])
    assert list(got.result.features["feature"]) == ["x", "plan"]
    assert (cfg.storage.root / CACHE_FOLDER).is_dir()
    assert got.result.settings.alpha == cfg.drift.alpha


def test_monitor_batch_takes_the_warehouse_verdict_and_says_when_it_sampled(warehouse, tmp_path):
    conn, cache = warehouse
    cfg = parse_settings(yaml.safe_load(write_config(tmp_path).read_text()), tmp_path / "config.yaml")
    schema = DatasetSchema(columns=(ColumnSpec("x", "numeric"), ColumnSpec("plan", "categorical")), target="churned",
                           task="classification")
    checked = check(conn, cache, read_whole=False, settings=DriftSettings(domain_max_rows=1000), limit=766)
    report = monitor_batch(cfg, schema, batch_id="b3", current=checked.current, reference=checked.reference,
                           reference_ids=["b1", "b2"], champion=None, holdout=None, data=checked)
    assert report.data is checked.result
    assert any("the batch (5,000 rows) and its reference (10,500 rows) exceed" in n and
               f"seeded samples ({len(checked.current):,} and {len(checked.reference):,} rows)" in n
               for n in report.notes), report.notes


def test_a_batch_over_the_limit_is_checked_column_by_column_within_the_data_budget(tmp_path):
    """The memory share drift_report keeps to: at a limit whose data budget is smaller than the
    frames, the check takes the column-by-column path, and what Python allocates at its peak (cold:
    the reference prepared and cached in the same call; then warm, from the cache) stays within the
    budget the limit leaves for data (DuckDB's own memory is not traced: it has its own limit)."""
    import tracemalloc

    from retrain_assets.core.memory_budget import BASE_MB, WORKING_MB

    rng = np.random.default_rng(5)
    n = 1_500_000
    conn = duckdb.connect(str(tmp_path / "big.duckdb"))
    store(conn, "r", batch(rng, n))
    store(conn, "c", batch(rng, n, shift=0.3))
    limit = BASE_MB + WORKING_MB + 64 + 40  # DuckDB's least share (64 MB) and 40 MB for data
    budget = drift_warehouse.data_budget_bytes(limit)
    settings = DriftSettings(domain_max_rows=2000)
    row_bytes = drift_warehouse._row_bytes(drift_warehouse.table_columns(conn))
    rows = drift_warehouse.sample_rows(limit, row_bytes, settings)
    assert drift_warehouse.columnwise_bytes(n, n, rows, row_bytes) <= budget < 2 * n * row_bytes, \
        "the frames exceed the budget, one column does not"
    checked = []
    for _ in ("cold", "warm"):
        tracemalloc.start()
        try:
            got = drift_in_warehouse(conn, batch_id="c", reference_ids=["r"], numeric=NUMERIC, categorical=CATEGORICAL,
                                     settings=settings, cache_dir=tmp_path / "cache", memory_limit_mb=limit)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert got.sampled and len(got.current) == rows, "the batch was read column by column"
        assert peak <= budget, f"the drift check peaked at {peak / 2**20:.0f} MB, over its {budget / 2**20:.0f} MB"
        checked.append(got.result)
    assert_same(checked[1], checked[0])
    assert "x" in checked[0].drifted_features
    conn.close()
