"""Tests for landed batch files: reading, fingerprints, refusing and deciding what is new."""

from __future__ import annotations

import json
import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from retrain_assets.core.columns import ROW_COLUMN
from retrain_assets.core import ingestion, landing, paths, sniff
from retrain_assets.core.landing import LandingState, NewBatch, find_batch_file, scan_landing
from retrain_assets.core.rejected import list_rejections, reject_file, rejected_fingerprints
from retrain_assets.core.ingestion import BatchReadError, batch_id_of, fingerprint, is_ignored_name, name_problem, read_batch

CSV_TEXT = "customer_id,plan,age\n007,basic,41\n012,pro,\n"


def _put(folder: Path, name: str, data: bytes | str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def _scan(folder: Path, state: LandingState | None = None, **kwargs) -> landing.LandingPlan:
    kwargs.setdefault("settle_seconds", 0)
    return scan_landing(folder, state or LandingState(), now_ts=time.time(), **kwargs)


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


def test_csv_values_stay_text_with_1_based_row(tmp_path):
    frame = read_batch(_put(tmp_path, "b1.csv", CSV_TEXT))
    assert list(frame.columns) == [ROW_COLUMN, "customer_id", "plan", "age"]
    assert frame[ROW_COLUMN].tolist() == [1, 2]
    assert frame["customer_id"].tolist() == ["007", "012"]  # leading zeros kept
    assert frame["age"].tolist() == ["41", None]  # an empty cell is None, not NaN or ""
    assert all(isinstance(v, str) for v in frame["customer_id"])


@pytest.mark.parametrize("marker", ["", "NA", "nan", "NULL", "n/a"])
def test_csv_missing_markers_become_none(tmp_path, marker):
    frame = read_batch(_put(tmp_path, "b1.csv", f"a,b\n1,{marker}\n"))
    assert frame["b"].tolist() == [None]


def test_csv_quoted_fields_and_crlf(tmp_path):
    frame = read_batch(_put(tmp_path, "b1.csv", b'a,b\r\n"x, y",2\r\n'))
    assert frame.to_dict("records") == [{ROW_COLUMN: 1, "a": "x, y", "b": "2"}]


def test_csv_with_utf8_bom_is_accepted(tmp_path):
    frame = read_batch(_put(tmp_path, "b1.csv", ("\ufeff" + CSV_TEXT).encode("utf-8")))
    assert list(frame.columns) == [ROW_COLUMN, "customer_id", "plan", "age"]
    assert frame["customer_id"].tolist() == ["007", "012"]


def test_csv_other_encoding_and_delimiter(tmp_path):
    path = _put(tmp_path, "b1.csv", "city;n\ncafé;1\n".encode("latin-1"))
    frame = read_batch(path, encoding="latin-1", delimiter=";")
    assert frame["city"].tolist() == ["café"]


def test_parquet_keeps_its_types(tmp_path):
    source = pd.DataFrame(
        {
            "id": ["007", "012"],
            "n": [1, 2],
            "x": [1.5, float("nan")],
            "t": pd.to_datetime(["2024-01-01", "2024-01-02"]),
        }
    )
    path = tmp_path / "b1.parquet"
    source.to_parquet(path, index=False)
    frame = read_batch(path)
    assert frame[ROW_COLUMN].tolist() == [1, 2]
    assert frame["id"].tolist() == ["007", "012"]
    assert pd.api.types.is_integer_dtype(frame["n"])
    assert pd.api.types.is_float_dtype(frame["x"])
    assert pd.api.types.is_datetime64_any_dtype(frame["t"])


def _header_only_parquet(path: Path) -> None:
    pd.DataFrame({"a": pd.Series([], dtype="int64"), "b": pd.Series([], dtype="object")}).to_parquet(path)


def _blank_name_parquet(path: Path) -> None:
    pq.write_table(pa.Table.from_arrays([pa.array([1]), pa.array(["x"])], names=["a", ""]), path)


def _reserved_name_parquet(path: Path) -> None:
    pd.DataFrame({ROW_COLUMN: [1], "a": [2]}).to_parquet(path)


def _duplicate_name_parquet(path: Path) -> None:
    pq.write_table(pa.Table.from_arrays([pa.array([1]), pa.array(["x"])], names=["a", "a"]), path)


@pytest.mark.parametrize(
    "name, data, fragment",
    [
        pytest.param("b.csv", b"", "empty (0 bytes)", id="empty-csv"),
        pytest.param("b.parquet", b"", "empty (0 bytes)", id="empty-parquet"),
        pytest.param("b.csv", b"  \n\t\r\n  ", "only whitespace", id="whitespace"),
        pytest.param("b.csv", b"\xef\xbb\xbf\n", "only whitespace", id="bom-only"),
        pytest.param("b.csv", b"a,b,c\n", "no data rows", id="header-only"),
        pytest.param("b.csv", b"a,b,c", "no data rows", id="header-only-no-newline"),
        pytest.param("b.csv", "id,city\n1,Paris\n2,café\n".encode("latin-1"), "byte 0xe9", id="latin-1"),
        pytest.param("b.csv", b"a,b\n1,\x00\x00\x01\n", "NUL bytes (line 2)", id="nul-bytes"),
        pytest.param("b.csv", bytes(range(256)) * 4, "not valid utf-8", id="binary-garbage"),
        pytest.param("b.parquet", b"PAR1" + bytes(range(256)) * 3, "cut short (no Parquet footer", id="corrupt-parquet"),
        pytest.param("b.parquet", b"PAR1" + bytes(range(256)) * 3 + b"PAR1", "not a readable Parquet", id="bad-parquet"),
        pytest.param("b.parquet", CSV_TEXT.encode(), "holds CSV text, not Parquet: name it <batch_id>.csv",
                     id="csv-named-parquet"),
        pytest.param("b.csv", b"a,b\n1,2\n3,4,5\n", "line 3", id="ragged-row"),
        pytest.param("b.csv", b'a,b\n"unclosed,2\n3,4\n', "not a well-formed CSV", id="unclosed-quote"),
        pytest.param("b.csv", b"a,b,a\n1,2,3\n", "repeats column name(s) ['a']", id="duplicate-header"),
        pytest.param("b.csv", b"a,,c\n1,2,3\n", "position [2]", id="blank-header"),
        pytest.param("b.csv", b"a, ,c\n1,2,3\n", "position [2]", id="space-header"),
        pytest.param("b.csv", b"_row,a\n1,2\n", "reserved", id="reserved-row-column"),
        pytest.param("b.txt", CSV_TEXT.encode(), "extension '.txt'", id="txt"),
        pytest.param("b.xlsx", CSV_TEXT.encode(), "extension '.xlsx'", id="xlsx"),
        pytest.param("b.CSV", CSV_TEXT.encode(), "lower case (.csv)", id="upper-case-extension"),
        pytest.param("b", CSV_TEXT.encode(), "no extension", id="no-extension"),
        pytest.param("bad id!.csv", CSV_TEXT.encode(), "batch id 'bad id!'", id="bad-id-chars"),
        pytest.param("-dash.csv", CSV_TEXT.encode(), "must start with a letter or digit", id="bad-id-start"),
    ],
)
def test_bad_input_raises_batch_read_error_naming_the_file(tmp_path, name, data, fragment):
    path = _put(tmp_path, name, data)
    with pytest.raises(BatchReadError) as info:
        read_batch(path)
    message = str(info.value)
    assert repr(name) in message
    assert fragment in message, message


def test_non_utf8_message_says_where(tmp_path):
    path = _put(tmp_path, "b.csv", "id,city\n1,Paris\n2,café\n".encode("latin-1"))
    with pytest.raises(BatchReadError) as info:
        read_batch(path)
    assert "line 3" in str(info.value) and "dataset.encoding" in str(info.value)


@pytest.mark.parametrize(
    "writer, fragment",
    [
        pytest.param(_header_only_parquet, "no data rows", id="header-only-parquet"),
        pytest.param(_blank_name_parquet, "no name", id="blank-name-parquet"),
        pytest.param(_reserved_name_parquet, "reserved", id="reserved-parquet"),
        pytest.param(_duplicate_name_parquet, "", id="duplicate-name-parquet"),
    ],
)
def test_bad_parquet_raises_batch_read_error(tmp_path, writer, fragment):
    path = tmp_path / "b.parquet"
    writer(path)
    with pytest.raises(BatchReadError) as info:
        read_batch(path)
    assert "'b.parquet'" in str(info.value) and fragment in str(info.value)


def test_a_row_with_too_few_fields_is_refused_not_filled_with_empty_values(tmp_path):
    """A cut row would otherwise pass as a row of missing values (a missing label is not a defect)."""
    with pytest.raises(BatchReadError, match="line 3 has 1 field\\(s\\) where the header has 3: the row was cut short"):
        read_batch(_put(tmp_path, "b.csv", "a,b,c\n1,2,3\n1\n"))
    frame = read_batch(_put(tmp_path, "c.csv", "a,b,c\n1,,\n\n"))  # empty fields written out, a blank line
    assert frame.drop(columns=ROW_COLUMN).to_dict("records") == [{"a": "1", "b": None, "c": None}]


@pytest.mark.parametrize(
    "name, ignored",
    [
        (".x.csv", True),
        ("foo.csv.part", True),
        ("~lock", True),
        ("~$batch.csv", True),
        ("_staging.csv", True),
        ("b.csv.tmp", True),
        ("b.CRDOWNLOAD", True),
        ("b.csv", False),
        ("b.parquet", False),
        ("b.txt", False),  # not ignored: refused, so the user hears about it
    ],
)
def test_is_ignored_name(name, ignored):
    assert is_ignored_name(name) is ignored


@pytest.mark.parametrize(
    "name, batch_id, ok",
    [
        ("2024-05-01.csv", "2024-05-01", True),
        ("batch_0007.parquet", "batch_0007", True),
        ("v1.2.csv", "v1.2", True),
        ("a" * 128 + ".csv", "a" * 128, True),
        ("a" * 129 + ".csv", "a" * 129, False),
        ("é.csv", "é", False),
        ("batch 7.csv", "batch 7", False),
    ],
)
def test_batch_id_and_name_problem(name, batch_id, ok):
    assert batch_id_of(Path(name)) == batch_id
    assert (name_problem(Path(name)) is None) is ok


# --------------------------------------------------------------------------
# Fingerprints
# --------------------------------------------------------------------------


def test_fingerprint_is_stable_and_follows_content(tmp_path):
    a = _put(tmp_path, "a.csv", CSV_TEXT)
    b = _put(tmp_path, "b.csv", CSV_TEXT)
    first = fingerprint(a)
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert fingerprint(a) == first == fingerprint(b)  # same bytes, same print, whatever the name
    assert fingerprint(a, chunk_size=3) == first  # streaming does not change it
    _put(tmp_path, "a.csv", CSV_TEXT.replace("41", "42"))
    assert fingerprint(a) != first


# --------------------------------------------------------------------------
# Refusing files
# --------------------------------------------------------------------------


def test_reject_file_moves_it_with_a_reason(tmp_path):
    landing_dir, rejected = tmp_path / "landing", tmp_path / "rejected"
    path = _put(landing_dir, "batch_0003.csv", CSV_TEXT)
    fp = fingerprint(path)
    when = datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)

    rejection = reject_file(path, rejected, reason="header only", stage="raw_data", now=when)

    assert not path.exists()  # moved, not copied
    assert rejection.moved_to.parent == rejected / "batch_0003"
    assert rejection.moved_to.name.endswith("__batch_0003.csv")
    assert rejection.moved_to.read_text(encoding="utf-8") == CSV_TEXT
    assert rejection.fingerprint == fp and rejection.batch_id == "batch_0003"
    record = json.loads(Path(f"{rejection.moved_to}.reason.json").read_text(encoding="utf-8"))
    assert record["reason"] == "header only"
    assert record["stage"] == "raw_data"
    assert record["fingerprint"] == fp
    assert record["file"] == "batch_0003.csv"
    assert record["rejected_at"] == when.isoformat()

    assert rejected_fingerprints(rejected, "batch_0003") == {fp}
    assert rejected_fingerprints(rejected, "batch_0004") == set()
    assert [r["batch_id"] for r in list_rejections(rejected)] == ["batch_0003"]


