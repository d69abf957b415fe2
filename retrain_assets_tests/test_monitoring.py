"""drift_report materialized in-process on the demo's clean and drifted batches, before and after
a champion exists (a real MLflow store under the workspace)."""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest
from sklearn.metrics import roc_auc_score

from retrain_assets.constants import DRIFT_REPORT, PRODUCTION_METRICS
from retrain_assets.core import metrics_store, storage, synthetic, synthetic_batches
from retrain_assets_tests.conftest import (
    assert_held_back,
    churn_pipeline,
    clean_batch,
    failed_partitions,
    failure_text,
    ingest,
    materialized,
    register_champion,
    run_log,
)

ROWS = 1500


def _batch(i: int, scenario: str = "clean"):
    return synthetic_batches.make_batch(ROWS, seed=500 + i, batch_index=i, scenario=scenario)


def _land_and_ingest(workspace, defs, instance, i: int, scenario: str = "clean"):
    batch_id = f"batch_{i:04d}"
    workspace.land(batch_id, _batch(i, scenario))
    result = ingest(defs, instance, batch_id)
    return batch_id, result


def _meta(result):
    return result.asset_materializations_for_node(DRIFT_REPORT)[0].metadata


@pytest.fixture
def three_clean(workspace, defs, instance):
    for i in (1, 2, 3):
        _, result = _land_and_ingest(workspace, defs, instance, i)
        assert result.success, failure_text(result)
    return ["batch_0001", "batch_0002", "batch_0003"]


def test_first_batch_has_no_reference(workspace, defs, instance):
    _, result = _land_and_ingest(workspace, defs, instance, 1)
    assert result.success, failure_text(result)
    meta = _meta(result)
    assert meta["drift_detected"].value is False
    assert "no reference yet" in meta["reason"].value


@pytest.mark.slow
def test_clean_batch_no_drift_and_covariate_drift_named(workspace, defs, instance, three_clean):
    _, clean = _land_and_ingest(workspace, defs, instance, 4)
    meta = _meta(clean)
    assert meta["drift_detected"].value is False, meta["reason"].value
    assert meta["reference_batches"].value == three_clean
    assert "no actionable drift" in meta["reason"].value

    _, drifted = _land_and_ingest(workspace, defs, instance, 5, "covariate_drift")
    meta = _meta(drifted)
    assert meta["drift_detected"].value is True
    assert "monthly_charges" in meta["drifted_features"].value
    assert "actionable drift" in meta["reason"].value
    table = {r.data["feature"]: r.data for r in meta["features"].value.records}
    assert table["monthly_charges"]["drifted"] is True
    assert table["monthly_charges"]["effect_size"] > 0.5
    assert meta["distribution_plot_path"].value.endswith("batch_0005.png")
    picture = meta["distribution_plot"].value  # the PNG itself, which the UI shows (see test_metadata_png)
    assert picture.startswith("![batch_0005 vs reference: distributions of monthly_charges")
    assert "](data:image/png;base64,iVBORw0KGgo" in picture and len(picture) < 150_000
    with duckdb.connect(str(workspace.settings.duckdb_path)) as conn:
        reports = metrics_store.read_drift_reports(conn).set_index("batch_id")
    assert bool(reports.loc["batch_0005", "drift_detected"]) and not bool(reports.loc["batch_0004", "drift_detected"])
    html = (workspace.settings.reports_dir / "drift" / "batch_0005.html").read_text()
    assert "monthly_charges" in html and "data:image/png;base64" in html
    main = html[html.index("<h2>Per feature"):html.index("<details>")]
    assert main.index("<th>feature</th>") < main.index("<th>drifted</th>") < main.index("<th>reason</th>")
    assert main.count("<th>") == 10  # the why, not 45 columns (all of them are in the fold)


