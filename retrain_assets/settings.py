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
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from retrain_assets.constants import CONFIG_ENV_VAR, DEMO_CONFIG_PATH
from retrain_assets.core import cron, gates
from retrain_assets.core.drift_settings import DriftSettings as CoreDriftSettings
from retrain_assets.core.policy import PolicySettings
from retrain_assets.core.alerts import unset_variables, webhook_problem
from retrain_assets.core.redact import redact, split_credentials
from retrain_assets.core.schema import DatasetSchema, apply_hints, infer_schema


class SettingsError(ValueError):
    """The config file is missing, unreadable or invalid; the message says where and why."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSettings(_Section):
    """What the user's data is and where it lands."""

    name: str = Field(description="Dataset name; also the MLflow registered model name unless model.name is set.")
    landing_dir: Path = Field(description="Folder where batches land as <batch_id>.csv or <batch_id>.parquet.")
    target: str = Field(description="Label column; a batch without it is treated as unlabelled.")
    task: Literal["classification", "regression"] = Field(description="Learning task.")
    time_column: str | None = Field(default=None, description="Optional event-time column, parsed as a timestamp.")
    encoding: str = Field(default="utf-8", description="Text encoding of CSV batches.")
    csv_delimiter: str = Field(default=",", min_length=1, max_length=1, description="CSV field separator.")

    @field_validator("name")
    @classmethod
    def _name_is_identifier_like(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value):
            raise ValueError(
                "must start with a letter or digit and contain only letters, digits, '_', '.', '-' "
                f"(got {value!r})"
            )
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown text encoding {value!r} (e.g. 'utf-8', 'latin-1')") from None
        return value


