"""The retrain policy: signals, controls, the safety-net schedule."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from retrain_assets.core.policy import (
    BatchSignal,
    PolicySettings,
    RetrainRecord,
    decide,
    drift_signal,
    schedule_due,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
LOOSE = PolicySettings(cooldown_minutes=0, cooldown_batches=0, min_new_labelled_rows=0)


def _decide(trigger="data_drift", *, history=(), new_batches=3, rows=1000, running=False, settings=PolicySettings()):
    return decide(NOW, trigger=trigger, reason="drift on batch_0007", history=list(history), new_batches=new_batches,
                  new_labelled_rows=rows, running=running, settings=settings)


def ago(**kwargs) -> RetrainRecord:
    return RetrainRecord(NOW - timedelta(**kwargs), "data_drift")


def test_a_signal_within_the_controls_retrains_with_its_trigger_and_reason():
    decision = _decide(history=[ago(days=2)])
    assert decision.retrain and decision.trigger == "data_drift" and decision.reason == "drift on batch_0007"


def test_no_signal_no_retrain():
    decision = decide(NOW, trigger=None, reason="no actionable drift on batch_0004", history=[], new_batches=3,
                      new_labelled_rows=5000, running=False, settings=PolicySettings())
    assert not decision.retrain and not decision.signal and decision.reason == "no actionable drift on batch_0004"


@pytest.mark.parametrize("kwargs, words", [
    ({"running": True}, "already queued or running"),
    ({"history": [ago(minutes=20)]}, "last retrain started 20 min ago (cooldown 60 min)"),
    ({"history": [ago(days=1)], "new_batches": 2}, "only 2 new batch(es) since the last retrain (cooldown 3)"),
    ({"rows": 499}, "only 499 new labelled rows since the last retrain (500 needed)"),
    ({"history": [ago(hours=20 * d) for d in range(1, 8)]}, "budget of 7 retrains per 7 days is spent"),
])
def test_each_control_holds_a_signal_back_and_says_why(kwargs, words):
    decision = _decide(**kwargs)
    assert not decision.retrain and decision.signal
    assert words in decision.reason and decision.reason.startswith("drift on batch_0007")


def test_a_person_skips_cooldown_and_minimum_rows_but_not_concurrency_or_budget():
    assert _decide("business_change", history=[ago(minutes=1)], new_batches=0, rows=0).retrain
    assert not _decide("business_change", running=True).retrain
    assert not _decide("business_change", history=[ago(hours=h) for h in range(1, 8)]).retrain


def test_a_champion_that_got_worse_does_not_wait_for_new_batches():
    for trigger in ("concept_drift", "performance_decline"):
        assert _decide(trigger, history=[ago(days=1)], new_batches=1).retrain
        held = _decide(trigger, history=[ago(minutes=20)], new_batches=1)  # the minutes still count
        assert not held.retrain and "cooldown 60 min" in held.reason
    assert not _decide("data_drift", history=[ago(days=1)], new_batches=1).retrain


def test_old_retrains_leave_the_budget():
    assert _decide(history=[ago(days=8 + d) for d in range(20)]).retrain


def test_unknown_triggers_and_bad_settings_are_refused():
    with pytest.raises(ValueError, match="unknown trigger"):
        _decide("because")
    with pytest.raises(ValueError, match="confirm_k"):
        PolicySettings(confirm_k=3, confirm_n=2)
    with pytest.raises(ValueError, match="max_retrains_per_period"):
        PolicySettings(max_retrains_per_period=0)


def _signals(*flags, concept=None, floor=None):
    out = [BatchSignal(f"batch_{i:04d}", data_drift=f, summary=f"s{i}") for i, f in enumerate(flags, start=1)]
    if concept is not None or floor is not None:
        last = out[-1]
        out[-1] = BatchSignal(last.batch_id, data_drift=last.data_drift, concept_drift=concept, below_floor=floor,
                              summary=last.summary)
    return out


def test_drift_signal_confirmation_k_of_n():
    two_of_three = PolicySettings(confirm_k=2, confirm_n=3)
    assert drift_signal(_signals(False, False, True), two_of_three)[0] is None
    assert "1 of the last 3 batches, 2 needed" in drift_signal(_signals(False, False, True), two_of_three)[1]
    trigger, reason = drift_signal(_signals(True, False, True), two_of_three)
    assert trigger == "data_drift" and "2 of the last 3 batches: batch_0001, batch_0003" in reason
    # The newest batch must itself be drifted: a drift that went away is not acted on.
    assert drift_signal(_signals(True, True, False), two_of_three)[0] is None
    assert drift_signal(_signals(True), PolicySettings())[0] == "data_drift"


def test_concept_drift_and_a_metric_below_the_floor_act_at_once():
    strict = PolicySettings(confirm_k=3, confirm_n=3)
    assert drift_signal(_signals(False, False, concept=True), strict)[0] == "concept_drift"
    assert drift_signal(_signals(False, floor=True), strict)[0] == "performance_decline"
    assert drift_signal([], strict) == (None, "no new batches since the last retrain")


def test_the_schedule_is_a_safety_net():
    due, reason = schedule_due(NOW, [ago(days=9)], PolicySettings())
    assert due and "no retrain in the last 7 days" in reason
    due, reason = schedule_due(NOW, [ago(days=9), ago(days=2)], PolicySettings())
    assert not due and reason.startswith("skipped: a data_drift retrain already started at 2026-11-22 12:00")


# --------------------------------------------------------------------------
# The first champion: as soon as the labelled data allows
# --------------------------------------------------------------------------

from retrain_assets.core.holdout import split_newest  # noqa: E402
from retrain_assets.core.first_champion import first_champion_plan, split_sizes

FIRST = {"min_rows": 200, "min_holdout_rows": 100, "holdout_share": 0.5}


def test_one_large_labelled_batch_is_enough_for_the_first_champion_split_in_time():
    plan = first_champion_plan([("history", 40_000)], **FIRST)
    assert plan.ready and plan.holdout_share == 0.5
    assert "the oldest 20000 rows of history" in plan.reason and "newest 20000 rows of history" in plan.reason


def test_two_batches_hold_out_the_whole_newest_one_when_each_side_is_large_enough():
    plan = first_champion_plan([("b1", 250), ("b2", 150)], **FIRST)
    assert plan.ready and plan.holdout_share is None
    assert "learn from b1 (250 labelled rows) and judge on b2 (150 rows)" in plan.reason


def test_small_batches_split_the_newest_when_the_older_ones_alone_are_too_few():
    # 150 older rows < 200: learn from b1 and the oldest 100 of b2, judge on b2's newest 100.
    plan = first_champion_plan([("b1", 150), ("b2", 200)], **FIRST)
    assert plan.ready and plan.holdout_share == 0.5
    assert "b1, the oldest 100 rows of b2 (250 labelled rows)" in plan.reason


@pytest.mark.parametrize("labelled, learn, held", [
    ([("b1", 150)], 75, 75),
    ([("b1", 120), ("b2", 60)], 150, 30),
])
def test_too_few_rows_say_exactly_what_is_missing(labelled, learn, held):
    plan = first_champion_plan(labelled, **FIRST)
    assert not plan.ready
    assert "needs at least 200 rows to learn from and 100 newer rows to judge on" in plan.reason
    assert f"they give {learn} to learn from and {held} to judge on" in plan.reason


def test_no_labelled_rows_no_first_champion():
    plan = first_champion_plan([("b1", 0)], **FIRST)
    assert not plan.ready and "no labelled rows" in plan.reason


@pytest.mark.parametrize("rows", [1, 2, 3, 10, 101, 999])
@pytest.mark.parametrize("share", [0.2, 0.5, 0.7])
def test_split_sizes_match_the_split_the_candidate_makes(rows, share):
    import pandas as pd

    frame = pd.DataFrame({"_row": range(1, rows + 1)})
    learn, held = split_newest(frame, share)
    assert split_sizes(rows, share) == (len(learn), len(held))


def test_the_first_retrain_skips_the_minimums_of_a_replacing_retrain_but_not_one_at_a_time_or_the_budget():
    strict = PolicySettings(cooldown_minutes=60, cooldown_batches=3, min_new_labelled_rows=500)
    assert _decide("bootstrap", new_batches=1, rows=150, settings=strict).retrain
    assert _decide("bootstrap", history=[ago(minutes=5)], new_batches=0, rows=0, settings=strict).retrain
    assert not _decide("bootstrap", rows=150, running=True, settings=strict).retrain
    spent = [ago(hours=h) for h in range(1, 8)]
    assert not _decide("bootstrap", history=spent, settings=strict).retrain
    # The same numbers hold back a replacing retrain.
    assert "500 needed" in _decide("data_drift", new_batches=3, rows=150, settings=strict).reason


def test_a_reason_names_the_batch_once():
    signal = BatchSignal("batch_0007", data_drift=True, summary="batch batch_0007: actionable drift — 4 of 7 features")
    trigger, reason = drift_signal([signal], LOOSE)
    assert trigger == "data_drift" and reason == "actionable drift on batch batch_0007: actionable drift — 4 of 7 features"


def test_a_first_champion_by_hand_is_never_started_by_the_sensor_and_says_who_starts_it():
    from retrain_assets.core.policy import first_champion_signal

    ready = first_champion_plan([("b1", 600), ("b2", 600)], **FIRST)
    assert first_champion_signal(ready) == ("bootstrap", ready.reason)
    trigger, reason = first_champion_signal(ready, automatic=False)
    assert trigger is None and "by_hand" in reason and "request_retrain" in reason
    missing = first_champion_plan([("b1", 100)], **FIRST)
    assert first_champion_signal(missing) == (None, missing.reason)
