"""The user's YAML config: parsed, validated and resolved with clear errors.

One YAML file describes a user's dataset and where the platform keeps its state. Its path comes
from the environment variable ``RETRAIN_CONFIG``; without it, the demo config shipped in the
repository (``data/demo_config.yaml``) is used. Relative paths in the file are resolved against
the folder that holds the file, and ``~`` and ``$VARS`` are expanded.

Every mistake is reported at load time as a :class:`SettingsError` whose message names the file,
the key (``dataset.task``) and what is wrong, never as a stack trace from inside a run.
This module imports no Dagster, so notebooks, benchmarks and the backtester can use it.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import ConfigDict, Field, ValidationError, model_validator

from retrain_assets.constants import CONFIG_ENV_VAR, DEMO_CONFIG_PATH
from retrain_assets.core.redact import redact, split_credentials
from retrain_assets.core.schema import DatasetSchema, apply_hints, infer_schema
from retrain_assets.settings.base import Section, SettingsError
from retrain_assets.settings.data import (
    DatasetSettings,
    MlflowSettings,
    SchemaSettings,
    StorageSettings,
    ValidationSettings,
)
from retrain_assets.settings.retraining import (
    AlertSettings,
    HealthSettings,
    AutomationSettings,
    DriftSettingsModel,
    GateSettings,
    ModelSettings,
    PromotionSettings,
    TrainingSettings,
)


class Settings(Section):
    """The whole config file."""

    dataset: DatasetSettings
    schema_hints: SchemaSettings = Field(default_factory=SchemaSettings, alias="schema")
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    storage: StorageSettings
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    gates: GateSettings = Field(default_factory=GateSettings)
    drift: DriftSettingsModel = Field(default_factory=DriftSettingsModel)
    automation: AutomationSettings = Field(default_factory=AutomationSettings)
    promotion: PromotionSettings = Field(default_factory=PromotionSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _roles_do_not_collide(self) -> Settings:
        hints, ds = self.schema_hints, self.dataset
        special = {"target": ds.target, "time_column": ds.time_column}
        for role, column in special.items():
            if column is None:
                continue
            for key in ("categorical", "numeric", "id_columns", "ignore_columns", "required"):
                if column in getattr(hints, key):
                    raise ValueError(f"schema.{key} lists {column!r}, which is the dataset's {role}")
        if ds.time_column is not None and ds.time_column == ds.target:
            raise ValueError("dataset.time_column and dataset.target name the same column")
        if hints.classes is not None and ds.task == "regression":
            raise ValueError("schema.classes is given but dataset.task is regression")
        allowed = {"classification": ("roc_auc", "accuracy", "f1"), "regression": ("rmse", "mae")}[ds.task]
        if self.model.metric is not None and self.model.metric not in allowed:
            raise ValueError(f"model.metric {self.model.metric!r} does not fit task {ds.task}; choose one of {allowed}")
        from retrain_assets.core.estimators import make_estimator

        try:
            make_estimator(ds.task, self.model.estimator, self.model.params, self.model.seed)
        except ValueError as error:
            raise ValueError(f"model: {error}") from None
        if self.gates.slice_columns:
            clash = [c for c in self.gates.slice_columns if c in (ds.target, ds.time_column)]
            if clash:
                raise ValueError(f"gates.slice_columns lists {clash}, the target or time column")
        return self

    # Schema -----------------------------------------------------------------------------
    def _hint_kwargs(self) -> dict[str, Any]:
        hints = self.schema_hints
        return dict(
            categorical=hints.categorical,
            numeric=hints.numeric,
            id_columns=hints.id_columns,
            ignore_columns=hints.ignore_columns,
            required=hints.required,
            ranges={name: (r.min, r.max) for name, r in hints.ranges.items()},
            categories=hints.categories,
            classes=hints.classes,
            allow_extra_columns=hints.allow_extra_columns,
            max_null_fraction=hints.max_null_fraction,
            max_classes=hints.max_classes,
        )

    def schema_for(self, stored: DatasetSchema | None, batch: pd.DataFrame, batch_id: str) -> DatasetSchema:
        """The schema to enforce: the stored one with the config's hints re-applied, or, before
        any batch was accepted, one inferred from ``batch`` under the hints."""
        if stored is not None:
            return apply_hints(stored, **self._hint_kwargs())
        return infer_schema(
            batch,
            target=self.dataset.target,
            task=self.dataset.task,
            time_column=self.dataset.time_column,
            batch_id=batch_id,
            **self._hint_kwargs(),
        )

    # Derived locations -------------------------------------------------------------------
    @property
    def duckdb_path(self) -> Path:
        """The DuckDB file."""
        return self.storage.root / self.storage.duckdb_file

    @property
    def rejected_dir(self) -> Path:
        """Where refused landing files are moved, one folder per batch id, with a reason file beside each."""
        return self.storage.root / "rejected"

    @property
    def schema_path(self) -> Path:
        """The dataset schema (given by hints or inferred from the first accepted batch)."""
        return self.storage.root / "schema.json"

    @property
    def reports_dir(self) -> Path:
        """Where human-readable reports (HTML, PNG) are written."""
        return self.storage.root / "reports"

    @property
    def mlflow_tracking_uri(self) -> str:
        """The tracking URI in force: the configured one or a SQLite file under storage.root.

        Credentials in an http(s) URI (``https://user:password@host``) are handed to MLflow through
        ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` and left out of the URI, which
        MLflow prints and the platform shows; other URIs are shown redacted (core.redact).
        """
        if self.mlflow.tracking_uri:
            uri, user, password = split_credentials(_expand(self.mlflow.tracking_uri))
            if user:
                os.environ["MLFLOW_TRACKING_USERNAME"] = user
            if password:
                os.environ["MLFLOW_TRACKING_PASSWORD"] = password
            return uri
        return f"sqlite:///{(self.storage.root / 'mlflow.db').as_posix()}"

    @property
    def mlflow_experiment(self) -> str:
        """The MLflow experiment candidates are tracked in."""
        return self.mlflow.experiment or self.dataset.name

    @property
    def mlflow_artifacts_dir(self) -> Path:
        """Where the experiment keeps its artifacts (models, input examples): under storage.root."""
        return self.storage.root / "mlartifacts"

    @property
    def metric(self) -> str:
        """The metric in force for this task."""
        return self.model.metric or ("roc_auc" if self.dataset.task == "classification" else "rmse")

    @property
    def registered_model_name(self) -> str:
        """The MLflow registered model name."""
        return self.model.name or self.dataset.name


def config_path_from_env() -> Path:
    """The config file in force: ``$RETRAIN_CONFIG`` if set and non-empty, else the demo config."""
    value = os.environ.get(CONFIG_ENV_VAR, "").strip()
    return Path(value).expanduser() if value else DEMO_CONFIG_PATH


def _expand(value: Any) -> Any:
    if isinstance(value, str):
        return os.path.expanduser(os.path.expandvars(value))
    return value


def _format_errors(path: Path, error: ValidationError) -> str:
    lines = [f"invalid config {path}:"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and the README's list of settings)"
        elif item["type"] == "missing":
            message = "required key is missing"
        given = item.get("input")
        quiet = item["type"] in ("missing", "extra_forbidden", "value_error") or isinstance(given, dict)
        suffix = "" if quiet else f" (got {redact(repr(given))})"  # our own validators name the value themselves
        lines.append(f"  {key}: {message}{suffix}")
    return "\n".join(lines)


def parse_settings(raw: Any, path: Path) -> Settings:
    """Validate an already-parsed YAML document and resolve its paths.

    Args:
        raw: The YAML document (a mapping).
        path: The file it came from; relative paths are resolved against its folder.

    Returns:
        The validated, frozen settings.

    Raises:
        SettingsError: naming the key and what is wrong.
    """
    if not isinstance(raw, dict):
        raise SettingsError(f"invalid config {path}: the file must hold a YAML mapping with a 'dataset' and a 'storage' section")
    base = path.parent.resolve()
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as error:
        raise SettingsError(_format_errors(path, error)) from None

    def resolve(p: Path) -> Path:
        p = Path(_expand(str(p)))
        return p if p.is_absolute() else (base / p).resolve()

    dataset = settings.dataset.model_copy(update={"landing_dir": resolve(settings.dataset.landing_dir)})
    storage = settings.storage.model_copy(update={"root": resolve(settings.storage.root)})
    return settings.model_copy(update={"dataset": dataset, "storage": storage})


def load_settings(path: str | os.PathLike | None = None) -> Settings:
    """Load and validate the config file.

    Args:
        path: The YAML file; default: ``$RETRAIN_CONFIG`` or the demo config.

    Returns:
        The validated settings with absolute paths.

    Raises:
        SettingsError: if the file is missing, is not YAML, or a key is invalid.
    """
    resolved = Path(path).expanduser() if path is not None else config_path_from_env()
    if not resolved.is_file():
        hint = f" (from ${CONFIG_ENV_VAR})" if path is None and os.environ.get(CONFIG_ENV_VAR) else ""
        raise SettingsError(f"config file {resolved}{hint} does not exist")
    stat = resolved.stat()
    return _load_cached(str(resolved.resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=16)
def _load_cached(path: str, _mtime_ns: int, _size: int) -> Settings:
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise SettingsError(f"config file {p} is not valid YAML: {error}") from None
    except UnicodeDecodeError as error:
        raise SettingsError(f"config file {p} is not UTF-8 text: {error}") from None
    return parse_settings(raw, p)
