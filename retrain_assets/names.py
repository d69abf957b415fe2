"""The Dagster names of one model's definitions: asset keys, groups, jobs, sensors, schedules, pools,
partitions and resource keys.

A deployment of one config file (``RETRAIN_CONFIG`` names a file) uses the plain names of
:mod:`retrain_assets.constants` (``raw_data``, ``retrain``, ``settings``): :data:`SINGLE`. A fleet
(``RETRAIN_CONFIG`` names a folder, one ``<model>.yaml`` per model) gives each model its own:
assets under the key prefix ``<model>/`` in the asset group ``<model>``, and jobs, sensors,
schedules, partitions, the DuckDB pool and resources named ``<model>__<name>``. The training pool
``retrain`` is the one name the models share: it is the fleet's retrain concurrency limit.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import dagster as dg

from retrain_assets.constants import BATCH_PARTITIONS, DUCKDB_POOL, MLFLOW_RESOURCE, RETRAIN_POOL
from retrain_assets.core.fleet import check_model_name

RESOURCE_KEYS = ("settings", "warehouse", "registry", MLFLOW_RESOURCE)
TAG_MODEL = "retrain/model"


@dataclass(frozen=True)
class ModelNames:
    """Every Dagster name of one model; ``model=None`` is the single-config deployment (plain names)."""

    model: str | None = None

    def __post_init__(self) -> None:
        if self.model is not None:
            check_model_name(self.model)

    def key(self, asset: str) -> dg.AssetKey:
        """The asset key of one of the model's assets (``raw_data`` → ``<model>/raw_data``)."""
        return dg.AssetKey(asset) if self.model is None else dg.AssetKey([self.model, asset])

    def keys(self, *assets: str) -> list[dg.AssetKey]:
        return [self.key(asset) for asset in assets]

    def group(self, stage: str) -> str:
        """The asset group: one per stage for a single config, one per model in a fleet."""
        return stage if self.model is None else self.model

    def name(self, base: str) -> str:
        """A job, sensor, schedule, partitions or resource name (``retrain`` → ``<model>__retrain``)."""
        return base if self.model is None else f"{self.model}__{base}"

    def resource(self, base: str) -> str:
        return self.name(base)

    def resources(self, *bases: str) -> set[str]:
        """The resource keys an asset, op or sensor of this model requires."""
        return {self.resource(base) for base in bases}

    def bind(self, context: Any, *bases: str) -> dict[str, Any]:
        """The model's resources from ``context.resources``, under their plain names (``settings``…)."""
        return {base: getattr(context.resources, self.resource(base)) for base in bases}

    def serves(self, run: Any) -> bool:
        """Whether a Dagster run is one of this model's: its ``retrain/model`` tag, else (a run of the
        implicit asset job, launched from the asset graph) the keys it selected. Always true for a
        single config."""
        if self.model is None:
            return True
        tagged = (run.tags or {}).get(TAG_MODEL)
        if tagged:
            return tagged == self.model
        if run.job_name.startswith(f"{self.model}__"):
            return True
        return any(key.path[0] == self.model and len(key.path) > 1 for key in (run.asset_selection or ()))

    @property
    def duckdb_pool(self) -> str:
        """Steps writing the model's DuckDB file: one at a time per file (each model has its own file)."""
        return self.name(DUCKDB_POOL)

    @property
    def retrain_pool(self) -> str:
        """Training steps: shared by every model of the fleet, so its limit is the fleet's."""
        return RETRAIN_POOL

    @property
    def partitions_name(self) -> str:
        return self.name(BATCH_PARTITIONS)

    @property
    def tags(self) -> dict[str, str]:
        """Tags on every job of the model, so a run says which model it served."""
        return {} if self.model is None else {TAG_MODEL: self.model}

    def label(self) -> str:
        """How messages name the model ("" for a single config)."""
        return "" if self.model is None else f"model {self.model}: "


SINGLE = ModelNames()


def with_model_resources(fn: Callable[..., Any], names: ModelNames) -> Callable[..., Any]:
    """``fn(context, settings=…, …)`` as a function whose resource parameters carry the model's
    resource keys (``<model>__settings``), for the decorators that find resources only by parameter
    name (run-status sensors take no ``required_resource_keys``)."""
    signature = inspect.signature(fn)
    plain = {names.resource(name): name for name in signature.parameters if name in RESOURCE_KEYS}

    @functools.wraps(fn)
    def wrapper(context, **resources):
        return fn(context, **{plain[key]: value for key, value in resources.items()})

    wrapper.__signature__ = signature.replace(parameters=[
        parameter.replace(name=names.resource(parameter.name)) if parameter.name in RESOURCE_KEYS else parameter
        for parameter in signature.parameters.values()
    ])
    return wrapper


def with_model_resources_of(names: ModelNames) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator form of :func:`with_model_resources`."""
    return lambda fn: with_model_resources(fn, names)


def names_of_run(tags: Mapping[str, str]) -> ModelNames:
    """The names of the model a run serves, from its tags (every job of a fleet's model carries
    ``retrain/model``; a single config's runs have none)."""
    return ModelNames(tags.get(TAG_MODEL) or None)
