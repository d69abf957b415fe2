"""The MLflow model registry: experiments, candidate versions, the ``champion``/``challenger``/
``previous`` aliases and what each version was trained and judged on. Pure Python (mlflow, no
Dagster). Aliases only: the deprecated registry stages are never used.

Every registered version carries tags (written when the candidate is registered and judged):

* ``retrain.training_batches`` — JSON list of the batch ids it was trained on (the drift reference),
* ``retrain.holdout_batches`` — JSON list of the batch ids of its time-based holdout,
* ``retrain.holdout_share`` — when present, only the newest that share of the holdout batch was held
  out and the rest was trained on (a retrain that learns from the newest batch),
* ``retrain.metric`` and ``retrain.holdout_metric`` — the metric it is judged on and its value,
* ``retrain.gates_passed`` (``true``/``false``) and ``retrain.compared_to`` (the champion version
  it was judged against, or ``none``): production_model promotes only a version that passed its
  gates against the champion of the moment,
* lineage: ``retrain.data_fingerprint``, ``retrain.code_version``, ``retrain.dagster_run_id``,
  ``retrain.trigger``, ``retrain.reason``.
"""

from __future__ import annotations

import fcntl
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retrain_assets.core.model_files import load_sklearn_safely
from retrain_assets.core.schema import normalise_label, normalise_labels

CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"
PREVIOUS_ALIAS = "previous"
TAG_TRAINING_BATCHES = "retrain.training_batches"
TAG_HOLDOUT_BATCHES = "retrain.holdout_batches"
TAG_METRIC = "retrain.metric"
TAG_HOLDOUT_METRIC = "retrain.holdout_metric"
TAG_HOLDOUT_SHARE = "retrain.holdout_share"
TAG_GATES_PASSED = "retrain.gates_passed"
TAG_FAILED_GATES = "retrain.failed_gates"
TAG_GATES = "retrain.gates"
TAG_COMPARED_TO = "retrain.compared_to"
TAG_DATA_FINGERPRINT = "retrain.data_fingerprint"
TAG_CODE_VERSION = "retrain.code_version"
TAG_DAGSTER_RUN = "retrain.dagster_run_id"
TAG_TRIGGER = "retrain.trigger"
TAG_REASON = "retrain.reason"
TAG_WINDOW_CHOICE = "retrain.window_choice"


@dataclass
class Champion:
    """The loaded production model and what is known about it."""

    name: str
    version: str
    model: Any
    run_id: str | None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def training_batches(self) -> list[str]:
        """Batch ids it was trained on."""
        return list(json.loads(self.tags.get(TAG_TRAINING_BATCHES, "[]")))

    @property
    def holdout_batches(self) -> list[str]:
        """Batch ids of its holdout."""
        return list(json.loads(self.tags.get(TAG_HOLDOUT_BATCHES, "[]")))

    @property
    def holdout_share(self) -> float | None:
        """Share of the holdout batch actually held out (None: all of it)."""
        value = self.tags.get(TAG_HOLDOUT_SHARE)
        return float(value) if value not in (None, "") else None

    @property
    def metric(self) -> str | None:
        """The metric it was promoted on."""
        return self.tags.get(TAG_METRIC)

    @property
    def holdout_metric(self) -> float | None:
        """Its value of that metric on the holdout."""
        value = self.tags.get(TAG_HOLDOUT_METRIC)
        return float(value) if value not in (None, "") else None

    @property
    def classes(self) -> list:
        """A classifier's classes in the order of its probability columns (labels normalised:
        integral numbers as int, else text); empty for a regressor."""
        return [normalise_label(c) for c in getattr(self.model, "classes_", [])]

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        """Positive-class probabilities (binary classifier), the probability matrix with one column
        per class in :attr:`classes` order (multiclass), or predictions (regressor), with one
        OpenMP/BLAS thread (why: docs/decisions.md, "Scoring with one thread").
        """
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            return self._scores(frame)

    def _scores(self, frame: pd.DataFrame) -> np.ndarray:
        if hasattr(self.model, "predict_proba"):
            proba = np.asarray(self.model.predict_proba(frame), dtype=float)
            return proba[:, 1] if proba.shape[1] == 2 else proba
        return np.asarray(self.model.predict(frame), dtype=float)

    def label_codes(self, labels: pd.Series) -> np.ndarray:
        """Labels as the scores see them: 0/1 with :attr:`classes`\ [1] as 1 (binary), or the index
        of the label's class in :attr:`classes`, -1 for a class the model does not know (multiclass)."""
        classes = self.classes
        values = normalise_labels(pd.Series(labels).reset_index(drop=True))
        if len(classes) == 2 or not classes:
            return (values == (classes[1] if classes else 1)).to_numpy(dtype=int)
        return values.map({c: i for i, c in enumerate(classes)}).fillna(-1).to_numpy(dtype=int)


