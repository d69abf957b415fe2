"""Issue 12, faults: a full disk (a small tmpfs) and a DuckDB file held by another process, through the
real landing sensor and ingest job. Each fault gives a clear message, leaves nothing half-written, is
not a final refusal of the batch (no ``dagster.Failure``), and the same work succeeds once it is gone."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from retrain_assets.core import files, storage
from retrain_assets.core.schema import SchemaStore
from retrain_assets_tests.conftest import (
    Workspace,
    assert_file_refused,
    clean_batch,
    definitions_for,
    failure_text,
    ingest,
    materialized,
    tick,
    write_config,
)


class SmallDisk:
    """A tmpfs of a few MB mounted on a folder: a real filesystem that fills up."""

    def __init__(self, path: Path):
        self.path = path
        self._fillers: list[Path] = []

    def fill(self) -> None:
        """Take every free byte (the disk is full until :meth:`free`)."""
        filler = self.path / f".filler-{uuid.uuid4().hex}"
        self._fillers.append(filler)
        chunk = b"\0" * (64 << 10)
        with open(filler, "wb", buffering=0) as handle:
            for size in (len(chunk), 4096, 1):
                try:
                    while True:
                        handle.write(chunk[:size])
                except OSError as error:
                    assert error.errno == errno.ENOSPC, error
        assert os.statvfs(self.path).f_bavail == 0

    def free(self) -> None:
        for filler in self._fillers:
            filler.unlink(missing_ok=True)
        self._fillers.clear()


@pytest.fixture
def mount_small_disk():
    """Mount a tmpfs of a few MB on a folder (created if needed); unmounted after the test. Skipped,
    with the reason, where mounting is not permitted (it needs root)."""
    mounted: list[Path] = []

    def mount(folder: Path, size: str = "16m") -> SmallDisk:
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs to fill up here ({done.stderr.strip() or done.returncode}); needs root")
        mounted.append(folder)
        return SmallDisk(folder)

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path, mount_small_disk) -> SmallDisk:
    return mount_small_disk(tmp_path / "small_disk")


def _all_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _leftovers(folder: Path) -> list[Path]:
    """Temporary or partial files left behind (a filler is the test's own)."""
    return [p for p in _all_files(folder) if ".partial" in p.name or p.name.startswith(".schema-")]


def _batches(duckdb_path: Path) -> list[str]:
    with duckdb.connect(str(duckdb_path), read_only=True) as conn:
        return [b for (b,) in conn.execute("SELECT batch_id FROM ingestion_log ORDER BY batch_id").fetchall()]


def _step_errors(result) -> list[tuple[str, str, bool]]:
    """(class name, message, raised as dagster.Failure) of the error each failed step raised."""
    out = []
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        error = data.error
        while error is not None and error.cls_name == "DagsterExecutionStepExecutionError" and error.cause:
            error = error.cause
        out.append((error.cls_name, error.message, data.user_failure_data is not None))
    return out


# --------------------------------------------------------------------------
# storage.root on a full disk
# --------------------------------------------------------------------------


def test_full_disk_under_storage_root_fails_the_ingest_plainly_and_a_later_run_succeeds(tmp_path, small_disk):
    ws = Workspace(root=tmp_path, config_path=write_config(tmp_path, **{"storage.root": str(small_disk.path / "state")}))
    defs = definitions_for(ws.config_path)
    with dg.instance_for_test() as instance:
        ws.land("batch_0001", clean_batch(1, 300))
        tick(defs, instance)
        first = ingest(defs, instance, "batch_0001")
        assert first.success, failure_text(first)

        landed = ws.land("batch_0002", clean_batch(2, 3000))
        before = landed.read_bytes()
        small_disk.fill()
        failed = ingest(defs, instance, "batch_0002")
        assert not failed.success
        [(kind, text, refused)] = _step_errors(failed)
        assert "cannot rollback" not in text, text
        assert f"the disk holding {ws.settings.duckdb_path} is full" in text, text
        assert "No space left on device" in text and "Nothing was half-written" in text, text
        assert "Free space on that disk" in text, text
        # An outside cause: not a dagster.Failure (which would refuse the batch for good).
        assert (kind, refused) == ("StorageUnavailable", False), (kind, text)
        assert not materialized(failed, "raw_data")

        # Nothing half-written: the earlier batch reads back whole, the new one is not there at all,
        # the landed file is where it was, byte for byte.
        assert _batches(ws.settings.duckdb_path) == ["batch_0001"]
        with duckdb.connect(str(ws.settings.duckdb_path), read_only=True) as conn:
            assert len(storage.read_raw_batch(conn, "batch_0001")) == 300
            assert not conn.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'raw' AND table_name = 'batch_0002'"
            ).fetchall()[0][0]
        assert landed.read_bytes() == before

        small_disk.free()
        again = ingest(defs, instance, "batch_0002")
        assert again.success, failure_text(again)
        assert _batches(ws.settings.duckdb_path) == ["batch_0001", "batch_0002"]
        with duckdb.connect(str(ws.settings.duckdb_path), read_only=True) as conn:
            assert len(storage.read_raw_batch(conn, "batch_0002")) == 3000


