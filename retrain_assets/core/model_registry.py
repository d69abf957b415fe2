"""The model registry as the platform uses it: one registered model, its aliases and version tags.

Every registry call of the assets, jobs and sensors goes through a :class:`RegistryClient`:
:class:`MlflowRegistry` (the MLflow registry, through :mod:`retrain_assets.core.registry`) in
production, :class:`InMemoryRegistry` (versions and aliases held in this process) in tests.
Pure Python (no Dagster).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from retrain_assets.core import registry
from retrain_assets.core.registry import CHAMPION_ALIAS, Champion, model_uri


class RegistryClient(Protocol):
    """What the platform asks of a model registry, for one registered model."""

    model_name: str

    def version(self, alias: str) -> str | None:
        """The version holding ``alias``, or None."""

    def load(self, alias: str = CHAMPION_ALIAS) -> Champion | None:
        """The version holding ``alias``, loaded (safely), or None."""

    def tags(self, version: str) -> dict[str, str]:
        """Tags of one version."""

    def set_tags(self, version: str, tags: dict[str, Any]) -> None:
        """Set tags on one version (values as text; anything else as JSON)."""

    def move_alias(self, alias: str, version: str | None) -> None:
        """Point ``alias`` at ``version`` in one atomic call, or delete it when None."""

    def run_id(self, version: str) -> str | None:
        """The tracking run that logged ``version``."""

    def tag_run(self, run_id: str, tags: dict[str, str]) -> None:
        """Set tags on a tracking run."""

    def lineage(self) -> list[tuple[str, float, str | None, str | None]]:
        """(version, registered at in POSIX seconds, data fingerprint, Dagster run id) of every version."""

    def log_candidate(self, model, *, signature, input_example, tags: dict[str, Any]) -> tuple[str, str]:
        """Register ``model`` as a new version with ``tags``; returns (version, its URI)."""

    def uri(self, version: str | None = None, alias: str | None = None) -> str:
        """``models:/<name>/<version>`` or ``models:/<name>@<alias>``."""


@dataclass(frozen=True)
class MlflowRegistry:
    """One registered model in the MLflow registry at ``tracking_uri`` (which may hold credentials)."""

    tracking_uri: str
    model_name: str

    def version(self, alias: str) -> str | None:
        return registry.alias_version(self.tracking_uri, self.model_name, alias)

    def load(self, alias: str = CHAMPION_ALIAS) -> Champion | None:
        return registry.load_champion(self.tracking_uri, self.model_name, alias=alias)

    def tags(self, version: str) -> dict[str, str]:
        return registry.version_tags(self.tracking_uri, self.model_name, version)

    def set_tags(self, version: str, tags: dict[str, Any]) -> None:
        registry.set_version_tags(self.tracking_uri, self.model_name, version, tags)

    def move_alias(self, alias: str, version: str | None) -> None:
        registry.move_alias(self.tracking_uri, self.model_name, alias, version)

    def run_id(self, version: str) -> str | None:
        return registry.client_for(self.tracking_uri).get_model_version(self.model_name, str(version)).run_id

    def tag_run(self, run_id: str, tags: dict[str, str]) -> None:
        client = registry.client_for(self.tracking_uri)
        for key, value in tags.items():
            client.set_tag(run_id, key, value)

    def lineage(self) -> list[tuple[str, float, str | None, str | None]]:
        return registry.version_lineage(self.tracking_uri, self.model_name)

    def log_candidate(self, model, *, signature, input_example, tags: dict[str, Any]) -> tuple[str, str]:
        return registry.log_candidate(model, tracking_uri=self.tracking_uri, model_name=self.model_name,
                                      signature=signature, input_example=input_example, tags=tags)

    def uri(self, version: str | None = None, alias: str | None = None) -> str:
        return model_uri(self.model_name, version, alias)


@dataclass
class _Version:
    model: Any
    tags: dict[str, str]
    run_id: str | None
    created: float


@dataclass
class InMemoryRegistry:
    """A registry held in this process's memory, for tests: the same calls, no MLflow.

    Versions are numbered 1, 2, … as MLflow numbers them; tags are kept as text. Clients of the same
    ``store`` and model share one registry (:meth:`named`), so a test and the assets it runs see the
    same versions.
    """

    model_name: str
    versions: dict[str, _Version] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    run_tags: dict[str, dict[str, str]] = field(default_factory=dict)
    _stores: ClassVar[dict[tuple[str, str], "InMemoryRegistry"]] = {}

    @classmethod
    def named(cls, store: str, model_name: str) -> "InMemoryRegistry":
        """The registry of ``model_name`` in ``store``, created empty the first time."""
        return cls._stores.setdefault((store, model_name), cls(model_name))

    @classmethod
    def forget(cls, store: str) -> None:
        """Drop every registry of ``store`` (a test's teardown)."""
        for key in [k for k in cls._stores if k[0] == store]:
            del cls._stores[key]

    def register(self, model: Any, tags: dict[str, Any] | None = None, run_id: str | None = None) -> str:
        """Add a version (as a training run would) and return its number."""
        version = str(len(self.versions) + 1)
        self.versions[version] = _Version(model, {k: registry.tag_text(v) for k, v in (tags or {}).items()},
                                          run_id, time.time())
        return version

    def _get(self, version: str) -> _Version:
        try:
            return self.versions[str(version)]
        except KeyError:
            raise KeyError(f"{self.model_name!r} has no version {version!r}") from None

    def version(self, alias: str) -> str | None:
        return self.aliases.get(alias)

    def load(self, alias: str = CHAMPION_ALIAS) -> Champion | None:
        version = self.aliases.get(alias)
        if version is None:
            return None
        found = self._get(version)
        return Champion(self.model_name, version, found.model, found.run_id, dict(found.tags))

    def tags(self, version: str) -> dict[str, str]:
        return dict(self._get(version).tags)

    def set_tags(self, version: str, tags: dict[str, Any]) -> None:
        self._get(version).tags.update({k: registry.tag_text(v) for k, v in tags.items()})

    def move_alias(self, alias: str, version: str | None) -> None:
        if version is None:
            self.aliases.pop(alias, None)
            return
        self._get(version)
        self.aliases[alias] = str(version)

    def run_id(self, version: str) -> str | None:
        return self._get(version).run_id

    def tag_run(self, run_id: str, tags: dict[str, str]) -> None:
        self.run_tags.setdefault(run_id, {}).update(tags)

    def lineage(self) -> list[tuple[str, float, str | None, str | None]]:
        return [(v, found.created, found.tags.get(registry.TAG_DATA_FINGERPRINT),
                 found.tags.get(registry.TAG_DAGSTER_RUN)) for v, found in self.versions.items()]

    def log_candidate(self, model, *, signature, input_example, tags: dict[str, Any]) -> tuple[str, str]:
        version = self.register(model, tags)
        return version, self.uri(version)

    def uri(self, version: str | None = None, alias: str | None = None) -> str:
        return model_uri(self.model_name, version, alias)