def test_rejections_keep_every_version_oldest_first(tmp_path):
    landing_dir, rejected = tmp_path / "landing", tmp_path / "rejected"
    first = _put(landing_dir, "b1.csv", CSV_TEXT)
    fp1 = fingerprint(first)
    reject_file(first, rejected, reason="one", stage="landing_sensor", now=datetime(2024, 1, 2, tzinfo=timezone.utc))
    second = _put(landing_dir, "b1.csv", CSV_TEXT + "013,pro,50\n")
    fp2 = fingerprint(second)
    reject_file(second, rejected, reason="two", stage="validated_data", fingerprint_hex=fp2,
                now=datetime(2024, 1, 1, tzinfo=timezone.utc))
    assert rejected_fingerprints(rejected, "b1") == {fp1, fp2}
    assert [r["reason"] for r in list_rejections(rejected)] == ["two", "one"]
    assert len(list((rejected / "b1").iterdir())) == 4  # two files, two reason files


def test_two_refusals_at_the_same_instant_never_overwrite_each_other(tmp_path):
    landing_dir, rejected = tmp_path / "landing", tmp_path / "rejected"
    when = datetime(2024, 1, 2, tzinfo=timezone.utc)
    first = reject_file(_put(landing_dir, "b1.csv", CSV_TEXT), rejected, reason="one", stage="raw_data", now=when)
    second = reject_file(_put(landing_dir, "b1.csv", CSV_TEXT + "x\n"), rejected, reason="two", stage="raw_data",
                         now=when)
    assert first.moved_to != second.moved_to
    assert first.moved_to.read_text(encoding="utf-8") == CSV_TEXT
    assert second.moved_to.read_text(encoding="utf-8") == CSV_TEXT + "x\n"
    assert sorted(r["reason"] for r in list_rejections(rejected)) == ["one", "two"]