def test_a_full_disk_while_validating_keeps_the_batch_raw_and_unvalidated_until_space_is_freed(tmp_path, small_disk):
    """The validation transaction (valid rows, quarantine, status) fails whole on a full disk."""
    from retrain_assets.constants import INGEST_JOB

    ws = Workspace(root=tmp_path, config_path=write_config(tmp_path, **{"storage.root": str(small_disk.path / "state")}))
    defs = definitions_for(ws.config_path)
    job = defs.resolve_job_def(INGEST_JOB)
    with dg.instance_for_test() as instance:
        ws.land("batch_0001", clean_batch(1, 300))
        assert ingest(defs, instance, "batch_0001").success
        ws.land("batch_0002", clean_batch(2, 3000))
        instance.add_dynamic_partitions("batches", ["batch_0002"])
        raw = job.execute_in_process(instance=instance, partition_key="batch_0002",
                                     asset_selection=[dg.AssetKey("raw_data")], raise_on_error=False)
        assert raw.success, failure_text(raw)
        small_disk.fill()
        validated = job.execute_in_process(instance=instance, partition_key="batch_0002",
                                           asset_selection=[dg.AssetKey("validated_data")], raise_on_error=False)
        assert not validated.success
        [(kind, text, refused)] = _step_errors(validated)
        assert (kind, refused) == ("StorageUnavailable", False), (kind, text)
        assert "cannot rollback" not in text and "is full" in text and "validation of batch 'batch_0002'" in text, text
        with duckdb.connect(str(ws.settings.duckdb_path), read_only=True) as conn:
            assert conn.execute("SELECT batch_id FROM batch_validation ORDER BY 1").fetchall() == [("batch_0001",)]
            assert len(storage.read_raw_batch(conn, "batch_0002")) == 3000, "its raw rows stay stored"
            assert storage.read_quarantine(conn, "batch_0002").empty
            assert set(storage.read_validated(conn)["_batch_id"]) == {"batch_0001"}
        small_disk.free()
        again = job.execute_in_process(instance=instance, partition_key="batch_0002",
                                       asset_selection=[dg.AssetKey("validated_data")], raise_on_error=False)
        assert again.success, failure_text(again)
        with duckdb.connect(str(ws.settings.duckdb_path), read_only=True) as conn:
            assert set(storage.read_validated(conn)["_batch_id"]) == {"batch_0001", "batch_0002"}


def test_the_transaction_helper_raises_the_real_error_and_undoes_the_block(small_disk):
    path = small_disk.path / "w.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE t (x VARCHAR)")
        with pytest.raises(ValueError, match="in the block"):
            with storage.transaction(conn, "storing t"):
                conn.execute("INSERT INTO t VALUES ('a')")
                raise ValueError("in the block")
        assert conn.execute("SELECT count(*) FROM t").fetchall() == [(0,)]
        small_disk.fill()
        with pytest.raises(storage.StorageUnavailable) as raised:
            with storage.transaction(conn, "storing t"):
                conn.execute("INSERT INTO t SELECT repeat('x', 100) || i FROM range(200000) r(i)")
        message = str(raised.value)
        assert f"the disk holding {path} is full" in message and "while storing t" in message, message
        assert "cannot rollback" not in message
        assert "cannot rollback" not in "".join(getattr(raised.value, "__notes__", []))
        assert conn.execute("SELECT count(*) FROM t").fetchall() == [(0,)]
        small_disk.free()
        with storage.transaction(conn, "storing t"):
            conn.execute("INSERT INTO t VALUES ('b')")
        assert conn.execute("SELECT x FROM t").fetchall() == [("b",)]


