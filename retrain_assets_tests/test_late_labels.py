"""Labels that arrive after their rows: a labels file (ids + target) attaches them by id, through the
real landing sensor and ingest job; the labelled batches are then scored again."""

from __future__ import annotations

import duckdb
import pandas as pd

import dagster as dg

from retrain_assets.constants import DRIFT_REPORT, INGEST_JOB, PRODUCTION_METRICS, TAG_TRIGGER, VALIDATED_DATA
from retrain_assets.core import label_store, late_labels, metrics_store, storage
from retrain_assets.core.schema import SchemaStore
from retrain_assets.core.synthetic import ID_COLUMN, TARGET
from retrain_assets_tests.conftest import check_evaluation, clean_batch, ingest, materialized, tick


def _read(ws, fn, *args, **kwargs):
    with duckdb.connect(str(ws.settings.duckdb_path), read_only=True) as conn:
        return fn(conn, *args, **kwargs)


def _unlabelled_then_labels(workspace, defs, instance):
    """b0001 labelled; b0002 lands with no labels at all; returns the cursor and b0002's true labels."""
    workspace.land("b0001", clean_batch(1))
    first = tick(defs, instance)
    assert ingest(defs, instance, "b0001", tags=first.run_requests[0].tags).success
    second_batch = clean_batch(2)
    truth = second_batch[[ID_COLUMN, TARGET]].copy()
    workspace.land("b0002", second_batch.assign(**{TARGET: None}))
    second = tick(defs, instance, cursor=first.cursor)
    assert ingest(defs, instance, "b0002", tags=second.run_requests[0].tags).success
    assert _read(workspace, label_store.labelled_batches) == {"b0001": True, "b0002": False}
    return second.cursor, truth


def test_a_labels_file_attaches_labels_by_id_and_the_batch_is_scored_again(workspace, defs, instance):
    cursor, truth = _unlabelled_then_labels(workspace, defs, instance)
    first_batch = clean_batch(1)
    labels = truth.head(300).copy()
    known = first_batch.iloc[0]
    bad = pd.DataFrame({
        ID_COLUMN: ["C9999000001", truth[ID_COLUMN].iloc[300], truth[ID_COLUMN].iloc[300], known[ID_COLUMN],
                    first_batch[ID_COLUMN].iloc[1], truth[ID_COLUMN].iloc[301], truth[ID_COLUMN].iloc[302]],
        TARGET: ["1", "0", "1", str(1 - int(known[TARGET])), str(int(first_batch[TARGET].iloc[1])), "", "7"],
    })
    labels_file = pd.concat([labels.astype({TARGET: str}), bad], ignore_index=True)
    workspace.land("b0003", labels_file)
    third = tick(defs, instance, cursor=cursor)
    result = ingest(defs, instance, "b0003", tags=third.run_requests[0].tags)
    assert result.success
    meta = result.asset_materializations_for_node(VALIDATED_DATA)[0].metadata
    assert meta["kind"].value == "labels file"
    assert meta["labels_attached"].value == 300 and meta["labels_already_known"].value == 1
    assert meta["labels_for_batches"].value == ["b0002"]
    assert "300 of 307 labels attached to earlier rows (300 in b0002); 1 already known; 6 quarantined" in (
        meta["summary"].value)

    # The labels landed on the right rows, and only there.
    validated = _read(workspace, storage.read_validated, ["b0001", "b0002"]).set_index(ID_COLUMN)
    expected = truth.set_index(ID_COLUMN)[TARGET]
    b2 = validated[validated["_batch_id"] == "b0002"]
    assert b2[TARGET].notna().sum() == 300
    assert (b2[TARGET].dropna().astype(int) == expected.loc[b2[TARGET].dropna().index]).all()
    b1 = validated[validated["_batch_id"] == "b0001"]
    assert (b1[TARGET].astype(int) == first_batch.set_index(ID_COLUMN)[TARGET].loc[b1.index]).all(), "never overwritten"
    assert _read(workspace, label_store.labelled_row_counts, TARGET) == [("b0001", 400), ("b0002", 300)]
    assert _read(workspace, storage.passed_batches) == ["b0001", "b0002"], "a labels file is not a data batch"

    reasons = _read(workspace, storage.read_quarantine, "b0003").set_index("_row")["reasons"]
    assert len(reasons) == 6
    text = " | ".join(reasons)
    for words in ("no earlier validated row has id 'C9999000001'", "appears more than once in this labels file",
                  "already has label", "is empty", "must be one of the known classes"):
        assert words in text, (words, text)

    # The landing sensor asks once for b0002 to be scored again, now that it has labels.
    after = tick(defs, instance, cursor=third.cursor)
    rescore = [r for r in after.run_requests if r.tags.get(TAG_TRIGGER) == "late_labels"]
    assert [r.partition_key for r in rescore] == ["b0002"]
    assert set(rescore[0].asset_selection) == {dg.AssetKey(DRIFT_REPORT), dg.AssetKey(PRODUCTION_METRICS)}
    run = defs.resolve_job_def(INGEST_JOB).execute_in_process(
        instance=instance, partition_key="b0002", asset_selection=rescore[0].asset_selection, tags=rescore[0].tags)
    assert run.success and materialized(run, DRIFT_REPORT)
    drift = _read(workspace, metrics_store.read_drift_reports).set_index("batch_id")
    assert bool(drift.loc["b0002", "labelled"])
    again = tick(defs, instance, cursor=after.cursor)
    assert not [r for r in again.run_requests if r.tags.get(TAG_TRIGGER) == "late_labels"]

    # Landing the same labels again attaches nothing new and overwrites nothing.
    workspace.land("b0004", labels_file)
    fourth = tick(defs, instance, cursor=again.cursor)
    repeat = ingest(defs, instance, "b0004", tags=fourth.run_requests[0].tags)
    assert repeat.success
    meta = repeat.asset_materializations_for_node(VALIDATED_DATA)[0].metadata
    assert meta["labels_attached"].value == 0 and meta["labels_already_known"].value == 301


