"""Five-field cron expressions (``automation.schedule_cron``): checked when the config loads and
replayed by the backtester. Pure Python (no Dagster); Dagster's scheduler fires the real schedule,
and ``retrain_assets_tests/core/test_cron.py`` checks these ticks against its own.

Numbers, ``*``, ranges, lists and steps; day of week 0 or 7 is Sunday; when both day of month and
day of week are restricted, either matches (as in cron).
"""

from __future__ import annotations

from datetime import datetime, timedelta

FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))


def problem(expression: str) -> str | None:
    """What is wrong with a five-field cron expression, or None."""
    fields = expression.split()
    if len(fields) != 5:
        return f"it has {len(fields)} fields; five are needed (minute hour day-of-month month day-of-week)"
    for text, (name, low, high) in zip(fields, FIELDS):
        for part in text.split(","):
            base, _, step = part.partition("/")
            if step and not (step.isdigit() and int(step) > 0):
                return f"{name}: bad step {step!r}"
            if base == "*":
                continue
            bounds = base.split("-")
            if len(bounds) > 2 or not all(b.isdigit() for b in bounds):
                return f"{name}: {part!r} is not a number, range or *"
            if not all(low <= int(b) <= high for b in bounds):
                return f"{name}: {part!r} is outside {low}-{high}"
    return None


def _matches(text: str, value: int, low: int, high: int) -> bool:
    for part in text.split(","):
        base, _, step = part.partition("/")
        first, last = (low, high) if base == "*" else (int(base.split("-")[0]), int(base.split("-")[-1]))
        if first <= value <= last and (value - first) % int(step or 1) == 0:
            return True
    return False


def ticks(expression: str, after: datetime, until: datetime) -> list[datetime]:
    """The minutes in ``(after, until]`` at which the expression fires (in the datetimes' own zone)."""
    wrong = problem(expression)
    if wrong:
        raise ValueError(f"{expression!r} is not a cron expression: {wrong}")
    minute, hour, dom, month, dow = expression.split()
    found, t = [], after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while t <= until:
        weekday = (t.weekday() + 1) % 7  # cron: 0 = Sunday
        dom_ok = _matches(dom, t.day, 1, 31)
        dow_ok = _matches(dow, weekday, 0, 7) or (weekday == 0 and _matches(dow, 7, 0, 7))
        day_ok = (dom_ok and dow_ok) if "*" in (dom, dow) else (dom_ok or dow_ok)
        if (day_ok and _matches(month, t.month, 1, 12) and _matches(hour, t.hour, 0, 23)
                and _matches(minute, t.minute, 0, 59)):
            found.append(t)
        t += timedelta(minutes=1)
    return found