# --------------------------------------------------------------------------
# The rejected area on a full disk (another filesystem than the landing folder)
# --------------------------------------------------------------------------


def _reason_files(folder: Path) -> list[Path]:
    return [p for p in _all_files(folder) if p.name.endswith(".reason.json")]


@pytest.mark.parametrize("layout", ["rejected area on its own disk", "landing and rejected area on one disk"])
def test_a_refused_file_is_never_half_copied_to_a_full_rejected_area_and_moves_once_there_is_room(
    tmp_path, mount_small_disk, capfd, layout
):
    if layout == "rejected area on its own disk":
        ws = Workspace(root=tmp_path, config_path=write_config(tmp_path))
        disk = mount_small_disk(ws.rejected)
        assert os.stat(ws.rejected).st_dev != os.stat(ws.landing.parent).st_dev  # a move is copy + delete
        said = "No partial copy was left"
    else:  # a move is a rename, but the reason file beside it needs room
        disk = mount_small_disk(tmp_path / "disk")
        ws = Workspace(root=tmp_path / "disk", config_path=write_config(tmp_path / "disk"))
        said = "reason.json is not written"
    defs = definitions_for(ws.config_path)
    data = os.urandom(3 << 20)
    landed = ws.land("b0001", data, ext=".xlsx")
    disk.fill()
    capfd.readouterr()
    with dg.instance_for_test() as instance:
        first = tick(defs, instance)
        errors = [line for line in capfd.readouterr().err.splitlines() if " - ERROR - " in line]
        assert any("could not move refused b0001.xlsx" in line and "is full" in line and said in line
                   and "it stays in the landing folder" in line for line in errors), errors
        assert landed.read_bytes() == data, "the original stays, whole"
        assert not [p for p in _all_files(ws.rejected) if not p.name.startswith(".filler-")], \
            "no half-written copy, no reason file without its file"
        disk.free()
        tick(defs, instance, cursor=first.cursor)
    assert not landed.exists()
    [kept] = ws.rejected_files("b0001")
    assert kept.read_bytes() == data and kept.stat().st_size == len(data)
    [reason] = _reason_files(ws.rejected)
    assert "extension '.xlsx'" in reason.read_text()


def test_raw_data_refusing_into_a_full_rejected_area_is_retried_not_final(tmp_path, mount_small_disk):
    """raw_data cannot move a file it refuses: the run fails as an outside cause (no dagster.Failure),
    the file stays landed, and once there is room the refusal goes through as usual."""
    ws = Workspace(root=tmp_path, config_path=write_config(tmp_path))
    defs = definitions_for(ws.config_path)
    disk = mount_small_disk(ws.rejected)
    data = b"%PDF-1.4\n" + os.urandom(2 << 20)
    landed = ws.land("b0001", data)
    with dg.instance_for_test() as instance:
        [request] = tick(defs, instance).run_requests
        disk.fill()
        run = ingest(defs, instance, "b0001", tags=request.tags)
        [(kind, text, refused)] = _step_errors(run)
        assert (kind, refused) == ("StorageUnavailable", False), (kind, text)
        assert f"the disk holding {ws.rejected / 'b0001'} is full" in text and "still at" in text, text
        assert landed.read_bytes() == data
        assert not [p for p in _all_files(ws.rejected) if not p.name.startswith(".filler-")]
        disk.free()
        again = ingest(defs, instance, "b0001", tags=request.tags)
        assert "PDF" in assert_file_refused(again)  # the usual refusal: a failed check, the run succeeds
    [kept] = ws.rejected_files("b0001")
    assert kept.read_bytes() == data and not landed.exists()


# --------------------------------------------------------------------------
# Other files the platform writes: whole or not at all
# --------------------------------------------------------------------------


def test_schema_json_on_a_full_disk_is_left_whole(small_disk):
    from retrain_assets.core import schema as schema_mod

    store = SchemaStore(small_disk.path / "state" / "schema.json")
    first = schema_mod.infer_schema(clean_batch(1, 50), target="churned", task="classification")
    store.save(first)
    before = store.path.read_bytes()
    small_disk.fill()
    bigger = schema_mod.with_classes(first, [f"class-{i}" * 50 for i in range(2000)])
    with pytest.raises(files.StorageUnavailable, match="is full.*schema.json is unchanged"):
        store.save(bigger, overwrite=True)
    assert store.path.read_bytes() == before
    assert _leftovers(store.path.parent) == []
    store.path.unlink()
    with pytest.raises(files.StorageUnavailable, match="schema.json is not written"):
        store.save(bigger)
    assert not store.path.exists() and _leftovers(store.path.parent) == []
    small_disk.free()
    assert store.save(bigger) == bigger and store.load() == bigger