def test_reject_file_with_a_bad_id_goes_to_a_safe_folder(tmp_path):
    path = _put(tmp_path / "landing", "bad id!.csv", CSV_TEXT)
    rejection = reject_file(path, tmp_path / "rejected", reason="bad name", stage="landing_sensor")
    assert rejection.moved_to.parent == tmp_path / "rejected" / "_unnamed"
    assert not path.exists()


def test_rejection_lists_of_an_empty_area(tmp_path):
    assert list_rejections(tmp_path / "none") == []
    assert rejected_fingerprints(tmp_path / "none", "b1") == set()


# --------------------------------------------------------------------------
# Deciding what is new
# --------------------------------------------------------------------------


def test_new_files_become_new_batches(tmp_path):
    a = _put(tmp_path, "batch_0001.csv", CSV_TEXT)
    b = _put(tmp_path, "batch_0002.parquet", b"PAR1 not checked here")
    plan = _scan(tmp_path)
    assert [n.batch_id for n in plan.new] == ["batch_0001", "batch_0002"]
    assert [n.path for n in plan.new] == [a, b]
    for batch in plan.new:
        assert batch.fingerprint == fingerprint(batch.path)
        assert re.fullmatch(rf"{batch.batch_id}:[0-9a-f]{{16}}", batch.run_key)
        assert batch.run_key == f"{batch.batch_id}:{batch.fingerprint[:16]}"
    assert plan.refused == [] and plan.already_done == [] and plan.settling == []
    assert plan.state.accepted == {n.batch_id: n.fingerprint for n in plan.new}


