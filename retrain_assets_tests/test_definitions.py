"""The assembled Definitions: exact asset keys, groups, descriptions, blocking gate, lazy config
loading, and a snapshot of the asset graph so a rename never slips through unnoticed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pytest

from retrain_assets import definitions as definitions_module
from retrain_assets.constants import CONFIG_ENV_VAR, DEMO_CONFIG_PATH
from retrain_assets.definitions import build_definitions
from retrain_assets.settings.base import SettingsError

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"

# Resolving Definitions reads the "current" instance's defs-state storage: give every test a live one.
pytestmark = pytest.mark.usefixtures("instance")


def graph_snapshot(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "kinds": sorted(node.kinds),
            "partitioned": node.partitions_def is not None,
            "checks": sorted(
                f"{c.name}{' (blocking)' if graph.get(c).blocking else ''}" for c in node.check_keys
            ),
        }
    return {
        "assets": assets,
        "jobs": sorted(j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")),
        "sensors": sorted(s.name for s in defs.sensors or []),
    }


def test_asset_graph_matches_snapshot(defs):
    snapshot = graph_snapshot(defs)
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(json.dumps(snapshot, indent=2) + "\n")
    assert snapshot == json.loads(SNAPSHOT.read_text()), "asset graph changed: review, then UPDATE_SNAPSHOTS=1"


def test_asset_keys_are_exact(defs):
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"raw_data", "validated_data"} <= keys


def test_the_checks_that_refuse_are_on_the_asset_they_judge_and_never_fail_a_run(defs):
    """Honest colours (docs/decisions.md): a held-back batch or a refused candidate is a failed check
    in a run that succeeds, so no check may be blocking (a failed blocking check fails its run), and
    the assets after them skip instead of failing (output_required=False)."""
    graph = defs.resolve_asset_graph()
    (check_key,) = graph.get(dg.AssetKey("validated_data")).check_keys
    assert check_key.name == "batch_passes_validation"
    assert len(graph.get(dg.AssetKey("candidate_model")).check_keys) == 6
    for key in graph.get_all_asset_keys():
        for check in graph.get(key).check_keys:
            assert not graph.get(check).blocking, check
    for key in ("raw_data", "drift_report", "production_metrics", "production_model"):
        assets_def = graph.get(dg.AssetKey(key)).assets_def
        assert not assets_def.op.outs["result"].is_required, key


def test_everything_a_person_sees_has_a_description(defs):
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        assert graph.get(key).description, key
        for check_key in graph.get(key).check_keys:
            assert graph.get(check_key).description, check_key
    for sensor in defs.sensors:
        assert sensor.description, sensor.name
    for job in defs.resolve_all_job_defs():
        if not job.name.startswith("__"):
            assert job.description, job.name


def test_sensors_default_to_running_at_the_configured_interval(defs, workspace):
    sensor = defs.resolve_sensor_def("landing_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == workspace.settings.automation.sensor_interval_seconds


def test_resources_point_at_the_configured_storage(defs, workspace):
    resources = defs.resources
    assert resources["warehouse"].database == str(workspace.settings.duckdb_path)
    assert Path(resources["settings"].config_path) == workspace.config_path.resolve()


def test_lazy_defs_read_retrain_config_when_loaded(monkeypatch, workspace):
    monkeypatch.setenv(CONFIG_ENV_VAR, str(workspace.config_path))
    loaded = definitions_module.defs()
    assert loaded.resources["warehouse"].database == str(workspace.settings.duckdb_path)


def test_lazy_defs_fall_back_to_the_demo_config(monkeypatch):
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    loaded = definitions_module.defs()
    assert Path(loaded.resources["settings"].config_path) == DEMO_CONFIG_PATH.resolve()


def test_invalid_config_fails_at_load_naming_the_key(tmp_path, monkeypatch):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "dataset:\n  name: churn\n  landing_dir: in\n  target: churned\n  task: classify\n"
        "storage:\n  root: state\nvalidation:\n  max_invalid_fraction: 2\n"
    )
    monkeypatch.setenv(CONFIG_ENV_VAR, str(bad))
    with pytest.raises(SettingsError) as error:
        definitions_module.defs()
    message = str(error.value)
    assert str(bad) in message
    assert "dataset.task" in message and "'classify'" in message
    assert "validation.max_invalid_fraction" in message


def test_importing_definitions_has_no_side_effects(tmp_path, monkeypatch):
    """Importing the module neither reads the config nor creates folders."""
    import importlib

    monkeypatch.setenv(CONFIG_ENV_VAR, str(tmp_path / "does-not-exist.yaml"))
    importlib.reload(definitions_module)  # would raise if the config were read at import
    assert list(tmp_path.iterdir()) == []


def test_build_definitions_creates_no_folders(tmp_path):
    from retrain_assets_tests.conftest import write_config

    config = write_config(tmp_path)
    build_definitions(config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]
