"""Issue 12: landed files the sensor cannot take, files that are not what their name says, writers that
pause, batches out of order and paths that lead out of the landing folder, through the real landing
sensor and ingest job."""

from __future__ import annotations

import gzip
import io
import json

import pandas as pd
import pytest

from retrain_assets.constants import TAG_FILE, TAG_REASON
from retrain_assets.core import ingestion, landing, storage
from retrain_assets_tests import bad_input_corpus as corpus
from retrain_assets_tests.conftest import (
    Workspace,
    assert_file_refused,
    clean_batch,
    definitions_for,
    failure_text,
    ingest,
    tick,
    write_config,
)


class DagsterLog:
    """What Dagster's console handler wrote (a sensor context's logger has no parent, so caplog misses it)."""

    def __init__(self, capfd):
        self.capfd = capfd

    def clear(self) -> None:
        self.capfd.readouterr()

    def warnings(self) -> list[str]:
        err = self.capfd.readouterr().err
        return [line for line in err.splitlines() if " - WARNING - " in line or " - ERROR - " in line]


@pytest.fixture
def logs(capfd):
    return DagsterLog(capfd)


def _warnings(log: DagsterLog) -> list[str]:
    return log.warnings()


def _csv(batch_index: int = 1, n_rows: int = 200, **kwargs) -> str:
    return clean_batch(batch_index, n_rows).to_csv(index=False, **kwargs)


def _reasons(ws: Workspace, batch_id: str) -> list[dict]:
    folder = ws.rejected / batch_id
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.reason.json"))] if folder.exists() else []


def _raw_rows(ws: Workspace, batch_id: str) -> int:
    with storage.duckdb.connect(str(ws.settings.duckdb_path)) as conn:
        return len(storage.read_raw_batch(conn, batch_id))


# --------------------------------------------------------------------------
# Class 3: entries the sensor cannot take never raise, never block, are logged once
# --------------------------------------------------------------------------


def test_an_unreadable_file_does_not_raise_or_block_later_batches(workspace, defs, instance, logs, monkeypatch):
    workspace.land("b0001", _csv(1))
    workspace.land("b0002", _csv(2))
    real = ingestion.fingerprint

    def denied(path, *args, **kwargs):  # tests run as root: chmod 000 would not stop them
        if path.name == "b0001.csv":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(landing, "fingerprint", denied)
    first = tick(defs, instance)
    assert [r.partition_key for r in first.run_requests] == ["b0002"]
    notices = [m for m in _warnings(logs) if "b0001.csv" in m]
    assert len(notices) == 1 and "Permission denied" in notices[0] and "taken once readable" in notices[0]
    logs.clear()
    second = tick(defs, instance, cursor=first.cursor)
    assert not second.run_requests and not [m for m in _warnings(logs) if "b0001.csv" in m], "logged once only"
    assert "left 1 entr" in second.skip_reason.skip_message
    monkeypatch.setattr(landing, "fingerprint", real)
    third = tick(defs, instance, cursor=second.cursor)
    assert [r.partition_key for r in third.run_requests] == ["b0001"]
    assert (workspace.landing / "b0001.csv").exists()


def test_links_folders_and_odd_names_each_get_one_notice_and_never_block(workspace, defs, instance, logs):
    landing_dir = workspace.landing
    landing_dir.mkdir(parents=True)
    secret = workspace.root / "outside-secret.csv"
    secret.write_text(_csv(9), encoding="utf-8")
    (landing_dir / "b0001.csv").symlink_to(secret)
    (landing_dir / "b0002.csv").symlink_to(workspace.root / "no-such-file.csv")
    (landing_dir / "b0003.csv").mkdir()
    (landing_dir / "b0003.csv" / "part-0000.csv").write_text(_csv(3), encoding="utf-8")
    workspace.land("_b0004", _csv(4))
    workspace.land("..b0005", _csv(5))
    workspace.land("b0006", _csv(6))
    first = tick(defs, instance)
    assert [r.partition_key for r in first.run_requests] == ["b0006"]
    warnings = _warnings(logs)
    [outside] = [m for m in warnings if "b0001.csv" in m]
    assert "outside the landing folder" in outside and "never read" in outside
    assert any("b0002.csv" in m and "dangling symbolic link" in m for m in warnings)
    assert any("b0003.csv" in m and "directory" in m for m in warnings)
    assert secret.read_text(encoding="utf-8") == _csv(9) and (landing_dir / "b0001.csv").is_symlink()
    assert not workspace.rejected.exists(), "nothing outside was moved; links and folders stay in place"
    logs.clear()
    second = tick(defs, instance, cursor=first.cursor)
    assert not _warnings(logs), "the same notices are not logged again every tick"
    message = second.skip_reason.skip_message
    assert "left 3 entr" in message
    assert "'_b0004.csv'" in message and "'..b0005.csv'" in message
    assert "names starting with '.', '~', '_'" in message and "ignored as temporary files until renamed" in message


