"""A fleet: ``RETRAIN_CONFIG`` names a folder, and each ``<model>.yaml`` in it is one model's config
(today's file format). Files whose name starts with ``_`` are not models; ``_fleet.yaml`` holds
the fleet's own settings (core.fleet).

A model whose file is invalid, or that would share a storage root, landing folder or registered
model with a model before it, is left out with its error (the others load); the errors are kept
so the deployment can show them (a failing sensor, the fleet view). A folder with no valid model,
or an invalid ``_fleet.yaml``, is an error of the whole folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from retrain_assets.core.fleet import FLEET_FILE, FleetSettings, check_model_name, load_fleet_file
from retrain_assets.settings import Settings, load_settings
from retrain_assets.settings.base import SettingsError


@dataclass(frozen=True)
class FleetModel:
    """One model of the fleet: its name (the file's name), its file and its settings."""

    name: str
    path: Path
    settings: Settings


@dataclass(frozen=True)
class FleetConfig:
    """The fleet's models that loaded, the files that did not (path, message), and its settings."""

    folder: Path
    models: tuple[FleetModel, ...]
    errors: tuple[tuple[Path, str], ...]
    fleet: FleetSettings


def model_files(folder: Path) -> list[Path]:
    """The models' files of a fleet folder, by name (``*.yaml``, not starting with ``_``)."""
    return sorted(p for p in Path(folder).glob("*.yaml") if not p.name.startswith("_") and p.is_file())


def _conflict(settings: Settings, earlier: list[FleetModel]) -> str | None:
    """Why this model may not run beside the models before it: two models writing one place."""
    for other in earlier:
        o = other.settings
        if settings.storage.root == o.storage.root:
            return f"its storage.root {settings.storage.root} is also {other.path.name}'s; give each model its own"
        if settings.dataset.landing_dir == o.dataset.landing_dir:
            return (f"its dataset.landing_dir {settings.dataset.landing_dir} is also {other.path.name}'s; both would "
                    "ingest the same files: give each model its own")
        if (settings.mlflow_tracking_uri, settings.registered_model_name) == (o.mlflow_tracking_uri,
                                                                            o.registered_model_name):
            return (f"its registered model {settings.registered_model_name!r} is also {other.path.name}'s in the same "
                    "MLflow registry: set model.name")
    return None


def load_fleet(folder: str | Path) -> FleetConfig:
    """Every model of a fleet folder.

    Raises:
        SettingsError: the folder has no model file, none of them is valid (every error listed), or
            ``_fleet.yaml`` is invalid.
    """
    folder = Path(folder).resolve()
    files = model_files(folder)
    if not files:
        raise SettingsError(
            f"config folder {folder} holds no model config: put one <model>.yaml per model in it (today's config "
            f"format; the file's name is the model's name), and optionally {FLEET_FILE}")
    models: list[FleetModel] = []
    errors: list[tuple[Path, str]] = []
    for path in files:
        try:
            name = check_model_name(path.stem)
            settings = load_settings(path)
        except (ValueError, SettingsError) as error:
            errors.append((path, str(error)))
            continue
        conflict = _conflict(settings, models)
        if conflict:
            errors.append((path, f"model {name} ({path}) is left out: {conflict}"))
            continue
        models.append(FleetModel(name, path, settings))
    if not models:
        raise SettingsError(f"config folder {folder}: no model could be loaded:\n" + "\n".join(
            f"- {path.name}: {message}" for path, message in errors))
    try:
        fleet = load_fleet_file(folder, [m.name for m in models])
    except ValueError as error:
        raise SettingsError(str(error)) from None
    return FleetConfig(folder, tuple(models), tuple(errors), fleet)
