"""Security: models that could run code are never loaded; secrets never shown; cells escaped on output."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow
import pytest

from retrain_assets.core import model_files, registry, serving
from retrain_assets_tests.services import mlflow_server  # noqa: F401  (fixture)
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
    model = churn_pipeline()
    model.steps.append(("evil", Payload(marker)))
    version = register_champion(settings, model, training_batches=["b0001"], holdout_batches=["b0002"],
                                holdout_metric=0.8, serialization_format=fmt)
    assert not marker.exists()  # logging pickled it; nothing has loaded it yet
    return version


@pytest.mark.parametrize("fmt", ["cloudpickle", "pickle"])
def test_a_pickled_champion_is_refused_and_never_run(workspace, fmt):
    settings = workspace.settings
    marker = workspace.root / "payload-ran"
    version = _register_pickled(settings, marker, fmt)
    with pytest.raises(model_files.UnsafeModelError) as caught:
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

    model = FunctionTransformer(func=os.system)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'm.db'}")
    folder = tmp_path / "model"
    wanted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    mlflow.sklearn.save_model(model, folder, skops_trusted_types=wanted)  # the file lists it as trusted
    with pytest.raises(model_files.UnsafeModelError, match="not scikit-learn classes"):
        model_files.load_sklearn_safely(folder, "a crafted model")


def test_a_model_the_platform_saved_loads(workspace):
    settings = workspace.settings
    model = churn_pipeline().fit(clean_batch(1).drop(columns=["churned"]), clean_batch(1)["churned"])
    register_champion(settings, model, training_batches=["b0001"], holdout_batches=["b0002"], holdout_metric=0.8)
    champion = registry.load_champion(settings.mlflow_tracking_uri, settings.registered_model_name)
    assert champion is not None and len(champion.scores(clean_batch(2).drop(columns=["churned"]))) == 400


# --- secrets: webhook URLs and MLflow URIs ------------------------------------------------------

SECRET = "T0KEN-s3cret-9f8e"


@pytest.mark.parametrize(
    ("url", "env", "expected"),
    [
        ("${RETRAIN_TEST_UNSET_HOOK}", {}, "refers to $RETRAIN_TEST_UNSET_HOOK, which is not set"),
        (f"hooks.slack.com/services/T0/B0/{SECRET}", {}, "must be an http(s) URL"),
        ("$RETRAIN_TEST_HOOK", {"RETRAIN_TEST_HOOK": f"hooks.slack.com/services/T0/B0/{SECRET}"}, "it has no scheme"),
        (f"ftp://example.com/{SECRET}", {}, "scheme 'ftp'"),
        (f"https:///services/{SECRET}", {}, "has no host name"),
    ],
)
def test_a_bad_webhook_url_fails_at_config_load_naming_the_key_never_the_secret(tmp_path, monkeypatch, url, env, expected):
    from retrain_assets.settings import SettingsError, load_settings
    from retrain_assets_tests.conftest import write_config

    monkeypatch.delenv("RETRAIN_TEST_UNSET_HOOK", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(write_config(tmp_path, **{"alerts.webhook_url": url}))
    message = str(caught.value)
    assert "alerts.webhook_url" in message and expected in message, message
    assert SECRET not in message


def test_a_webhook_from_the_environment_is_accepted(tmp_path, monkeypatch):
    from retrain_assets.settings import load_settings
    from retrain_assets_tests.conftest import write_config

    monkeypatch.setenv("RETRAIN_TEST_HOOK", f"https://hooks.slack.com/services/T0/B0/{SECRET}")
    settings = load_settings(write_config(tmp_path, **{"alerts.webhook_url": "${RETRAIN_TEST_HOOK}"}))
    assert settings.alerts.webhook_url == "${RETRAIN_TEST_HOOK}"  # kept unexpanded: the secret stays in the env


@pytest.mark.slow
@pytest.mark.parametrize(
    "broken",
    [f"hooks.slack.com/services/T0/B0/{SECRET}", "", f"http://127.0.0.1:9/hooks?token={SECRET}"],
    ids=["no-scheme", "unset", "unreachable"],
)
def test_an_alert_that_fails_never_fails_the_tick_or_shows_the_secret(tmp_path, instance, monkeypatch, caplog, capsys,
                                                                     broken):
    """The config loaded with a good URL; by the time the sensor alerts, the process's variable is
    broken (another environment, a rotated secret). The tick still requests its retrain."""
    import logging

    from retrain_assets.constants import PERFORMANCE_SENSOR, TAG_TRIGGER
    from retrain_assets.core import synthetic
    from retrain_assets.core import synthetic_batches
    from retrain_assets_tests.conftest import Retrainer
    from retrain_assets_tests.test_automation import LOOSE, Webhook, evaluate, run_requests

    hook = Webhook()
    try:
        monkeypatch.setenv("RETRAIN_TEST_HOOK", hook.url + f"?token={SECRET}")
        r = Retrainer(tmp_path, instance, **LOOSE, **{"alerts.webhook_url": "${RETRAIN_TEST_HOOK}"})
        for i in (1, 2, 3):
            r.land(i, rows=1000)
        assert r.retrain().success
        evaluate(r, PERFORMANCE_SENSOR)
        monkeypatch.setenv("RETRAIN_TEST_HOOK", broken)
        caplog.set_level(logging.INFO)
        r.land(4, synthetic_batches.make_batch(2000, seed=504, batch_index=4, scenario="concept_drift"))
        requests = run_requests(evaluate(r, PERFORMANCE_SENSOR))
        assert len(requests) == 1 and requests[0].tags[TAG_TRIGGER] == "concept_drift"
        captured = capsys.readouterr()
        shown = caplog.text + captured.out + captured.err
        assert "alert not sent" in shown or "unreachable" in shown, shown[-2000:]
        assert SECRET not in shown
    finally:
        hook.server.shutdown()


@pytest.mark.cli  # a real MLflow server
def test_an_mlflow_password_is_shown_nowhere(mlflow_server, instance, tmp_path, monkeypatch, capfd):
    """A tracking URI with ``user:password@`` (the server ignores it; a proxy in front would check it):
    the retrain works through it, and the password is in no event, metadata, tag, log line or resource
    description that Dagster stores or shows."""
    from dagster._serdes import serialize_value

    from retrain_assets_tests.conftest import Retrainer
    from retrain_assets_tests.test_automation import LOOSE

    for variable in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(variable, raising=False)  # set by the platform below; restored after
    uri = mlflow_server.uri.replace("http://", f"http://alice:{SECRET}@")
    r = Retrainer(tmp_path / "ws", instance, **LOOSE, **{"mlflow.tracking_uri": uri})
    for i in (1, 2):
        r.land(i, rows=800)
    run = r.retrain()
    assert run.success, failure_text(run)
    assert r.alias(registry.CHAMPION_ALIAS) == "1"
    r.land(3, rows=800)  # an ingest that loads the champion through the URI

    shown = []
    for record in instance.get_run_records():
        shown.append(serialize_value(record.dagster_run))
        shown += [serialize_value(entry) for entry in instance.all_logs(record.dagster_run.run_id)]
    repository = r.defs.get_repository_def()
    for key, resource in repository.get_top_level_resources().items():
        shown.append(f"{key}: {resource.description} {getattr(resource, 'config_path', '')}")
    shown += [str(v) for version in ("1",) for v in r.tags(version).values()]
    captured = capfd.readouterr()  # what a run worker prints lands in Dagster's compute logs
    shown += [captured.out, captured.err]
    text = "\n".join(shown)
    assert SECRET not in text
    assert mlflow_server.uri in text  # the URI is shown, without its credentials
    # ... which MLflow's HTTP client got from its own variables instead:
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "alice" and os.environ["MLFLOW_TRACKING_PASSWORD"] == SECRET


# --- cells that are dangerous downstream ------------------------------------------------------------


def test_cells_with_html_or_markdown_links_are_shown_inert(workspace, defs, instance):
    """A landed value reaches the UI's Markdown (explanations, rule tables) and the HTML drift report
    as text: no tag is rendered, no image or link is fetched from it."""
    workspace.land("b0001", clean_batch(1))
    bad = clean_batch(2).astype(object)
    bad.loc[3, "contract"] = "<script>alert(1)</script>"
    bad.loc[4, "contract"] = "![x](http://tracker.invalid/p.png)"
    bad.loc[5, "contract"] = "=HYPERLINK(\"http://evil.invalid\",\"x\")"
    workspace.land("b0002", bad)
    for request in tick(defs, instance).run_requests:
        ingest(defs, instance, request.partition_key, tags=request.tags)
    shown = []
    for record in instance.get_run_records():
        for entry in instance.all_logs(record.dagster_run.run_id):
            event = entry.dagster_event
            data = getattr(event, "event_specific_data", None) if event else None
            metadata = getattr(getattr(data, "materialization", None), "metadata", None) or getattr(data, "metadata", None)
            if metadata:
                shown += [str(v.value) for v in metadata.values()]
    text = "\n".join(shown)
    assert "script" in text and "tracker.invalid" in text  # the values are shown ...
    assert "<script" not in text and "[x](http://tracker" not in text  # ... as text
    reports = list(workspace.settings.storage.root.rglob("*.html"))
    for report in reports:
        assert "<script>alert" not in report.read_text(encoding="utf-8")
