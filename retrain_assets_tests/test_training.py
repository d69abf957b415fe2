"""candidate_model, its six blocking gates, production_model and rollback, run in-process against a
real MLflow store (SQLite under the workspace) and the real DuckDB warehouse."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from retrain_assets.constants import CANDIDATE_MODEL, PRODUCTION_MODEL, RETRAIN_JOB, ROLLBACK_JOB, TAG_TRIGGER
from retrain_assets.core import metrics_store, registry as reg, storage
from retrain_assets.definitions import build_definitions
from retrain_assets_tests.conftest import Retrainer, assert_refused, clean_batch, materialized, run_log
from retrain_assets_tests.conftest import failure_text as _failure_text

pytestmark = pytest.mark.timeout(600)

ALL_GATES = {"metric_floor", "champion_comparison", "slice_regression", "prediction_stability",
             "serving_smoke_test", "data_sufficiency"}


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def failure_text(result) -> str:
    """Step failures plus the description of every failed gate."""
    failed = [f"{e.check_name}: {e.description}" for e in result.get_asset_check_evaluations() if not e.passed]
    return "\n".join([_failure_text(result), *failed])


def gates(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def failed_gates(result) -> set[str]:
    return {name for name, e in gates(result).items() if not e.passed}


def meta(evaluation_or_event, key):
    metadata = evaluation_or_event.metadata if hasattr(evaluation_or_event, "check_name") else \
        evaluation_or_event.materialization.metadata
    return metadata[key].value


def candidate_event(result):
    return next(e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(CANDIDATE_MODEL))


@pytest.fixture
def bootstrapped(tmp_path, instance, monkeypatch) -> Retrainer:
    """Three clean labelled batches and a first champion (v1) trained on two of them."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # MLflow must not write ./mlruns wherever the process runs
    r = Retrainer(tmp_path / "ws", instance)
    for i in (1, 2, 3):
        r.land(i)
    result = r.retrain()
    assert result.success, failure_text(result)
    assert r.alias(reg.CHAMPION_ALIAS) == "1"
    return r


def assert_blocked(r: Retrainer, result, gate: str, champion: str) -> None:
    """``gate`` refused the candidate: the run succeeded, production_model did not materialize and
    says why in its log, the champion did not move."""
    assert gate in assert_refused(result), {n: e.description for n, e in gates(result).items()}
    assert "did not pass its gates" in run_log(r.instance, result.run_id)
    assert r.alias(reg.CHAMPION_ALIAS) == champion
    version = meta(candidate_event(result), "version")
    assert r.alias(reg.CHALLENGER_ALIAS) == version
    tags = r.tags(version)
    assert tags[reg.TAG_GATES_PASSED] == "false" and gate in tags[reg.TAG_FAILED_GATES].split(",")
    assert version not in set(r.ledger()["to_version"])