def test_identical_redrop_is_already_done(tmp_path):
    path = _put(tmp_path, "b1.csv", CSV_TEXT)
    first = _scan(tmp_path)
    assert len(first.new) == 1
    again = _scan(tmp_path, first.state)
    assert again.new == [] and again.already_done == ["b1"]
    # dropped again with the same bytes (new mtime): still the same batch
    path.unlink()
    _put(tmp_path, "b1.csv", CSV_TEXT)
    redrop = _scan(tmp_path, again.state)
    assert redrop.new == [] and redrop.refused == [] and redrop.already_done == ["b1"]


def test_changed_bytes_under_an_accepted_id_are_refused(tmp_path):
    _put(tmp_path, "b1.csv", CSV_TEXT)
    first = _scan(tmp_path)
    old_fp = first.new[0].fingerprint
    path = _put(tmp_path, "b1.csv", CSV_TEXT.replace("41", "42"))
    plan = _scan(tmp_path, first.state)
    assert plan.new == [] and plan.already_done == []
    [refused] = plan.refused
    assert refused.path == path and refused.fingerprint == fingerprint(path)
    assert "'b1'" in refused.reason and "new batch id" in refused.reason and not refused.extends
    assert "extends" not in refused.reason
    assert old_fp[:12] in refused.reason
    assert plan.state.accepted == {"b1": old_fp}  # history is not rewritten
    assert "b1.csv" not in plan.state.stat_cache


def test_changed_bytes_are_allowed_when_the_old_version_was_rejected(tmp_path):
    _put(tmp_path, "b1.csv", CSV_TEXT)
    first = _scan(tmp_path)
    old_fp = first.new[0].fingerprint
    path = _put(tmp_path, "b1.csv", CSV_TEXT + "013,pro,50\n")
    asked = []

    def was_rejected(batch_id: str, fp: str) -> bool:
        asked.append((batch_id, fp))
        return fp == old_fp

    plan = _scan(tmp_path, first.state, was_rejected=was_rejected)
    assert asked == [("b1", old_fp)]
    assert plan.new == [NewBatch("b1", path, fingerprint(path))]
    assert plan.state.accepted == {"b1": fingerprint(path)}


