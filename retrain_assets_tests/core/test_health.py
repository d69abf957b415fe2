"""core.health: the verdict in one sentence, freshness of batches and labels, retrain costs by trigger."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

from retrain_assets.core import health

NOW = datetime(2026, 12, 5, 12, tzinfo=timezone.utc)


def _metrics(rows):
    base = {"labelled": True, "metric": "roc_auc", "ci_low": 0.80, "ci_high": 0.86, "holdout_metric": 0.84,
            "degraded": False, "below_floor": False, "watch_difference": np.nan}
    return pd.DataFrame([{**base, **r} for r in rows])


def _drift(rows):
    return pd.DataFrame([{"drift_detected": False, "summary": "no drift", **r} for r in rows])


def test_the_first_verdict_that_applies_wins():
    ok = _metrics([{"batch_id": "b1", "champion_version": "2", "batch_metric": 0.83}])
    calm = _drift([{"batch_id": "b1"}])
    assert health.health_verdict(champion=None, metrics=ok, drift=calm, no_champion_reason="150 labelled rows").sentence \
        == "No model is in production yet: 150 labelled rows"
    h = health.health_verdict(champion="2", metrics=ok, drift=calm)
    assert h.verdict == "healthy"
    assert h.sentence == ("Champion v2 is healthy: roc_auc 0.830 on b1 (95% CI 0.800–0.860) against 0.840 on its holdout; "
                          "no drift on the newest batch b1.")
    drifting = _drift([{"batch_id": "b1", "drift_detected": True, "summary": "drift in 2 of 7 features"}])
    assert health.health_verdict(champion="2", metrics=ok, drift=drifting).verdict == "drifting"
    assert health.health_verdict(champion="2", metrics=ok, drift=drifting, awaiting=["3"]).verdict == "awaiting_approval"
    bad = _metrics([{"batch_id": "b1", "champion_version": "2", "batch_metric": 0.70, "degraded": True}])
    h = health.health_verdict(champion="2", metrics=bad, drift=drifting, awaiting=["3"])
    assert h.verdict == "degrading" and "significantly below its holdout (0.840)" in h.sentence
    floor = _metrics([{"batch_id": "b1", "champion_version": "2", "batch_metric": 0.55, "below_floor": True}])
    assert "below the metric floor" in health.health_verdict(champion="2", metrics=floor, drift=calm).sentence


def test_an_old_champions_decline_is_not_the_new_ones():
    metrics = _metrics([{"batch_id": "b1", "champion_version": "1", "batch_metric": 0.6, "degraded": True},
                        {"batch_id": "b2", "champion_version": "2", "labelled": False, "batch_metric": np.nan}])
    h = health.health_verdict(champion="2", metrics=metrics, drift=_drift([{"batch_id": "b2"}]))
    assert h.verdict == "healthy" and "no batch scored since it took over" in h.sentence
    metrics.loc[1, "estimated_metric"] = 0.79
    h = health.health_verdict(champion="2", metrics=metrics, drift=_drift([{"batch_id": "b2"}]))
    assert ("no labelled batch since it took over; estimated roc_auc without labels 0.790 on b2 against 0.840 on "
            "its holdout") in h.sentence
    metrics.loc[1, "holdout_metric"] = np.nan  # an unlabelled batch's row does not carry it: the registry's tag does
    h = health.health_verdict(champion="2", metrics=metrics, drift=_drift([{"batch_id": "b2"}]), holdout_metric=0.85)
    assert "0.790 on b2 against 0.850 on its holdout" in h.sentence


def test_freshness_of_batches_and_labels():
    arrivals = pd.DataFrame({"batch_id": ["b1", "b2"], "arrived_at": [NOW - timedelta(hours=80), NOW - timedelta(hours=50)]})
    labelled = {"b1": True, "b2": False}
    f = health.freshness(arrivals, labelled, NOW, max_hours_without_batch=48, max_batches_without_labels=1)
    assert not f.batch_fresh and f.hours_since_batch == 50.0
    assert "b2, landed 50.0 h ago: no batch for more than 48 h" in f.batch_sentence
    assert f.labels_fresh and f.batches_since_labels == 1
    f = health.freshness(arrivals, labelled, NOW, max_hours_without_batch=72, max_batches_without_labels=0)
    assert f.batch_fresh and not f.labels_fresh and "the newest labelled batch is b1; 1 batch(es) since" in f.labels_sentence
    f = health.freshness(arrivals.iloc[:0], {}, NOW)
    assert not f.batch_fresh and f.hours_since_batch is None and f.batches_since_labels is None
    f = health.freshness(arrivals, {"b1": False, "b2": False}, NOW, max_batches_without_labels=5)
    assert f.batches_since_labels == 2 and f.labels_fresh and "no batch is labelled yet" in f.labels_sentence


def test_retrain_costs_roll_up_by_trigger_and_week():
    retrains = pd.DataFrame([
        {"started_at": NOW - timedelta(days=8), "trigger": "schedule", "version": "2", "fit_seconds": 10.0,
         "peak_memory_mb": 500.0, "training_rows": 1000, "promoted": True, "bought": 0.01},
        {"started_at": NOW - timedelta(days=1), "trigger": "concept_drift", "version": "3", "fit_seconds": 30.0,
         "peak_memory_mb": 700.0, "training_rows": 3000, "promoted": True, "bought": 0.05},
        {"started_at": NOW, "trigger": "concept_drift", "version": "4", "fit_seconds": 20.0,
         "peak_memory_mb": 650.0, "training_rows": 3500, "promoted": False, "bought": None},
    ])
    by_trigger, by_week = health.retrain_costs(retrains)
    row = by_trigger.set_index("trigger").loc["concept_drift"]
    assert (row["retrains"], row["fit_seconds"], row["mean_fit_seconds"], row["max_peak_memory_mb"], row["promoted"]) \
        == (2, 50.0, 25.0, 700.0, 1)
    assert row["mean_bought"] == 0.05
    assert list(by_week["retrains"]) == [1, 2] and list(by_week["fit_seconds"]) == [10.0, 50.0]
    assert by_week["period"].tolist() == sorted(by_week["period"].tolist())
    empty_trigger, empty_week = health.retrain_costs(retrains.iloc[:0])
    assert empty_trigger.empty and empty_week.empty


def test_what_a_promotion_bought_is_its_first_watch_difference():
    metrics = _metrics([{"batch_id": "b1", "champion_version": "3", "batch_metric": 0.8},
                        {"batch_id": "b2", "champion_version": "3", "batch_metric": 0.8, "watch_difference": 0.04},
                        {"batch_id": "b3", "champion_version": "3", "batch_metric": 0.8, "watch_difference": -0.01}])
    assert health.bought_by(metrics, "3") == 0.04
    assert health.bought_by(metrics, "2") is None
