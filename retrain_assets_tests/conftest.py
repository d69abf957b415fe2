"""Shared fixtures: a temp workspace (config, landing folder, storage root) and Dagster helpers."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from retrain_assets.constants import (
    CANDIDATE_MODEL, DEMO_CONFIG_PATH, DRIFT_REPORT, INGEST_JOB, LANDING_SENSOR, PRODUCTION_METRICS, PRODUCTION_MODEL,
    RAW_DATA, RETRAIN_JOB, VALIDATED_DATA, VALIDATION_GATE,
)
from retrain_assets.core import registry as reg, synthetic, synthetic_batches
from retrain_assets.core.ledger import read_ledger
from retrain_assets.definitions import build_definitions
from retrain_assets.resources import resources_for
from retrain_assets.settings import Settings, load_settings


@dataclass
class Workspace:
    """A user's setup in a temp folder: config file, landing folder and storage root."""

    root: Path
    config_path: Path

    @property
    def settings(self) -> Settings:
        return load_settings(self.config_path)

    @property
    def landing(self) -> Path:
        return self.settings.dataset.landing_dir

    @property
    def rejected(self) -> Path:
        return self.settings.rejected_dir

    def land(self, batch_id: str, content: pd.DataFrame | bytes | str, ext: str = ".csv", age_seconds: float = 60) -> Path:
        """Drop a batch file into the landing folder (aged so it counts as settled)."""
        path = self.landing / f"{batch_id}{ext}"
        self.landing.mkdir(parents=True, exist_ok=True)
        if isinstance(content, pd.DataFrame):
            synthetic_batches.write_batch(content, path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        past = time.time() - age_seconds
        os.utime(path, (past, past))
        return path

    def rejected_files(self, batch_id: str) -> list[Path]:
        folder = self.rejected / batch_id
        return sorted(p for p in folder.glob("*") if not p.name.endswith(".reason.json")) if folder.exists() else []


def write_config(root: Path, **overrides) -> Path:
    """The demo config with this workspace's folders, settle time 0 and overrides (dotted keys)."""
    config = yaml.safe_load(DEMO_CONFIG_PATH.read_text())
    config["dataset"]["landing_dir"] = str(root / "landing")
    config["storage"]["root"] = str(root / "state")
    config["automation"]["settle_seconds"] = 0
    for dotted, value in overrides.items():
        node = config
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(autouse=True)
def own_mlflow_uris(monkeypatch):
    """Start each test with no process-wide MLflow URI, and put back whatever was there after it.

    ``mlflow.set_tracking_uri``/``set_registry_uri`` write module globals *and* ``os.environ`` (so
    children inherit them); dagster-mlflow sets the tracking URI on every in-process run and
    conftest's ``register_champion`` sets the registry URI. Left over from another test, a registry
    URI would make a test that resolves ``models:/`` read another test's store.
    """
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(registry_utils, "_registry_uri", None)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)


@pytest.fixture(autouse=True)
def no_leftover_defs_state_storage():
    """Each test starts with no "current" Dagster defs-state storage.

    Entering a DagsterInstance sets a context variable that Definitions read when they first
    build their repository; a sensor context entered inside a test (build_sensor_context) can leave
    it pointing at that test's instance after the instance is closed, and the next test that
    resolves Definitions without an instance then fails with "Attempted to resolve undefined
    DagsterInstance weakref" (seen in test_definitions after test_automation). Private API: tests only.
    """
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    with set_defs_state_storage(None):
        yield


def definitions_for(config_path: Path) -> dg.Definitions:
    """The Definitions for a config, their repository resolved now with no defs-state storage.

    Dagster resolves a Definitions' repository lazily, reading the "current" defs-state storage
    from a context variable; an instance entered earlier in the same test (a sensor context, a
    run) can leave that pointing at a collected instance, and the first resolve then fails with
    "Attempted to resolve undefined DagsterInstance weakref" (seen in CI in test_training after a
    reconfigure). Resolved here, the repository is cached and never reads it again.
    """
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    defs = build_definitions(config_path)
    with set_defs_state_storage(None):
        defs.get_repository_def()
    return defs


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(root=tmp_path, config_path=write_config(tmp_path))


@pytest.fixture
def defs(workspace: Workspace) -> dg.Definitions:
    return definitions_for(workspace.config_path)


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def clean_batch(batch_index: int = 1, n_rows: int = 400, **kwargs) -> pd.DataFrame:
    return synthetic_batches.make_batch(n_rows, seed=100 + batch_index, batch_index=batch_index, **kwargs)