def _sqlite_store_missing(tracking_uri: str) -> bool:
    if not tracking_uri.startswith("sqlite:///"):
        return False
    return not Path(tracking_uri.removeprefix("sqlite:///")).exists()


def load_champion(tracking_uri: str, model_name: str, alias: str = CHAMPION_ALIAS) -> Champion | None:
    """The version of ``model_name`` holding ``alias``, loaded, or None if there is none yet.

    Args:
        tracking_uri: MLflow tracking (and registry) URI.
        model_name: Registered model name.
        alias: The alias to resolve (default ``champion``).

    Returns:
        The champion, or None when the model or the alias does not exist (an empty embedded store
        is not created just to find that out).

    Raises:
        mlflow.exceptions.MlflowException: for anything but "does not exist" (a server that is
            down is a failure, not "no champion").
        UnsafeModelError: the version is not a skops scikit-learn model the platform may load
            (e.g. a pickle registered by hand); nothing from its file is executed.
    """
    version = _version_by_alias(tracking_uri, model_name, alias)
    if version is None:
        return None
    import tempfile

    import mlflow

    uri = client_for(tracking_uri).get_model_version_download_uri(model_name, version.version)
    # Downloaded through ``tracking_uri``: a tracking server that proxies artifacts answers with an
    # ``mlflow-artifacts:/`` URI, which ``load_model`` alone would resolve against the process-wide
    # tracking URI (unset in a fresh run worker, or another store).
    with tempfile.TemporaryDirectory(prefix="retrain-champion-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp, tracking_uri=tracking_uri)
        model = load_sklearn_safely(Path(local), f"version {version.version} of {model_name!r} ({alias})")
    return Champion(model_name, str(version.version), model, version.run_id, dict(version.tags or {}))


def client_for(tracking_uri: str):
    """An MLflow client for the tracking store and the registry at ``tracking_uri``.

    Opening a SQLite store creates (or upgrades) its tables, and two processes doing so at once on a
    new file fail with "table … already exists" (seen with a sensor and a run worker of a fleet
    starting together); they take turns through a lock file beside the database.
    """
    import mlflow

    if not tracking_uri.startswith("sqlite:///"):
        return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    database = Path(tracking_uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".init.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _missing(error) -> bool:
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

    return error.error_code in (ErrorCode.Name(RESOURCE_DOES_NOT_EXIST), "RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def is_tracking_server(tracking_uri: str) -> bool:
    """Whether ``tracking_uri`` is an MLflow tracking server (``http(s)://``) rather than a store
    this process opens itself (SQLite, a database, a folder)."""
    return tracking_uri.lower().startswith(("http://", "https://"))


def ensure_experiment(tracking_uri: str, name: str, artifact_location: str | Path | None) -> str:
    """The id of experiment ``name``, created if it does not exist.

    Args:
        tracking_uri: MLflow tracking URI.
        name: Experiment name.
        artifact_location: Where a new experiment keeps its artifacts; None lets the tracking
            store decide (a tracking server: its ``--artifacts-destination`` or
            ``--default-artifact-root``). For a store this process opens itself, MLflow's default
            is ``./mlruns`` of whatever folder the process runs in: pass a folder under the
            storage root. An existing experiment is used as it is (its artifact location cannot
            change).

    Returns:
        The experiment id.
    """
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    client = client_for(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    if artifact_location is None:
        return client.create_experiment(name)
    location = str(artifact_location)
    if "://" not in location:
        Path(location).mkdir(parents=True, exist_ok=True)
        location = Path(location).resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)


def _version_by_alias(tracking_uri: str, model_name: str, alias: str):
    """The ``ModelVersion`` holding ``alias``, or None (no store yet, no such model or alias)."""
    if _sqlite_store_missing(tracking_uri):
        return None
    from mlflow.exceptions import MlflowException

    try:
        return client_for(tracking_uri).get_model_version_by_alias(model_name, alias)
    except MlflowException as error:
        if _missing(error):
            return None
        raise


def alias_version(tracking_uri: str, model_name: str, alias: str) -> str | None:
    """The version holding ``alias``, or None (no such model or alias)."""
    version = _version_by_alias(tracking_uri, model_name, alias)
    return None if version is None else str(version.version)


def version_tags(tracking_uri: str, model_name: str, version: str) -> dict[str, str]:
    """Tags of one registered version."""
    return dict(client_for(tracking_uri).get_model_version(model_name, str(version)).tags or {})


def set_version_tags(tracking_uri: str, model_name: str, version: str, tags: dict[str, Any]) -> None:
    """Set tags on a registered version (values as text; lists and dicts as JSON)."""
    client = client_for(tracking_uri)
    for key, value in tags.items():
        client.set_model_version_tag(model_name, str(version), key, tag_text(value))


def tag_text(value: Any) -> str:
    """A tag value as text: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def version_lineage(tracking_uri: str, model_name: str) -> list[tuple[str, float, str | None, str | None]]:
    """(version, registered at in POSIX seconds, data fingerprint, Dagster run id) of every version."""
    client = client_for(tracking_uri)
    try:
        found = client.search_model_versions(f"name = '{model_name}'")
    except Exception as error:  # no registered model yet
        if _missing(error):
            return []
        raise
    return [(str(v.version), (v.creation_timestamp or 0) / 1000, (v.tags or {}).get(TAG_DATA_FINGERPRINT),
             (v.tags or {}).get(TAG_DAGSTER_RUN)) for v in found]


def move_alias(tracking_uri: str, model_name: str, alias: str, version: str | None) -> None:
    """Point ``alias`` at ``version`` (one atomic registry call), or delete it when None."""
    client = client_for(tracking_uri)
    if version is None:
        from mlflow.exceptions import MlflowException

        try:
            client.delete_registered_model_alias(model_name, alias)
        except MlflowException as error:
            if not _missing(error):
                raise
        return
    client.set_registered_model_alias(model_name, alias, str(version))


def model_uri(model_name: str, version: str | None = None, alias: str | None = None) -> str:
    """``models:/<name>/<version>`` or ``models:/<name>@<alias>``."""
    if (version is None) == (alias is None):
        raise ValueError("give exactly one of version and alias")
    return f"models:/{model_name}/{version}" if version is not None else f"models:/{model_name}@{alias}"


def serving_signature(schema, target: str, task: str):
    """A model signature that accepts a batch exactly as it lands, minus the target.

    MLflow refuses to convert int64 to double ("not safe"), yet a CSV column of whole numbers
    reads as int64 in one batch and float64 in the next (one missing value). So numeric features
    are declared ``Any`` (required); the pipeline imputes and scales them. Categorical features
    are ``string`` (required). Id and time columns are optional: the pipeline ignores them, so a
    caller may pass them (as landed: text or timestamps) or leave them out.

    Args:
        schema: The dataset schema (:class:`~retrain_assets.core.schema.DatasetSchema`).
        target: The label column (left out).
        task: classification (output: class labels) or regression (output: numbers).

    Returns:
        An ``mlflow.models.ModelSignature``.
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    specs = []
    for column in schema.columns:
        if column.name == target or column.kind == "ignored":
            continue
        if column.kind == "numeric":
            specs.append(ColSpec(AnyType(), column.name))
        elif column.kind == "categorical":
            specs.append(ColSpec("string", column.name))
        else:  # id, datetime: ignored by the pipeline, accepted as they come
            specs.append(ColSpec(AnyType(), column.name, required=False))
    output = ColSpec("double") if task == "regression" else ColSpec(AnyType())
    return ModelSignature(inputs=Schema(specs), outputs=Schema([output]))


def pip_requirements() -> list[str]:
    """Exact versions of what loading the model needs (faster than MLflow's inference, and exact)."""
    from importlib.metadata import version

    return [f"{package}=={version(package)}" for package in ("scikit-learn", "skops", "numpy", "pandas", "scipy")]


def log_candidate(
    model, *, tracking_uri: str, model_name: str, signature, input_example, tags: dict[str, Any]
) -> tuple[str, str]:
    """Log ``model`` in the active MLflow run with skops, register it as a new version of
    ``model_name`` in the registry at ``tracking_uri`` and tag the version.

    skops (MLflow's default for scikit-learn) refuses to load types it does not trust; the types
    this model needs are listed from its own serialisation and passed as ``skops_trusted_types``,
    so it loads anywhere without pickle. The version is created with a client bound to
    ``tracking_uri``, never through MLflow's process-wide registry URI (which another library or
    an ``MLFLOW_REGISTRY_URI`` in the environment may point elsewhere).

    Returns:
        (version, ``models:/<name>/<version>``).
    """
    import mlflow
    import skops.io
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import ALREADY_EXISTS, RESOURCE_ALREADY_EXISTS, ErrorCode

    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    info = mlflow.sklearn.log_model(
        model,
        name="model",
        signature=signature,
        input_example=input_example,
        pip_requirements=pip_requirements(),
        skops_trusted_types=trusted,
    )
    client = client_for(tracking_uri)
    try:
        client.create_registered_model(model_name, description="Trained and promoted by retrain-assets.")
    except MlflowException as error:
        if error.error_code not in (ErrorCode.Name(RESOURCE_ALREADY_EXISTS), ErrorCode.Name(ALREADY_EXISTS)):
            raise
    created = client.create_model_version(
        model_name, source=info.model_uri, run_id=info.run_id, model_id=info.model_id,
        tags={key: tag_text(value) for key, value in tags.items()},
    )
    version = str(created.version)
    return version, model_uri(model_name, version)


def code_version(repo_root: Path) -> str:
    """The git commit of the code (``+dirty`` with local changes), else the package version."""
    import subprocess

    try:
        sha = subprocess.run(["git", "-C", str(repo_root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo_root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return "retrain-assets " + version("retrain-assets")
        except PackageNotFoundError:
            return "unknown"
