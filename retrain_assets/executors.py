"""The executor every job runs on, from ``automation.executor`` and ``automation.executor_config``.

* ``in_process`` — one process per run (the default for one machine: the steps of a run are
  sequential anyway, and a process per step costs ~5 s on a small box).
* ``multiprocess`` — one process per step (Dagster's default; ``executor_config`` e.g.
  ``{max_concurrent: 4}``).
* ``k8s`` — one Kubernetes Job per step (``dagster-k8s``'s ``k8s_job_executor``; ``executor_config``
  e.g. ``{job_namespace: ml, max_concurrent: 4}``); the run itself is launched by the instance's
  run launcher (``K8sRunLauncher`` in ``dagster.yaml``).
* ``celery`` — one Celery task per step (``dagster-celery``'s ``celery_executor``) on workers started
  with ``dagster-celery worker start -A dagster_celery.app -y celery.yaml -q dagster`` wherever they
  reach the broker; ``executor_config`` needs ``broker`` (e.g. ``{broker: 'redis://redis.internal:6379/0',
  backend: 'redis://redis.internal:6379/1'}``, the same as the workers' ``celery.yaml`` under
  ``execution: config:``). Workers load the code themselves: same code, ``$RETRAIN_CONFIG`` and
  Dagster instance. Pools and ``dagster/priority`` are applied by the run's process; Celery's own
  task priorities (unused here) run lowest first on Redis, highest first on RabbitMQ.

``k8s`` and ``celery`` come with ``pip install 'retrain_assets[scale]'``. Dask is not offered: with
Dagster 1.13.27, dagster-dask 0.29.27's executor fails before the first step (distributed serializes
the run's ``DagsterRun`` as a namedtuple, and Dagster's records forbid iteration: "Iteration is not
allowed on `@record` RunOpConcurrency"; seen with dask 2024.10 to 2026.8).

Whatever the executor, the steps
share nothing but the DuckDB file, the MLflow store and the run's MLflow run id (dagster-mlflow
passes it between step processes), so each of them must reach those: a shared volume or an object
store for ``storage.root``, an MLflow server for ``mlflow.tracking_uri``.
"""

from __future__ import annotations

from typing import Any, Mapping

import dagster as dg

EXECUTORS = ("in_process", "multiprocess", "k8s", "celery")


def _optional(name: str, module: str, attribute: str) -> dg.ExecutorDefinition:
    try:
        imported = __import__(module, fromlist=[attribute])
    except ImportError as error:
        raise ValueError(
            f"automation.executor {name!r} needs the {module.replace('_', '-')} package, which is not installed "
            f"({error}); install it with: pip install 'retrain_assets[scale]'"
        ) from None
    return getattr(imported, attribute)


def executor_for(name: str, config: Mapping[str, Any] | None = None) -> dg.ExecutorDefinition:
    """The executor definition for ``automation.executor``, configured with ``automation.executor_config``.

    Args:
        name: One of :data:`EXECUTORS`.
        config: The executor's own config (see its Dagster docs); empty for its defaults.

    Returns:
        The executor definition the Definitions use for every job.

    Raises:
        ValueError: An unknown name, config for ``in_process`` (it has none), config the executor does
            not accept, ``celery`` without a broker, or a missing package.
    """
    if name not in EXECUTORS:
        raise ValueError(f"unknown automation.executor {name!r}; choose one of {list(EXECUTORS)}")
    if name == "in_process":
        if config:
            raise ValueError("automation.executor_config must be empty with the in_process executor")
        return dg.in_process_executor
    executor = {
        "multiprocess": lambda: dg.multiprocess_executor,
        "k8s": lambda: _optional(name, "dagster_k8s", "k8s_job_executor"),
        "celery": lambda: _optional(name, "dagster_celery", "celery_executor"),
    }[name]()
    if config:
        # Checked now, so a typo fails `dagster definitions validate` rather than the first run.
        from dagster._config import process_config  # the public route needs a job; same check

        checked = process_config(executor.config_schema.config_type, dict(config))
        if not checked.success:
            problems = "; ".join(error.message for error in checked.errors or [])
            raise ValueError(f"automation.executor_config does not fit the {name} executor: {problems}")
    if name == "celery" and not (config or {}).get("broker"):
        # dagster-celery would fall back to RabbitMQ on localhost: workers elsewhere could not reach it.
        raise ValueError(
            "automation.executor_config.broker is required with the celery executor: the URL of the broker "
            "its workers listen to, e.g. {broker: 'redis://redis.internal:6379/0', "
            "backend: 'redis://redis.internal:6379/1'} (the same values as in the workers' celery.yaml)"
        )
    if not config:
        return executor
    return executor.configured(dict(config), name=f"{executor.name}_configured")
