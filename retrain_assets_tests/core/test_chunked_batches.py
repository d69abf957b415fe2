"""A batch stored and validated chunk by chunk gives exactly what it gave read whole into one frame.

raw_data stores a landed file without holding it whole (``ingestion.ingest_batch``) and validated_data
judges the stored batch chunk by chunk (``validation_store.validate_stored_batch``). Each test runs a
file both ways — the whole-frame path (``read_batch``, ``validate_batch``, ``write_validation``) and
the chunked one with small chunks, so that ids repeat across chunks, a NaN flood or a constant
column spans them and a broken schema is only known after the last — and compares what a person
sees: the stored rows, the quarantine with its reasons, the outcome and every rule's outcome.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from retrain_assets.constants import DEMO_CONFIG_PATH
from retrain_assets.core import ingestion, storage, validation_store
from retrain_assets.core.memory_budget import MIN_CHUNK_ROWS, MAX_CHUNK_ROWS, MIN_LIMIT_MB, MemoryBudget
from retrain_assets.core.synthetic import TARGET
from retrain_assets.core.synthetic_batches import make_batch, write_batch
from retrain_assets.core.validation import validate_batch
from retrain_assets.core.validation_rules import Limits
from retrain_assets.settings import SettingsError, load_settings, parse_settings
from retrain_assets_tests import bad_input_corpus

NOW = datetime(2024, 6, 1, tzinfo=timezone.utc)
LIMITS = Limits(now=NOW)
MEMORY = 2048


@pytest.fixture(scope="module")
def cfg():
    return load_settings(DEMO_CONFIG_PATH)


@pytest.fixture(scope="module")
def schema(cfg, tmp_path_factory):
    """The schema the demo config infers from a clean reference batch."""
    reference = ingestion.read_batch(write_batch(make_batch(300, seed=100, batch_index=1),
                                                 tmp_path_factory.mktemp("reference") / "reference.csv"))
    return cfg.schema_for(None, reference, "reference")


def _record(path: Path, batch_id: str = "b") -> storage.IngestionRecord:
    return storage.IngestionRecord(batch_id, path.name, str(path), path.suffix.lstrip("."), "f", 1, 0, [], NOW, NOW)


def _outcome(call):
    """``("ok", value)`` or ``("refused", message)``."""
    try:
        return "ok", call()
    except ingestion.BatchReadError as error:
        return "refused", str(error)


def _whole(path: Path, schema, batch_id: str = "b"):
    """The whole-frame path, as raw_data and validated_data ran before they streamed: conn, report."""
    conn = duckdb.connect()
    frame = ingestion.read_batch(path, check_name=False)
    record = replace(_record(path, batch_id), rows=len(frame), columns=list(frame.columns[1:]))
    storage.write_raw_batch(conn, record, frame)
    report = validate_batch(storage.read_raw_batch(conn, batch_id), schema, batch_id=batch_id, limits=LIMITS)
    storage.write_validation(conn, report, fingerprint="f", now=NOW)
    return conn, report


def _chunked(path: Path, schema, chunk_rows: int, batch_id: str = "b"):
    conn = duckdb.connect()
    ingestion.ingest_batch(conn, path, _record(path, batch_id), memory_limit_mb=MEMORY, chunk_rows=chunk_rows,
                           check_name=False)
    report, published = validation_store.validate_stored_batch(
        conn, schema, batch_id=batch_id, fingerprint="f", limits=LIMITS, memory_limit_mb=MEMORY,
        chunk_rows=chunk_rows, now=NOW)
    return conn, report, published


def _seen(report) -> dict:
    """What a person sees of a report (in the UI metadata, the check, the logs)."""
    return dict(
        rows=report.rows, labelled=report.labelled, passed=report.passed, summary=report.summary,
        problems=report.schema_problems, notes=report.notes, valid=report.valid_rows,
        quarantined=report.quarantined_rows,
        outcomes=[(o.rule, o.column, o.level, o.success, o.unexpected_count, o.description, o.examples)
                  for o in report.outcomes],
    )


def assert_same_validation(path: Path, schema, chunk_rows: int) -> None:
    whole, expected = _whole(path, schema)
    chunked, report, published = _chunked(path, schema, chunk_rows)
    assert _seen(report) == _seen(expected)
    assert published == (len(expected.valid) if expected.passed else 0)
    quarantine = [storage.read_quarantine(c, "b").drop(columns=["quarantined_at"]) for c in (whole, chunked)]
    pd.testing.assert_frame_equal(*quarantine)
    valid = [storage.read_validated(c, ["b"]) for c in (whole, chunked)]
    assert len(valid[0]) == len(valid[1])
    if len(valid[0]):
        pd.testing.assert_frame_equal(*valid)
    status = [storage.batch_statuses(c).drop(columns=["file_name"]) for c in (whole, chunked)]
    pd.testing.assert_frame_equal(*status)


def _corpus_files(tmp: Path) -> list[tuple[str, Path]]:
    files = []
    for kind in bad_input_corpus.kinds():
        landing = tmp / kind.slug
        landing.mkdir()
        try:
            kind.make(landing, "b" + kind.slug.replace("-", "_"))
        except OSError:  # kinds that land beside earlier batches of a workspace
            continue
        files += [(kind.slug, p) for p in sorted(landing.iterdir())
                  if p.is_file() and not p.is_symlink() and p.suffix.lower() in (".csv", ".parquet")]
    return files


CORPUS = [slug for slug, _ in _corpus_files(Path(__import__("tempfile").mkdtemp(prefix="corpus-names-")))]


@pytest.mark.parametrize("slug", CORPUS)
def test_every_corpus_file_is_stored_and_validated_in_chunks_as_it_was_whole(slug, schema, tmp_path):
    """Each bad (and good) file of the corpus: the same refusal, or the same rows, quarantine and outcome."""
    path = dict(_corpus_files(tmp_path))[slug]
    whole = _outcome(lambda: ingestion.read_batch(path, check_name=False))
    conn = duckdb.connect()
    chunked = _outcome(lambda: ingestion.ingest_batch(conn, path, _record(path), memory_limit_mb=MEMORY, chunk_rows=7,
                                                      check_name=False))
    if slug == "cr-only":  # read whole, Python's csv module once refused bare \r; read as a file it reads them
        assert chunked[0] == "ok"
        return
    assert chunked[0] == whole[0], (whole, chunked)
    if whole[0] == "refused":
        assert chunked[1] == whole[1] or "Parquet" in whole[1]  # pyarrow words the same fault twice
        assert not storage.table_exists(conn, path.stem, "raw") and storage.ingested_record(conn, "b") is None
        return
    stored = storage.read_raw_batch(conn, "b").astype(object)
    read = whole[1].astype(object)
    assert list(stored.columns) == list(read.columns)
    assert stored.where(stored.notna(), None).astype(str).equals(read.where(read.notna(), None).astype(str))
    assert_same_validation(path, schema, chunk_rows=90)


def _batch(tmp_path: Path, frame: pd.DataFrame, name: str = "b.csv") -> Path:
    path = tmp_path / name
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
        return path
    return write_batch(frame, path)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("chunk_rows", [9, 64, 100_000])
def test_corrupt_rows_are_quarantined_with_the_same_reasons_in_any_chunking(schema, tmp_path, chunk_rows, fmt):
    frame = make_batch(200, seed=3, batch_index=2, scenario="corrupt", corrupt_fraction=0.04)
    if fmt == "parquet":  # columns holding numbers and text alike are text in Parquet
        frame = frame.apply(lambda c: c.astype(str).where(c.notna(), None) if c.dtype == object else c)
    assert_same_validation(_batch(tmp_path, frame, f"b.{fmt}"), schema, chunk_rows)


def test_an_id_repeated_in_another_chunk_quarantines_every_copy(schema, tmp_path):
    frame = make_batch(200, seed=5, batch_index=2)
    frame.loc[[3, 150, 199], "customer_id"] = frame.loc[0, "customer_id"]
    path = _batch(tmp_path, frame)
    assert_same_validation(path, schema, chunk_rows=40)
    _, report, _ = _chunked(path, schema, chunk_rows=40)
    unique = next(o for o in report.outcomes if o.rule == "expect_column_values_to_be_unique")
    assert unique.unexpected_count == 4 and [r for r, _ in unique.examples] == [1, 4, 151, 200]


def test_a_column_of_the_wrong_kind_found_late_holds_back_every_row(schema, tmp_path):
    """A schema problem known only after the last chunk still quarantines every row, reason first."""
    frame = make_batch(120, seed=6, batch_index=2).astype(object)
    frame.loc[40:, "age"] = "unknown"
    frame.loc[5, "tenure_months"] = -4
    path = _batch(tmp_path, frame)
    assert_same_validation(path, schema, chunk_rows=16)
    conn, report, published = _chunked(path, schema, chunk_rows=16)
    quarantine = storage.read_quarantine(conn, "b")
    assert not report.passed and published == 0 and len(quarantine) == 120
    assert quarantine["reasons"].str.startswith("schema: column 'age' should hold numbers").all()
    assert quarantine.loc[quarantine["_row"] == 6, "failed_rules"].item() == "expect_column_values_to_be_between, schema"
    assert quarantine.loc[quarantine["_row"] == 50, "failed_rules"].item() == "schema, values_parse_as_numbers"
    assert storage.read_validated(conn, ["b"]).empty


def test_a_nan_flood_and_missing_labels_are_counted_over_the_whole_batch(schema, tmp_path):
    frame = make_batch(300, seed=8, batch_index=2).astype(object)
    frame.loc[::2, "monthly_charges"] = None  # half missing: exactly at the 50% limit, over it with one more
    frame.loc[1, "monthly_charges"] = None
    frame.loc[250:, TARGET] = None
    path = _batch(tmp_path, frame)
    assert_same_validation(path, schema, chunk_rows=70)
    _, report, _ = _chunked(path, schema, chunk_rows=70)
    assert any("NaN flood" in o.description and not o.success for o in report.outcomes)
    assert any("50 of 300 rows have no 'churned' yet" in n for n in report.notes)


def test_a_column_constant_in_every_chunk_but_not_the_same_value_is_not_constant(schema, tmp_path):
    frame = make_batch(100, seed=9, batch_index=2)
    frame["region"] = ["north"] * 50 + ["south"] * 50
    path = _batch(tmp_path, frame)
    assert_same_validation(path, schema, chunk_rows=50)
    frame["region"] = "north"
    constant = _batch(tmp_path, frame, "constant.csv")
    assert_same_validation(constant, schema, chunk_rows=50)
    _, report, _ = _chunked(constant, schema, chunk_rows=50)
    assert any("'region' is constant: every one of its 100 values" in p for p in report.schema_problems)


def test_an_unlabelled_batch_with_an_empty_target_column_is_taken_in(schema, tmp_path):
    frame = make_batch(90, seed=10, batch_index=2).astype(object)
    frame[TARGET] = None
    path = _batch(tmp_path, frame)
    assert_same_validation(path, schema, chunk_rows=20)


def test_a_file_that_breaks_late_stores_nothing(tmp_path):
    """A short row near the end of a CSV read in chunks: the chunks stored before it are undone."""
    text = make_batch(300, seed=11, batch_index=2).to_csv(index=False).splitlines()
    text[290] = ",".join(text[290].split(",")[:3])
    path = tmp_path / "late.csv"
    path.write_text("\n".join(text) + "\n")
    conn = duckdb.connect()
    with pytest.raises(ingestion.BatchReadError, match="line 291 has 3 field"):
        ingestion.ingest_batch(conn, path, _record(path), memory_limit_mb=MEMORY, chunk_rows=50, check_name=False)
    assert storage.ingested_record(conn, "b") is None
    assert not storage.table_exists(conn, "b", "raw")


def test_a_first_schema_from_a_sample_still_learns_every_class(cfg, tmp_path):
    """A batch larger than the sample: the schema is inferred from a seeded sample, its classes from every row."""
    frame = make_batch(3000, seed=12, batch_index=1)
    frame.loc[2990, "churned"] = 7  # a class the sample is very unlikely to hold
    path = _batch(tmp_path, frame)
    conn = duckdb.connect()
    ingestion.ingest_batch(conn, path, _record(path), memory_limit_mb=MEMORY, check_name=False)
    hintless = cfg.model_copy(update={"schema_hints": cfg.schema_hints.model_copy(update={"classes": None})})
    sampled, learns = validation_store.schema_for_batch(conn, hintless, None, "b", memory_limit_mb=MEMORY,
                                                        sample_rows=500)
    assert sampled.classes == (0, 1, 7) and not learns
    assert "a seeded sample of 500 of its 3,000 rows" in sampled.source
    again, _ = validation_store.schema_for_batch(conn, hintless, None, "b", memory_limit_mb=MEMORY, sample_rows=500)
    assert again == sampled  # the same sample every time
    whole, _ = validation_store.schema_for_batch(conn, hintless, None, "b", memory_limit_mb=MEMORY)
    assert whole == hintless.schema_for(None, storage.read_raw_batch(conn, "b"), "b")


def test_the_memory_limit_sets_the_chunk_size_and_duckdbs_own_limit():
    small, large = MemoryBudget(MIN_LIMIT_MB), MemoryBudget(8192)
    assert MIN_CHUNK_ROWS <= small.chunk_rows(20) < large.chunk_rows(20) <= MAX_CHUNK_ROWS
    assert large.chunk_rows(200) < large.chunk_rows(20)
    conn = duckdb.connect()
    large.apply(conn)
    limit = conn.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    assert limit.endswith("GiB") and abs(float(limit.split()[0]) * 1024 - large.duckdb_mb) < 0.1 * 1024  # shown rounded down to 0.1 GiB


def test_a_memory_limit_too_small_to_keep_is_refused_naming_the_key(tmp_path):
    raw = {"dataset": {"name": "d", "landing_dir": "in", "target": "y", "task": "regression"},
           "storage": {"root": "state", "memory_limit_mb": 100}}
    with pytest.raises(SettingsError, match=r"storage\.memory_limit_mb: .*1024"):
        parse_settings(raw, tmp_path / "config.yaml")


def test_a_stored_report_cannot_be_written_again(schema, tmp_path):
    path = _batch(tmp_path, make_batch(50, seed=13, batch_index=2))
    conn, report, _ = _chunked(path, schema, chunk_rows=20)
    with pytest.raises(ValueError, match="stored as it was judged"):
        storage.write_validation(conn, report, fingerprint="f")
    assert report.valid_rows == 50 and len(report.valid) == validation_store.PREVIEW_ROWS
    assert np.array_equal(report.valid["_row"], np.arange(1, 11))
    assert replace(report, stored_counts=None).valid_rows == 10


# --- training on a window larger than training.max_rows ------------------------------------------


@pytest.fixture(scope="module")
def warehouse(schema, tmp_path_factory):
    """Two passed batches: b1 with 300 labelled rows, b2 with 100 labelled and 20 unlabelled rows."""
    conn = duckdb.connect()
    folder = tmp_path_factory.mktemp("window")
    for batch_id, frame in (("b1", make_batch(300, seed=21, batch_index=1)),
                            ("b2", make_batch(120, seed=22, batch_index=2).astype({TARGET: object}))):
        if batch_id == "b2":
            frame.loc[100:, TARGET] = None
        path = _batch(folder, frame, f"{batch_id}.csv")
        report = validate_batch(ingestion.read_batch(path), schema, batch_id=batch_id, limits=LIMITS)
        storage.write_validation(conn, report, fingerprint=batch_id, now=NOW)
    return conn


def test_a_window_within_max_rows_is_read_whole_as_before(warehouse):
    for cap in (None, 400, 10_000):
        got = storage.read_validated_sample(warehouse, ["b1", "b2"], target=TARGET, max_rows=cap, seed=0)
        assert not got.sampled and got.summary is None
        pd.testing.assert_frame_equal(got.rows, storage.read_validated(warehouse, ["b1", "b2"]))


def test_a_window_beyond_max_rows_is_a_seeded_sample_with_each_batch_in_proportion(warehouse):
    got = storage.read_validated_sample(warehouse, ["b1", "b2"], target=TARGET, max_rows=101, seed=0)
    assert got.sampled and got.labelled == 400 and len(got.rows) == 101
    assert got.rows["_batch_id"].value_counts().to_dict() == {"b1": 76, "b2": 25}  # 75.75 and 25.25
    assert got.rows[TARGET].notna().all()
    assert got.rows.equals(got.rows.sort_values(["_batch_id", "_row"], ignore_index=True))
    again = storage.read_validated_sample(warehouse, ["b1", "b2"], target=TARGET, max_rows=101, seed=0)
    other = storage.read_validated_sample(warehouse, ["b1", "b2"], target=TARGET, max_rows=101, seed=1)
    assert again.rows.equals(got.rows) and not other.rows["_row"].equals(got.rows["_row"])
    assert "101 of 400 labelled rows" in got.summary


def test_a_retrain_reads_its_window_through_the_cap(warehouse, cfg):
    from retrain_assets.core.retrain import training_data

    capped = cfg.model_copy(update={"training": cfg.training.model_copy(update={"max_rows": 50})})
    data = training_data(warehouse, capped, trigger="manual", has_champion=True)
    assert data.window.train_batches == ["b1"] and data.window.holdout_batches == ["b2"]
    assert len(data.train) == 50 and len(data.holdout) == 50
    assert data.sampling.startswith("training: a seeded sample of 50 of 300 labelled rows")
    whole = training_data(warehouse, cfg, trigger="manual", has_champion=True)
    assert whole.sampling is None and len(whole.train) == 300 and len(whole.holdout) == 120


def test_a_parquet_column_named_like_duckdbs_row_number_is_stored_as_any_other(tmp_path):
    frame = pd.DataFrame({"file_row_number": [9, 8, 7], "v": ["a", None, "c"]})
    path = tmp_path / "b.parquet"
    frame.to_parquet(path, index=False)
    conn = duckdb.connect()
    record = ingestion.ingest_batch(conn, path, _record(path), memory_limit_mb=MEMORY, chunk_rows=2, check_name=False)
    assert record.rows == 3 and record.columns == ["file_row_number", "v"]
    pd.testing.assert_frame_equal(storage.read_raw_batch(conn, "b"), ingestion.read_batch(path, check_name=False),
                                  check_dtype=False)