@pytest.mark.slow
def test_held_back_batch_gets_no_drift_report(workspace, defs, instance, three_clean):
    batch_id, result = _land_and_ingest(workspace, defs, instance, 4, "corrupt")
    assert_held_back(result)
    from dagster import AssetKey

    # Materialized by hand, drift_report applies the same rule: skipped, saying why, nothing red.
    direct = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, partition_key=batch_id, asset_selection=[AssetKey(DRIFT_REPORT)], raise_on_error=False
    )
    assert direct.success and not materialized(direct, DRIFT_REPORT)
    assert "has not passed validation" in run_log(instance, direct.run_id)
    assert batch_id not in failed_partitions(instance, DRIFT_REPORT)


@pytest.fixture
def with_champion(workspace, three_clean):
    """A champion trained on batches 1-2 with batch 3 as its holdout."""
    with duckdb.connect(str(workspace.settings.duckdb_path)) as conn:
        train = storage.read_validated(conn, three_clean[:2])
        holdout = storage.read_validated(conn, three_clean[2:])
    model = churn_pipeline().fit(train.drop(columns=["churned"]), train["churned"])
    auc = roc_auc_score(holdout["churned"], model.predict_proba(holdout.drop(columns=["churned"]))[:, 1])
    version = register_champion(workspace.settings, model, training_batches=three_clean[:2],
                                holdout_batches=three_clean[2:], holdout_metric=auc)
    return version, auc


@pytest.mark.slow
def test_with_a_champion_clean_labelled_batch_has_no_concept_drift(workspace, defs, instance, with_champion):
    version, holdout_auc = with_champion
    _, result = _land_and_ingest(workspace, defs, instance, 4)
    meta = _meta(result)
    assert meta["champion_version"].value == version
    assert meta["reference_batches"].value == ["batch_0001", "batch_0002"]
    assert meta["concept_drift"].value is False, meta["reason"].value
    assert meta["prediction_drift"].value is False
    assert abs(meta["batch_roc_auc"].value - holdout_auc) < 0.05
    assert meta["drift_detected"].value is False


@pytest.mark.slow
def test_with_a_champion_concept_drift_is_caught(workspace, defs, instance, with_champion):
    _, result = _land_and_ingest(workspace, defs, instance, 4, "concept_drift")
    meta = _meta(result)
    assert meta["concept_drift"].value is True, meta["reason"].value
    assert meta["drift_detected"].value is True
    assert meta["drifted_features"].value == [], "the inputs did not move"
    assert "significantly worse" in meta["concept_drift_detail"].value


@pytest.mark.slow
def test_with_a_champion_covariate_drift_moves_predictions(workspace, defs, instance, with_champion):
    _, result = _land_and_ingest(workspace, defs, instance, 4, "covariate_drift")
    meta = _meta(result)
    assert meta["prediction_drift"].value is True
    assert meta["data_drift"].value is True


@pytest.mark.slow
def test_with_a_champion_unlabelled_batch_gets_an_estimate(workspace, defs, instance, with_champion):
    _, holdout_auc = with_champion
    _, result = _land_and_ingest(workspace, defs, instance, 4, "unlabelled")
    meta = _meta(result)
    assert meta["labelled"].value is False
    assert "concept_drift" not in meta
    assert abs(meta["estimated_roc_auc"].value - holdout_auc) < 0.06


PLOTTED = {
    "raw_data": {"dagster/row_count", "size_bytes"},
    "validated_data": {"rows_in", "valid_rows", "quarantined_rows", "invalid_fraction"},
    DRIFT_REPORT: {"drift_score", "n_reference", "n_current", "domain_classifier_auc"},
    PRODUCTION_METRICS: {"batch_metric", "ci_low", "ci_high", "holdout_metric"},
}
"""Per-batch numbers Dagster's Plots tab charts over the partitions of each per-batch asset."""


def test_every_per_batch_asset_has_the_numbers_dagsters_plots_tab_charts(workspace, defs, instance, with_champion):
    for i in (4, 5):
        _, result = _land_and_ingest(workspace, defs, instance, i)
        assert result.success, failure_text(result)
        for key, numbers in PLOTTED.items():
            metadata = result.asset_materializations_for_node(key)[0].metadata
            numeric = {k for k, v in metadata.items() if isinstance(v, (dg.FloatMetadataValue, dg.IntMetadataValue))}
            assert numbers <= numeric, (key, numbers - numeric)