# --------------------------------------------------------------------------
# Bootstrap and promotion
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_first_retrain_bootstraps_the_champion_with_lineage(bootstrapped: Retrainer, tmp_path):
    r = bootstrapped
    s = r.settings
    tags = r.tags("1")
    assert json.loads(tags[reg.TAG_TRAINING_BATCHES]) == ["batch_0001", "batch_0002"]
    assert json.loads(tags[reg.TAG_HOLDOUT_BATCHES]) == ["batch_0003"]
    assert tags[reg.TAG_GATES_PASSED] == "true" and tags[reg.TAG_COMPARED_TO] == "none"
    assert len(tags[reg.TAG_DATA_FINGERPRINT]) == 64 and tags[reg.TAG_CODE_VERSION]
    assert tags[reg.TAG_TRIGGER] == "manual"
    assert [g["gate"] for g in json.loads(tags[reg.TAG_GATES])] == [
        "metric_floor", "champion_comparison", "slice_regression", "prediction_stability", "serving_smoke_test",
        "data_sufficiency"]

    # One MLflow run, finished, with params, metrics and the dagster run id; artifacts under storage.root.
    client = reg.client_for(s.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(s.mlflow_experiment)
    assert experiment.artifact_location.startswith(s.mlflow_artifacts_dir.resolve().as_uri())
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["estimator"] == "hist_gradient_boosting" and run.data.params["seed"] == "0"
    assert run.data.metrics["training_rows"] == 1600 and run.data.metrics["holdout_rows"] == 800
    assert 0.75 < run.data.metrics["holdout_roc_auc"] < 0.95
    assert run.data.metrics["training_seconds"] > 0 and run.data.metrics["training_peak_memory_mb"] > 0
    assert run.data.tags["dagster_run_id"] == run.data.tags[reg.TAG_DAGSTER_RUN]
    version = client.get_model_version(s.registered_model_name, "1")
    assert version.run_id == run.info.run_id
    assert not (tmp_path / "cwd" / "mlruns").exists()

    # The model was saved with skops (no pickle) and a signature and input example.
    model_dir = Path(mlflow.artifacts.download_artifacts(
        artifact_uri=client.get_model_version_download_uri(s.registered_model_name, "1")))
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "skops"
    assert "signature" in mlmodel and mlmodel.get("saved_input_example_info")
    assert not list(model_dir.rglob("*.pkl"))

    # Comparison gates are waived, with metadata that says so; the others judged.
    ledger = r.ledger()
    assert list(ledger["action"]) == ["promote"] and list(ledger["status"]) == ["done"]
    assert ledger["from_version"].isna().all() and list(ledger["to_version"]) == ["1"]
    assert r.alias(reg.PREVIOUS_ALIAS) is None


def test_gates_are_waived_only_for_comparisons_without_a_champion(tmp_path, instance):
    r = Retrainer(tmp_path, instance)
    for i in (1, 2, 3):
        r.land(i)
    result = r.retrain()
    assert result.success, failure_text(result)
    evaluations = gates(result)
    assert set(evaluations) == ALL_GATES and all(e.passed for e in evaluations.values())
    for name in ("champion_comparison", "prediction_stability", "slice_regression"):
        assert "no champion yet" in evaluations[name].description and meta(evaluations[name], "waived") is True
    for name in ("metric_floor", "serving_smoke_test", "data_sufficiency"):
        assert meta(evaluations[name], "waived") is False
    smoke = evaluations["serving_smoke_test"]
    assert "fresh process" in smoke.description and meta(smoke, "differing_predictions") == 0
    assert 0 < meta(smoke, "ms_per_1000") < meta(smoke, "budget_ms_per_1000")
    event = candidate_event(result)
    assert meta(event, "model_uri") == "models:/churn/1" and meta(event, "gates_passed") is True
    production = next(e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(PRODUCTION_MODEL))
    assert meta(production, "champion_uri") == "models:/churn@champion" and meta(production, "champion_version") == "1"


@pytest.mark.slow
def test_a_better_candidate_is_promoted_and_the_old_champion_kept_as_previous(tmp_path, instance):
    # A deliberately weak first champion: a shallow boosted model trained on one batch.
    r = Retrainer(tmp_path, instance, **{"model.params": {"max_iter": 3, "max_depth": 2}})
    for i in (1, 2):
        r.land(i)
    assert r.retrain().success
    r.reconfigure(**{"model.params": {}, "gates.max_flip_rate": 0.5})
    for i in (3, 4, 5):
        r.land(i)
    result = r.retrain()
    assert result.success, failure_text(result)
    comparison = gates(result)["champion_comparison"]
    assert meta(comparison, "difference") > 0 and meta(comparison, "ci_low") > -meta(comparison, "tolerance")
    assert meta(comparison, "champion") < meta(comparison, "candidate")
    assert r.alias(reg.CHAMPION_ALIAS) == "2" and r.alias(reg.PREVIOUS_ALIAS) == "1"
    ledger = r.ledger()
    assert list(ledger["to_version"]) == ["1", "2"] and list(ledger["from_version"].fillna("")) == ["", "1"]
    assert (ledger["status"] == "done").all() and ledger["gates_passed"].all()
    assert json.loads(ledger["gates_json"].iloc[-1])[1]["gate"] == "champion_comparison"


# --------------------------------------------------------------------------
# Candidates that must not pass
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_a_worse_candidate_is_blocked_by_the_champion_comparison(bootstrapped: Retrainer):
    r = bootstrapped
    r.land(4)
    r.reconfigure(**{"model.params": {"max_iter": 2, "max_depth": 1}})
    result = r.retrain()
    assert_blocked(r, result, "champion_comparison", champion="1")
    comparison = gates(result)["champion_comparison"]
    assert meta(comparison, "difference") < 0 and meta(comparison, "ci_low") < -0.02
    assert "may be worse than the champion" in comparison.description
    # The MLflow run of a blocked candidate is closed, not left running.
    s = r.settings
    client = reg.client_for(s.mlflow_tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(s.mlflow_experiment).experiment_id])
    assert {run.info.status for run in runs} == {"FINISHED"}


