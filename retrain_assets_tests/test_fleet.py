"""A fleet: RETRAIN_CONFIG names a folder, one <model>.yaml per model, one code location for all.

In-process: the names each model gets, a bad model file left out loudly while the others load,
the fleet-wide rules (order of need, budget). Under the real daemon: two models with different
datasets and tasks each get their own champion from their own landed batches, and a bad file for
one never touches the other."""

from __future__ import annotations

import shutil
import uuid
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest
import yaml

from retrain_assets.constants import (
    CANDIDATE_MODEL, FLEET_STRICT_ENV_VAR, INGEST_JOB, LANDING_SENSOR, MODEL_HEALTH, RAW_DATA, RETRAIN_JOB, RETRAIN_POOL, DUCKDB_POOL,
)
from retrain_assets.core import fleet, registry as reg, synthetic, synthetic_batches
from retrain_assets.core.model_registry import MlflowRegistry
from retrain_assets.names import ModelNames, TAG_MODEL
from retrain_assets.resources import resources_for
from retrain_assets.settings import load_settings
from retrain_assets.settings.base import SettingsError
from retrain_assets.settings.fleet import load_fleet
from retrain_assets.sensors.health import FLEET_CONFIG_SENSOR
from retrain_assets.state import fleet_budget_spent, retrain_tags
from retrain_assets_tests.conftest import definitions_for, write_config

LOOSE = {"automation.cooldown_minutes": 0, "automation.cooldown_batches": 1, "automation.min_new_labelled_rows": 0,
         "automation.schedule_cron": "0 3 1 1 *"}


def model_file(folder: Path, name: str, **overrides) -> Path:
    """``folder/<name>.yaml``: the demo config with the model's own landing folder and storage."""
    own = folder.parent / f"{name}_files"
    own.mkdir(parents=True, exist_ok=True)
    source = write_config(own, **overrides)
    path = folder / f"{name}.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.move(source, path)
    return path


def two_models(tmp_path: Path, **common) -> Path:
    folder = tmp_path / "models"
    model_file(folder, "churn", **{"dataset.name": "churn", **common})
    model_file(folder, "spend", **{"dataset.name": "spend", "dataset.target": synthetic.REGRESSION_TARGET,
                                   "dataset.task": "regression", "schema.classes": None, **common})
    return folder


def land(settings, batch_id: str, frame) -> Path:
    landing = settings.dataset.landing_dir
    landing.mkdir(parents=True, exist_ok=True)
    path = landing / f"{batch_id}.csv"
    frame.to_csv(path, index=False)
    return path


# --------------------------------------------------------------------------
# The names, the loading and the rules
# --------------------------------------------------------------------------


def test_each_model_of_a_folder_gets_its_own_keys_group_jobs_sensors_pools_and_resources(tmp_path):
    defs = definitions_for(two_models(tmp_path))
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    for model in ("churn", "spend"):
        names = ModelNames(model)
        assert {f"{model}/{a}" for a in (RAW_DATA, CANDIDATE_MODEL, MODEL_HEALTH)} <= keys
        assert graph.get(names.key(RAW_DATA)).group_name == model
        assert graph.get(names.key(RAW_DATA)).pools == {f"{model}__{DUCKDB_POOL}"}  # one DuckDB file per model
        assert graph.get(names.key(CANDIDATE_MODEL)).pools == {RETRAIN_POOL}  # the fleet's shared limit
        assert defs.resolve_job_def(f"{model}__{RETRAIN_JOB}").tags[TAG_MODEL] == model
        sensor = defs.resolve_sensor_def(f"{model}__{LANDING_SENSOR}")
        assert sensor.required_resource_keys == {f"{model}__settings"}
    assert "fleet_health" in keys and not any(k in keys for k in (RAW_DATA, CANDIDATE_MODEL))
    churn = defs.resources["churn__settings"].load()
    spend = defs.resources["spend__settings"].load()
    assert churn.dataset.task == "classification" and spend.dataset.task == "regression"
    assert churn.duckdb_path != spend.duckdb_path


