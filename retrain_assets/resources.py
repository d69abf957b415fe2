"""Resources: the user's settings and the DuckDB warehouse, configured when a run starts."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from retrain_assets.core import storage, workers
from retrain_assets.core.registry import (
    CHAMPION_ALIAS,
    Champion,
    UnsafeModelError,
    alias_version,
    ensure_experiment,
    is_tracking_server,
    load_champion,
)
from retrain_assets.core.redact import redact_url
from retrain_assets.settings import Settings, load_settings


class RetrainSettings(dg.ConfigurableResource):
    """The retrain-assets YAML config (dataset, schema hints, storage, MLflow, automation)."""

    config_path: str = Field(description="Path of the YAML config file ($RETRAIN_CONFIG or the demo config).")

    def load(self) -> Settings:
        """The validated settings (re-read only when the file changes)."""
        return load_settings(self.config_path)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """In a run, record its worker process (``retrain/worker`` tag) so that a worker killed mid-run
        can be told from a running one (core.workers); sensors and schedules have no run and skip this."""
        run = context.dagster_run
        if run is None or context.instance is None or workers.WORKER_TAG in (run.tags or {}):
            return
        context.instance.add_run_tags(run.run_id, {workers.WORKER_TAG: workers.this_worker()})


class Warehouse(DuckDBResource):
    """The DuckDB file under storage.root that holds raw batches, validated rows and quarantine."""

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.database != ":memory:":
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection with the platform's tables in place; always closed."""
        with super().get_connection() as conn:
            try:
                storage.ensure_tables(conn)
                yield conn
            finally:
                conn.close()


class ModelRegistry(dg.ConfigurableResource):
    """The MLflow model registry: which version is the champion and what it was trained on."""

    config_path: str = Field(
        description="Path of the YAML config naming the MLflow registry (mlflow.tracking_uri) and model "
        "(model.name): the URI, which may hold credentials, is read from it when needed, never shown here."
    )

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking/registry URI in force (credentials included: never show it unredacted)."""
        return load_settings(self.config_path).mlflow_tracking_uri

    @property
    def model_name(self) -> str:
        """Registered model name."""
        return load_settings(self.config_path).registered_model_name

    def champion(self) -> Champion | None:
        """The version holding alias `champion`, loaded; None before the first promotion.

        A version the platform may not load (pickle, foreign types) fails the step with the reason,
        and nothing from its file is run.
        """
        try:
            return load_champion(self.tracking_uri, self.model_name)
        except UnsafeModelError as error:
            raise dg.Failure(description=str(error)) from None

    def champion_version(self) -> str | None:
        """The version holding alias `champion` (not loaded); None before the first promotion."""
        return alias_version(self.tracking_uri, self.model_name, CHAMPION_ALIAS)


def mlflow_tracking_resource(tracking_uri: str, experiment: str, artifact_location: Path) -> dg.ResourceDefinition:
    """dagster-mlflow's ``mlflow_tracking`` resource (one MLflow run per Dagster run, shared by its
    steps), configured for this config, that first creates the experiment. The experiment is
    created when a run starts, not when the code loads.

    With a store this process opens itself (the default SQLite file), the experiment keeps its
    artifacts in ``artifact_location`` under ``storage.root`` (MLflow would otherwise write
    ``./mlruns`` wherever the process runs). With a tracking server (``http(s)://``) the server
    decides where artifacts go (``--artifacts-destination``, proxied: clients need only the URI),
    so no local folder is given: one would be a path on the machine that happened to create the
    experiment, unreadable from the server and from every other machine."""
    from dagster_mlflow import mlflow_tracking

    local_artifacts = None if is_tracking_server(tracking_uri) else artifact_location

    def init(context: dg.InitResourceContext):
        import mlflow
        from mlflow.exceptions import MlflowException

        stale = mlflow.active_run()
        if stale is not None and stale.data.tags.get("dagster_run_id") != context.run_id:
            # Left active in this process by an earlier in-process run (tests, `make demo`).
            context.log.warning(f"ending MLflow run {stale.info.run_id} left active by an earlier run")
            try:
                mlflow.end_run(status="KILLED")
            except MlflowException:  # it lives in another tracking store; the stack is cleared anyway
                pass
        ensure_experiment(tracking_uri, experiment, local_artifacts)
        return mlflow_tracking.resource_fn(context)

    resource = dg.ResourceDefinition(
        resource_fn=init,
        config_schema=mlflow_tracking.config_schema,
        description=f"MLflow tracking (dagster-mlflow) at {redact_url(tracking_uri)}, experiment {experiment!r}.",
    )
    config = {"experiment_name": experiment, "mlflow_tracking_uri": tracking_uri}
    if local_artifacts is not None:
        config["extra_tags"] = {"retrain.experiment_artifacts": str(local_artifacts)}
    return resource.configured(config)


def resources_for(defs: dg.Definitions, definition) -> dict:
    """The resources one sensor or schedule requires, bound as the daemon binds them (binding all
    of ``defs.resources`` would also start the MLflow tracking resource, which needs a run)."""
    return {key: defs.resources[key] for key in definition.required_resource_keys}
