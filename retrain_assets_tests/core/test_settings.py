"""Tests for the user's YAML config: loading, path resolution and the errors a person reads."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from retrain_assets.constants import CONFIG_ENV_VAR, DEMO_CONFIG_PATH, REPO_ROOT
from retrain_assets.core.synthetic_batches import make_batch
from retrain_assets.settings import config_path_from_env, load_settings, parse_settings
from retrain_assets.settings.base import SettingsError


def _demo_raw() -> dict[str, Any]:
    """The demo config as a plain YAML document (a fresh copy each time)."""
    return copy.deepcopy(yaml.safe_load(DEMO_CONFIG_PATH.read_text(encoding="utf-8")))


def _minimal_raw(**sections: Any) -> dict[str, Any]:
    """The smallest valid config, with sections replaced or added."""
    raw: dict[str, Any] = {
        "dataset": {"name": "shop", "landing_dir": "in", "target": "label", "task": "classification"},
        "storage": {"root": "state"},
    }
    raw.update(sections)
    return raw


def _write(folder: Path, raw: Any, name: str = "config.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


# --------------------------------------------------------------------------
# The demo config and where the config comes from
# --------------------------------------------------------------------------


def test_demo_config_loads_with_paths_beside_it():
    settings = load_settings(DEMO_CONFIG_PATH)
    assert settings.dataset.name == "churn"
    assert settings.dataset.target == "churned"
    assert settings.dataset.task == "classification"
    assert settings.dataset.time_column == "event_time"
    assert settings.dataset.landing_dir == REPO_ROOT / "data" / "landing"
    assert settings.storage.root == REPO_ROOT / "data" / "state"
    assert settings.schema_hints.id_columns == ["customer_id"]
    assert settings.schema_hints.classes == [0, 1]
    assert settings.schema_hints.ranges["age"].min == 18 and settings.schema_hints.ranges["age"].max == 110
    assert settings.validation.max_invalid_fraction == 0.05
    assert settings.automation.settle_seconds == 2


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory must not matter
    path = _write(tmp_path / "conf", _minimal_raw(storage={"root": "../state"}))
    settings = load_settings(path)
    assert settings.dataset.landing_dir == (tmp_path / "conf" / "in").resolve()
    assert settings.storage.root == (tmp_path / "state").resolve()
    assert settings.dataset.landing_dir.is_absolute() and settings.storage.root.is_absolute()


def test_absolute_paths_are_kept(tmp_path):
    landing = tmp_path / "somewhere" / "landing"
    path = _write(tmp_path / "conf", _minimal_raw(dataset={**_minimal_raw()["dataset"], "landing_dir": str(landing)}))
    assert load_settings(path).dataset.landing_dir == landing


def test_env_vars_and_home_are_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("RA_TEST_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    raw = _minimal_raw(storage={"root": "~/retrain-state"})
    raw["dataset"]["landing_dir"] = "$RA_TEST_DATA/landing"
    settings = load_settings(_write(tmp_path / "conf", raw))
    assert settings.dataset.landing_dir == tmp_path / "data" / "landing"
    assert settings.storage.root == tmp_path / "home" / "retrain-state"


def test_config_path_itself_may_use_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    _write(tmp_path, _minimal_raw(), name="mine.yaml")
    assert load_settings("~/mine.yaml").dataset.name == "shop"


def test_retrain_config_env_var_picks_the_file(tmp_path, monkeypatch):
    path = _write(tmp_path, _minimal_raw())
    monkeypatch.setenv(CONFIG_ENV_VAR, str(path))
    assert config_path_from_env() == path
    settings = load_settings()
    assert settings.dataset.name == "shop"
    assert settings.storage.root == tmp_path / "state"


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_retrain_config_falls_back_to_the_demo(monkeypatch, value):
    monkeypatch.setenv(CONFIG_ENV_VAR, value)
    assert config_path_from_env() == DEMO_CONFIG_PATH
    assert load_settings().dataset.name == "churn"


def test_unset_retrain_config_falls_back_to_the_demo(monkeypatch):
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    assert config_path_from_env() == DEMO_CONFIG_PATH


def test_missing_file_named_by_retrain_config(tmp_path, monkeypatch):
    missing = tmp_path / "nope.yaml"
    monkeypatch.setenv(CONFIG_ENV_VAR, str(missing))
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert str(missing) in str(info.value)
    assert f"${CONFIG_ENV_VAR}" in str(info.value)


def test_an_edited_file_is_read_again(tmp_path):
    path = _write(tmp_path, _minimal_raw())
    assert load_settings(path).dataset.name == "shop"
    raw = _minimal_raw()
    raw["dataset"]["name"] = "shop-renamed-and-longer"
    _write(tmp_path, raw)
    assert load_settings(path).dataset.name == "shop-renamed-and-longer"


def test_settings_are_frozen():
    settings = load_settings(DEMO_CONFIG_PATH)
    with pytest.raises(Exception, match="frozen"):
        settings.dataset.target = "other"


# --------------------------------------------------------------------------
# Errors name the file and the key
# --------------------------------------------------------------------------


def _set(section: str, key: str, value: Any) -> Callable[[dict], None]:
    def mutate(raw: dict) -> None:
        raw.setdefault(section, {})[key] = value

    return mutate


def _drop(section: str, key: str) -> Callable[[dict], None]:
    def mutate(raw: dict) -> None:
        del raw[section][key]

    return mutate


def _rename_section(old: str, new: str) -> Callable[[dict], None]:
    def mutate(raw: dict) -> None:
        raw[new] = raw.pop(old)

    return mutate


def _set_range(column: str, low: float, high: float) -> Callable[[dict], None]:
    def mutate(raw: dict) -> None:
        raw["schema"]["ranges"][column] = {"min": low, "max": high}

    return mutate


def _regression(raw: dict) -> None:
    raw["dataset"]["task"] = "regression"  # the demo config lists classes: [0, 1]


@pytest.mark.parametrize(
    "mutate, fragments",
    [
        pytest.param(_rename_section("dataset", "datset"), ["datset", "unknown key"], id="typo-section"),
        pytest.param(_set("dataset", "targt", "churned"), ["dataset.targt", "unknown key"], id="typo-key"),
        pytest.param(_set("schema", "id_column", ["customer_id"]), ["schema.id_column", "unknown key"], id="typo-hint"),
        pytest.param(_drop("dataset", "target"), ["dataset.target", "required key is missing"], id="missing-target"),
        pytest.param(_drop("storage", "root"), ["storage.root", "required key is missing"], id="missing-root"),
        pytest.param(_set("dataset", "task", "classify"), ["dataset.task", "'classify'", "regression"], id="bad-enum"),
        pytest.param(
            _set("validation", "max_invalid_fraction", "lots"),
            ["validation.max_invalid_fraction", "'lots'", "number"],
            id="wrong-type",
        ),
        pytest.param(
            _set("validation", "max_invalid_fraction", 1.5),
            ["validation.max_invalid_fraction", "1.5", "less than or equal to 1"],
            id="out-of-range",
        ),
        pytest.param(_set("automation", "settle_seconds", -1), ["automation.settle_seconds", "-1"], id="negative"),
        pytest.param(_set_range("age", 90, 10), ["schema.ranges.age", "min (90.0) is greater than max (10.0)"], id="min>max"),
        pytest.param(
            _set("schema", "numeric", ["contract"]),
            ["schema", "both categorical and numeric", "contract"],
            id="categorical-and-numeric",
        ),
        pytest.param(_set("schema", "id_columns", ["churned"]), ["schema.id_columns", "'churned'", "target"], id="target-as-id"),
        pytest.param(_set("schema", "required", ["churned"]), ["schema.required", "'churned'", "target"], id="target-required"),
        pytest.param(_set("dataset", "time_column", "churned"), ["dataset.time_column", "dataset.target"], id="time-is-target"),
        pytest.param(_regression, ["schema.classes", "regression"], id="classes-for-regression"),
        pytest.param(_set("dataset", "encoding", "klingon"), ["dataset.encoding", "klingon"], id="unknown-encoding"),
        pytest.param(_set("dataset", "name", "my model"), ["dataset.name", "'my model'"], id="bad-name"),
        pytest.param(_set("dataset", "csv_delimiter", ";;"), ["dataset.csv_delimiter", "';;'"], id="long-delimiter"),
    ],
)
def test_invalid_config_names_file_and_key(tmp_path, mutate, fragments):
    raw = _demo_raw()
    mutate(raw)
    path = _write(tmp_path, raw)
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert "Traceback" not in message


def test_every_invalid_key_is_reported_at_once(tmp_path):
    raw = _demo_raw()
    raw["dataset"]["task"] = "classify"
    raw["validation"]["max_invalid_fraction"] = 2
    with pytest.raises(SettingsError) as info:
        load_settings(_write(tmp_path, raw))
    assert "dataset.task" in str(info.value) and "validation.max_invalid_fraction" in str(info.value)


@pytest.mark.parametrize(
    "text, fragment",
    [
        pytest.param("dataset: [unclosed\n  name: {\n", "not valid YAML", id="not-yaml"),
        pytest.param("- dataset\n- storage\n", "YAML mapping", id="a-list"),
        pytest.param("just some words\n", "YAML mapping", id="a-scalar"),
        pytest.param("", "YAML mapping", id="empty"),
    ],
)
def test_unparseable_file_is_a_settings_error(tmp_path, text, fragment):
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_non_utf8_file_is_a_settings_error(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes("dataset:\n  name: café\n".encode("latin-1"))
    with pytest.raises(SettingsError, match="not UTF-8") as info:
        load_settings(path)
    assert str(path) in str(info.value)


def test_missing_file_is_a_settings_error(tmp_path):
    missing = tmp_path / "absent.yaml"
    with pytest.raises(SettingsError, match="does not exist") as info:
        load_settings(missing)
    assert str(missing) in str(info.value)


def test_a_folder_is_not_a_config_file(tmp_path):
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path)


def test_parse_settings_rejects_a_list_and_names_the_file(tmp_path):
    with pytest.raises(SettingsError) as info:
        parse_settings(["dataset", "storage"], tmp_path / "c.yaml")
    assert str(tmp_path / "c.yaml") in str(info.value)


def test_parse_settings_resolves_against_the_given_path(tmp_path):
    settings = parse_settings(_minimal_raw(), tmp_path / "conf" / "c.yaml")
    assert settings.dataset.landing_dir == (tmp_path / "conf" / "in").resolve()
    assert settings.storage.root == (tmp_path / "conf" / "state").resolve()


# --------------------------------------------------------------------------
# Defaults and derived values
# --------------------------------------------------------------------------


def test_defaults_of_optional_sections(tmp_path):
    settings = parse_settings(_minimal_raw(), tmp_path / "c.yaml")
    assert settings.dataset.time_column is None
    assert settings.dataset.encoding == "utf-8" and settings.dataset.csv_delimiter == ","
    assert settings.schema_hints.classes is None and settings.schema_hints.id_columns == []
    assert settings.schema_hints.max_null_fraction == 0.5
    assert settings.validation.max_invalid_fraction == 0.05
    assert settings.automation.settle_seconds == 5.0


def test_derived_locations(tmp_path):
    settings = parse_settings(_minimal_raw(), tmp_path / "c.yaml")
    root = (tmp_path / "state").resolve()
    assert settings.duckdb_path == root / "warehouse.duckdb"
    assert settings.rejected_dir == root / "rejected"
    assert settings.schema_path == root / "schema.json"
    assert settings.reports_dir == root / "reports"


def test_duckdb_file_name_is_configurable(tmp_path):
    settings = parse_settings(_minimal_raw(storage={"root": "s", "duckdb_file": "other.duckdb"}), tmp_path / "c.yaml")
    assert settings.duckdb_path == (tmp_path / "s").resolve() / "other.duckdb"


def test_mlflow_tracking_uri_defaults_to_sqlite_under_storage_root(tmp_path):
    settings = parse_settings(_minimal_raw(), tmp_path / "c.yaml")
    uri = settings.mlflow_tracking_uri
    assert uri.startswith("sqlite:///")
    assert Path(uri.removeprefix("sqlite:///")) == settings.storage.root / "mlflow.db"


def test_mlflow_tracking_uri_given_is_used(tmp_path):
    raw = _minimal_raw(mlflow={"tracking_uri": "http://mlflow:5000"})
    assert parse_settings(raw, tmp_path / "c.yaml").mlflow_tracking_uri == "http://mlflow:5000"


@pytest.mark.parametrize("model, expected", [({}, "shop"), ({"name": "shop_churn_model"}, "shop_churn_model")])
def test_registered_model_name_falls_back_to_dataset_name(tmp_path, model, expected):
    settings = parse_settings(_minimal_raw(model=model), tmp_path / "c.yaml")
    assert settings.registered_model_name == expected


def test_schema_for_infers_then_reapplies_hints(tmp_path):
    settings = load_settings(DEMO_CONFIG_PATH)
    batch = make_batch(50, seed=0)
    inferred = settings.schema_for(None, batch, "batch_0001")
    assert inferred.column("customer_id").kind == "id"
    assert inferred.column("age").max == 110
    assert inferred.classes == (0, 1)
    assert "batch_0001" in inferred.source

    raw = _demo_raw()
    raw["schema"]["ranges"]["age"] = {"min": 21, "max": 99}
    edited = load_settings(_write(tmp_path, raw))
    reapplied = edited.schema_for(inferred, batch, "batch_0002")
    assert (reapplied.column("age").min, reapplied.column("age").max) == (21, 99)
    assert reapplied.source == inferred.source  # the stored schema is kept, not inferred again


def test_defaults_have_one_source_the_core_modules():
    """Each setting that mirrors a core default takes it from the core (one place to change it)."""
    import dataclasses

    from retrain_assets.core import gates, slice_gate, stability_gates, training_data

    from retrain_assets.core import gate_defaults
    from retrain_assets.core.drift_settings import DriftSettings as Core
    from retrain_assets.core.policy import PolicySettings
    from retrain_assets.settings import AutomationSettings, DriftSettingsModel, GateSettings, TrainingSettings

    automation = AutomationSettings()
    for f in dataclasses.fields(PolicySettings):
        assert getattr(automation, f.name) == f.default, f.name
    drift = DriftSettingsModel()
    assert (drift.alpha, drift.correction, drift.domain_classifier) == (Core.alpha, Core.correction, Core.domain_classifier)
    g, t = GateSettings(), TrainingSettings()
    assert (g.comparison_tolerance, g.bootstrap_resamples, g.max_flip_rate, g.slice_tolerance, g.slice_min_rows,
            g.latency_budget_ms_per_1000) == (
        gate_defaults.DEFAULT_COMPARISON_TOLERANCE, gate_defaults.DEFAULT_BOOTSTRAP_RESAMPLES, gate_defaults.DEFAULT_MAX_FLIP_RATE,
        gate_defaults.DEFAULT_SLICE_TOLERANCE, gate_defaults.DEFAULT_SLICE_MIN_ROWS, gate_defaults.DEFAULT_LATENCY_BUDGET_MS_PER_1000)
    assert (t.min_rows, t.min_rows_per_class, t.min_holdout_rows) == (
        gate_defaults.DEFAULT_MIN_ROWS, gate_defaults.DEFAULT_MIN_ROWS_PER_CLASS, gate_defaults.DEFAULT_MIN_HOLDOUT_ROWS)
