"""Security: models that could run code are never loaded; secrets never shown; cells escaped on output."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from retrain_assets.core import registry, serving
from retrain_assets_tests.conftest import (
    churn_pipeline,
    clean_batch,
    definitions_for,
    failure_text,
    ingest,
    register_champion,
    tick,
)


class Payload:
    """Unpickling this touches a marker file: stands for any code a pickled model could run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _register_pickled(settings, marker: Path, fmt: str = "cloudpickle") -> str:
    """A version registered by hand with cloudpickle whose file runs a payload, given `champion`."""
    uri = settings.mlflow_tracking_uri
    client = mlflow.MlflowClient(uri, uri)
    name = settings.registered_model_name
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(
        name, artifact_location=str(settings.storage.root / "mlartifacts"))
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model = churn_pipeline()
    model.steps.append(("evil", Payload(marker)))
    with mlflow.start_run(experiment_id=experiment_id):
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name=name,
                                        pip_requirements=["scikit-learn"], serialization_format=fmt)
    version = str(info.registered_model_version)
    client.set_registered_model_alias(name, registry.CHAMPION_ALIAS, version)
    assert not marker.exists()  # logging pickled it; nothing has loaded it yet
    return version


@pytest.mark.parametrize("fmt", ["cloudpickle", "pickle"])
def test_a_pickled_champion_is_refused_and_never_run(workspace, fmt):
    settings = workspace.settings
    marker = workspace.root / "payload-ran"
    version = _register_pickled(settings, marker, fmt)
    with pytest.raises(registry.UnsafeModelError) as caught:
        registry.load_champion(settings.mlflow_tracking_uri, settings.registered_model_name)
    message = str(caught.value)
    assert f"version {version} of 'churn' (champion)" in message and repr(fmt) in message and "rollback" in message
    assert not marker.exists()


def test_the_serving_smoke_test_refuses_a_pickled_version_in_its_child(workspace):
    settings = workspace.settings
    marker = workspace.root / "payload-ran"
    version = _register_pickled(settings, marker)
    sample = clean_batch(1, 50).drop(columns=["churned"])
    probe = serving.smoke_test(f"models:/churn/{version}", sample, tracking_uri=settings.mlflow_tracking_uri)
    assert not probe.ok and "refusing to load" in probe.error and probe.stage == "load"
    assert not marker.exists()


def test_an_ingest_with_a_pickled_champion_fails_loudly_without_running_it(workspace, defs, instance):
    settings = workspace.settings
    marker = workspace.root / "payload-ran"
    _register_pickled(settings, marker)
    workspace.land("b0001", clean_batch(1))
    result = tick(defs, instance)
    run = ingest(defs, instance, result.run_requests[0].partition_key, tags=result.run_requests[0].tags)
    assert not run.success
    assert "refusing to load" in failure_text(run) and "cloudpickle" in failure_text(run)
    assert not marker.exists()


def test_a_skops_file_that_asks_to_trust_a_function_is_refused(tmp_path):
    import skops.io
    from sklearn.preprocessing import FunctionTransformer

    import os

    model = FunctionTransformer(func=os.system)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'm.db'}")
    folder = tmp_path / "model"
    wanted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    mlflow.sklearn.save_model(model, folder, skops_trusted_types=wanted)  # the file lists it as trusted
    with pytest.raises(registry.UnsafeModelError, match="not scikit-learn classes"):
        registry.load_sklearn_safely(folder, "a crafted model")


def test_a_model_the_platform_saved_loads(workspace):
    settings = workspace.settings
    model = churn_pipeline().fit(clean_batch(1).drop(columns=["churned"]), clean_batch(1)["churned"])
    register_champion(settings, model, training_batches=["b0001"], holdout_batches=["b0002"], holdout_metric=0.8)
    champion = registry.load_champion(settings.mlflow_tracking_uri, settings.registered_model_name)
    assert champion is not None and len(champion.scores(clean_batch(2).drop(columns=["churned"]))) == 400
