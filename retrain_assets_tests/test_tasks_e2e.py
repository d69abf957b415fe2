"""Every task the config accepts, end to end as the demo drives it: batches land, the landing sensor
ingests them, the drift sensor bootstraps the first champion, and a drifted batch starts a retrain
that the six gates judge. Multiclass (text and integer labels) and regression, in-process."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from retrain_assets.constants import CANDIDATE_MODEL, DRIFT_REPORT, DRIFT_SENSOR, RETRAIN_JOB, TAG_TRIGGER
from retrain_assets.core import registry as reg, synthetic, synthetic_batches
from retrain_assets.core.candidate import GATE_NAMES
from retrain_assets.demo import run_automation, run_landing_once
from retrain_assets_tests.conftest import Workspace, definitions_for, write_config

pytestmark = pytest.mark.timeout(600)

TASKS = {
    "multiclass-text": ({"dataset.target": synthetic.MULTICLASS_TARGET, "schema.classes": list(synthetic.PLANS)},
                        {"task": "multiclass", "plan_labels": "text"}),
    "multiclass-integer": ({"dataset.target": synthetic.MULTICLASS_TARGET, "schema.classes": [0, 1, 2]},
                           {"task": "multiclass", "plan_labels": "integer"}),
    "regression": ({"dataset.target": synthetic.REGRESSION_TARGET, "dataset.task": "regression",
                    "schema.classes": None}, {"task": "regression"}),
    "regression-mae": ({"dataset.target": synthetic.REGRESSION_TARGET, "dataset.task": "regression",
                        "schema.classes": None, "model.metric": "mae"}, {"task": "regression"}),
}
LOOSE = {"automation.cooldown_minutes": 0, "automation.cooldown_batches": 1, "automation.min_new_labelled_rows": 0}


def batch(index: int, scenario: str, **kwargs):
    return synthetic_batches.make_batch(800, seed=300 + index, batch_index=index, scenario=scenario, **kwargs)


def retrain_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """The retrain runs, oldest first."""
    return list(reversed(instance.get_runs(filters=dg.RunsFilter(job_name=RETRAIN_JOB))))


def gate_evaluations(instance: dg.DagsterInstance, run_id: str) -> dict[str, bool]:
    """Gate name -> passed, from the run's asset-check evaluations."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    return {r.event_log_entry.dagster_event.event_specific_data.check_name:
            r.event_log_entry.dagster_event.event_specific_data.passed for r in records}


@pytest.mark.parametrize("task", list(TASKS))
def test_a_task_runs_from_landing_to_a_drift_triggered_retrain_judged_by_the_gates(task, tmp_path, instance):
    overrides, make = TASKS[task]
    ws = Workspace(root=tmp_path, config_path=write_config(tmp_path, **LOOSE, **overrides))
    defs, settings = definitions_for(ws.config_path), ws.settings
    cursors: dict = {}

    # Landing -> ingest -> the first champion, bootstrapped by the drift sensor.
    for index in (1, 2):
        ws.land(f"batch_{index:04d}", batch(index, "clean", **make))
    outcomes, landing_cursor = run_landing_once(defs, instance)
    assert outcomes == [("batch_0001", True), ("batch_0002", True)]
    lines = run_automation(defs, instance, cursors, settings)
    assert any("bootstrap" in line and "promoted, champion v1" in line for line in lines), lines
    first = retrain_runs(instance)
    assert len(first) == 1 and first[0].tags[TAG_TRIGGER] == "bootstrap"
    assert set(gate_evaluations(instance, first[0].run_id)) == set(GATE_NAMES)
    champion = reg.load_champion(settings.mlflow_tracking_uri, settings.registered_model_name)
    metric = settings.metric
    assert champion.metric == metric == {"regression": "rmse", "regression-mae": "mae"}.get(task, "roc_auc")
    if task.startswith("multiclass"):
        expected = list(synthetic.PLANS) if task.endswith("text") else [0, 1, 2]
        assert sorted(champion.classes, key=str) == sorted(expected, key=str)
        assert champion.holdout_metric > 0.7  # one-vs-rest macro AUC on the holdout
    else:
        assert champion.holdout_metric < 15  # rmse of a target with noise sd 6

    # An unlabelled batch: a label-free estimate (CBPE) for a classifier, honestly none for a regressor.
    ws.land("batch_0003", batch(3, "unlabelled", **make))
    outcomes, landing_cursor = run_landing_once(defs, instance, landing_cursor)
    assert outcomes == [("batch_0003", True)]
    meta = instance.fetch_materializations(dg.AssetKey(DRIFT_REPORT), limit=1).records[0].asset_materialization.metadata
    if task.startswith("regression"):
        assert f"estimated_{metric}" not in meta
    else:  # CBPE calibrated on the champion's holdout: near the OvR macro AUC measured there
        assert abs(meta[f"estimated_{metric}"].value - champion.holdout_metric) < 0.05
    lines = run_automation(defs, instance, cursors, settings)
    assert not [line for line in lines if "->" in line], lines  # no drift: no run
    assert len(retrain_runs(instance)) == 1

    # A drifted batch -> drift report -> a retrain the gates judge against the champion.
    ws.land("batch_0004", batch(4, "covariate_drift", **make))
    outcomes, landing_cursor = run_landing_once(defs, instance, landing_cursor)
    assert outcomes == [("batch_0004", True)]
    report = instance.fetch_materializations(dg.AssetKey(DRIFT_REPORT), limit=1).records[0]
    meta = report.asset_materialization.metadata
    assert meta["prediction_drift"].value is not None  # the champion's predictions were compared
    if task.startswith("multiclass"):  # on the predicted class and the largest probability
        detail = meta["prediction_drift_detail"].value
        assert {"predicted_class", "confidence"} <= set(detail), detail
    lines = run_automation(defs, instance, cursors, settings)
    assert any(DRIFT_SENSOR in line and RETRAIN_JOB in line for line in lines), lines
    runs = retrain_runs(instance)
    assert len(runs) == 2 and runs[1].tags[TAG_TRIGGER] != "bootstrap"
    gates = gate_evaluations(instance, runs[1].run_id)
    assert set(gates) == set(GATE_NAMES)
    candidate = instance.fetch_materializations(dg.AssetKey(CANDIDATE_MODEL), limit=1).records[0]
    cmeta = candidate.asset_materialization.metadata
    assert cmeta["champion_version"].value == "1"  # judged against the first champion
    version = cmeta["version"].value
    tags = reg.version_tags(settings.mlflow_tracking_uri, settings.registered_model_name, version)
    judged = {g["gate"]: g for g in json.loads(tags[reg.TAG_GATES])}
    assert not judged["champion_comparison"]["waived"]
    stability = judged["prediction_stability"]  # judged, or waived only for a confirmed concept drift
    assert not stability["waived"] or "concept drift confirmed" in stability["summary"], stability
    assert tags[reg.TAG_GATES_PASSED] == ("true" if all(gates.values()) else "false")
    print(f"{task}: champion v1 holdout {metric} {champion.holdout_metric:.3f}; retrain v{version} "
          f"({runs[1].tags[TAG_TRIGGER]}) gates passed {tags[reg.TAG_GATES_PASSED]}: "
          f"{judged['champion_comparison']['summary']}; failed: {tags.get(reg.TAG_FAILED_GATES)!r} "
          f"{[g['summary'] for g in judged.values() if not g['passed']]}")