def test_a_labels_file_of_mostly_unknown_ids_is_held_back_and_attaches_nothing(workspace, defs, instance):
    cursor, truth = _unlabelled_then_labels(workspace, defs, instance)
    labels = pd.DataFrame({ID_COLUMN: [f"X{i:05d}" for i in range(50)] + list(truth[ID_COLUMN].head(5)),
                           TARGET: ["1"] * 55})
    path = workspace.land("b0003", labels)
    third = tick(defs, instance, cursor=cursor)
    result = ingest(defs, instance, "b0003", tags=third.run_requests[0].tags)
    assert result.success and not check_evaluation(result).passed  # held back: a failed check, not a failed run
    summary = result.asset_materializations_for_node(VALIDATED_DATA)[0].metadata["summary"].value
    assert summary.startswith("labels file b0003 held back: 50 of 55 rows") and "no label was attached" in summary
    assert _read(workspace, label_store.labelled_row_counts, TARGET) == [("b0001", 400)]
    assert not path.exists() and workspace.rejected_files("b0003"), "the bytes are kept in the rejected area"


def test_labels_file_rules(tmp_path, workspace, defs, instance):
    workspace.land("b0001", clean_batch(1))
    assert ingest(defs, instance, "b0001", tags=tick(defs, instance).run_requests[0].tags).success
    schema = SchemaStore(workspace.settings.schema_path).load()
    assert late_labels.is_labels_file(["_row", ID_COLUMN, TARGET], schema)
    assert not late_labels.is_labels_file(["_row", ID_COLUMN, TARGET, "tenure_months"], schema)
    assert not late_labels.is_labels_file(["_row", TARGET], schema)
    assert "exactly the id columns ['customer_id']" in late_labels.labels_file_hint(["_row", TARGET, "order"], schema)
    assert late_labels.labels_file_hint(["_row", ID_COLUMN, "tenure_months"], schema) is None