def test_a_single_config_file_keeps_the_plain_names(defs):
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert RAW_DATA in keys and "fleet_health" not in keys and not any("/" in k for k in keys)
    assert defs.resolve_job_def(RETRAIN_JOB).tags.get(TAG_MODEL) is None


def test_a_bad_model_file_is_left_out_loudly_and_the_others_load(tmp_path, monkeypatch):
    folder = two_models(tmp_path)
    (folder / "broken.yaml").write_text("dataset:\n  task: sideways\n")
    (folder / "Bad Name.yaml").write_text((folder / "churn.yaml").read_text())
    twin = yaml.safe_load((folder / "churn.yaml").read_text())
    (folder / "twin.yaml").write_text(yaml.safe_dump(twin))  # same storage as churn: would corrupt it
    config = load_fleet(folder)
    assert [m.name for m in config.models] == ["churn", "spend"]
    errors = {path.name: message for path, message in config.errors}
    assert set(errors) == {"broken.yaml", "Bad Name.yaml", "twin.yaml"}
    assert "dataset" in errors["broken.yaml"] and "cannot name a model" in errors["Bad Name.yaml"]
    assert "storage.root" in errors["twin.yaml"] and "churn.yaml" in errors["twin.yaml"]

    defs = definitions_for(folder)
    assert defs.resolve_job_def("churn__retrain") and defs.resolve_job_def("spend__retrain")
    sensor = defs.resolve_sensor_def(FLEET_CONFIG_SENSOR)
    with dg.instance_for_test() as instance, pytest.raises(dg.Failure, match="broken.yaml"):
        sensor(dg.build_sensor_context(instance=instance, definitions=defs))
    with dg.instance_for_test() as instance:
        view = dg.materialize([defs.resolve_assets_def("fleet_health")], instance=instance)
        text = view.asset_materializations_for_node("fleet_health")[0].metadata["fleet"].value
    assert "config_error" in text and "broken.yaml" in text and "model_health has not been materialized" in text

    monkeypatch.setenv(FLEET_STRICT_ENV_VAR, "1")  # CI: `dg check defs` fails on any bad model file
    with pytest.raises(SettingsError, match="twin.yaml"):
        definitions_for(folder)