def test_a_missing_landing_folder_is_said_once_and_in_every_skip_message(workspace, defs, instance, logs):
    first = tick(defs, instance)
    assert "does not exist" in first.skip_reason.skip_message and "dataset.landing_dir" in first.skip_reason.skip_message
    assert len([m for m in _warnings(logs) if "does not exist" in m]) == 1
    logs.clear()
    second = tick(defs, instance, cursor=first.cursor)
    assert "does not exist" in second.skip_reason.skip_message and not _warnings(logs)


# --------------------------------------------------------------------------
# Class 4: files that are not what their name says, refused by raw_data for what they are
# --------------------------------------------------------------------------


_zip = corpus._zip_bytes


def _parquet() -> bytes:
    buffer = io.BytesIO()
    clean_batch(1, 50).to_parquet(buffer, index=False)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "ext, make, words",
    [
        pytest.param(".csv", lambda: _csv(1, sep=";").encode(), ["separated by ';'", "dataset.csv_delimiter: ';'"],
                     id="semicolon"),
        pytest.param(".csv", lambda: _csv(1, sep="\t").encode(), ["separated by tab", "dataset.csv_delimiter"], id="tab"),
        pytest.param(".csv", lambda: _csv(1, sep="|").encode(), ["separated by '|'", "dataset.csv_delimiter"], id="pipe"),
        pytest.param(".csv", lambda: _csv(1, sep=";", decimal=",").encode(), ["dataset.csv_delimiter", "decimal commas"],
                     id="decimal-comma"),
        pytest.param(".csv", lambda: ("sep=,\n" + _csv(1)).encode(), ["'sep=,' line", "remove that first line"],
                     id="sep-hint"),
        pytest.param(".csv", lambda: gzip.compress(_csv(1).encode()), ["gzip", "gunzip"], id="gzip"),
        pytest.param(".csv", lambda: _zip({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<w/>"}),
                     ["Excel workbook", "CSV"], id="xlsx"),
        pytest.param(".csv", lambda: _zip({"a.csv": _csv(1).encode()}), ["zip archive"], id="zip"),
        pytest.param(".csv", _parquet, ["a Parquet file", "<batch_id>.parquet"], id="parquet-as-csv"),
        pytest.param(".csv", lambda: b"%PDF-1.4\n" + b"\x00" * 64, ["PDF"], id="pdf"),
        pytest.param(".parquet", lambda: _csv(1).encode(), ["holds CSV text, not Parquet"], id="csv-as-parquet"),
    ],
)
def test_a_file_that_is_not_what_its_name_says_is_refused_by_raw_data_for_what_it_is(
    workspace, defs, instance, ext, make, words
):
    data = make()
    workspace.land("b0001", data, ext=ext)
    [request] = tick(defs, instance).run_requests
    run = ingest(defs, instance, "b0001", tags=request.tags)
    text = assert_file_refused(run)  # judged and refused: a failed check in a run that succeeds
    for word in words:
        assert word in text, text
    for misleading in ("is missing", "not valid utf-8", "have no name"):
        assert misleading not in text
    [reason] = _reasons(workspace, "b0001")
    assert reason["stage"] == "raw_data" and all(word in reason["reason"] for word in words)
    [kept] = workspace.rejected_files("b0001")
    assert kept.read_bytes() == data


def test_a_semicolon_file_is_ingested_once_the_delimiter_is_set(tmp_path, instance):
    ws = Workspace(tmp_path, write_config(tmp_path, **{"dataset.csv_delimiter": ";"}))
    defs = definitions_for(ws.config_path)
    ws.land("b0001", _csv(1, sep=";"))
    [request] = tick(defs, instance).run_requests
    run = ingest(defs, instance, "b0001", tags=request.tags)
    assert run.success, failure_text(run)
    import duckdb

    with duckdb.connect(str(ws.settings.duckdb_path), read_only=True) as conn:
        rows = storage.read_validated(conn, ["b0001"])
    expected = clean_batch(1, 200)
    assert len(rows) == 200  # every row, split on ';' into the real columns
    assert set(expected.columns) <= set(rows.columns)
    assert rows["monthly_charges"].to_numpy() == pytest.approx(expected["monthly_charges"].to_numpy())


# --------------------------------------------------------------------------
# Class 5: writers that pause — ready markers, and a file that extends an ingested batch
# --------------------------------------------------------------------------


def test_with_ready_marker_done_file_a_file_waits_for_its_marker(tmp_path, instance):
    ws = Workspace(tmp_path, write_config(tmp_path, **{"automation.ready_marker": "done_file"}))
    defs = definitions_for(ws.config_path)
    ws.land("b0001", _csv(1))
    first = tick(defs, instance)
    assert not first.run_requests
    assert "waiting for the ready marker <name>.done" in first.skip_reason.skip_message
    assert "b0001.csv" in first.skip_reason.skip_message and not ws.rejected.exists()
    (ws.landing / "b0001.csv.done").touch()
    second = tick(defs, instance, cursor=first.cursor)
    assert [r.partition_key for r in second.run_requests] == ["b0001"]
    assert ingest(defs, instance, "b0001", tags=second.run_requests[0].tags).success
    assert (ws.landing / "b0001.csv.done").exists(), "the marker is the writer's: left alone"


def test_an_extended_batch_is_refused_as_such_and_replace_batch_reingests_it_keeping_the_old(
    workspace, defs, instance, logs
):
    path = workspace.land("b0001", _csv(1, 200))
    first = tick(defs, instance)
    assert ingest(defs, instance, "b0001", tags=first.run_requests[0].tags).success
    old_bytes = path.read_bytes()
    complete = _csv(1, 200) + "".join(_csv(2, 30).splitlines(keepends=True)[1:])
    workspace.land("b0001", complete, age_seconds=30)  # the writer resumed after the batch was taken in
    second = tick(defs, instance, cursor=first.cursor)
    assert not second.run_requests
    [reason] = _reasons(workspace, "b0001")
    assert "extends the ingested batch 'b0001': 30 more rows" in reason["reason"]
    assert "replace_batch" in reason["reason"] and "replace" in reason["reason"]
    assert any("extends" in m for m in _warnings(logs))

    replaced = defs.resolve_job_def("replace_batch").execute_in_process(
        instance=instance, run_config={"ops": {"replace_ingested_batch": {"config": {"batch_id": "b0001"}}}}, raise_on_error=False
    )
    assert replaced.success, failure_text(replaced)
    third = tick(defs, instance, cursor=second.cursor)
    assert [r.partition_key for r in third.run_requests] == ["b0001"]
    run = ingest(defs, instance, "b0001", tags=third.run_requests[0].tags)
    assert run.success, failure_text(run)
    assert _raw_metadata(run)["arrival"].value == "replaces an earlier version of this batch"
    assert _raw_rows(workspace, "b0001") == 230
    kept = {p.name: p for p in (workspace.rejected / "b0001").iterdir()}
    [rows_file] = [p for name, p in kept.items() if "replaced-rows" in name and name.endswith(".parquet")]
    assert len(pd.read_parquet(rows_file)) == 200, "the replaced rows are kept"
    assert any(p.read_bytes() == complete.encode() for p in kept.values()), "the refused copy stays"
    assert ingestion.fingerprint(path) != ingestion.fingerprint(rows_file) and old_bytes  # the landed file is the new one
    assert path.read_text(encoding="utf-8") == complete
    fourth = tick(defs, instance, cursor=third.cursor)
    assert not fourth.run_requests


def test_replace_batch_with_a_corrected_file_keeps_the_old_file_and_rows(workspace, defs, instance):
    old = workspace.land("b0001", _csv(1, 200))
    first = tick(defs, instance)
    assert ingest(defs, instance, "b0001", tags=first.run_requests[0].tags).success
    old_bytes = old.read_bytes()
    corrected = workspace.land("_b0001-corrected", _csv(7, 150))  # an ignored name: the sensor leaves it alone
    replaced = defs.resolve_job_def("replace_batch").execute_in_process(
        instance=instance, raise_on_error=False,
        run_config={"ops": {"replace_ingested_batch": {"config": {"batch_id": "b0001", "file": str(corrected)}}}},
    )
    assert replaced.success, failure_text(replaced)
    kept = workspace.rejected_files("b0001")
    assert any(p.read_bytes() == old_bytes for p in kept), "the replaced file is kept"
    assert any(p.suffix == ".parquet" and len(pd.read_parquet(p)) == 200 for p in kept), "and its rows"
    assert old.read_bytes() == corrected.read_bytes() and corrected.exists()
    second = tick(defs, instance, cursor=first.cursor)
    run = ingest(defs, instance, "b0001", tags=second.run_requests[0].tags)
    assert run.success, failure_text(run)
    assert _raw_rows(workspace, "b0001") == 150


@pytest.mark.parametrize("batch_id, file", [("../outside/x", None), ("b0001", "/etc/hostname")])
def test_replace_batch_refuses_ids_and_files_that_lead_out(workspace, defs, instance, batch_id, file):
    workspace.land("b0001", _csv(1))
    assert ingest(defs, instance, "b0001").success
    config = {"batch_id": batch_id, **({"file": file} if file else {})}
    result = defs.resolve_job_def("replace_batch").execute_in_process(
        instance=instance, run_config={"ops": {"replace_ingested_batch": {"config": config}}}, raise_on_error=False
    )
    assert not result.success
    assert "batch id" in failure_text(result) or "outside the landing folder" in failure_text(result)
    assert _raw_rows(workspace, "b0001") == 200


# --------------------------------------------------------------------------
# Class 7: a batch out of order
# --------------------------------------------------------------------------


def test_a_batch_that_sorts_before_taken_batches_is_ingested_with_an_out_of_order_warning(
    workspace, defs, instance, logs
):
    workspace.land("b0002", _csv(2))
    first = tick(defs, instance)
    taken = ingest(defs, instance, "b0002", tags=first.run_requests[0].tags)
    assert _raw_metadata(taken)["arrival"].value == "in order"
    logs.clear()
    workspace.land("a0001", _csv(1))
    second = tick(defs, instance, cursor=first.cursor)
    [request] = second.run_requests
    assert "out of order (its id sorts before 'b0002')" in request.tags[TAG_REASON]
    [note] = [m for m in _warnings(logs) if "out of order" in m]
    assert "'a0001'" in note and "'b0002'" in note and "reference" in note and "holdout" in note
    run = ingest(defs, instance, "a0001", tags=request.tags)
    assert run.success, failure_text(run)
    arrival = _raw_metadata(run)["arrival"].value
    assert "out of order" in arrival and "training window" in arrival


def _raw_metadata(run) -> dict:
    [event] = [e for e in run.get_asset_materialization_events() if e.asset_key.path == ["raw_data"]]
    return event.materialization.metadata


# --------------------------------------------------------------------------
# Security: paths that escape the landing folder
# --------------------------------------------------------------------------


def test_a_partition_key_leading_out_of_landing_dir_reads_and_moves_nothing(workspace, defs, instance):
    outside = workspace.root / "outside"
    outside.mkdir()
    victim = outside / "x.csv"
    victim.write_text("customer_id\n", encoding="utf-8")  # header only: would be refused (moved) if read
    workspace.landing.mkdir(parents=True)
    run = ingest(defs, instance, "../outside/x")
    assert not run.success
    assert "partition key" in failure_text(run) and "batch id" in failure_text(run)
    assert victim.read_text(encoding="utf-8") == "customer_id\n"
    assert not workspace.rejected.exists()


@pytest.mark.parametrize("where", ["outside", "other-batch", "dotdot"])
def test_the_file_tag_is_not_trusted_as_a_path(workspace, defs, instance, where):
    victim = workspace.root / "victim.csv"
    victim.write_text("customer_id\n", encoding="utf-8")
    workspace.land("b0001", _csv(1))
    other = workspace.land("b0002", _csv(2))
    tagged = {
        "outside": str(victim),
        "other-batch": str(other),
        "dotdot": str(workspace.landing / ".." / "victim.csv"),
    }[where]
    run = ingest(defs, instance, "b0001", tags={TAG_FILE: tagged})
    assert not run.success
    text = failure_text(run)
    assert "run tag" in text and ("outside" in text or "not b0001.csv" in text), text
    assert victim.read_text(encoding="utf-8") == "customer_id\n" and other.exists()
    assert not workspace.rejected.exists()


def test_a_held_back_batch_whose_recorded_path_leads_out_is_not_moved(workspace, defs, instance, tmp_path):
    from retrain_assets.assets.validation import _move_rejected_file

    victim = tmp_path / "victim.csv"
    victim.write_text("a\n1\n", encoding="utf-8")
    record = storage.IngestionRecord(
        batch_id="b0001", file_name="victim.csv", file_path=str(victim), file_format="csv",
        fingerprint=ingestion.fingerprint(victim), size_bytes=4, rows=1, columns=["a"],
        arrived_at=pd.Timestamp.now(tz="UTC").to_pydatetime(), ingested_at=pd.Timestamp.now(tz="UTC").to_pydatetime(),
    )
    workspace.landing.mkdir(parents=True)
    assert _move_rejected_file(record, workspace.rejected, "held back", workspace.landing) is None
    assert victim.exists() and not workspace.rejected.exists()


@pytest.mark.cli
def test_the_replace_command_the_refusal_gives_works_from_the_cli(workspace, defs, instance, tmp_path):
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    from retrain_assets.constants import REPO_ROOT

    path = workspace.land("b0001", _csv(1, 200))
    first = tick(defs, instance)
    assert ingest(defs, instance, "b0001", tags=first.run_requests[0].tags).success
    workspace.land("b0001", path.read_text(encoding="utf-8") + "".join(_csv(2, 10).splitlines(keepends=True)[1:]))
    second = tick(defs, instance, cursor=first.cursor)
    [reason] = _reasons(workspace, "b0001")
    assert "-j replace_batch -c replace.yaml" in reason["reason"]
    config = tmp_path / "replace.yaml"
    printed = reason["reason"].split("launchpad config '", 1)[1].split("'", 1)[0]  # the config the message gives
    assert yaml.safe_load(printed) == {"ops": {"replace_ingested_batch": {"config": {"batch_id": "b0001"}}}}
    config.write_text(printed)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "deploy" / "local" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "RETRAIN_CONFIG": str(workspace.config_path)}
    dagster = str(Path(sys.executable).with_name("dagster"))
    done = subprocess.run(
        [dagster, "job", "execute", "-m", "retrain_assets.definitions", "-j", "replace_batch", "-c", str(config)],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    third = tick(defs, instance, cursor=second.cursor)
    run = ingest(defs, instance, "b0001", tags=third.run_requests[0].tags)
    assert run.success and _raw_rows(workspace, "b0001") == 210


def test_a_run_by_hand_never_reads_a_landed_link_that_leads_out(workspace, defs, instance):
    secret = workspace.root / "outside-secret.csv"
    secret.write_text(_csv(9), encoding="utf-8")
    workspace.landing.mkdir(parents=True)
    (workspace.landing / "b0001.csv").symlink_to(secret)
    run = ingest(defs, instance, "b0001")  # e.g. "Materialize" on a partition added by hand
    assert not run.success
    assert "outside" in failure_text(run) and "links to" in failure_text(run)
    assert (workspace.landing / "b0001.csv").is_symlink() and secret.read_text(encoding="utf-8") == _csv(9)
    assert not workspace.rejected.exists()