def tick(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None = None) -> dg.SensorResult:
    """Evaluate the landing sensor once; apply its partition requests as the daemon would."""
    sensor = defs.resolve_sensor_def(LANDING_SENSOR)
    resources = resources_for(defs, sensor)
    context = dg.build_sensor_context(instance=instance, definitions=defs, resources=resources, cursor=cursor)
    result = sensor(context)
    for add in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(add.partitions_def_name, list(add.partition_keys))
    return result


def ingest(defs: dg.Definitions, instance: dg.DagsterInstance, batch_id: str, tags: dict | None = None):
    """Run the ingest job for one batch in-process (the partition is added if needed)."""
    if not instance.has_dynamic_partition("batches", batch_id):
        instance.add_dynamic_partitions("batches", [batch_id])
    return defs.resolve_job_def(INGEST_JOB).execute_in_process(
        instance=instance, partition_key=batch_id, tags=tags or {}, raise_on_error=False
    )


def failure_text(result) -> str:
    """Every step failure's message and user-facing description, joined."""
    parts = []
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        parts.append(data.error.message if data.error else "")
        if data.user_failure_data is not None:
            parts.append(data.user_failure_data.description or "")
    return "\n".join(parts)


def check_evaluation(result):
    """The validation gate's evaluation in a run (exactly one)."""
    evaluations = [e for e in result.get_asset_check_evaluations() if e.check_name == VALIDATION_GATE]
    assert len(evaluations) == 1, result.get_asset_check_evaluations()
    return evaluations[0]


def materialized(result, key: str) -> bool:
    return any(e.asset_key == dg.AssetKey(key) for e in result.get_asset_materialization_events())


def failed_partitions(instance: dg.DagsterInstance, key: str) -> set[str]:
    """The batches the Dagster UI shows as failed for asset ``key`` (what its partition status cache
    holds: a batch whose newest run that planned the asset failed without materializing it)."""
    from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

    from retrain_assets.partitions import batch_partitions

    with dg.partition_loading_context(dynamic_partitions_store=instance):
        value = get_and_update_asset_status_cache_value(instance, dg.AssetKey(key), batch_partitions)
        if value is None:
            return set()
        return set(value.deserialize_failed_partition_subsets(batch_partitions).get_partition_keys())


def run_log(instance: dg.DagsterInstance, run_id: str) -> str:
    """Every message the run's steps logged, one per line."""
    return "\n".join(entry.user_message for entry in instance.all_logs(run_id))


def failed_checks(result, key: str) -> dict[str, dg.AssetCheckEvaluation]:
    """The checks of asset ``key`` that failed in the run, by name."""
    return {e.check_name: e for e in result.get_asset_check_evaluations()
            if e.asset_key == dg.AssetKey(key) and not e.passed}


def assert_file_refused(result) -> str:
    """An ingest run whose landed file raw_data refused: the run succeeded (nothing broke: the file
    was judged), file_accepted failed with severity WARN, and nothing was materialized. Returns the
    reason a person reads (the check's description)."""
    assert result.success, failure_text(result)
    failed = failed_checks(result, RAW_DATA)
    assert list(failed) == ["file_accepted"], failed
    assert failed["file_accepted"].severity == dg.AssetCheckSeverity.WARN
    assert not result.get_asset_materialization_events(), "a refused file must not be materialized"
    return failed["file_accepted"].description


def assert_held_back(result) -> dg.AssetCheckEvaluation:
    """An ingest run that held its batch back: the run succeeded (a held-back batch paints nothing
    red), batch_passes_validation failed with severity WARN, validated_data recorded the verdict, and
    drift_report and production_metrics were skipped (not materialized, not failed). Returns the check."""
    assert result.success, failure_text(result)
    failed = failed_checks(result, VALIDATED_DATA)
    assert list(failed) == [VALIDATION_GATE], failed
    assert failed[VALIDATION_GATE].severity == dg.AssetCheckSeverity.WARN
    assert materialized(result, VALIDATED_DATA)
    assert not materialized(result, DRIFT_REPORT) and not materialized(result, PRODUCTION_METRICS)
    return failed[VALIDATION_GATE]


