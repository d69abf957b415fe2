"""automation.executor / executor_config: the executor every job runs on, checked when the
Definitions load (a typo fails `dagster definitions validate`, not the first run)."""

from __future__ import annotations

import dagster as dg
import pytest

from retrain_assets.constants import RETRAIN_JOB
from retrain_assets.definitions import build_definitions
from retrain_assets.executors import EXECUTORS, executor_for
from retrain_assets_tests.conftest import write_config


@pytest.mark.parametrize("name, config, executor", [
    ("in_process", None, "in_process"),
    ("multiprocess", None, "multiprocess"),
    ("multiprocess", {"max_concurrent": 2}, "multiprocess_configured"),
    ("k8s", {"job_namespace": "ml", "max_concurrent": 4}, "k8s_configured"),
    ("celery", {"broker": "redis://redis.internal:6379/0", "backend": "redis://redis.internal:6379/1"},
     "celery_configured"),
])
def test_every_job_runs_on_the_configured_executor(tmp_path, name, config, executor):
    overrides = {"automation.executor": name}
    if config:
        overrides["automation.executor_config"] = config
    defs = build_definitions(write_config(tmp_path, **overrides))
    job = defs.resolve_job_def(RETRAIN_JOB)
    assert job.executor_def.name == executor
    assert defs.resolve_job_def("ingest_batch").executor_def.name == executor


@pytest.mark.parametrize("name, config, message", [
    ("spark", None, "unknown automation.executor 'spark'"),
    ("in_process", {"max_concurrent": 2}, "must be empty with the in_process executor"),
    ("k8s", {"namespace": "ml"}, "does not fit the k8s executor: Received unexpected config entry \"namespace\""),
    ("dask", None, "unknown automation.executor 'dask'"),
    ("multiprocess", {"max_concurrent": "four"}, "does not fit the multiprocess executor"),
    # Without a broker dagster-celery would use RabbitMQ on localhost, where no worker elsewhere listens.
    ("celery", None, "automation.executor_config.broker is required with the celery executor"),
    ("celery", {"backend": "redis://redis.internal:6379/1"}, "automation.executor_config.broker is required"),
    ("celery", {"brokr": "redis://redis.internal:6379/0"},
     "does not fit the celery executor: Received unexpected config entry \"brokr\""),
])
def test_a_wrong_executor_or_config_is_refused_with_the_reason(name, config, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        executor_for(name, config)


def test_a_bad_executor_config_fails_when_the_definitions_load(tmp_path):
    with pytest.raises(Exception, match="does not fit the multiprocess executor"):
        build_definitions(write_config(tmp_path, **{"automation.executor": "multiprocess",
                                                    "automation.executor_config": {"max_concurrent": "four"}}))


def test_the_names_match_the_settings():
    from typing import get_args

    from retrain_assets.settings import AutomationSettings

    assert set(get_args(AutomationSettings.model_fields["executor"].annotation)) == set(EXECUTORS)


def test_the_team_deployment_example_loads(monkeypatch):
    """deploy/team/config.yaml, the README's 'Beyond one machine' config, is a valid config: a
    multiprocess executor with its limit, an MLflow server, approval on."""
    from retrain_assets.constants import REPO_ROOT
    from retrain_assets.settings import load_settings

    from retrain_assets.settings import SettingsError

    path = REPO_ROOT / "deploy" / "team" / "config.yaml"
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    with pytest.raises(SettingsError, match=r"alerts.webhook_url: refers to \$SLACK_WEBHOOK_URL, which is not set"):
        load_settings(path)  # the secret lives in the deployment's environment, which must provide it
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T000/B000/XXXX")
    settings = load_settings(path)
    assert settings.mlflow_tracking_uri == "http://mlflow.internal:5000"
    assert settings.promotion.require_approval
    defs = build_definitions(path)
    assert defs.resolve_job_def(RETRAIN_JOB).executor_def.name == "multiprocess_configured"