def test_was_rejected_for_another_version_does_not_allow_a_change(tmp_path):
    _put(tmp_path, "b1.csv", CSV_TEXT)
    first = _scan(tmp_path)
    _put(tmp_path, "b1.csv", CSV_TEXT + "013,pro,50\n")
    plan = _scan(tmp_path, first.state, was_rejected=lambda batch_id, fp: fp != first.new[0].fingerprint)
    assert plan.new == [] and len(plan.refused) == 1


def test_one_id_as_two_files_is_refused(tmp_path):
    _put(tmp_path, "b1.csv", CSV_TEXT)
    _put(tmp_path, "b1.parquet", b"PAR1 whatever")
    _put(tmp_path, "b2.csv", CSV_TEXT)
    plan = _scan(tmp_path)
    assert [n.batch_id for n in plan.new] == ["b2"]
    assert sorted(r.path.name for r in plan.refused) == ["b1.csv", "b1.parquet"]
    for refused in plan.refused:
        assert "several files" in refused.reason
        assert "'b1.csv'" in refused.reason and "'b1.parquet'" in refused.reason
    assert "b1" not in plan.state.accepted


def test_second_file_for_an_accepted_id_is_refused_and_the_first_stays_done(tmp_path):
    _put(tmp_path, "b1.csv", CSV_TEXT)
    first = _scan(tmp_path)
    _put(tmp_path, "b1.parquet", b"PAR1 whatever")
    plan = _scan(tmp_path, first.state)
    assert plan.already_done == ["b1"]
    assert [r.path.name for r in plan.refused] == ["b1.parquet"]
    assert "several files" in plan.refused[0].reason


def test_hidden_and_temporary_files_are_ignored(tmp_path):
    for name in (".x.csv", "foo.csv.part", "~lock", "_partial.csv", "b9.csv.tmp"):
        _put(tmp_path, name, CSV_TEXT)
    (tmp_path / "sub.csv").mkdir()  # a folder is not a file
    plan = _scan(tmp_path)
    assert plan.new == [] and plan.refused == [] and plan.already_done == [] and plan.settling == []
    assert plan.state.stat_cache == {}


def test_badly_named_files_are_refused(tmp_path):
    for name in ("notes.txt", "B2.CSV", "bad id!.csv"):
        _put(tmp_path, name, CSV_TEXT)
    plan = _scan(tmp_path)
    assert plan.new == []
    reasons = {r.path.name: r.reason for r in plan.refused}
    assert set(reasons) == {"notes.txt", "B2.CSV", "bad id!.csv"}
    assert "extension '.txt'" in reasons["notes.txt"]
    assert "lower case" in reasons["B2.CSV"]
    assert "batch id" in reasons["bad id!.csv"]
    assert all(r.fingerprint == fingerprint(r.path) for r in plan.refused)


def test_files_still_changing_are_settling(tmp_path):
    fresh = _put(tmp_path, "b1.csv", CSV_TEXT)
    old = _put(tmp_path, "b2.csv", CSV_TEXT)
    now = time.time()
    os.utime(fresh, (now - 1, now - 1))
    os.utime(old, (now - 60, now - 60))
    plan = scan_landing(tmp_path, LandingState(), now_ts=now, settle_seconds=10)
    assert plan.settling == ["b1.csv"]
    assert [n.batch_id for n in plan.new] == ["b2"]
    assert "b1" not in plan.state.accepted
    later = scan_landing(tmp_path, plan.state, now_ts=now + 10, settle_seconds=10)
    assert [n.batch_id for n in later.new] == ["b1"] and later.already_done == ["b2"]


def test_missing_landing_folder_gives_an_empty_plan(tmp_path):
    state = LandingState(accepted={"b1": "ab" * 32})
    plan = _scan(tmp_path / "not-yet", state)
    assert plan.new == [] and plan.refused == [] and plan.already_done == [] and plan.settling == []
    assert plan.state.accepted == state.accepted


def test_scan_does_not_modify_the_given_state(tmp_path):
    _put(tmp_path, "b1.csv", CSV_TEXT)
    state = LandingState()
    plan = _scan(tmp_path, state)
    assert state == LandingState()
    assert plan.state.accepted.keys() == {"b1"}


@pytest.mark.parametrize(
    "state",
    [
        LandingState(),
        LandingState(accepted={"b1": "a" * 64, "2024-05-01": "b" * 64}, stat_cache={"b1.csv": [12, 1_700_000_000_123_456_789, "a" * 64]}),
    ],
)
def test_landing_state_json_round_trip(state):
    text = state.to_json()
    assert json.loads(text)  # plain JSON for the sensor cursor
    assert LandingState.from_json(text) == state


