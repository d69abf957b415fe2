"""Labels that arrive late: an empty target is an unlabelled batch; rows without a label do not hold a batch back."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from retrain_assets.core import label_store, metrics_store, registry as reg, storage


from retrain_assets_tests.conftest import Retrainer, clean_batch, failure_text, ingest, tick


def test_an_empty_target_column_is_an_unlabelled_batch(workspace, defs, instance):
    workspace.land("b0001", clean_batch(1))
    empty = clean_batch(2).astype(object)
    empty["churned"] = None
    workspace.land("b0002", empty)
    for request in tick(defs, instance).run_requests:
        run = ingest(defs, instance, request.partition_key, tags=request.tags)
        assert run.success, failure_text(run)
    with duckdb.connect(str(workspace.settings.duckdb_path)) as conn:
        status = storage.batch_statuses(conn).set_index("batch_id")
    assert bool(status.loc["b0002", "passed"]) and not bool(status.loc["b0002", "labelled"])
    assert int(status.loc["b0002", "quarantined_rows"]) == 0


@pytest.mark.slow
def test_rows_whose_labels_are_late_do_not_hold_the_batch_back_nor_reach_training(tmp_path, instance):
    r = Retrainer(tmp_path, instance)
    r.land(1, rows=800)
    partial = clean_batch(2, 800).astype(object)
    late = list(range(0, 800, 3))  # a third of the rows: labels not there yet
    partial.loc[late, "churned"] = None
    r.land(2, partial)
    with duckdb.connect(str(r.settings.duckdb_path)) as conn:
        status = storage.batch_statuses(conn).set_index("batch_id")
        counts = dict(label_store.labelled_row_counts(conn, "churned"))
        validated = storage.read_validated(conn, ["batch_0002"])
    assert bool(status.loc["batch_0002", "passed"]) and int(status.loc["batch_0002", "quarantined_rows"]) == 0
    assert len(validated) == 800 and int(validated["churned"].isna().sum()) == len(late)
    assert counts == {"batch_0001": 800, "batch_0002": 800 - len(late)}
    run = r.retrain()
    assert run.success, failure_text(run)
    assert r.alias(reg.CHAMPION_ALIAS) == "1"
    # With a champion in place, a batch with late labels is scored on its labelled rows only.
    r.land(3, partial.assign(customer_id=partial["customer_id"].str.replace("C0002", "C0003")))
    with duckdb.connect(str(r.settings.duckdb_path)) as conn:
        metrics = metrics_store.read_production_metrics(conn).set_index("batch_id")
    assert "batch_0003" in metrics.index and pd.notna(metrics.loc["batch_0003", "batch_metric"])


def _held(r: Retrainer) -> dict[str, str]:
    with duckdb.connect(str(r.settings.duckdb_path)) as conn:
        return label_store.held_label_batches(conn)


def _labelled(r: Retrainer) -> dict[str, bool]:
    with duckdb.connect(str(r.settings.duckdb_path)) as conn:
        return label_store.labelled_batches(conn)


def _label_quality(r: Retrainer, batch_id: str) -> str:
    import dagster as dg

    from retrain_assets.constants import DRIFT_REPORT

    records = r.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(DRIFT_REPORT), asset_partitions=[batch_id]), limit=1).records
    return str(records[0].asset_materialization.metadata["label_quality"].value)


@pytest.mark.slow
def test_inverted_labels_are_flagged_kept_out_of_training_and_never_trigger_until_accepted(tmp_path, instance):
    from retrain_assets.constants import DRIFT_SENSOR, PERFORMANCE_SENSOR, REVIEW_LABELS_JOB
    from retrain_assets_tests.test_automation import LOOSE, evaluate, run_requests

    r = Retrainer(tmp_path, instance, **LOOSE)
    for i in (1, 2, 3):
        r.land(i, rows=1000)
    assert r.retrain().success and r.alias(reg.CHAMPION_ALIAS) == "1"
    for name in (DRIFT_SENSOR, PERFORMANCE_SENSOR):
        evaluate(r, name)
    inverted = clean_batch(4, 1000)
    inverted["churned"] = 1 - inverted["churned"]
    r.land(4, inverted)
    quality = _label_quality(r, "batch_0004")
    assert quality.startswith("SUSPECT (flagged)") and "below chance" in quality and REVIEW_LABELS_JOB in quality
    assert "batch_0004" in _held(r) and _labelled(r)["batch_0004"] is False
    # The champion collapses on it, but that is the labels' fault: no trigger.
    perf = evaluate(r, PERFORMANCE_SENSOR)
    assert not run_requests(perf) and "not counted as a retrain trigger" in perf.skip_message
    assert not run_requests(evaluate(r, DRIFT_SENSOR))
    # A retrain by hand does not learn from it.
    r.reconfigure(**{"gates.max_flip_rate": 1.0, "gates.comparison_tolerance": 1.0, "gates.slice_tolerance": 1.0})
    run = r.retrain()
    assert run.success, failure_text(run)
    trained = r.tags(r.alias(reg.CHAMPION_ALIAS) or "1")
    assert "batch_0004" not in trained[reg.TAG_TRAINING_BATCHES] + trained[reg.TAG_HOLDOUT_BATCHES]
    # A person accepts: the batch's labels count again (the decision is kept if it is judged again).
    review = r.defs.resolve_job_def(REVIEW_LABELS_JOB).execute_in_process(
        instance=instance, run_config={"ops": {"decide_on_labels": {"config": {
            "batch_id": "batch_0004", "decision": "accept", "reviewer": "ana", "note": "relabelled upstream, checked"}}}},
        raise_on_error=False)
    assert review.success, failure_text(review)
    assert "batch_0004" not in _held(r) and _labelled(r)["batch_0004"] is True
    wrong = r.defs.resolve_job_def(REVIEW_LABELS_JOB).execute_in_process(
        instance=instance, run_config={"ops": {"decide_on_labels": {"config": {
            "batch_id": "batch_0001", "decision": "reject", "reviewer": "ana"}}}}, raise_on_error=False)
    assert not wrong.success and "has no suspect labels to review" in failure_text(wrong)


def test_labels_all_one_class_are_flagged_without_a_champion(tmp_path, instance):
    r = Retrainer(tmp_path, instance)
    r.land(1, rows=800)
    one = clean_batch(2, 800)
    one["churned"] = 0
    r.land(2, one)
    assert _label_quality(r, "batch_0002").startswith("SUSPECT (flagged): all 800 labels are '0'")
    assert _labelled(r) == {"batch_0001": True, "batch_0002": False}


@pytest.mark.slow
def test_permuted_multiclass_labels_are_flagged_on_an_accuracy_deployment(tmp_path, instance):
    """A multiclass model judged on accuracy: labels whose classes were permuted (an export that
    mapped codes wrongly) are flagged by the agreement rule, which needs no roc_auc."""
    from retrain_assets.core import synthetic
    from retrain_assets.core import synthetic_batches

    def plans(index: int, rows: int = 1000):
        return synthetic_batches.make_batch(rows, seed=400 + index, batch_index=index, task="multiclass")

    r = Retrainer(tmp_path, instance, **{
        "dataset.target": synthetic.MULTICLASS_TARGET, "schema.classes": list(synthetic.PLANS),
        "model.metric": "accuracy", "training.min_rows": 500,
    })
    for i in (1, 2, 3):
        r.land(i, plans(i))
    run = r.retrain()
    assert run.success, failure_text(run)
    honest = plans(4)
    r.land(4, honest)
    assert _label_quality(r, "batch_0004") == "ok"
    permuted = plans(5)
    shift = {c: synthetic.PLANS[(k + 1) % len(synthetic.PLANS)] for k, c in enumerate(synthetic.PLANS)}
    permuted[synthetic.MULTICLASS_TARGET] = permuted[synthetic.MULTICLASS_TARGET].map(shift)
    r.land(5, permuted)
    quality = _label_quality(r, "batch_0005")
    assert quality.startswith("SUSPECT (flagged)") and "significantly below the" in quality, quality
    assert _labelled(r)["batch_0005"] is False and _labelled(r)["batch_0004"] is True
