"""Resources: the user's settings and the DuckDB warehouse, configured when a run starts."""

from __future__ import annotations

import functools
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from retrain_assets.core import files, storage, workers
from retrain_assets.core.model_files import UnsafeModelError
from retrain_assets.core.model_registry import InMemoryRegistry, MlflowRegistry, RegistryClient
from retrain_assets.core.registry import CHAMPION_ALIAS, Champion, ensure_experiment, is_tracking_server
from retrain_assets.core.redact import redact, redact_url
from retrain_assets.constants import MLFLOW_RESOURCE
from retrain_assets.names import ModelNames
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
        if workers.in_celery_worker():  # a Celery pool process serves many runs; the run's own process is elsewhere
            return
        context.instance.add_run_tags(run.run_id, {workers.WORKER_TAG: workers.this_worker()})


_LOCKED = "could not set lock on file"
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")


def lock_holder(error_text: str) -> str | None:
    """Who holds a DuckDB file, from DuckDB's lock error ("… held in /usr/bin/python3 (PID 4242) …"):
    the program, its PID and, when this machine can see it, the command line it runs.
    None when the error is not a lock conflict."""
    if _LOCKED not in error_text.lower():
        return None
    found = _LOCK_HOLDER.search(error_text)
    if found is None:
        return "another process (DuckDB did not say which)"
    program, pid = found["program"], int(found["pid"])
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = ""
    command = redact(command)
    if len(command) > 300:
        command = command[:299] + "…"
    seen = f", running: {command}" if command else " (not visible here: another machine or container?)"
    return f"{program} (PID {pid}{seen})"


SENSOR_LOCK_WAIT_SECONDS = 20.0
"""How long a sensor tick waits for a DuckDB file another process holds (a tick may take 60 s)."""