@pytest.mark.slow
def test_a_label_shuffled_candidate_is_blocked_by_the_metric_floor(bootstrapped: Retrainer):
    r = bootstrapped
    shuffled = clean_batch(4, 800)
    shuffled["churned"] = np.random.default_rng(0).permutation(shuffled["churned"].to_numpy())
    r.land(4, shuffled)
    r.land(5)
    r.reconfigure(**{"training.window": "last_n_batches", "training.last_n": 1})
    result = r.retrain()
    assert_blocked(r, result, "metric_floor", champion="1")
    floor = gates(result)["metric_floor"]
    assert meta(floor, "value") < 0.6 and "below the floor of 0.600" in floor.description
    assert "champion_comparison" in failed_gates(result)


@pytest.mark.slow
def test_a_too_unstable_candidate_is_blocked_unless_concept_drift_is_confirmed(bootstrapped: Retrainer):
    r = bootstrapped
    r.land(4)
    r.reconfigure(**{"gates.max_flip_rate": 0.01})
    result = r.retrain()
    assert_blocked(r, result, "prediction_stability", champion="1")
    stability = gates(result)["prediction_stability"]
    assert meta(stability, "flip_rate") > 0.01 and "too many flips" in stability.description
    assert "not waived" in meta(stability, "waiver")

    # The trigger alone does not waive it: no drift report confirms concept drift yet.
    result = r.retrain(tags={TAG_TRIGGER: "concept_drift"})
    assert "prediction_stability" in failed_gates(result)
    assert "no drift report" in meta(gates(result)["prediction_stability"], "waiver")

    # A batch whose labels follow a new rule: drift_report confirms concept drift against v1.
    from retrain_assets.core import synthetic_batches

    r.land(5, synthetic_batches.make_batch(2000, seed=105, batch_index=5, scenario="concept_drift"))
    import duckdb

    with duckdb.connect(str(r.settings.duckdb_path)) as conn:
        report = metrics_store.read_drift_reports(conn).set_index("batch_id").loc["batch_0005"]
    assert report["concept_drift"], report["summary"]
    r.land(6, synthetic_batches.make_batch(2000, seed=106, batch_index=6, scenario="concept_drift"))
    result = r.retrain(tags={TAG_TRIGGER: "concept_drift"})
    stability = gates(result)["prediction_stability"]
    assert stability.passed and meta(stability, "waived") is True
    assert "concept drift confirmed on batch batch_000" in stability.description