def test_a_folder_with_no_loadable_model_fails_the_location_naming_each_file(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    with pytest.raises(SettingsError, match="holds no model config"):
        load_fleet(folder)
    (folder / "broken.yaml").write_text("dataset: 3\n")
    with pytest.raises(SettingsError, match="broken.yaml"):
        definitions_for(folder)


def test_the_fleet_file_is_checked(tmp_path):
    folder = two_models(tmp_path)
    (folder / fleet.FLEET_FILE).write_text("retrain_budget: 0\n")
    with pytest.raises(SettingsError, match="retrain_budget"):
        load_fleet(folder)
    (folder / fleet.FLEET_FILE).write_text("retrain_budjet: 3\n")
    with pytest.raises(SettingsError, match="unknown key"):
        load_fleet(folder)
    (folder / fleet.FLEET_FILE).write_text("retrain_budget: 3\nbudget_period_hours: 12\n")
    assert load_fleet(folder).fleet == fleet.FleetSettings(("churn", "spend"), 3, 12)


def test_retrains_queue_in_the_order_of_need():
    order = sorted(fleet.NEED_ORDER, key=fleet.need_priority, reverse=True)
    assert order[0] == "concept_drift" and order[-1] == "schedule"
    assert fleet.need_priority("concept_drift") > fleet.need_priority("data_drift") > fleet.need_priority("schedule")
    assert retrain_tags("concept_drift", "x")["dagster/priority"] == str(fleet.need_priority("concept_drift"))


def test_the_budget_counts_retrains_of_every_model_in_a_sliding_period():
    now = datetime(2026, 12, 5, 12, tzinfo=timezone.utc)
    budget = fleet.FleetSettings(("a", "b"), retrain_budget=2, budget_period_hours=24)
    assert fleet.budget_spent([now - timedelta(hours=30)] * 5, now, budget) is None  # outside the period
    assert fleet.budget_spent([now - timedelta(hours=1)], now, budget) is None
    why = fleet.budget_spent([now - timedelta(hours=20), now - timedelta(hours=1)], now, budget)
    assert why and "2 retrains across 2 models" in why and "2026-12-05 16:00" in why  # the oldest frees first
    assert fleet.budget_spent([now] * 9, now, fleet.FleetSettings(("a",))) is None  # no budget


def test_a_retrain_of_another_model_spends_the_fleet_budget(tmp_path):
    budget = fleet.FleetSettings(("churn", "spend"), retrain_budget=1, budget_period_hours=24)
    with dg.instance_for_test() as instance:
        assert fleet_budget_spent(instance, budget) is None
        instance.add_run(dg.DagsterRun(job_name="spend__retrain", run_id=str(uuid.uuid4())))
        assert "budget is spent" in fleet_budget_spent(instance, budget)
        instance.add_run(dg.DagsterRun(job_name="elsewhere__retrain", run_id=str(uuid.uuid4())))
        assert fleet_budget_spent(instance, fleet.FleetSettings(("churn",), 1)) is None  # not of this fleet


def test_a_models_landing_sensor_and_ingest_touch_only_its_own_files(tmp_path):
    folder = two_models(tmp_path)
    defs = definitions_for(folder)
    churn, spend = (load_settings(folder / f"{m}.yaml") for m in ("churn", "spend"))
    land(churn, "batch_0001", synthetic_batches.make_batch(300, seed=1, batch_index=1))
    land(spend, "batch_0001", synthetic_batches.make_batch(300, seed=2, batch_index=1, task="regression"))
    with dg.instance_for_test() as instance:
        sensor = defs.resolve_sensor_def("churn__landing_sensor")
        result = sensor(dg.build_sensor_context(instance=instance, definitions=defs,
                                                resources=resources_for(defs, sensor)))
        assert [r.partition_key for r in result.run_requests] == ["batch_0001"]
        (add,) = result.dynamic_partitions_requests
        assert add.partitions_def_name == "churn__batches"
        instance.add_dynamic_partitions(add.partitions_def_name, list(add.partition_keys))
        run = defs.resolve_job_def("churn__ingest_batch").execute_in_process(
            instance=instance, partition_key="batch_0001", tags=result.run_requests[0].tags)
        assert run.success
        assert instance.fetch_materializations(ModelNames("churn").key(RAW_DATA), limit=1).records
        assert not instance.fetch_materializations(ModelNames("spend").key(RAW_DATA), limit=1).records
        assert run.dagster_run.tags[TAG_MODEL] == "churn"
    assert (spend.dataset.landing_dir / "batch_0001.csv").exists()  # spend's file untouched
    assert churn.duckdb_path.exists() and not spend.duckdb_path.exists()


# --------------------------------------------------------------------------
# Under the real daemon
# --------------------------------------------------------------------------


def _champion(settings) -> str | None:
    try:
        return MlflowRegistry(settings.mlflow_tracking_uri, settings.registered_model_name).version(reg.CHAMPION_ALIAS)
    except Exception:  # noqa: BLE001 - the registry does not exist until the first run creates it
        return None


@pytest.mark.cli
@pytest.mark.timeout(720)
def test_two_models_under_the_daemon_each_get_their_own_champion_and_a_bad_file_stays_with_its_model(tmp_path):
    from retrain_assets_tests.dagster_dev import running_dagster_dev
    from retrain_assets_tests.test_daemon import SENSOR_INTERVAL

    folder = two_models(tmp_path, **LOOSE, **{"automation.sensor_interval_seconds": SENSOR_INTERVAL,
                                              "automation.settle_seconds": 1})
    (folder / "broken.yaml").write_text("dataset:\n  task: sideways\n")
    churn, spend = (load_settings(folder / f"{m}.yaml") for m in ("churn", "spend"))
    with running_dagster_dev(tmp_path, folder) as dev, dg.DagsterInstance.from_config(str(dev.home)) as instance:
        land(churn, "batch_0001", synthetic_batches.make_batch(1500, seed=11, batch_index=1))
        land(spend, "batch_0001", synthetic_batches.make_batch(1500, seed=12, batch_index=1, task="regression"))
        bad = churn.dataset.landing_dir / "batch_0002.csv"
        bad_bytes = b"\x00\x01not,a\xff\xfe csv\n" * 3
        bad.write_bytes(bad_bytes)

        deadline = time.monotonic() + 540
        while time.monotonic() < deadline and not (_champion(churn) and _champion(spend)):
            time.sleep(3)
        assert _champion(churn) and _champion(spend), dev.log_tail(80)

        runs = instance.get_runs()
        for model, other in (("churn", "spend"), ("spend", "churn")):
            mine = [r for r in runs if r.tags.get(TAG_MODEL) == model]
            assert any(r.job_name == f"{model}__retrain" and r.status == dg.DagsterRunStatus.SUCCESS for r in mine)
            assert all(r.job_name.startswith(f"{model}__") for r in mine)
        # The bad file was refused by churn's raw_data (a WARN check in a run that succeeds) and kept;
        # spend never saw it and nothing of spend failed.
        churn_ingests = [r for r in runs if r.job_name == f"churn__{INGEST_JOB}"]
        assert {r.tags.get("dagster/partition") for r in churn_ingests} == {"batch_0001", "batch_0002"}
        assert not [r.job_name for r in runs if r.status == dg.DagsterRunStatus.FAILURE]  # refused, not failed
        kept = [p for p in (churn.rejected_dir / "batch_0002").glob("*") if not p.name.endswith(".reason.json")]
        assert kept and kept[0].read_bytes() == bad_bytes, kept  # the bytes are kept
        assert not spend.rejected_dir.exists() or not any(spend.rejected_dir.iterdir())
        assert reg.load_champion(spend.mlflow_tracking_uri, spend.registered_model_name).metric == "rmse"
        assert reg.load_champion(churn.mlflow_tracking_uri, churn.registered_model_name).metric == "roc_auc"

        # The fleet view follows each model's health refresh.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            records = instance.fetch_materializations(dg.AssetKey("fleet_health"), limit=1).records
            text = records[0].asset_materialization.metadata["fleet"].value if records else ""
            if "broken" in text and text.count("none") == 0 and "churn" in text and "spend" in text:
                break
            time.sleep(3)
        assert "config_error" in text and "churn" in text and "spend" in text, text


def test_a_model_over_the_fleet_budget_waits_and_asks_again_at_the_next_tick(tmp_path):
    folder = two_models(tmp_path, **LOOSE)
    (folder / fleet.FLEET_FILE).write_text("retrain_budget: 1\nbudget_period_hours: 24\n")
    defs = definitions_for(folder)
    churn = load_settings(folder / "churn.yaml")
    land(churn, "batch_0001", synthetic_batches.make_batch(1500, seed=1, batch_index=1))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("churn__batches", ["batch_0001"])
        assert defs.resolve_job_def("churn__ingest_batch").execute_in_process(
            instance=instance, partition_key="batch_0001").success
        spent = dg.DagsterRun(job_name="spend__retrain", run_id=str(uuid.uuid4()))
        instance.add_run(spent)  # the other model used the fleet's one retrain of the day

        sensor = defs.resolve_sensor_def("churn__drift_retrain_sensor")

        def evaluate(cursor):
            context = dg.build_sensor_context(instance=instance, definitions=defs, cursor=cursor,
                                              resources=resources_for(defs, sensor))
            return sensor(context), context.cursor

        result, cursor = evaluate(None)
        assert isinstance(result, dg.SkipReason) and "retrain budget is spent" in result.skip_message
        assert cursor is None  # not consumed: the same drift report is weighed again at the next tick
        instance.delete_run(spent.run_id)  # the slot frees
        result, cursor = evaluate(cursor)
        (request,) = result
        assert request.job_name == "churn__retrain" and request.tags["retrain/trigger"] == "bootstrap"
        assert request.tags["dagster/priority"] == str(fleet.need_priority("bootstrap"))
        assert cursor is not None
