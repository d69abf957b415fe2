"""The real `dagster` CLI in a subprocess, on a temp DAGSTER_HOME and a temp config."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from retrain_assets.constants import REPO_ROOT
from retrain_assets.core import storage
from retrain_assets_tests.conftest import Workspace, clean_batch, write_config

pytestmark = pytest.mark.cli
DAGSTER = str(Path(sys.executable).with_name("dagster"))


@pytest.fixture
def cli_env(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "deploy" / "local" / "dagster.yaml", home / "dagster.yaml")
    workspace = Workspace(tmp_path, write_config(tmp_path))
    env = {**os.environ, "DAGSTER_HOME": str(home), "RETRAIN_CONFIG": str(workspace.config_path)}
    return workspace, home, env


def _run(args: list[str], env: dict, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def _add_partitions(home: Path, keys: list[str]) -> None:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("batches", keys)


def test_cli_materializes_a_partition(cli_env):
    workspace, home, env = cli_env
    workspace.land("batch_0001", clean_batch(1))
    workspace.land("batch_0002", clean_batch(2, scenario="corrupt"))
    _add_partitions(home, ["batch_0001", "batch_0002"])
    base = [DAGSTER, "asset", "materialize", "-m", "retrain_assets.definitions", "--select", "raw_data,validated_data"]

    ok = _run([*base, "--partition", "batch_0001"], env)
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    with duckdb.connect(str(workspace.settings.duckdb_path)) as conn:
        assert len(storage.read_validated(conn, ["batch_0001"])) == 400

    bad = _run([*base, "--partition", "batch_0002"], env)
    assert bad.returncode != 0
    assert "batch_passes_validation" in bad.stdout + bad.stderr

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 2
        record = instance.fetch_materializations(dg.AssetKey("validated_data"), limit=10).records
        assert sorted(r.partition_key for r in record) == ["batch_0001", "batch_0002"]
        checks = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("validated_data"), "batch_passes_validation"), limit=10
        )
        assert sorted(c.status.value for c in checks) == ["FAILED", "SUCCEEDED"]
    assert workspace.rejected_files("batch_0002"), "the held-back file is kept in the rejected area"


def test_cli_definitions_validate_reports_a_bad_config(cli_env, tmp_path):
    _, _, env = cli_env
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset:\n  name: churn\n  landing_dir: in\n  target: churned\n  task: classification\n"
                   "storage:\n  root: state\n  duckdb: x\n")
    result = _run([DAGSTER, "definitions", "validate"], {**env, "RETRAIN_CONFIG": str(bad)})
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "storage.duckdb: unknown key" in output and str(bad) in output
    good = _run([DAGSTER, "definitions", "validate"], env)
    assert good.returncode == 0, good.stdout[-2000:] + good.stderr[-2000:]