@pytest.mark.slow
def test_a_concept_drift_retrain_learns_from_the_oldest_part_of_the_newest_batch(bootstrapped: Retrainer):
    """After a concept change the newest batch is the only one labelled under the new rule: a
    concept_drift retrain trains on its oldest half too and is judged on its newest half."""
    from retrain_assets.core import synthetic_batches

    r = bootstrapped
    r.reconfigure(**{"training.window_candidates": 1})  # the newest batch's split, not the window choice
    r.land(4, synthetic_batches.make_batch(2000, seed=104, batch_index=4, scenario="concept_drift"))
    client = reg.client_for(r.settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(r.settings.mlflow_experiment)

    def newest_run():
        return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])[0]

    r.retrain(tags={TAG_TRIGGER: "concept_drift"})
    run = newest_run()
    assert run.data.metrics["training_rows"] == 3 * 800 + 1000 and run.data.metrics["holdout_rows"] == 1000
    version = next(v.version for v in client.search_model_versions(f"name='{r.settings.registered_model_name}'")
                   if v.run_id == run.info.run_id)
    tags = r.tags(version)
    assert tags[reg.TAG_HOLDOUT_SHARE] == "0.5" and json.loads(tags[reg.TAG_HOLDOUT_BATCHES]) == ["batch_0004"]
    assert json.loads(tags[reg.TAG_TRAINING_BATCHES]) == ["batch_0001", "batch_0002", "batch_0003"]

    assert r.alias(reg.CHAMPION_ALIAS) == str(version)  # the champion now learnt from batch_0004's oldest half

    # Any other trigger holds the whole newest batch out, and so does concept drift when configured so:
    # nothing of batch_0004 is trained on. The candidate is compared with the champion only on the
    # newest 1000 rows, the ones the champion never trained on (never score a model on its own rows).
    r.retrain(tags={TAG_TRIGGER: "data_drift"})
    run = newest_run()
    assert run.data.metrics["training_rows"] == 3 * 800 and run.data.metrics["holdout_rows"] == 1000
    assert run.data.params["holdout_share"] == "1.0"
    r.reconfigure(**{"training.adapt_on": []})
    r.retrain(tags={TAG_TRIGGER: "concept_drift"})
    run = newest_run()
    assert run.data.metrics["training_rows"] == 3 * 800 and run.data.metrics["holdout_rows"] == 1000
    assert run.data.params["holdout_share"] == "1.0"


def test_the_candidate_chooses_its_training_window_and_shows_why(bootstrapped: Retrainer):
    """Batches 4 and 5 follow a changed rule: of the window variants, the last batch alone learnt it.
    The choice is on the candidate's metadata, its MLflow run and its registered version; a window
    set in the config is forced."""
    from retrain_assets.core import synthetic_batches

    r = bootstrapped
    for i in (4, 5):
        r.land(i, synthetic_batches.make_batch(2000, seed=100 + i, batch_index=i, scenario="concept_drift"))
    result = r.retrain(tags={TAG_TRIGGER: "data_drift"})  # not an adapt_on trigger: batch_0005 is held out whole
    event = candidate_event(result)
    version = meta(event, "version")
    tags = r.tags(version)
    choice = json.loads(tags[reg.TAG_WINDOW_CHOICE])
    names = [v["window"] for v in choice["variants"]]
    assert names == ["all 4 batches (configured)", "all 4 batches, half-life 3", "all 4 batches, half-life 1",
                     "last 1 batch"]
    assert choice["chosen"] == "last 1 batch", choice["reason"]
    assert "confirmed it on the newest half" in choice["reason"]
    by_name = {v["window"]: v for v in choice["variants"]}
    assert by_name["last 1 batch"]["holdout"] > by_name["all 4 batches (configured)"]["holdout"]
    assert all(v["low"] <= v["holdout"] <= v["high"] for v in choice["variants"])
    # what the model learnt from is what the lineage says (monitoring scores it only on other rows)
    assert json.loads(tags[reg.TAG_TRAINING_BATCHES]) == ["batch_0004"]
    assert meta(event, "training_rows") == 2000
    shown = meta(event, "training_window_choice")
    assert shown.startswith("**last 1 batch**") and "| all 4 batches, half-life 3 |" in shown

    client = reg.client_for(r.settings.mlflow_tracking_uri)
    run = client.get_run(client.get_model_version(r.settings.registered_model_name, version).run_id)
    assert run.data.params["window_choice"] == "last 1 batch"
    assert run.data.params["training_window"] == "last_n_batches" and run.data.params["training_last_n"] == "1"
    assert run.data.metrics["window_variants_fitted"] == 4
    assert run.data.metrics["window_3_roc_auc"] == pytest.approx(by_name["last 1 batch"]["holdout"], abs=1e-4)
    assert run.data.metrics["window_3_roc_auc_low"] <= run.data.metrics["window_3_roc_auc"]

    r.reconfigure(**{"training.window": "all"})  # a person's window is forced
    event = candidate_event(r.retrain(tags={TAG_TRIGGER: "data_drift"}))
    tags = r.tags(meta(event, "version"))
    choice = json.loads(tags[reg.TAG_WINDOW_CHOICE])
    assert [v["window"] for v in choice["variants"]] == ["all 4 batches (configured)"]
    assert "only the configured window applies" in choice["reason"]
    assert json.loads(tags[reg.TAG_TRAINING_BATCHES]) == ["batch_0001", "batch_0002", "batch_0003", "batch_0004"]


