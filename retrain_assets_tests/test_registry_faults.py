"""Registry faults: the champion served from a plain process, and the registry and promotion ledger
after the `retrain` job's process is SIGKILLed mid-training and mid-promotion.

The kill tests are real: a child process runs the `retrain` job in-process with one function
wrapped to write a marker file and hang; the test kills the child's whole process group with
SIGKILL once the marker appears, then checks what a reader of the MLflow registry and the DuckDB
ledger sees, and that an unpatched rerun of the job settles everything.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import mlflow
import numpy as np
import pandas as pd
import pytest

from retrain_assets.constants import RETRAIN_JOB
from retrain_assets.core import registry as reg, synthetic, synthetic_batches
from retrain_assets.core.ledger import read_ledger as ledger_table
from retrain_assets.definitions import build_definitions
from retrain_assets_tests.conftest import Workspace, clean_batch, failure_text, ingest, write_config

BATCH_ROWS = 800
MARKER_TIMEOUT_SECONDS = 120
TARGET = "churned"
ID_COLUMN = "customer_id"
TIME_COLUMN = "event_time"


# Helpers ------------------------------------------------------------------------------------------


@contextmanager
def persistent_instance(home: Path):
    """A Dagster instance stored in ``home`` (a child process reaches it through DAGSTER_HOME)."""
    home.mkdir(parents=True, exist_ok=True)  # instance_for_test writes dagster.yaml there, not mkdir
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        yield instance


def land_and_ingest(ws: Workspace, defs: dg.Definitions, instance: dg.DagsterInstance, index: int) -> Path:
    """Land clean batch ``index`` as CSV and ingest it; returns the landed file."""
    batch_id = f"batch_{index:04d}"
    path = ws.land(batch_id, clean_batch(index, BATCH_ROWS))
    result = ingest(defs, instance, batch_id)
    assert result.success, failure_text(result)
    return path


def run_retrain(defs: dg.Definitions, instance: dg.DagsterInstance):
    return defs.resolve_job_def(RETRAIN_JOB).execute_in_process(instance=instance, raise_on_error=False)


def bootstrap(ws: Workspace, defs: dg.Definitions, instance: dg.DagsterInstance) -> list[Path]:
    """Three labelled batches and a first retrain that makes v1 the champion."""
    landed = [land_and_ingest(ws, defs, instance, i) for i in (1, 2, 3)]
    result = run_retrain(defs, instance)
    assert result.success, failure_text(result)
    assert champion_version(ws) == "1"
    return landed


def champion_version(ws: Workspace) -> str | None:
    s = ws.settings
    return reg.alias_version(s.mlflow_tracking_uri, s.registered_model_name, reg.CHAMPION_ALIAS)


def gates_passed(ws: Workspace, version: str) -> str | None:
    s = ws.settings
    return reg.version_tags(s.mlflow_tracking_uri, s.registered_model_name, version).get(reg.TAG_GATES_PASSED)


def versions(ws: Workspace) -> list[str]:
    s = ws.settings
    found = reg.client_for(s.mlflow_tracking_uri).search_model_versions(f"name = '{s.registered_model_name}'")
    return sorted((str(v.version) for v in found), key=int)


def read_ledger(ws: Workspace) -> pd.DataFrame:
    """The ledger, through a connection closed at once (DuckDB allows one writing process)."""
    s = ws.settings
    with duckdb.connect(str(s.duckdb_path)) as conn:
        return ledger_table(conn, s.registered_model_name)


def sklearn_model(ws: Workspace, version: str):
    """The registered version loaded with ``mlflow.sklearn`` (no global MLflow URI needed)."""
    s = ws.settings
    client = reg.client_for(s.mlflow_tracking_uri)
    return mlflow.sklearn.load_model(client.get_model_version_download_uri(s.registered_model_name, version))


def pyfunc_champion_predicts(ws: Workspace, frame: pd.DataFrame) -> np.ndarray:
    """``mlflow.pyfunc.load_model("models:/<name>@champion")`` and predict, as a serving client would."""
    s = ws.settings
    mlflow.set_tracking_uri(s.mlflow_tracking_uri)  # both undone after the test by own_mlflow_uris
    mlflow.set_registry_uri(s.mlflow_tracking_uri)
    model = mlflow.pyfunc.load_model(reg.model_uri(s.registered_model_name, alias=reg.CHAMPION_ALIAS))
    return np.asarray(model.predict(frame)).ravel()


def assert_registry_and_ledger_consistent(ws: Workspace) -> pd.DataFrame:
    """No pending ledger rows; every done promotion is to a gated version; the champion is the last one."""
    ledger = read_ledger(ws)
    assert not (ledger["status"] == "pending").any(), ledger[["status", "from_version", "to_version", "note"]]
    done = ledger[(ledger["status"] == "done") & (ledger["action"] == "promote")]
    assert len(done), ledger
    for version in done["to_version"]:
        assert gates_passed(ws, version) == "true", f"v{version} was promoted without passing its gates"
    champion = champion_version(ws)
    assert champion == done["to_version"].iloc[-1], (champion, ledger[["status", "to_version", "note"]])
    assert gates_passed(ws, champion) == "true"
    return ledger


def describe_killed_runs(ws: Workspace, instance: dg.DagsterInstance) -> None:
    """Print (never assert) how MLflow and Dagster record a run whose process was SIGKILLed."""
    s = ws.settings
    client = reg.client_for(s.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(s.mlflow_experiment)
    for run in client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"]):
        print(f"mlflow run {run.info.run_id[:8]} status={run.info.status} "
              f"dagster_run_id={run.data.tags.get('dagster_run_id', '?')[:8]} end_time={run.info.end_time}")
    for record in instance.get_run_records(dg.RunsFilter(job_name=RETRAIN_JOB)):
        print(f"dagster run {record.dagster_run.run_id[:8]} status={record.dagster_run.status.value}")


# 1. The champion in a process with nothing of the platform -----------------------------------------

SERVING_CLIENT = r'''
import importlib.abc
import json
import sys

BLOCKED = ("dagster", "retrain_assets", "great_expectations", "duckdb", "dagster_mlflow")


class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"serving client must not import {name}")
        return None


sys.meta_path.insert(0, Refuse())

import mlflow
import numpy as np
import pandas as pd

tracking_uri, model_uri, csv_path, parquet_path, target, id_column, time_column = sys.argv[1:8]
mlflow.set_tracking_uri(tracking_uri)
model = mlflow.pyfunc.load_model(model_uri)
as_landed = pd.read_csv(csv_path).drop(columns=[target])
frames = {
    "csv_as_landed": as_landed,
    "parquet": pd.read_parquet(parquet_path).drop(columns=[target]),
    "csv_features_only": as_landed.drop(columns=[id_column, time_column]),
}
predictions = {key: [v.item() for v in np.asarray(model.predict(frame)).ravel()] for key, frame in frames.items()}
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print(json.dumps({"predictions": predictions, "leaked_modules": leaked}))
'''


def test_plain_process_loads_champion_and_predicts_a_landed_batch(tmp_path):
    ws = Workspace(root=tmp_path, config_path=write_config(tmp_path))
    defs = build_definitions(ws.config_path)
    with persistent_instance(tmp_path / "dagster_home") as instance:
        landed = bootstrap(ws, defs, instance)
    csv_path = landed[0]
    parquet_path = synthetic_batches.write_batch(clean_batch(7, 300), tmp_path / "other" / "batch_0007.parquet")
    script = tmp_path / "serving_client.py"
    script.write_text(SERVING_CLIENT)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    s = ws.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}

    child = subprocess.run(
        [sys.executable, str(script), s.mlflow_tracking_uri,
         reg.model_uri(s.registered_model_name, alias=reg.CHAMPION_ALIAS),
         str(csv_path), str(parquet_path), TARGET, ID_COLUMN, TIME_COLUMN],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=180,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    reply = json.loads(child.stdout.strip().splitlines()[-1])
    assert reply["leaked_modules"] == []
    assert not (elsewhere / "mlruns").exists(), "loading the champion wrote ./mlruns in the working folder"
    assert sorted(p.name for p in elsewhere.iterdir()) == []

    as_landed = pd.read_csv(csv_path).drop(columns=[TARGET])
    assert as_landed[TIME_COLUMN].dtype == object  # the time column went in as text, as landed
    frames = {
        "csv_as_landed": as_landed,
        "parquet": pd.read_parquet(parquet_path).drop(columns=[TARGET]),
        "csv_features_only": as_landed.drop(columns=[ID_COLUMN, TIME_COLUMN]),
    }
    assert pd.api.types.is_datetime64_any_dtype(frames["parquet"][TIME_COLUMN])
    model = sklearn_model(ws, champion_version(ws))
    for key, frame in frames.items():
        served = reply["predictions"][key]
        assert len(served) == len(frame), key
        assert set(served) <= {0, 1}, (key, sorted(set(served))[:5])
        assert served == [v.item() for v in np.asarray(model.predict(frame)).ravel()], key


# 2. SIGKILL mid-training and mid-promotion ------------------------------------------------------------

KILLED_RETRAIN = r'''
import sys
import time
from pathlib import Path

import dagster as dg

import retrain_assets.core.retrain as training  # candidate_model fits through core.retrain.train_model
import retrain_assets.core.registry as registry
from retrain_assets.definitions import build_definitions

config_path, marker, point = sys.argv[1:4]


def signal_and_hang(what):
    Path(marker).write_text(what)
    time.sleep(600)


if point == "training":
    real_train = training.train_model

    def train(*args, **kwargs):
        signal_and_hang("training")
        return real_train(*args, **kwargs)

    training.train_model = train
else:
    real_move_alias = registry.move_alias

    def move_alias(tracking_uri, model_name, alias, version):
        if alias == "champion" and point == "before_champion_move":
            signal_and_hang(f"about to move champion to v{version}")
        real_move_alias(tracking_uri, model_name, alias, version)
        if alias == "champion" and point == "after_champion_move":
            signal_and_hang(f"moved champion to v{version}")

    registry.move_alias = move_alias

defs = build_definitions(config_path)
result = defs.resolve_job_def("retrain").execute_in_process(instance=dg.DagsterInstance.get(), raise_on_error=False)
print(f"the retrain run ended without being killed (success={result.success})")
sys.exit(3)
'''


def kill_retrain_at(ws: Workspace, home: Path, point: str) -> None:
    """Run the retrain job in a child patched to hang at ``point``; SIGKILL its process group there."""
    script = ws.root / "killed_retrain.py"
    script.write_text(KILLED_RETRAIN)
    marker = ws.root / f"hanging_{point}"
    log = ws.root / f"killed_retrain_{point}.log"
    workdir = ws.root / "child_cwd"
    workdir.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["DAGSTER_HOME"] = str(home)
    with open(log, "w") as out:
        child = subprocess.Popen(
            [sys.executable, str(script), str(ws.config_path), str(marker), point],
            cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + MARKER_TIMEOUT_SECONDS
        while not marker.exists():
            if child.poll() is not None:
                pytest.fail(f"the child exited ({child.returncode}) before reaching {point}:\n"
                            + log.read_text()[-4000:])
            if time.monotonic() > deadline:
                pytest.fail(f"no marker after {MARKER_TIMEOUT_SECONDS} s:\n" + log.read_text()[-4000:])
            time.sleep(0.1)
        print(f"child hanging at {point}: {marker.read_text()}")
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)  # the child and its serving smoke-test grandchild, if any
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert not (workdir / "mlruns").exists()


def rerun_and_check(ws: Workspace, defs: dg.Definitions, instance: dg.DagsterInstance) -> pd.DataFrame:
    """An unpatched rerun promotes its candidate and leaves registry and ledger consistent."""
    before = set(versions(ws))
    result = run_retrain(defs, instance)
    new = sorted(set(versions(ws)) - before, key=int)
    if not result.success:
        failed = {v: reg.version_tags(ws.settings.mlflow_tracking_uri, ws.settings.registered_model_name, v)
                  .get(reg.TAG_FAILED_GATES) for v in new}
        assert_registry_and_ledger_consistent(ws)
        pytest.fail(f"the rerun did not promote: failed gates {failed}; {failure_text(result)}")
    assert len(new) == 1, new
    assert champion_version(ws) == new[0]
    return assert_registry_and_ledger_consistent(ws)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_killed_during_training_leaves_the_champion_and_a_rerun_completes(tmp_path):
    ws = Workspace(root=tmp_path, config_path=write_config(tmp_path))
    defs = build_definitions(ws.config_path)
    home = tmp_path / "dagster_home"
    with persistent_instance(home) as instance:
        bootstrap(ws, defs, instance)
        fourth = land_and_ingest(ws, defs, instance, 4)

        kill_retrain_at(ws, home, "training")
        describe_killed_runs(ws, instance)

        assert champion_version(ws) == "1"
        assert versions(ws) == ["1"], "nothing is registered before training finishes"
        assert gates_passed(ws, "1") == "true"
        predictions = pyfunc_champion_predicts(ws, pd.read_csv(fourth).drop(columns=[TARGET]))
        assert len(predictions) == BATCH_ROWS and set(predictions.tolist()) <= {0, 1}
        assert (read_ledger(ws)["status"] == "done").all()

        ledger = rerun_and_check(ws, defs, instance)
    assert ledger["to_version"].tolist() == ["1", "2"]
    assert ledger["status"].tolist() == ["done", "done"]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("point", ["after_champion_move", "before_champion_move"])
def test_killed_during_promotion_leaves_a_consistent_registry_and_a_rerun_completes(tmp_path, point):
    ws = Workspace(root=tmp_path, config_path=write_config(tmp_path))
    defs = build_definitions(ws.config_path)
    home = tmp_path / "dagster_home"
    with persistent_instance(home) as instance:
        bootstrap(ws, defs, instance)
        fourth = land_and_ingest(ws, defs, instance, 4)

        kill_retrain_at(ws, home, point)
        describe_killed_runs(ws, instance)

        s = ws.settings
        assert versions(ws) == ["1", "2"]
        assert gates_passed(ws, "2") == "true"
        assert reg.alias_version(s.mlflow_tracking_uri, s.registered_model_name, reg.PREVIOUS_ALIAS) == "1"
        killed_champion = "2" if point == "after_champion_move" else "1"
        assert champion_version(ws) == killed_champion
        assert gates_passed(ws, killed_champion) == "true"
        predictions = pyfunc_champion_predicts(ws, pd.read_csv(fourth).drop(columns=[TARGET]))
        assert len(predictions) == BATCH_ROWS and set(predictions.tolist()) <= {0, 1}
        pending = read_ledger(ws).query("status == 'pending'")
        assert pending["to_version"].tolist() == ["2"], "the killed promotion's entry stays pending"
        pending_id = pending["entry_id"].iloc[0]

        ledger = rerun_and_check(ws, defs, instance)
    reconciled = ledger.set_index("entry_id").loc[pending_id]
    assert reconciled["note"].startswith("settled later"), reconciled["note"]
    if point == "after_champion_move":
        assert reconciled["status"] == "done"
        assert ledger["to_version"].tolist() == ["1", "2", "3"]
        assert ledger["from_version"].tolist()[1:] == ["1", "2"]
    else:
        assert reconciled["status"] == "aborted"
        assert ledger["to_version"].tolist() == ["1", "2", "3"]
        assert ledger["status"].tolist() == ["done", "aborted", "done"]
        assert ledger["from_version"].iloc[-1] == "1"