def assert_refused(result) -> set[str]:
    """A retrain whose candidate failed its gates: the run succeeded (the champion's asset stays as it
    was, not red), each failed gate has severity WARN, candidate_model materialized and
    production_model did not. Returns the failed gates' names."""
    assert result.success, failure_text(result)
    failed = failed_checks(result, CANDIDATE_MODEL)
    assert failed and all(e.severity == dg.AssetCheckSeverity.WARN for e in failed.values()), failed
    assert materialized(result, CANDIDATE_MODEL) and not materialized(result, PRODUCTION_MODEL)
    return set(failed)


def churn_pipeline():
    """A plain scikit-learn pipeline on the demo features (stands in for a promoted champion)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [c for c, kind in synthetic.FEATURES.items() if kind == "numeric"]
    categorical = [c for c, kind in synthetic.FEATURES.items() if kind == "categorical"]
    prep = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore"), categorical),
        ]
    )
    return Pipeline([("prep", prep), ("model", LogisticRegression(max_iter=500))])


def register_champion(settings: Settings, model, *, training_batches: list[str], holdout_batches: list[str],
                      holdout_metric: float, metric: str = "roc_auc", serialization_format: str = "skops") -> str:
    """Log, register and alias a model as `champion` in the workspace's MLflow store, with the
    tags the platform reads (``serialization_format`` other than skops: a version registered by
    hand, which the platform must refuse to load). Returns the version."""
    import json

    import mlflow
    import skops.io

    from retrain_assets.core import registry

    uri = settings.mlflow_tracking_uri
    settings.storage.root.mkdir(parents=True, exist_ok=True)
    client = mlflow.MlflowClient(uri, uri)
    name = settings.registered_model_name
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(
        name, artifact_location=str(settings.storage.root / "mlartifacts"))
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    skops_kwargs = ({"skops_trusted_types": skops.io.get_untrusted_types(data=skops.io.dumps(model))}
                    if serialization_format == "skops" else {"serialization_format": serialization_format})
    with mlflow.start_run(experiment_id=experiment_id):
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name=name,
                                        pip_requirements=["scikit-learn"], **skops_kwargs)
    version = str(info.registered_model_version)
    client.set_registered_model_alias(name, registry.CHAMPION_ALIAS, version)
    tags = {
        registry.TAG_TRAINING_BATCHES: json.dumps(training_batches),
        registry.TAG_HOLDOUT_BATCHES: json.dumps(holdout_batches),
        registry.TAG_METRIC: metric,
        registry.TAG_HOLDOUT_METRIC: str(holdout_metric),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    return version


class Retrainer:
    """A workspace with its Definitions, a Dagster instance, and the registry/ledger views."""

    def __init__(self, root: Path, instance: dg.DagsterInstance, **overrides):
        root.mkdir(parents=True, exist_ok=True)
        self.ws = Workspace(root=root, config_path=write_config(root, **overrides))
        self.instance = instance
        self.defs = definitions_for(self.ws.config_path)

    def reconfigure(self, **overrides) -> None:
        """Change config keys (dotted) and rebuild the Definitions, keeping the state."""
        config = yaml.safe_load(self.ws.config_path.read_text())
        for dotted, value in overrides.items():
            node = config
            *parents, leaf = dotted.split(".")
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = value
        self.ws.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.defs = definitions_for(self.ws.config_path)

    @property
    def settings(self):
        return self.ws.settings

    def land(self, index: int, frame: pd.DataFrame | None = None, rows: int = 800) -> None:
        batch_id = f"batch_{index:04d}"
        self.ws.land(batch_id, clean_batch(index, rows) if frame is None else frame)
        result = ingest(self.defs, self.instance, batch_id)
        assert result.success, failure_text(result)

    def retrain(self, tags: dict | None = None):
        return self.defs.resolve_job_def(RETRAIN_JOB).execute_in_process(
            instance=self.instance, tags=tags or {}, raise_on_error=False
        )

    def alias(self, alias: str) -> str | None:
        return reg.alias_version(self.settings.mlflow_tracking_uri, self.settings.registered_model_name, alias)

    def tags(self, version: str) -> dict[str, str]:
        return reg.version_tags(self.settings.mlflow_tracking_uri, self.settings.registered_model_name, version)

    def ledger(self) -> pd.DataFrame:
        import duckdb

        with duckdb.connect(str(self.settings.duckdb_path)) as conn:
            return read_ledger(conn)