# --------------------------------------------------------------------------
# Rollback
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_rollback_restores_the_previous_champion_and_is_recorded(bootstrapped: Retrainer):
    r = bootstrapped
    r.reconfigure(**{"gates.max_flip_rate": 0.5})
    r.land(4)
    result = r.retrain()
    assert result.success, failure_text(result)
    assert r.alias(reg.CHAMPION_ALIAS) == "2"

    rollback = r.defs.resolve_job_def(ROLLBACK_JOB)
    result = rollback.execute_in_process(instance=r.instance, raise_on_error=False)
    assert result.success, failure_text(result)
    assert r.alias(reg.CHAMPION_ALIAS) == "1" and r.alias(reg.PREVIOUS_ALIAS) == "2"
    assert r.alias(reg.CHALLENGER_ALIAS) is None  # production_model cannot re-promote v2 by itself
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(PRODUCTION_MODEL)]
    assert len(events) == 1 and meta(events[0], "champion_version") == "1"

    ledger = r.ledger()
    assert list(ledger["action"]) == ["promote", "promote", "rollback"]
    last = ledger.iloc[-1]
    assert (last["from_version"], last["to_version"], last["status"], last["reason"]) == ("2", "1", "done", "manual rollback")

    # Forward again to v2 with a reason; a version never promoted, or the champion itself, is refused.
    config = {"ops": {"rollback_champion": {"config": {"to_version": "2", "reason": "v1 was worse after all"}}}}
    assert rollback.execute_in_process(instance=r.instance, run_config=config).success
    assert r.alias(reg.CHAMPION_ALIAS) == "2"
    for version, words in (("7", "was never promoted"), ("2", "already the champion")):
        config = {"ops": {"rollback_champion": {"config": {"to_version": version}}}}
        result = rollback.execute_in_process(instance=r.instance, run_config=config, raise_on_error=False)
        assert not result.success and words in failure_text(result)
    assert r.alias(reg.CHAMPION_ALIAS) == "2"
    assert list(r.ledger()["action"]) == ["promote", "promote", "rollback", "rollback"]
    production = r.defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=r.instance, asset_selection=[dg.AssetKey(PRODUCTION_MODEL)], raise_on_error=False
    )
    assert not production.success and "nothing to promote" in failure_text(production)


@pytest.mark.slow
def test_production_model_refuses_a_challenger_that_failed_or_was_judged_against_another_champion(
    bootstrapped: Retrainer,
):
    r = bootstrapped
    r.land(4)
    r.reconfigure(**{"gates.max_flip_rate": 0.0})
    assert "prediction_stability" in assert_refused(r.retrain())  # v2
    job = r.defs.resolve_implicit_global_asset_job_def()
    alone = job.execute_in_process(instance=r.instance, asset_selection=[dg.AssetKey(PRODUCTION_MODEL)],
                                   raise_on_error=False)
    # Materialized on its own, production_model applies the same rule: nothing moves, nothing is red.
    assert alone.success and not materialized(alone, PRODUCTION_MODEL)
    assert "v2 did not pass its gates (prediction_stability)" in run_log(r.instance, alone.run_id)
    assert r.alias(reg.CHAMPION_ALIAS) == "1"

    # v3 passes against v1, but the champion moves (a rollback-like manual move) before promotion.
    r.reconfigure(**{"gates.max_flip_rate": 0.5})
    candidate = job.execute_in_process(instance=r.instance, asset_selection=[dg.AssetKey(CANDIDATE_MODEL)],
                                       raise_on_error=False)
    assert candidate.success, failure_text(candidate)
    reg.move_alias(r.settings.mlflow_tracking_uri, "churn", reg.CHAMPION_ALIAS, "2")
    alone = job.execute_in_process(instance=r.instance, asset_selection=[dg.AssetKey(PRODUCTION_MODEL)],
                                   raise_on_error=False)
    assert not alone.success and "v3 was judged against v1, but the champion is now v2" in failure_text(alone)