class Warehouse(DuckDBResource):
    """The DuckDB file under storage.root that holds raw batches, validated rows and quarantine."""

    lock_wait_seconds: float = Field(
        default=100.0, ge=0,
        description="How long to wait for the DuckDB file while another process holds it (storage.lock_wait_seconds).",
    )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.database != ":memory:":
            files.make_folder(Path(self.database).parent)

    def _connect(self, wait_seconds: float | None = None) -> duckdb.DuckDBPyConnection:
        """Open the file for writing, waiting up to ``wait_seconds`` (default ``lock_wait_seconds``)
        while another process holds it.

        Raises:
            storage.StorageUnavailable: still held after the wait (the message names the holder), or
                the disk is full. Any other error is DuckDB's own.
        """
        config = {"custom_user_agent": "dagster", **self.connection_config}
        limit = self.lock_wait_seconds if wait_seconds is None else min(wait_seconds, self.lock_wait_seconds)
        started, delay, attempts = time.monotonic(), 0.1, 0
        while True:
            attempts += 1
            try:
                return duckdb.connect(self.database, read_only=False, config=config)
            except duckdb.Error as error:
                if files.disk_full(error):
                    raise storage.disk_full_error(self.database, "opening the warehouse", "Nothing was written.") from error
                holder = lock_holder(str(error))
                if holder is None:
                    raise
                waited = time.monotonic() - started
                if waited >= limit:
                    raise storage.StorageUnavailable(
                        f"the DuckDB file {self.database} is held by another process: {holder}. DuckDB lets one "
                        f"process at a time open a file for writing (a read-only connection blocks writers too). "
                        f"Waited {waited:.1f} s ({attempts} attempts; storage.lock_wait_seconds = "
                        f"{self.lock_wait_seconds:g}{'' if limit == self.lock_wait_seconds else f', a sensor waits at most {limit:g}'}); nothing was written. Close that connection or program (a "
                        f"notebook, the duckdb CLI, a database browser); the batch is retried once the file is free "
                        f"(re-execute other runs)."
                    ) from error
                time.sleep(min(delay, limit - waited))
                delay = min(delay * 2, 5.0)

    @contextmanager
    def get_connection(self, wait_seconds: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection with the platform's tables in place; always closed.

        ``wait_seconds`` caps the wait for a held file below ``lock_wait_seconds``: sensors pass
        :data:`SENSOR_LOCK_WAIT_SECONDS` so a tick fails with the holder's name (and the next tick
        tries again) well inside Dagster's 60 s sensor timeout. Sensors open the file read-write like
        runs: DuckDB refuses a read-only and a read-write connection to one file in one process, and
        the daemon evaluates sensors in threads of one process; readers run no DDL.

        A full disk, here or in the caller's block, is raised as :class:`storage.StorageUnavailable`
        with what happened and what to do, as is a file held by another process past the wait.
        """
        conn = self._connect(wait_seconds)
        try:
            storage.ensure_tables(conn)
            yield conn
        except BaseException as error:
            try:
                conn.close()
            except duckdb.Error as close_error:
                error.add_note(f"closing the connection failed too: {close_error}")
            if isinstance(error, duckdb.Error) and files.disk_full(error):
                raise storage.disk_full_error(self.database, "writing to the warehouse") from error
            raise
        try:
            conn.close()  # closing may checkpoint the write-ahead log into the file, which needs room
        except duckdb.Error as error:
            if files.disk_full(error):
                raise storage.disk_full_error(
                    self.database, "closing the warehouse",
                    "Everything committed is kept (in the DuckDB file or the .wal file beside it).") from error
            raise


class ModelRegistry(dg.ConfigurableResource):
    """The model registry: every registry call of the assets, jobs and sensors goes through :meth:`client`."""

    config_path: str = Field(
        description="Path of the YAML config naming the MLflow registry (mlflow.tracking_uri) and model "
        "(model.name): the URI, which may hold credentials, is read from it when needed, never shown here."
    )

    def client(self) -> RegistryClient:
        """The registered model in the MLflow registry of the config."""
        cfg = load_settings(self.config_path)
        return MlflowRegistry(cfg.mlflow_tracking_uri, cfg.registered_model_name)

    def champion(self) -> Champion | None:
        """The version holding alias `champion`, loaded; None before the first promotion.

        A version the platform may not load (pickle, foreign types) fails the step with the reason,
        and nothing from its file is run.
        """
        try:
            return self.client().load(CHAMPION_ALIAS)
        except UnsafeModelError as error:
            raise dg.Failure(description=str(error)) from None

    def champion_version(self) -> str | None:
        """The version holding alias `champion` (not loaded); None before the first promotion."""
        return self.client().version(CHAMPION_ALIAS)


class InMemoryModelRegistry(ModelRegistry):
    """A model registry held in this process's memory, for tests: the same calls, no MLflow.

    Every resource with the same ``store`` shares one registry per model
    (:class:`~retrain_assets.core.model_registry.InMemoryRegistry`).
    """

    store: str = Field(default="default", description="Name of the in-memory store shared by resources that name it.")

    def client(self) -> RegistryClient:
        return InMemoryRegistry.named(self.store, load_settings(self.config_path).registered_model_name)


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


@functools.lru_cache(maxsize=None)
def mlflow_run_hooks(names: ModelNames) -> frozenset[dg.HookDefinition]:
    """dagster-mlflow's ``end_mlflow_on_run_finished`` for the model's MLflow resource: ends the run's
    MLflow run when its last step succeeds and marks it FAILED when a step fails. dagster-mlflow's own
    hook requires the resource key ``mlflow``; a fleet names each model's ``<model>__mlflow``."""
    from mlflow.entities.run_status import RunStatus

    key = names.resource(MLFLOW_RESOURCE)

    @dg.success_hook(name=names.name("end_mlflow_run_on_success"), required_resource_keys={key})
    def end_mlflow_run_on_success(context: dg.HookContext) -> None:
        nodes = context._step_execution_context.job_def.nodes_in_topological_order  # noqa: SLF001 (as dagster-mlflow)
        if context.op.name == nodes[-1].name:
            getattr(context.resources, key).end_run()

    @dg.failure_hook(name=names.name("end_mlflow_run_on_failure"), required_resource_keys={key})
    def end_mlflow_run_on_failure(context: dg.HookContext) -> None:
        getattr(context.resources, key).end_run(status=RunStatus.to_string(RunStatus.FAILED))

    return frozenset({end_mlflow_run_on_success, end_mlflow_run_on_failure})


def resources_for(defs: dg.Definitions, definition) -> dict:
    """The resources one sensor or schedule requires, bound as the daemon binds them (binding all
    of ``defs.resources`` would also start the MLflow tracking resource, which needs a run)."""
    return {key: defs.resources[key] for key in definition.required_resource_keys}