@pytest.mark.parametrize("cursor", [None, ""])
def test_empty_cursor_is_a_fresh_state(cursor):
    assert LandingState.from_json(cursor) == LandingState()


def test_stat_cache_avoids_rehashing_unchanged_files(tmp_path, monkeypatch):
    _put(tmp_path, "b1.csv", CSV_TEXT)
    _put(tmp_path, "b2.csv", CSV_TEXT + "013,pro,50\n")
    first = _scan(tmp_path)
    assert set(first.state.stat_cache) == {"b1.csv", "b2.csv"}
    state = LandingState.from_json(first.state.to_json())  # as stored in and read from the cursor

    calls = []
    real = ingestion.fingerprint

    def counting(path, *args, **kwargs):
        calls.append(path.name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(landing, "fingerprint", counting)
    second = _scan(tmp_path, state)
    assert calls == []
    assert sorted(second.already_done) == ["b1", "b2"]

    _put(tmp_path, "b2.csv", CSV_TEXT + "013,pro,50\n014,basic,33\n")  # changed: hashed again
    third = _scan(tmp_path, second.state)
    assert calls == ["b2.csv"]
    assert [r.path.name for r in third.refused] == ["b2.csv"]


def test_find_batch_file(tmp_path):
    _put(tmp_path, "b1.parquet", b"x")
    _put(tmp_path, "b2.csv", b"x")
    assert find_batch_file(tmp_path, "b1") == [tmp_path / "b1.parquet"]
    assert find_batch_file(tmp_path, "b3") == []


# --------------------------------------------------------------------------
# Sniffing what a file really is (issue 12, class 4)
# --------------------------------------------------------------------------

SNIFF_FRAME = pd.DataFrame({"id": ["C1", "C2", "C3"], "charge": [12.5, 3.25, 7.0], "plan": ["a", "b", "c"]})


def _xlsx_bytes() -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
    return buffer.getvalue()


def _zip_bytes() -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("b.csv", SNIFF_FRAME.to_csv(index=False))
    return buffer.getvalue()


def _parquet_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    SNIFF_FRAME.to_parquet(buffer, index=False)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name, make, fragments",
    [
        pytest.param("b.csv", lambda: __import__("gzip").compress(SNIFF_FRAME.to_csv(index=False).encode()),
                     ["gzip", "gunzip"], id="gzip-as-csv"),
        pytest.param("b.csv", _zip_bytes, ["zip archive", "unzip"], id="zip-as-csv"),
        pytest.param("b.csv", _xlsx_bytes, ["Excel workbook", "save the sheet as CSV"], id="xlsx-as-csv"),
        pytest.param("b.csv", _parquet_bytes, ["a Parquet file", "<batch_id>.parquet"], id="parquet-as-csv"),
        pytest.param("b.csv", lambda: b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + b"\x00" * 64, ["PDF", "export"], id="pdf"),
        pytest.param("b.csv", lambda: SNIFF_FRAME.to_csv(index=False).encode("utf-16"), ["UTF-16", "dataset.encoding"],
                     id="utf16"),
        pytest.param("b.csv", lambda: SNIFF_FRAME.to_csv(index=False, sep=";").encode(),
                     ["separated by ';'", "dataset.csv_delimiter: ';'"], id="semicolon"),
        pytest.param("b.csv", lambda: SNIFF_FRAME.to_csv(index=False, sep="\t").encode(),
                     ["separated by tab", "dataset.csv_delimiter: tab"], id="tab"),
        pytest.param("b.csv", lambda: SNIFF_FRAME.to_csv(index=False, sep="|").encode(),
                     ["separated by '|'", "dataset.csv_delimiter: '|'"], id="pipe"),
        pytest.param("b.csv", lambda: SNIFF_FRAME.to_csv(index=False, sep=";", decimal=",").encode(),
                     ["separated by ';'", "decimal commas"], id="decimal-comma"),
        pytest.param("b.csv", lambda: ("sep=,\n" + SNIFF_FRAME.to_csv(index=False)).encode(),
                     ["'sep=,' line", "remove that first line"], id="sep-hint"),
        pytest.param("b.csv", lambda: ("sep=;\n" + SNIFF_FRAME.to_csv(index=False, sep=";")).encode(),
                     ["'sep=;' line", "dataset.csv_delimiter: ';'"], id="sep-hint-semicolon"),
        pytest.param("b.parquet", lambda: __import__("gzip").compress(b"a,b\n1,2\n"), ["gzip", "not a Parquet file"],
                     id="gzip-as-parquet"),
    ],
)
def test_files_that_are_not_what_their_name_says_are_named_for_what_they_are(tmp_path, name, make, fragments):
    path = _put(tmp_path, name, make())
    with pytest.raises(BatchReadError) as info:
        read_batch(path)
    message = str(info.value)
    assert repr(name) in message
    for fragment in fragments:
        assert fragment in message, message
    for misleading in ("column missing", "not valid utf-8", "have no name"):
        assert misleading not in message