class Range(_Section):
    """An inclusive expected range of a numeric column; either bound may be omitted."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class SchemaSettings(_Section):
    """Optional schema hints; anything not given is inferred from the first accepted batch."""

    categorical: list[str] = Field(default_factory=list, description="Columns to treat as categorical.")
    numeric: list[str] = Field(default_factory=list, description="Columns to treat as numeric.")
    id_columns: list[str] = Field(
        default_factory=list,
        description="Identifier columns: must be present, non-null and unique in a batch; never used as features.",
    )
    ignore_columns: list[str] = Field(
        default_factory=list, description="Columns dropped on arrival (allowed to be present or absent)."
    )
    required: list[str] = Field(
        default_factory=list, description="Feature columns that must not contain nulls (each null row is quarantined)."
    )
    ranges: dict[str, Range] = Field(default_factory=dict, description="Expected inclusive range per numeric column.")
    categories: dict[str, list[str]] = Field(
        default_factory=dict, description="Allowed values per categorical column; others are quarantined."
    )
    classes: list[int | str] | None = Field(
        default=None, description="Allowed target classes (classification); inferred from the first labelled batch if omitted."
    )
    max_null_fraction: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Largest share of nulls a feature may have in one batch before the batch fails (a NaN flood).",
    )
    allow_extra_columns: bool = Field(
        default=False, description="If true, unexpected columns are dropped with a warning instead of failing the batch."
    )
    max_classes: int = Field(
        default=50, ge=2, description="A classification target with more distinct values than this is refused as the wrong kind."
    )

    @model_validator(mode="after")
    def _consistent(self) -> SchemaSettings:
        both = sorted(set(self.categorical) & set(self.numeric))
        if both:
            raise ValueError(f"columns listed as both categorical and numeric: {both}")
        for column in self.ranges:
            if column in self.categorical:
                raise ValueError(f"ranges.{column}: a range is given for categorical column {column!r}")
        for column in self.categories:
            if column in self.numeric:
                raise ValueError(f"categories.{column}: categories are given for numeric column {column!r}")
        return self


class ValidationSettings(_Section):
    """When a batch is held back."""

    max_invalid_fraction: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="A batch whose share of quarantined rows exceeds this fails the blocking check on validated_data.",
    )
    examples_per_expectation: int = Field(
        default=5, ge=1, le=100, description="How many failing values to show per expectation."
    )
    range_margin: float = Field(
        default=3.0, gt=0, description=(
            "Numeric columns without schema.ranges: a value further than this many times the reference batch's "
            "0.5–99.5% span outside that span is quarantined as implausible (1e308, a unit change)."
        ),
    )
    future_tolerance_hours: float = Field(
        default=24.0, ge=0, description="Event times later than now plus this are quarantined as in the future."
    )
    max_cell_chars: int = Field(
        default=1000, ge=1, description="Longest text value accepted in a categorical or id column; longer rows are quarantined."
    )


class StorageSettings(_Section):
    """Where the platform keeps its state."""

    root: Path = Field(description="Folder for the DuckDB file, quarantine, rejected files, reports and the default MLflow store.")
    duckdb_file: str = Field(default="warehouse.duckdb", description="DuckDB file name under root.")
    lock_wait_seconds: float = Field(
        default=100.0, ge=0, le=3600,
        description="How long a run waits for the DuckDB file while another process holds it (a notebook, the "
        "duckdb CLI) before it fails naming that process; the batch is then retried later. 0: fail at once.",
    )


class MlflowSettings(_Section):
    """MLflow tracking and registry."""

    tracking_uri: str | None = Field(
        default=None, description="Default: a SQLite store under storage.root; http://host:port for a tracking server."
    )
    experiment: str | None = Field(default=None, description="Experiment name; default: the dataset name.")


class ModelSettings(_Section):
    """The model that is trained and promoted."""

    name: str | None = Field(default=None, description="MLflow registered model name; default: dataset.name.")
    metric: Literal["roc_auc", "accuracy", "f1", "rmse", "mae"] | None = Field(
        default=None,
        description="Metric models are judged and watched on; default roc_auc (classification) or rmse (regression).",
    )
    estimator: str = Field(
        default="hist_gradient_boosting",
        description=(
            "hist_gradient_boosting, random_forest, logistic_regression (classification), ridge or linear (regression)."
        ),
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Estimator constructor parameters, e.g. {max_depth: 6}; checked at load."
    )
    seed: int = Field(default=0, description="Random seed of the estimator: the same data and seed give the same model.")


class TrainingSettings(_Section):
    """Which labelled batches a candidate learns from (the newest labelled batch is always the holdout)."""

    window: Literal["all", "last_n_batches", "last_n_rows"] = Field(
        default="all", description="all labelled batches before the holdout, or only the last N batches / rows of them."
    )
    last_n: int | None = Field(default=None, ge=1, description="N for window last_n_batches / last_n_rows.")
    min_rows: int = Field(
        default=gates.DEFAULT_MIN_ROWS, ge=1, description="Fewest labelled training rows (gate data_sufficiency)."
    )
    min_rows_per_class: int = Field(
        default=gates.DEFAULT_MIN_ROWS_PER_CLASS, ge=1, description="Fewest training rows of each class (gate data_sufficiency; classification)."
    )
    min_holdout_rows: int = Field(
        default=gates.DEFAULT_MIN_HOLDOUT_ROWS, ge=1, description="Fewest holdout rows the gates judge on (gate data_sufficiency)."
    )
    adapt_on: list[str] = Field(
        default_factory=lambda: ["concept_drift", "performance_decline"],
        description=(
            "Retrain triggers that mean the labelling rule changed. Their candidate also learns from the oldest part "
            "of the newest labelled batch (the only one labelled under the new rule), is judged on its newest part, "
            "and weights recent batches more (recency_half_life_batches)."
        ),
    )
    newest_holdout_share: float = Field(
        default=0.5, gt=0, lt=1,
        description="Share of the newest labelled batch held out (its newest rows by time) when the candidate learns from it (an adapt_on retrain, or a first champion from one batch).",
    )
    recency_half_life_batches: float | None = Field(
        default=3.0, gt=0,
        description="In an adapt_on retrain, a batch's rows weigh half as much for every this many newer batches; null: equal weights.",
    )

    @field_validator("adapt_on")
    @classmethod
    def _known_triggers(cls, value: list[str]) -> list[str]:
        from retrain_assets.core.policy import TRIGGERS

        unknown = [t for t in value if t not in TRIGGERS]
        if unknown:
            raise ValueError(f"unknown trigger(s) {unknown}; choose from {list(TRIGGERS)}")
        return value

    def adaptation(self, trigger: str | None) -> dict[str, float | None]:
        """``select_training_window`` arguments for a retrain with this trigger: the share of the newest
        batch to hold out and the recency half-life (both None unless the trigger is in adapt_on)."""
        if trigger not in self.adapt_on:
            return {"holdout_share": None, "half_life": None}
        return {"holdout_share": self.newest_holdout_share, "half_life": self.recency_half_life_batches}

    def first_champion_plan(self, labelled: list[tuple[str, int]]):
        """How the first champion can be trained from these (batch id, labelled rows), or what is
        missing (:func:`retrain_assets.core.policy.first_champion_plan` with these settings)."""
        from retrain_assets.core.policy import first_champion_plan

        return first_champion_plan(labelled, min_rows=self.min_rows, min_holdout_rows=self.min_holdout_rows,
                                   holdout_share=self.newest_holdout_share)

    @model_validator(mode="after")
    def _n_for_window(self) -> TrainingSettings:
        if self.window != "all" and self.last_n is None:
            raise ValueError(f"window {self.window!r} needs last_n")
        return self


class GateSettings(_Section):
    """The promotion gates: blocking checks on candidate_model that production_model waits for."""

    metric_floor: float | None = Field(
        default=None,
        description="Lowest acceptable holdout metric (highest for rmse/mae); default 0.6 for roc_auc/accuracy, 0.3 for f1, none for rmse/mae.",
    )
    comparison_tolerance: float = Field(
        default=gates.DEFAULT_COMPARISON_TOLERANCE,
        ge=0,
        description="How much worse than the champion the candidate may be (lower 95% bound of the paired difference); a fraction of the champion's value for rmse/mae.",
    )
    bootstrap_resamples: int = Field(default=gates.DEFAULT_BOOTSTRAP_RESAMPLES, ge=100, le=20000,
                                     description="Paired bootstrap resamples.")
    slice_columns: list[str] | None = Field(
        default=None, description="Columns whose slices must not regress; default: up to 2 categorical columns with the fewest levels."
    )
    slice_tolerance: float = Field(default=gates.DEFAULT_SLICE_TOLERANCE, ge=0, description="How much worse the candidate may be on one slice.")
    slice_min_rows: int = Field(default=gates.DEFAULT_SLICE_MIN_ROWS, ge=1, description="Slices with fewer holdout rows are listed, not judged.")
    max_flip_rate: float = Field(
        default=gates.DEFAULT_MAX_FLIP_RATE, ge=0, le=1, description="Largest share of holdout predictions that may differ from the champion's (waived on confirmed concept drift)."
    )
    latency_budget_ms_per_1000: float = Field(
        default=gates.DEFAULT_LATENCY_BUDGET_MS_PER_1000, gt=0, description="Serving smoke test: milliseconds allowed to score 1,000 rows in a fresh process."
    )


class DriftSettingsModel(_Section):
    """How drift_report compares a batch with its reference."""

    reference_batches: int = Field(
        default=3, ge=1, description="Before any champion exists, the reference is the first N validated batches."
    )
    alpha: float = Field(default=CoreDriftSettings.alpha, gt=0, lt=1,
                         description="Level for the multiplicity-corrected p-values.")
    correction: Literal["bh", "bonferroni"] = Field(
        default=CoreDriftSettings.correction, description="Multiple-testing correction: Benjamini-Hochberg (bh) or Bonferroni."
    )
    min_wasserstein: float | None = Field(
        default=None, ge=0, description="Numeric effect threshold (Wasserstein / reference std, ≈ shift in σ); default: the library's."
    )
    min_psi: float | None = Field(default=None, ge=0, description="PSI threshold; default: the library's.")
    min_js: float | None = Field(
        default=None, ge=0, le=1, description="Categorical effect threshold (Jensen-Shannon distance); default: the library's."
    )
    min_tv: float | None = Field(
        default=None, ge=0, le=1, description=(
            "Categorical effect threshold: share of rows that changed category (total variation) beyond sampling "
            "noise; default: the library's (0.07)."
        ),
    )
    domain_classifier: bool = Field(
        default=CoreDriftSettings.domain_classifier, description="Also test for joint shifts with a reference-vs-current classifier (cross-validated ROC AUC)."
    )
    performance_tolerance: float = Field(
        default=0.02, ge=0, description="Smallest metric loss vs the champion's holdout that counts as concept drift."
    )
    bootstrap_resamples: int = Field(default=500, ge=50, le=10000, description="Bootstrap resamples for metric intervals.")
    plot_features: int = Field(default=3, ge=1, le=12, description="How many features the drift plot shows.")




class AutomationSettings(_Section):
    """How often sensors look, how they wait for files to settle, and when a retrain may start."""

    sensor_interval_seconds: int = Field(default=30, ge=1, description="Minimum seconds between sensor ticks.")
    settle_seconds: float = Field(
        default=5.0,
        ge=0.0,
        description="A landed file is picked up only once it has not changed for this long (so half-copied files are not read).",
    )
    ready_marker: Literal["none", "done_file"] = Field(
        default="none",
        description=(
            "none: a settled file is read; done_file: <batch_id>.csv (or .parquet) is read only once the writer "
            "has also dropped <batch_id>.csv.done beside it (for writers that pause longer than settle_seconds). "
            "Either way, names starting with '.', '~' or '_' or ending in .tmp/.part are ignored until renamed."
        ),
    )
    ingest_retries: int = Field(
        default=5,
        ge=0,
        le=20,
        description=(
            "How many times the landing sensor re-runs the ingest of a batch whose run failed for an outside reason "
            "(worker killed, DuckDB file locked, disk full, MLflow down); a batch refused or held back is never "
            "retried. After the last, the batch is listed as waiting in every tick and alerted once."
        ),
    )
    ingest_retry_minutes: float = Field(
        default=1.0,
        ge=0.0,
        description="Delay before the first such retry; it doubles with each further one (1, 2, 4, 8, 16 min: ~31 min in all).",
    )
    cooldown_minutes: float = Field(
        default=PolicySettings.cooldown_minutes, ge=0, description="Minutes after a retrain started before drift or decline may start another."
    )
    cooldown_batches: int = Field(
        default=PolicySettings.cooldown_batches, ge=0,
        description=(
            "New validated batches needed since the last retrain before data drift may start another; concept drift "
            "and a metric below the floor do not wait for it (see the backtest in the README)."
        ),
    )
    confirm_k: int = Field(default=PolicySettings.confirm_k, ge=1, description="Data/prediction drift must be actionable in k ...")
    confirm_n: int = Field(default=PolicySettings.confirm_n, ge=1, description="... of the last n batches (concept drift and a metric below the floor act at once).")
    min_new_labelled_rows: int = Field(
        default=PolicySettings.min_new_labelled_rows, ge=0, description="Labelled rows the last retrain did not learn from, needed before a triggered retrain."
    )
    max_retrains_per_period: int = Field(default=PolicySettings.max_retrains_per_period, ge=1, description="Budget of retrains (any trigger) per period.")
    period_days: float = Field(default=PolicySettings.period_days, gt=0, description="Period of the budget and of the safety-net schedule.")
    first_champion: Literal["automatic", "by_hand"] = Field(
        default="automatic",
        description=(
            "automatic: drift_retrain_sensor trains the first champion as soon as the labelled rows allow; by_hand: "
            "a person starts the first retrain (request_retrain, or Materialize candidate_model), e.g. to review "
            "the model settings on real data first."
        ),
    )
    schedule_cron: str = Field(
        default="0 3 * * 1", description="Safety-net retrain schedule (cron); skipped when a retrain already ran in the period."
    )
    schedule_timezone: str = Field(default="UTC", description="Time zone of schedule_cron.")
    executor: Literal["in_process", "multiprocess", "k8s"] = Field(
        default="in_process",
        description=(
            "How runs execute: in_process (one process per run; the steps run one after another anyway, and a "
            "process per step costs ~5 s), multiprocess (one process per step, Dagster's default) or k8s (a "
            "Kubernetes Job per step; pip install 'retrain_assets[scale]')."
        ),
    )
    executor_config: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "The executor's own config, checked when the definitions load: e.g. {max_concurrent: 4} (multiprocess), "
            "{job_namespace: ml, max_concurrent: 4} (k8s)."
        ),
    )
    watch_batches: int = Field(
        default=3, ge=0, description="After a promotion, how many labelled batches the new champion is compared with the previous one (0: no watch)."
    )
    rollback_tolerance: float = Field(
        default=0.02, ge=0, description="Automatic rollback when the new champion is significantly worse than the previous one by more than this."
    )

    @model_validator(mode="after")
    def _k_of_n(self) -> AutomationSettings:
        if self.confirm_k > self.confirm_n:
            raise ValueError(f"confirm_k ({self.confirm_k}) is greater than confirm_n ({self.confirm_n})")
        problem = cron.problem(self.schedule_cron)
        if problem:
            raise ValueError(f"schedule_cron {self.schedule_cron!r} is not a cron expression: {problem}")
        return self

    def policy(self):
        """The controls as :class:`retrain_assets.core.policy.PolicySettings`."""
        return PolicySettings(
            cooldown_minutes=self.cooldown_minutes, cooldown_batches=self.cooldown_batches,
            confirm_k=self.confirm_k, confirm_n=self.confirm_n, min_new_labelled_rows=self.min_new_labelled_rows,
            max_retrains_per_period=self.max_retrains_per_period, period_days=self.period_days,
        )


class PromotionSettings(_Section):
    """How a candidate that passed every gate becomes the champion: at once, or after a person approves it."""

    require_approval: bool = Field(
        default=False,
        description=(
            "If true, a candidate that passes every gate keeps alias challenger and waits (ledger status "
            "awaiting_approval) until a person runs approve_promotion or reject_promotion; if false it becomes "
            "champion in the same run."
        ),
    )
    approval_max_age_hours: float = Field(
        default=72.0,
        gt=0,
        description=(
            "A candidate awaiting approval for longer than this can no longer be approved (recorded as expired); "
            "retrain, or re-materialize production_model to ask again."
        ),
    )
    shadow_scoring: Literal["while_awaiting_approval", "always", "never"] = Field(
        default="while_awaiting_approval",
        description=(
            "When production_metrics also scores the challenger on each new batch beside the champion: "
            "while_awaiting_approval, always (whenever a challenger other than the champion exists), or never."
        ),
    )


class AlertSettings(_Section):
    """Where alerts go (they are always logged too)."""

    webhook_url: str | None = Field(
        default=None, description="Slack-compatible incoming-webhook URL (JSON {\"text\": ...}); $VARS are expanded. None: log only."
    )
    timeout_seconds: float = Field(default=10.0, gt=0, description="HTTP timeout for one alert.")

    @field_validator("webhook_url")
    @classmethod
    def _webhook_is_a_reachable_kind_of_url(cls, value: str | None) -> str | None:
        """http(s) with a host once $VARS are expanded; an unset $VAR is named, the secret never shown."""
        if value is None or not value.strip():
            return None
        value = value.strip()
        missing = unset_variables(value)
        if missing:
            raise ValueError(
                f"refers to ${missing[0]}, which is not set in this environment: set it where the Dagster webserver, "
                "daemon and runs start (its value is never shown), or remove alerts.webhook_url to log alerts only"
            )
        problem = webhook_problem(os.path.expandvars(value))
        if problem:
            raise ValueError(problem)
        return value


class Settings(_Section):
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
        from retrain_assets.core.train import make_estimator

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
