"""A batch larger than its memory share, through the real ingest job (in-process).

With `storage.memory_limit_mb` leaving room for a few hundred rows only, raw_data streams each
landed file in many chunks, validated_data checks it chunk by chunk and drift_report compares it
one column at a time: what is stored, quarantined and reported is exactly what one chunk gives.
The per-stage memory itself is measured at 10M rows by bench/large_batch.py.
"""

from __future__ import annotations

import json

import duckdb
import pandas as pd
import pytest

from retrain_assets.core import batch_reader, drift_warehouse, memory_budget, metrics_store, storage
from retrain_assets.core.synthetic_batches import make_batch
from retrain_assets_tests.conftest import (
    Retrainer, Workspace, clean_batch, definitions_for, failure_text, ingest, write_config,
)

BATCHES = {
    "b0001": dict(scenario="clean"),
    "b0002": dict(scenario="corrupt", corrupt_fraction=0.03),
    "b0003": dict(scenario="covariate_drift"),
}
COMPARED = ["drift_detected", "data_drift", "drift_score", "drifted_features", "domain_auc", "reference_batches",
            "features_json"]


def _deploy(tmp_path, name: str, instance) -> dict:
    root = tmp_path / name
    root.mkdir()
    ws = Workspace(root=root, config_path=write_config(root))
    defs = definitions_for(ws.config_path)
    for i, (batch_id, kwargs) in enumerate(BATCHES.items(), start=1):
        ws.land(batch_id, make_batch(1_500, seed=40 + i, batch_index=i, **kwargs))
        result = ingest(defs, instance, batch_id)
        assert result.success, batch_id
    with duckdb.connect(str(ws.settings.duckdb_path), read_only=True) as conn:
        raw = {b: storage.read_raw_batch(conn, b) for b in BATCHES}
        validated = storage.read_validated(conn, list(BATCHES))
        quarantine = storage.read_quarantine(conn).drop(columns=["quarantined_at"])
        drift = metrics_store.read_drift_reports(conn)[["batch_id", *COMPARED]]
    notes = {
        b: str(result.asset_materializations_for_node("drift_report")[0].metadata.get("notes", ""))
        for b in [list(BATCHES)[-1]]
    }
    return dict(raw=raw, validated=validated, quarantine=quarantine, drift=drift, notes=notes)


@pytest.mark.slow  # six ingests (~35 s)
def test_a_batch_streamed_in_chunks_and_checked_column_by_column_gives_what_one_chunk_gives(tmp_path, monkeypatch):
    import dagster as dg

    with dg.instance_for_test() as instance:
        whole = _deploy(tmp_path, "whole", instance)

    chunks: list[int] = []
    csv_chunks = batch_reader.LandedFile.csv_chunks

    def counted(self, chunk_rows):
        for chunk in csv_chunks(self, chunk_rows):
            chunks.append(len(chunk))
            yield chunk

    monkeypatch.setattr(batch_reader.LandedFile, "csv_chunks", counted)
    monkeypatch.setattr(memory_budget, "MIN_CHUNK_ROWS", 100)
    monkeypatch.setattr(memory_budget, "MAX_CHUNK_ROWS", 400)  # what a tight limit gives a wide batch
    in_warehouse = drift_warehouse.drift_in_warehouse  # as for a batch whose rows would not fit the limit

    def column_by_column(*args, **kwargs):
        return in_warehouse(*args, **{**kwargs, "read_whole": False})

    monkeypatch.setattr(drift_warehouse, "drift_in_warehouse", column_by_column)
    with dg.instance_for_test() as instance:
        small = _deploy(tmp_path, "small", instance)

    assert max(chunks) == 400 and len(chunks) == 3 * 4  # every file of 1,500 rows in four chunks
    for batch_id in BATCHES:
        pd.testing.assert_frame_equal(small["raw"][batch_id], whole["raw"][batch_id])
    pd.testing.assert_frame_equal(small["validated"], whole["validated"])
    assert len(whole["quarantine"]) > 0
    pd.testing.assert_frame_equal(small["quarantine"], whole["quarantine"])
    pd.testing.assert_frame_equal(small["drift"], whole["drift"])
    assert bool(whole["drift"].set_index("batch_id").loc["b0003", "data_drift"])
    assert "one column at a time" in small["notes"]["b0003"]
    assert "one column at a time" not in whole["notes"]["b0003"]



