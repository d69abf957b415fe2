"""The one cron parser (core.cron): the config's check and the backtester's ticks, held against the
ticks of Dagster's own scheduler, which fires the real schedule."""

from datetime import datetime, timezone

import pytest

from retrain_assets.core import cron


@pytest.mark.parametrize(
    ("expression", "after", "until", "expected"),
    [
        ("0 3 * * 1", datetime(2024, 1, 1), datetime(2024, 1, 8), [datetime(2024, 1, 1, 3)]),
        ("0 3 * * 1", datetime(2024, 1, 1, 3), datetime(2024, 1, 2), []),
        ("30 */12 * * *", datetime(2024, 1, 1), datetime(2024, 1, 2), [datetime(2024, 1, 1, 0, 30), datetime(2024, 1, 1, 12, 30)]),
        ("0 0 1 * 0", datetime(2024, 1, 6), datetime(2024, 1, 8), [datetime(2024, 1, 7)]),  # Sunday, not the 1st
    ],
)
def test_ticks(expression, after, until, expected):
    assert cron.ticks(expression, after, until) == expected


@pytest.mark.parametrize("expression", ["0 3 * * 1", "15 */6 * * *", "0 0 1,15 * *", "0 9 * * 1-5", "0 0 * * 7",
                                        "5 4 * 2-4 *", "0 12 1 * 1"])
def test_ticks_are_the_ones_dagsters_scheduler_fires(expression):
    from dagster._utils.schedules import cron_string_iterator  # the scheduler's own iterator

    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    until = datetime(2025, 4, 1, tzinfo=timezone.utc)
    ours = cron.ticks(expression, start, until)
    theirs = []
    for tick in cron_string_iterator(start.timestamp(), expression, "UTC"):
        if tick > until:
            break
        if tick > start:
            theirs.append(tick)
    assert ours == theirs


@pytest.mark.parametrize(("expression", "words"), [
    ("0 3 * *", "it has 4 fields"), ("61 3 * * 1", "outside 0-59"), ("0 3 * * mon", "not a number"),
    ("*/0 * * * *", "bad step"),
])
def test_problems_are_named(expression, words):
    assert words in cron.problem(expression)
    with pytest.raises(ValueError, match="is not a cron expression"):
        cron.ticks(expression, datetime(2024, 1, 1), datetime(2024, 1, 2))
