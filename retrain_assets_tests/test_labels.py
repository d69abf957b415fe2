"""Labels that arrive late: an empty target is an unlabelled batch; rows without a label do not hold a batch back."""

from __future__ import annotations

import duckdb
import pandas as pd

from retrain_assets.core import registry as reg
from retrain_assets.core import storage
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


def test_rows_whose_labels_are_late_do_not_hold_the_batch_back_nor_reach_training(tmp_path, instance):
    r = Retrainer(tmp_path, instance)
    r.land(1, rows=800)
    partial = clean_batch(2, 800).astype(object)
    late = list(range(0, 800, 3))  # a third of the rows: labels not there yet
    partial.loc[late, "churned"] = None
    r.land(2, partial)
    with duckdb.connect(str(r.settings.duckdb_path)) as conn:
        status = storage.batch_statuses(conn).set_index("batch_id")
        counts = dict(storage.labelled_row_counts(conn, "churned"))
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
        metrics = storage.read_production_metrics(conn).set_index("batch_id")
    assert "batch_0003" in metrics.index and pd.notna(metrics.loc["batch_0003", "batch_metric"])
