"""Config sections about retraining: the model, the training window, the promotion gates, the drift
verdict, the automation policy, promotion by approval and alerts."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from retrain_assets.core import cron, gate_defaults
from retrain_assets.core import health as health_defaults

from retrain_assets.core.alerts import unset_variables, webhook_problem
from retrain_assets.core.drift_settings import DriftSettings as CoreDriftSettings
from retrain_assets.core.policy import PolicySettings
from retrain_assets.settings.base import Section


def checked_cron(value: str) -> str:
    """``value`` if it is a cron expression, else a ValueError saying what is wrong with it."""
    problem = cron.problem(value)
    if problem:
        raise ValueError(f"schedule_cron {value!r} is not a cron expression: {problem}")
    return value


class ModelSettings(Section):
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


class TrainingSettings(Section):
    """Which labelled batches a candidate learns from (the newest labelled batch is always the holdout)."""

    window: Literal["all", "last_n_batches", "last_n_rows"] = Field(
        default="all", description="all labelled batches before the holdout, or only the last N batches / rows of them."
    )
    last_n: int | None = Field(default=None, ge=1, description="N for window last_n_batches / last_n_rows.")
    window_candidates: int = Field(
        default=4, ge=1, le=8,
        description=(
            "How many training windows a retrain fits and chooses among: the configured one, all batches with equal "
            "weights, recency half-lives 3 and 1, the last k batches. The winner on the older half of the holdout must "
            "confirm on the newest half, else the configured window is kept. 1: no choice. Setting window yourself "
            "forces that window."
        ),
    )
    window_budget_seconds: float = Field(
        default=300.0, gt=0,
        description="Fit seconds the extra window variants may use in all; those not started within it are skipped and listed.",
    )
    min_rows: int = Field(
        default=gate_defaults.DEFAULT_MIN_ROWS, ge=1, description="Fewest labelled training rows (gate data_sufficiency)."
    )
    min_rows_per_class: int = Field(
        default=gate_defaults.DEFAULT_MIN_ROWS_PER_CLASS, ge=1, description="Fewest training rows of each class (gate data_sufficiency; classification)."
    )
    min_holdout_rows: int = Field(
        default=gate_defaults.DEFAULT_MIN_HOLDOUT_ROWS, ge=1, description="Fewest holdout rows the gates judge on (gate data_sufficiency)."
    )
    max_rows: int | None = Field(
        default=500_000, ge=1,
        description=(
            "Most labelled rows a retrain reads for training, and most for the holdout: beyond it, a seeded sample "
            "(model.seed) drawn in DuckDB with each batch in proportion to its labelled rows, so a window of huge "
            "batches is never one frame; production_metrics measures the champion on at most as many rows of a batch, "
            "and drift_report primes its detectors with the same holdout sample. null: read every row."
        ),
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

    @property
    def chooses_window(self) -> bool:
        """Whether a retrain chooses its window among variants: not when ``window`` is set in the config
        (a person's choice is forced) or ``window_candidates`` is 1."""
        return self.window_candidates > 1 and "window" not in self.model_fields_set

    def first_champion_plan(self, labelled: list[tuple[str, int]]):
        """How the first champion can be trained from these (batch id, labelled rows), or what is
        missing (:func:`retrain_assets.core.first_champion.first_champion_plan` with these settings)."""
        from retrain_assets.core.first_champion import first_champion_plan

        return first_champion_plan(labelled, min_rows=self.min_rows, min_holdout_rows=self.min_holdout_rows,
                                   holdout_share=self.newest_holdout_share)

    @model_validator(mode="after")
    def _n_for_window(self) -> TrainingSettings:
        if self.window != "all" and self.last_n is None:
            raise ValueError(f"window {self.window!r} needs last_n")
        return self


class GateSettings(Section):
    """The promotion gates: checks on candidate_model; production_model promotes only a version that passed them all."""

    metric_floor: float | None = Field(
        default=None,
        description="Lowest acceptable holdout metric (highest for rmse/mae); default 0.6 for roc_auc/accuracy, 0.3 for f1, none for rmse/mae.",
    )
    comparison_tolerance: float = Field(
        default=gate_defaults.DEFAULT_COMPARISON_TOLERANCE,
        ge=0,
        description="How much worse than the champion the candidate may be (lower 95% bound of the paired difference); a fraction of the champion's value for rmse/mae.",
    )
    bootstrap_resamples: int = Field(default=gate_defaults.DEFAULT_BOOTSTRAP_RESAMPLES, ge=100, le=20000,
                                     description="Paired bootstrap resamples.")
    slice_columns: list[str] | None = Field(
        default=None, description="Columns whose slices must not regress; default: up to 2 categorical columns with the fewest levels."
    )
    slice_tolerance: float = Field(default=gate_defaults.DEFAULT_SLICE_TOLERANCE, ge=0, description="How much worse the candidate may be on one slice.")
    slice_min_rows: int = Field(default=gate_defaults.DEFAULT_SLICE_MIN_ROWS, ge=1, description="Slices with fewer holdout rows are listed, not judged.")
    max_flip_rate: float = Field(
        default=gate_defaults.DEFAULT_MAX_FLIP_RATE, ge=0, le=1, description="Largest share of holdout predictions that may differ from the champion's (waived on confirmed concept drift)."
    )
    latency_budget_ms_per_1000: float = Field(
        default=gate_defaults.DEFAULT_LATENCY_BUDGET_MS_PER_1000, gt=0, description="Serving smoke test: milliseconds allowed to score 1,000 rows in a fresh process."
    )


class DriftSettingsModel(Section):
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


class AutomationSettings(Section):
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
    executor: Literal["in_process", "multiprocess", "k8s", "celery"] = Field(
        default="in_process",
        description=(
            "How runs execute: in_process (one process per run; the steps run one after another anyway, and a "
            "process per step costs ~5 s), multiprocess (one process per step, Dagster's default), k8s (a "
            "Kubernetes Job per step) or celery (a Celery task per step, run by `dagster-celery worker` processes "
            "on any machine that reaches the broker); k8s and celery: pip install 'retrain_assets[scale]'."
        ),
    )
    executor_config: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "The executor's own config, checked when the definitions load: e.g. {max_concurrent: 4} (multiprocess), "
            "{job_namespace: ml, max_concurrent: 4} (k8s), {broker: 'redis://redis.internal:6379/0', backend: "
            "'redis://redis.internal:6379/1'} (celery; broker required, the same as in the workers' celery.yaml)."
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
        checked_cron(self.schedule_cron)
        return self

    def policy(self):
        """The controls as :class:`retrain_assets.core.policy.PolicySettings`."""
        return PolicySettings(
            cooldown_minutes=self.cooldown_minutes, cooldown_batches=self.cooldown_batches,
            confirm_k=self.confirm_k, confirm_n=self.confirm_n, min_new_labelled_rows=self.min_new_labelled_rows,
            max_retrains_per_period=self.max_retrains_per_period, period_days=self.period_days,
        )


class PromotionSettings(Section):
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


class HealthSettings(Section):
    """The model_health view: when data or labels count as stale, and how often that is checked."""

    max_hours_without_batch: float = Field(
        default=health_defaults.DEFAULT_MAX_HOURS_WITHOUT_BATCH, gt=0,
        description="Check batch_freshness on model_health warns (and alerts once) when no batch has landed for this many hours.",
    )
    max_batches_without_labels: int = Field(
        default=health_defaults.DEFAULT_MAX_BATCHES_WITHOUT_LABELS, ge=0,
        description="Check label_freshness on model_health warns (and alerts once) when this many batches have arrived since the newest labelled one.",
    )
    schedule_cron: str = Field(
        default="0 * * * *",
        description="When model_health is refreshed even if nothing happened (so a silent feed is noticed); it is also refreshed after every ingest and retrain.",
    )

    @field_validator("schedule_cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        return checked_cron(value)


class AlertSettings(Section):
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
