"""Multiclass classification under the real daemon: `dagster dev` on a temp DAGSTER_HOME, three-plan
batches (text labels) dropped into the landing folder, and only the daemon's sensors deciding. The
first labelled batch bootstraps the first champion (a time-ordered holdout inside it); a batch whose
label rule changed starts a retrain that the six gates judge."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from retrain_assets.constants import TAG_TRIGGER
from retrain_assets.core import registry as reg, synthetic, synthetic_batches
from retrain_assets.core.candidate import GATE_NAMES
from retrain_assets_tests.conftest import write_config
from retrain_assets_tests.dagster_dev import running_dagster_dev
from retrain_assets_tests.test_daemon import SENSOR_INTERVAL, Daemon

pytestmark = pytest.mark.cli

ROWS = 1500


def plans(index: int, scenario: str = "clean"):
    return synthetic_batches.make_batch(ROWS, seed=400 + index, batch_index=index, scenario=scenario, task="multiclass")


@pytest.fixture
def dagster_dev(tmp_path: Path):
    config_path = write_config(tmp_path, **{
        "dataset.target": synthetic.MULTICLASS_TARGET,
        "schema.classes": list(synthetic.PLANS),
        "automation.sensor_interval_seconds": SENSOR_INTERVAL,
        "automation.settle_seconds": 1,
        "automation.cooldown_minutes": 0,
        "automation.cooldown_batches": 1,
        "automation.min_new_labelled_rows": 0,
        "automation.schedule_cron": "0 3 1 1 *",  # the safety-net schedule must not fire during the test
    })
    with running_dagster_dev(tmp_path, config_path) as dev:
        yield dev


@pytest.mark.timeout(600)
def test_the_daemon_promotes_a_multiclass_champion_and_judges_a_drift_retrain(dagster_dev):
    with dg.DagsterInstance.from_config(str(dagster_dev.home)) as instance:
        d = Daemon(dagster_dev, instance)

        # 1. One large labelled batch bootstraps the first champion (text labels, three classes).
        step = d.step("batch_0001", plans(1))
        assert step.ingest.is_success, d.failure_text(step.ingest)
        first = d.assert_promoted(step, "bootstrap", previous=None)
        champion = reg.load_champion(d.settings.mlflow_tracking_uri, d.settings.registered_model_name)
        assert sorted(champion.classes) == sorted(synthetic.PLANS)
        assert champion.metric == "roc_auc" and champion.holdout_metric > 0.7  # one-vs-rest macro
        print(f"first champion v{first}: holdout roc_auc (OvR macro) {champion.holdout_metric:.3f}")

        # 2. The label rule changes: a retrain sensor (drift or performance) starts a retrain, judged by the gates.
        step = d.step("batch_0002", plans(2, "concept_drift"))
        assert step.ingest.is_success, d.failure_text(step.ingest)
        assert len(step.retrains) == 1, f"expected one retrain after batch_0002\n{d.history()}"
        assert step.retrains[0].tags.get(TAG_TRIGGER) in ("concept_drift", "data_drift", "performance_decline"), d.history()
        version, tags = d.candidate_of(step.retrains[0])
        judged = {g["gate"]: g for g in json.loads(tags[reg.TAG_GATES])}
        assert set(judged) == set(GATE_NAMES)
        assert tags[reg.TAG_COMPARED_TO] == first and not judged["champion_comparison"]["waived"]
        assert step.retrains[0].is_success == (tags[reg.TAG_GATES_PASSED] == "true")
        print(f"retrain v{version} ({step.retrains[0].tags.get(TAG_TRIGGER)}): gates passed "
              f"{tags[reg.TAG_GATES_PASSED]}; {judged['champion_comparison']['summary']}")
