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
import yaml

from retrain_assets.constants import REPO_ROOT
from retrain_assets.core import storage
from retrain_assets.core.ledger import read_ledger
from retrain_assets_tests.conftest import Workspace, clean_batch, write_config
from retrain_assets_tests.dagster_dev import running_dagster_dev

pytestmark = pytest.mark.cli
DAGSTER = str(Path(sys.executable).with_name("dagster"))
DG = str(Path(sys.executable).with_name("dg"))


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
    # Held back, not broken: the run succeeds and the failed check is in the output with its reason.
    assert bad.returncode == 0, bad.stdout + bad.stderr
    assert "Asset check 'batch_passes_validation' on 'validated_data' did not pass" in bad.stdout + bad.stderr

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


def test_dg_check_defs_reports_a_bad_config_and_dg_launch_runs_a_job(cli_env, tmp_path):
    """`dg` from the repo root: `dg check defs` names a bad key, passes a good config; `dg launch`
    runs a job on the deployment's instance."""
    _, home, env = cli_env
    env = {**env, "VIRTUAL_ENV": str(Path(sys.executable).parent.parent)}
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset:\n  name: churn\n  landing_dir: in\n  target: churned\n  task: classification\n"
                   "storage:\n  root: state\n  duckdb: x\n")
    result = _run([DG, "check", "defs"], {**env, "RETRAIN_CONFIG": str(bad)})
    assert result.returncode != 0
    assert "storage.duckdb: unknown key" in result.stdout + result.stderr
    good = _run([DG, "check", "defs"], env)
    assert good.returncode == 0 and "All definitions loaded successfully" in good.stdout + good.stderr, \
        good.stdout[-2000:] + good.stderr[-2000:]
    launched = _run([DG, "launch", "--job", "refresh_model_health"], env)
    assert launched.returncode == 0, launched.stdout[-2000:] + launched.stderr[-2000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.fetch_materializations(dg.AssetKey("model_health"), limit=5).records
        assert len(records) == 1
        assert records[0].asset_materialization.metadata["verdict"].value == "no_champion"


def test_dg_dev_serves_the_definitions(tmp_path):
    """`dg dev` from the repo root loads the code location with every asset, model_health included."""
    workspace = Workspace(tmp_path, write_config(tmp_path))
    with running_dagster_dev(tmp_path, workspace.config_path, cli="dg") as dev:
        dev.wait_for("the code location to load", dev.code_locations_loaded, 180)
        data = dev.graphql("{ assetNodes { assetKey { path } } }")
        keys = {"/".join(n["assetKey"]["path"]) for n in data["assetNodes"]}
        assert {"raw_data", "candidate_model", "production_model", "model_health"} <= keys


def test_cli_retrain_job_promotes_through_the_multiprocess_executor(cli_env, tmp_path):
    """The retrain job as a user's CI runs it: `dagster job execute`, each step in its own process
    (automation.executor: multiprocess, at most 2 at a time), one MLflow run shared by both steps
    and closed by the hook."""
    workspace, home, env = cli_env
    config = yaml.safe_load(workspace.config_path.read_text())
    config.setdefault("automation", {})["executor"] = "multiprocess"
    config["automation"]["executor_config"] = {"max_concurrent": 2}
    workspace.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    ids = ["batch_0001", "batch_0002", "batch_0003"]
    for i, batch_id in enumerate(ids, start=1):
        workspace.land(batch_id, clean_batch(i, 600))
    _add_partitions(home, ids)
    for batch_id in ids:
        ingested = _run([DAGSTER, "job", "execute", "-m", "retrain_assets.definitions", "-j", "ingest_batch",
                         "--tags", f'{{"dagster/partition": "{batch_id}"}}'], env)
        assert ingested.returncode == 0, ingested.stdout[-3000:] + ingested.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = _run([DAGSTER, "job", "execute", "-m", "retrain_assets.definitions", "-j", "retrain"], env, cwd=elsewhere)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert not (elsewhere / "mlruns").exists()

    from retrain_assets.core import registry as reg

    s = workspace.settings
    assert reg.alias_version(s.mlflow_tracking_uri, s.registered_model_name, reg.CHAMPION_ALIAS) == "1"
    client = reg.client_for(s.mlflow_tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(s.mlflow_experiment).experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED", [(r.info.run_id, r.info.status) for r in runs]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        retrain_runs = [r for r in instance.get_runs() if r.job_name == "retrain"]
        assert len(retrain_runs) == 1 and retrain_runs[0].is_success
        engine = [e.message for e in instance.all_logs(retrain_runs[0].run_id)
                  if e.dagster_event is not None and e.dagster_event.event_type_value == "ENGINE_EVENT"]
        assert any("Executing steps using multiprocess executor" in m for m in engine), engine
        assert runs[0].data.tags["dagster_run_id"] == retrain_runs[0].run_id
        checks = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("candidate_model"), "champion_comparison"), limit=5
        )
        assert [c.status.value for c in checks] == ["SUCCEEDED"]
    with duckdb.connect(str(s.duckdb_path)) as conn:
        ledger = read_ledger(conn)
    assert list(ledger["status"]) == ["done"] and list(ledger["to_version"]) == ["1"]
    assert ledger["launched_by"].iloc[0] == "manual (UI or CLI)"