@pytest.mark.slow  # a retrain and five ingests (~40 s)
def test_a_champion_trained_on_a_sample_is_watched_on_the_holdout_rows_it_was_judged_on(tmp_path, instance, monkeypatch):
    """training.max_rows below the window's labelled rows: the candidate says it sampled, and drift_report
    and production_metrics prime their detectors with the champion's sampled holdout, never every row, and
    production_metrics measures the champion on a seeded sample of the batch."""
    from retrain_assets.assets import drift as drift_assets, performance as performance_assets

    r = Retrainer(tmp_path / "ws", instance, **{"training.max_rows": 300})
    for index in range(1, 4):
        r.land(index)
    result = r.retrain()
    assert result.success, failure_text(result)
    candidate = result.asset_materializations_for_node("candidate_model")[0].metadata
    assert "a seeded sample of 300 of" in candidate["sampling"].value
    champion_holdout = r.tags(r.alias("champion"))

    seen: dict[str, pd.DataFrame] = {}
    for module, name in ((drift_assets, "monitor_batch"), (performance_assets, "measure_batch")):
        original = getattr(module, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            seen[_name] = kwargs["holdout"]
            if _name == "measure_batch":
                seen["batch"] = args[2]
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)
    r.ws.land("batch_0004", clean_batch(4, 800))
    ingested = ingest(r.defs, r.instance, "batch_0004")
    assert ingested.success, failure_text(ingested)
    measured = ingested.asset_materializations_for_node("production_metrics")[0].metadata
    assert measured["rows_measured"].value == "a seeded sample of 300 of the batch's 800 rows (training.max_rows)"
    assert len(seen["batch"]) == 300
    holdout_batches = json.loads(champion_holdout["retrain.holdout_batches"])
    with duckdb.connect(str(r.settings.duckdb_path), read_only=True) as conn:
        labelled = sum(len(storage.read_validated(conn, [b])) for b in holdout_batches)
        judged = storage.read_validated_sample(conn, holdout_batches, target=r.settings.dataset.target,
                                               max_rows=300, seed=r.settings.model.seed).rows
    assert labelled > 300
    for name in ("monitor_batch", "measure_batch"):
        pd.testing.assert_frame_equal(seen[name], judged)


def test_a_batch_beyond_the_cap_is_read_as_a_seeded_sample_labelled_or_not(tmp_path):
    from retrain_assets.core.columns import BATCH_COLUMN, ROW_COLUMN

    frame = pd.DataFrame({BATCH_COLUMN: "b", ROW_COLUMN: range(1, 1001), "x": range(1000), "y": [None] * 1000})  # noqa: F841 - read by name (DuckDB)
    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        conn.execute("CREATE TABLE validated AS SELECT * FROM frame")
        whole, total = storage.read_validated_capped(conn, "b", max_rows=1000, seed=0)
        assert total == 1000 and len(whole) == 1000
        first, total = storage.read_validated_capped(conn, "b", max_rows=250, seed=0)
        again, _ = storage.read_validated_capped(conn, "b", max_rows=250, seed=0)
        other, _ = storage.read_validated_capped(conn, "b", max_rows=250, seed=1)
    assert total == 1000 and len(first) == 250 and first[ROW_COLUMN].is_monotonic_increasing
    pd.testing.assert_frame_equal(first, again)
    assert set(first[ROW_COLUMN]) != set(other[ROW_COLUMN])
    assert first[ROW_COLUMN].min() < 200 and first[ROW_COLUMN].max() > 800  # spread over the batch, not a head