def test_reports_and_plots_on_a_full_disk_are_never_truncated(small_disk):
    import pandas as pd

    from retrain_assets.core import report, shadow

    folder = small_disk.path / "reports"
    html = report.write_html_report(folder / "b1.html", title="drift", summary="ok",
                                    table=pd.DataFrame({"feature": ["a"], "drifted": [False]}))
    before = html.read_bytes()
    small_disk.fill()
    big = pd.DataFrame({"feature": [f"f{i}" * 40 for i in range(20000)], "drifted": False})
    with pytest.raises(files.StorageUnavailable, match="b1.html is unchanged"):
        report.write_html_report(html, title="drift", summary="ok", table=big)
    assert html.read_bytes() == before
    with pytest.raises(files.StorageUnavailable):
        report.write_html_report(folder / "b2.html", title="drift", summary="ok", table=big)
    assert not (folder / "b2.html").exists()
    frame = pd.DataFrame({"x": range(50), "y": ["a", "b"] * 25})
    with pytest.raises(files.StorageUnavailable):
        report.plot_distributions(frame, frame, [("x", "numeric"), ("y", "categorical")], folder / "b2.png",
                                  title="t")
    assert not (folder / "b2.png").exists()
    metrics = pd.DataFrame({"batch_id": ["b1", "b2"], "champion_version": ["1", "1"], "batch_metric": [0.8, 0.7],
                            "ci_low": [0.7, 0.6], "ci_high": [0.9, 0.8], "estimated_metric": [None, None],
                            "labelled": [True, True]})
    with pytest.raises(files.StorageUnavailable):
        report.plot_metric_history(metrics, pd.DataFrame(), folder / "history.png", metric="roc_auc", floor=0.6,
                                   title="t")
    assert not (folder / "history.png").exists()
    assert _leftovers(folder) == []


# --------------------------------------------------------------------------
# The DuckDB file held by another process
# --------------------------------------------------------------------------

_HOLDER = "import duckdb, sys, time; c = duckdb.connect(sys.argv[2]); print('held', flush=True); time.sleep(float(sys.argv[3]))"