@pytest.mark.parametrize(
    "text, delimiter",
    [
        ("id\nC1\nC2\n", ","),  # one column: nothing to sniff
        ("id;note\nC1;a,b\n", ";"),  # the configured ';' with commas inside values
        ('id,note\nC1,"a;b;c"\n', ","),  # semicolons only inside a quoted value
        ("id,charge\nC1,12.5\n", ","),
    ],
)
def test_sniffing_leaves_files_in_the_configured_dialect_alone(tmp_path, text, delimiter):
    assert sniff.sniff_problem(_put(tmp_path, "b.csv", text), delimiter=delimiter) is None
    assert len(read_batch(tmp_path / "b.csv", delimiter=delimiter)) >= 1


def test_a_semicolon_file_reads_once_the_delimiter_is_set(tmp_path):
    path = _put(tmp_path, "b.csv", SNIFF_FRAME.to_csv(index=False, sep=";"))
    frame = read_batch(path, delimiter=";")
    assert list(frame.columns) == [ROW_COLUMN, "id", "charge", "plan"]


# --------------------------------------------------------------------------
# Paths and batch ids from any source (issue 12, security)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("batch_id", ["../outside/x", "a/b", "..", ".hidden", "_tmp", "", "x" * 129, "a\\b", None])
def test_check_batch_id_refuses_what_a_file_name_could_not_be(batch_id):
    with pytest.raises(paths.UnsafePathError) as info:
        paths.check_batch_id(batch_id, source="partition key")
    assert "partition key" in str(info.value) and "batch id" in str(info.value)


@pytest.mark.parametrize("batch_id", ["b0001", "2024-05-01", "v1.2", "batch_0007"])
def test_check_batch_id_accepts_landed_names(batch_id):
    assert paths.check_batch_id(batch_id, source="run tag") == batch_id


def test_contained_refuses_dotdot_and_links_out(tmp_path):
    folder = tmp_path / "landing"
    folder.mkdir()
    outside = _put(tmp_path, "secret.csv", CSV_TEXT)
    (folder / "link.csv").symlink_to(outside)
    (folder / "inner.csv").symlink_to(_put(folder, "b1.csv", CSV_TEXT))
    assert paths.contained(folder / "b1.csv", folder, what="file") == folder.resolve() / "b1.csv"
    assert paths.contained(folder / "inner.csv", folder, what="file") == folder.resolve() / "inner.csv"
    for bad in (folder / ".." / "secret.csv", folder / "link.csv", outside, folder / ".."):
        with pytest.raises(paths.UnsafePathError, match="outside|not a file name"):
            paths.contained(bad, folder, what="the landed file")


def test_reject_file_never_moves_a_file_from_outside_the_landing_folder(tmp_path):
    folder = tmp_path / "landing"
    folder.mkdir()
    outside = _put(tmp_path, "b1.csv", CSV_TEXT)
    with pytest.raises(paths.UnsafePathError):
        reject_file(outside, tmp_path / "rejected", reason="x", stage="raw_data", landing_dir=folder)
    assert outside.read_text() == CSV_TEXT and not (tmp_path / "rejected").exists()


def test_a_file_that_grew_is_named_as_an_extension_with_the_replace_command(tmp_path):
    _put(tmp_path, "b1.csv", CSV_TEXT)
    first = _scan(tmp_path)
    assert first.state.sizes == {"b1": len(CSV_TEXT)}
    _put(tmp_path, "b1.csv", CSV_TEXT + "013,pro,50\n014,basic,33\n")
    plan = _scan(tmp_path, LandingState.from_json(first.state.to_json()))  # as kept in the cursor
    [refused] = plan.refused
    assert refused.extends
    assert "extends the ingested batch 'b1': 2 more rows" in refused.reason
    assert "replace_batch" in refused.reason and "batch_id: b1" in refused.reason
    assert plan.state.accepted == first.state.accepted