# --------------------------------------------------------------------------
# Bad training data: a clear failure at candidate_model, the champion untouched
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_single_class_labels_fail_candidate_model_and_register_nothing(bootstrapped: Retrainer):
    r = bootstrapped
    for i in (4, 5):
        batch = clean_batch(i, 800)
        batch["churned"] = 0
        r.land(i, batch)
    # drift_report flags labels all one class (core.labels); a person accepts them anyway, so the
    # training data check is the second line of defence tested here.
    for i in (4, 5):
        review = r.defs.resolve_job_def("review_labels").execute_in_process(
            instance=r.instance, run_config={"ops": {"decide_on_labels": {"config": {
                "batch_id": f"batch_000{i}", "decision": "accept", "reviewer": "test"}}}})
        assert review.success
    r.reconfigure(**{"training.window": "last_n_batches", "training.last_n": 1})
    result = r.retrain()
    assert not result.success and not materialized(result, CANDIDATE_MODEL)
    text = failure_text(result)
    assert "cannot train on batches batch_0004" in text and "single class" in text and "champion is untouched" in text
    assert r.alias(reg.CHAMPION_ALIAS) == "1" and r.alias(reg.CHALLENGER_ALIAS) == "1"
    client = reg.client_for(r.settings.mlflow_tracking_uri)
    assert len(client.search_model_versions("name='churn'")) == 1


def test_constant_and_empty_feature_columns_fail_candidate_model(tmp_path, instance):
    r = Retrainer(tmp_path, instance, **{"schema.max_null_fraction": 1.0})
    for i in (1, 2):
        batch = clean_batch(i, 600)
        batch["region"] = "north"
        batch["age"] = np.nan
        r.land(i, batch)
    result = r.retrain()
    text = failure_text(result)
    assert not result.success and "feature 'region' is constant" in text and "feature 'age' is empty" in text
    assert r.alias(reg.CHAMPION_ALIAS) is None


@pytest.mark.slow
def test_too_few_rows_are_blocked_by_data_sufficiency(tmp_path, instance):
    r = Retrainer(tmp_path, instance, **{"training.min_rows": 1000})
    for i in (1, 2):
        r.land(i, rows=600)
    result = r.retrain()
    assert "data_sufficiency" in assert_refused(result)
    assert "only 600 training rows (minimum 1000)" in gates(result)["data_sufficiency"].description
    assert r.alias(reg.CHAMPION_ALIAS) is None


@pytest.mark.slow
def test_one_large_labelled_batch_gives_the_first_champion_judged_on_its_newest_rows(tmp_path, instance, monkeypatch):
    """A history file of labelled rows needs no second batch: the first champion learns from its
    oldest rows and is judged on its newest (training.newest_holdout_share, by event time)."""
    monkeypatch.chdir(tmp_path)
    r = Retrainer(tmp_path / "ws", instance)
    r.land(1, rows=1200)
    result = r.retrain()
    assert result.success, failure_text(result)
    assert r.alias(reg.CHAMPION_ALIAS) == "1"
    tags = r.tags("1")
    assert json.loads(tags[reg.TAG_TRAINING_BATCHES]) == [] and json.loads(tags[reg.TAG_HOLDOUT_BATCHES]) == ["batch_0001"]
    assert float(tags[reg.TAG_HOLDOUT_SHARE]) == 0.5
    sufficiency = gates(result)["data_sufficiency"]
    assert sufficiency.passed and "600 training rows" in sufficiency.description, sufficiency.description


def test_too_few_labelled_rows_for_a_first_champion_is_a_clear_failure_saying_what_is_missing(tmp_path, instance):
    r = Retrainer(tmp_path, instance)
    r.land(1, rows=250)
    result = r.retrain()
    text = failure_text(result)
    assert not result.success and "needs at least 200 rows to learn from and 100 newer rows to judge on" in text, text
    assert "they give 125 to learn from and 125 to judge on" in text
    assert r.alias(reg.CHAMPION_ALIAS) is None