def _hold(path: Path, seconds: float) -> subprocess.Popen:
    """Another process (think: a notebook) holding the DuckDB file open for ``seconds``."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, "my-notebook", str(path), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_duckdb_file_held_past_the_wait_fails_the_ingest_naming_the_holder(tmp_path):
    ws = Workspace(root=tmp_path, config_path=write_config(tmp_path, **{"storage.lock_wait_seconds": 2}))
    defs = definitions_for(ws.config_path)
    with dg.instance_for_test() as instance:
        ws.land("b0001", clean_batch(1, 200))
        assert ingest(defs, instance, "b0001").success
        ws.land("b0002", clean_batch(2, 200))
        holder = _hold(ws.settings.duckdb_path, 120)
        try:
            run = ingest(defs, instance, "b0002")
        finally:
            holder.kill()
            holder.wait()
        assert not run.success
        [(kind, text, refused)] = _step_errors(run)
        assert (kind, refused) == ("StorageUnavailable", False), (kind, text)
        assert "IOException" not in kind
        assert f"the DuckDB file {ws.settings.duckdb_path} is held by another process" in text, text
        assert f"(PID {holder.pid}, running: " in text and "my-notebook" in text, text
        assert "Waited 2." in text and "storage.lock_wait_seconds = 2" in text, text
        assert "Close that connection or program" in text and "the batch is retried" in text, text
        again = ingest(defs, instance, "b0002")
        assert again.success, failure_text(again)
    assert _batches(ws.settings.duckdb_path) == ["b0001", "b0002"]


def test_a_duckdb_file_released_within_the_wait_lets_the_run_go_on(tmp_path):
    ws = Workspace(root=tmp_path, config_path=write_config(tmp_path, **{"storage.lock_wait_seconds": 60}))
    defs = definitions_for(ws.config_path)
    with dg.instance_for_test() as instance:
        ws.land("b0001", clean_batch(1, 200))
        assert ingest(defs, instance, "b0001").success
        ws.land("b0002", clean_batch(2, 200))
        holder = _hold(ws.settings.duckdb_path, 2)
        started = time.monotonic()
        try:
            run = ingest(defs, instance, "b0002")
        finally:
            holder.wait()
        assert run.success, failure_text(run)
        assert time.monotonic() - started >= 1.0, "it waited for the holder"
    assert _batches(ws.settings.duckdb_path) == ["b0001", "b0002"]


@pytest.mark.parametrize("value", [-1, 3601, "soon"])
def test_lock_wait_seconds_is_validated_naming_the_key(tmp_path, value):
    from retrain_assets.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="storage.lock_wait_seconds"):
        load_settings(write_config(tmp_path, **{"storage.lock_wait_seconds": value}))


def test_the_lock_holder_is_read_from_duckdbs_message():
    from retrain_assets.resources import lock_holder

    text = ('IO Error: Could not set lock on file "/x/w.duckdb": Conflicting lock is held in /usr/bin/duckdb '
            f"(PID {os.getpid()}). See also https://duckdb.org/docs/current/connect/concurrency")
    holder = lock_holder(text)
    program = Path("/proc/self/cmdline").read_bytes().split(b"\0")[0].decode()  # this process, as /proc shows it
    assert holder.startswith(f"/usr/bin/duckdb (PID {os.getpid()}, running: {program}"), holder
    assert lock_holder('IO Error: Could not set lock on file "/x": Resource temporarily unavailable') == \
        "another process (DuckDB did not say which)"
    assert lock_holder("IO Error: Cannot open file: Permission denied") is None


def test_every_transaction_in_storage_goes_through_the_one_helper():
    """A hand-written BEGIN … ROLLBACK would again let a failed ROLLBACK hide a full disk."""
    import inspect

    source = inspect.getsource(storage)
    assert source.count('"BEGIN TRANSACTION"') == 1 and source.count('"ROLLBACK"') == 1, \
        "use storage.transaction(conn, doing) instead of BEGIN/COMMIT/ROLLBACK by hand"


@pytest.mark.slow
def test_a_held_file_fails_a_sensor_tick_inside_its_timeout_and_the_ingest_is_retried_once_free(tmp_path):
    """A sensor waits at most SENSOR_LOCK_WAIT_SECONDS (a tick has 60 s), naming the holder; an ingest
    that failed on the held file is retried by the landing sensor and succeeds once it is free."""
    from retrain_assets.constants import DRIFT_SENSOR
    from retrain_assets.resources import SENSOR_LOCK_WAIT_SECONDS
    from retrain_assets.sensors.landing import TAG_RETRY_OF
    from retrain_assets_tests.conftest import Retrainer, tick
    from retrain_assets_tests.test_automation import evaluate

    r = Retrainer(tmp_path / "ws", dg.DagsterInstance.ephemeral(), **{"automation.ingest_retry_minutes": 0})
    with dg.instance_for_test() as instance:
        r.instance = instance
        r.land(1, rows=200)
        holder = _hold(r.settings.duckdb_path, 120)
        started = time.monotonic()
        try:
            with pytest.raises(Exception) as raised:
                evaluate(r, DRIFT_SENSOR)
        finally:
            holder.kill()
            holder.wait()
        waited = time.monotonic() - started
        assert SENSOR_LOCK_WAIT_SECONDS <= waited < SENSOR_LOCK_WAIT_SECONDS + 15, waited
        text = str(raised.value) + "".join(str(getattr(raised.value, "__cause__", "")))
        assert "is held by another process" in text and f"PID {holder.pid}" in text, text

        r.reconfigure(**{"storage.lock_wait_seconds": 1})
        r.ws.land("batch_0002", clean_batch(2, 200))
        first = tick(r.defs, instance)
        request = [q for q in first.run_requests if q.partition_key == "batch_0002"][0]
        holder = _hold(r.settings.duckdb_path, 120)
        try:
            failed = ingest(r.defs, instance, "batch_0002", tags=request.tags)
        finally:
            holder.kill()
            holder.wait()
        assert not failed.success
        retry = [q for q in tick(r.defs, instance, cursor=first.cursor).run_requests if q.tags.get(TAG_RETRY_OF)]
        assert [q.partition_key for q in retry] == ["batch_0002"]
        assert "is held by another process" in retry[0].tags["retrain/reason"]
        assert ingest(r.defs, instance, "batch_0002", tags=retry[0].tags).success
    assert _batches(r.settings.duckdb_path) == ["batch_0001", "batch_0002"]