def test_a_file_that_grew_but_changed_its_start_is_not_an_extension(tmp_path):
    _put(tmp_path, "b1.csv", CSV_TEXT)
    first = _scan(tmp_path)
    _put(tmp_path, "b1.csv", CSV_TEXT.replace("007", "008") + "013,pro,50\n")
    [refused] = _scan(tmp_path, first.state).refused
    assert not refused.extends and "different contents" in refused.reason


def test_an_id_sorting_before_taken_batches_is_new_and_flagged_out_of_order(tmp_path):
    _put(tmp_path, "b2.csv", CSV_TEXT)
    first = _scan(tmp_path)
    _put(tmp_path, "a1.csv", CSV_TEXT)
    _put(tmp_path, "c3.csv", CSV_TEXT)
    plan = _scan(tmp_path, first.state)
    assert [b.batch_id for b in plan.new] == ["a1", "c3"]
    assert plan.out_of_order == {"a1": "b2"}
    note = landing.out_of_order_message("a1", "b2", 3)
    assert "out of order" in note and "reference" in note and "holdout" in note and "training window" in note


def test_ready_marker_done_file_waits_for_the_marker(tmp_path):
    _put(tmp_path, "b1.csv", CSV_TEXT)
    waiting = _scan(tmp_path, ready_marker="done_file")
    assert waiting.new == [] and waiting.waiting_marker == ["b1.csv"] and waiting.refused == []
    _put(tmp_path, "b1.csv.done", b"")
    ready = _scan(tmp_path, ready_marker="done_file")
    assert [b.batch_id for b in ready.new] == ["b1"] and "b1.csv.done" in ready.ignored
    (tmp_path / "b1.csv.done").unlink()  # the writer cleans up its marker after the batch was taken in
    later = _scan(tmp_path, ready.state, ready_marker="done_file")
    assert later.already_done == ["b1"] and later.waiting_marker == []


def test_entries_that_are_not_readable_files_are_left_in_place_and_reported_once(tmp_path, monkeypatch):
    landing_dir = tmp_path / "landing"
    landing_dir.mkdir()
    outside = _put(tmp_path, "secret.csv", CSV_TEXT)
    (landing_dir / "b1.csv").symlink_to(outside)
    (landing_dir / "b2.csv").symlink_to(tmp_path / "nothing.csv")
    (landing_dir / "b3.csv").mkdir()
    _put(landing_dir, "b4.csv", CSV_TEXT)
    _put(landing_dir, "b5.csv", CSV_TEXT)
    real_open = open

    def unreadable(path, *args, **kwargs):
        if str(path).endswith("b4.csv"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", unreadable)
    plan = _scan(landing_dir)
    assert [b.batch_id for b in plan.new] == ["b5"]  # never blocked by the others
    assert plan.refused == []
    assert set(plan.left) == {"b1.csv", "b2.csv", "b3.csv", "b4.csv"}
    assert "outside the landing folder" in plan.left["b1.csv"] and "never read" in plan.left["b1.csv"]
    assert "dangling symbolic link" in plan.left["b2.csv"]
    assert "directory" in plan.left["b3.csv"]
    assert "Permission denied" in plan.left["b4.csv"] and "taken once readable" in plan.left["b4.csv"]
    assert len(plan.new_notices) == 4
    again = _scan(landing_dir, LandingState.from_json(plan.state.to_json()))
    assert again.new_notices == [] and set(again.left) == set(plan.left)
    monkeypatch.setattr("builtins.open", real_open)
    readable = _scan(landing_dir, again.state)
    assert [b.batch_id for b in readable.new] == ["b4"]
    assert outside.read_text() == CSV_TEXT


def test_a_missing_landing_folder_is_reported_once(tmp_path):
    plan = _scan(tmp_path / "nowhere")
    assert plan.new_notices and "does not exist" in plan.new_notices[0] and "dataset.landing_dir" in plan.new_notices[0]
    assert _scan(tmp_path / "nowhere", plan.state).new_notices == []


def test_an_extension_is_recognised_from_a_cursor_written_before_sizes_were_kept(tmp_path):
    _put(tmp_path, "b1.csv", CSV_TEXT)
    first = _scan(tmp_path)
    old_cursor = json.loads(first.state.to_json())
    old_cursor.pop("sizes")
    _put(tmp_path, "b1.csv", CSV_TEXT + "013,pro,50\n")
    [refused] = _scan(tmp_path, LandingState.from_json(json.dumps(old_cursor))).refused
    assert refused.extends and "1 more rows" in refused.reason
