"""`make demo` as a newcomer runs it: it keeps to its own folder and Dagster home, removes only what
it made, and tells a calm story. The folder rules are checked directly (fast); the real
`make demo` runs once, with DAGSTER_HOME exported to a folder holding a file of the user's."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from retrain_assets.constants import REPO_ROOT
from retrain_assets.demo import WIDTH
from retrain_assets.demo_folder import KEPT, MANIFEST, MARKER, SUBFOLDERS, DemoFolder


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path) → SHA-256 of its bytes."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*")) if path.is_file()
    }


# --------------------------------------------------------------------------
# The folder rules
# --------------------------------------------------------------------------


def test_a_new_folder_gets_its_marked_subfolders(tmp_path):
    reset = DemoFolder(tmp_path / "demo").reset()
    assert reset.removed == 0 and not reset.kept
    for name in SUBFOLDERS:
        assert (tmp_path / "demo" / name / MARKER).is_file()


def test_a_second_run_removes_what_the_demo_made_and_keeps_a_users_landed_file_byte_for_byte(tmp_path):
    folder = DemoFolder(tmp_path / "demo")
    folder.reset()
    staged = tmp_path / "batch_0001.csv"
    staged.write_text("a,b\n1,2\n")
    folder.record_landed(staged)
    staged.rename(folder.root / "landing" / "batch_0001.csv")
    (folder.root / "state" / "warehouse.duckdb").write_bytes(b"demo state")
    (folder.home / "history").mkdir()
    (folder.home / "history" / "runs.db").write_bytes(b"demo runs")
    mine = folder.root / "landing" / "my_batch.csv"
    mine.write_bytes(b"id,x\n7,\xff\n")  # a user's file, not valid UTF-8 even: bytes must survive as they are

    reset = folder.reset()

    assert reset.removed == 3
    [(source, kept)] = reset.kept
    assert source == mine and kept.read_bytes() == b"id,x\n7,\xff\n"
    assert kept.relative_to(folder.root).parts[0] == KEPT
    assert not (folder.root / MANIFEST).exists()
    for name in SUBFOLDERS:
        assert [p.name for p in (folder.root / name).iterdir()] == [MARKER]


def test_a_users_file_refused_into_the_rejected_area_is_kept_with_its_reason(tmp_path):
    folder = DemoFolder(tmp_path / "demo")
    folder.reset()
    rejected = folder.root / "state" / "rejected" / "notes"
    rejected.mkdir(parents=True)
    (rejected / "20261204T000000Z__notes.txt").write_bytes(b"user notes")
    (rejected / "20261204T000000Z__notes.txt.reason.json").write_text("{}")

    reset = folder.reset()

    assert {p.name for _, p in reset.kept} == {"20261204T000000Z__notes.txt", "20261204T000000Z__notes.txt.reason.json"}
    assert all(p.exists() for _, p in reset.kept)


def test_an_unmarked_folder_is_moved_whole_never_emptied(tmp_path):
    root = tmp_path / "demo"
    (root / "state").mkdir(parents=True)
    (root / "state" / "mlflow.db").write_bytes(b"someone's registry")
    before = snapshot(root / "state")

    reset = DemoFolder(root).reset()

    [(source, kept)] = reset.kept
    assert source == root / "state" and snapshot(kept) == before
    assert [p.name for p in (root / "state").iterdir()] == [MARKER]


# --------------------------------------------------------------------------
# The real `make demo`
# --------------------------------------------------------------------------


@pytest.mark.cli
@pytest.mark.timeout(900)
def test_make_demo_keeps_to_its_own_home_and_tells_a_calm_story(tmp_path):
    """DAGSTER_HOME exported to a real-looking instance: `make demo` neither reads nor writes it."""
    user_home = tmp_path / "my_dagster_home"
    (user_home / "history").mkdir(parents=True)
    (user_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (user_home / "history" / "runs.db").write_bytes(os.urandom(4096))
    before = snapshot(user_home)
    demo_dir = tmp_path / "demo"
    env = {**os.environ, "DAGSTER_HOME": str(user_home), "RETRAIN_CONFIG": "", "PYTHONUNBUFFERED": "1"}

    done = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO_ROOT), "demo", f"DEMO_DIR={demo_dir}",
         "DEMO_ARGS=--rows 600"],
        env=env, capture_output=True, text=True, timeout=840,
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert snapshot(user_home) == before, "make demo touched the exported DAGSTER_HOME"
    assert (demo_dir / "dagster_home" / "dagster.yaml").is_file()
    assert any((demo_dir / "dagster_home").rglob("*.db")), "the demo's runs are in its own Dagster home"
    out = done.stdout
    assert "batch_0001.csv  [clean]  validated (600 rows)" in out
    assert "drift_retrain_sensor: retrain (bootstrap) -> promoted, champion v1" in out
    assert "HELD BACK (" in out and "rows quarantined)" in out
    # Calm: no progress bars, library log lines or warnings; no batch named twice in a row; nothing cut.
    for noise in ("Downloading artifacts", " - dagster - ", "Warning", "batch batch_0007: batch batch_0007"):
        assert noise not in out + done.stderr, noise
    for line in out.splitlines():
        assert len(line) <= WIDTH or " " not in line.strip(), f"line longer than {WIDTH}: {line!r}"
    # Honest colours: the demo lands bad files on purpose (an empty file, a 12% corrupt batch, a renamed
    # column). They are refused and held back as failed checks (WARN) in runs that succeed, so after the
    # demo no run failed and no asset has a failed partition: nothing in the UI is red.
    import dagster as dg

    from retrain_assets_tests.conftest import failed_partitions

    with dg.DagsterInstance.from_config(str(demo_dir / "dagster_home")) as instance:
        runs = instance.get_runs()
        assert runs and not [(r.job_name, r.tags.get("dagster/partition")) for r in runs
                             if r.status == dg.DagsterRunStatus.FAILURE]
        for key in ("raw_data", "validated_data", "drift_report", "production_metrics"):
            assert failed_partitions(instance, key) == set(), key
        failed_checks = set()
        for key, name in (("raw_data", "file_accepted"), ("validated_data", "batch_passes_validation")):
            history = instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(dg.AssetKey(key), name), limit=50)
            failed_checks |= {(name, h.event.dagster_event.event_specific_data.severity.value) for h in history
                              if h.status.value == "FAILED"}
        assert failed_checks == {("file_accepted", "WARN"), ("batch_passes_validation", "WARN")}, failed_checks
