"""Promotion gates 4–6: prediction stability (the candidate does not flip too many of the
champion's predictions), serving latency, and data sufficiency. Pure Python."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from retrain_assets.core.performance import flip_rate
from retrain_assets.core.gate_defaults import (
    DEFAULT_LATENCY_BUDGET_MS_PER_1000,
    DEFAULT_MAX_FLIP_RATE,
    DEFAULT_MIN_HOLDOUT_ROWS,
    DEFAULT_REGRESSION_CHANGE,
)
from retrain_assets.core.gates import GateResult
from retrain_assets.core.schema import Task
from retrain_assets.core.gate_defaults import DEFAULT_MIN_ROWS, DEFAULT_MIN_ROWS_PER_CLASS


def prediction_stability(
    candidate_pred: Sequence,
    champion_pred: Sequence | None,
    *,
    max_flip_rate: float = DEFAULT_MAX_FLIP_RATE,
    waive: bool = False,
    waive_reason: str = "",
    task: Task | None = None,
    relative_change: float = DEFAULT_REGRESSION_CHANGE,
) -> GateResult:
    """At most ``max_flip_rate`` of the holdout predictions differ from the champion's.

    Args:
        candidate_pred: The candidate's predictions on the holdout (labels or values).
        champion_pred: The champion's on the same rows, or None (no champion: waived).
        max_flip_rate: Largest share allowed.
        waive: Pass whatever the rate (the caller waives it when concept drift is confirmed: then
            the old predictions are the ones that are wrong); the rate is still reported.
        waive_reason: Why, for the summary.
        task: See :func:`flip_rate`.
        relative_change: See :func:`flip_rate`.

    Returns:
        The verdict; metrics ``flip_rate``, ``flipped``, ``n``, ``max_flip_rate``.
    """
    if champion_pred is None:
        return GateResult(
            "prediction_stability", True, "no champion yet: stability check waived",
            {"n": len(np.asarray(candidate_pred)), "max_flip_rate": max_flip_rate, "waived_reason": "no champion yet"},
            waived=True,
        )
    rate, k, task = flip_rate(candidate_pred, champion_pred, task=task, relative_change=relative_change)
    n = len(np.asarray(candidate_pred))
    what = "predicted classes differ from" if task == "classification" else \
        f"predictions move by more than {relative_change:.0%} from"
    metrics: dict[str, Any] = {"flip_rate": rate, "flipped": k, "n": n, "max_flip_rate": max_flip_rate, "task": task}
    facts = f"{rate:.1%} of {n} holdout {what} the champion's ({k} rows; maximum {max_flip_rate:.1%})"
    if waive:
        reason = waive_reason or "waived by the caller"
        metrics["waived_reason"] = reason
        return GateResult("prediction_stability", True, f"waived ({reason}): {facts}", metrics, waived=True)
    passed = rate <= max_flip_rate
    return GateResult("prediction_stability", bool(passed), facts if passed else f"too many flips: {facts}", metrics)


def serving_latency(
    seconds_per_1000: float, budget_ms_per_1000: float = DEFAULT_LATENCY_BUDGET_MS_PER_1000
) -> GateResult:
    """Scoring 1000 rows (measured by the caller in a fresh process) fits the budget.

    Args:
        seconds_per_1000: Measured seconds per 1000 rows.
        budget_ms_per_1000: Allowed milliseconds per 1000 rows.

    Returns:
        The verdict; metrics ``ms_per_1000``, ``budget_ms_per_1000``.
    """
    if not math.isfinite(seconds_per_1000) or seconds_per_1000 < 0:
        raise ValueError(f"seconds_per_1000 must be a finite number >= 0, got {seconds_per_1000}")
    ms = seconds_per_1000 * 1000.0
    passed = ms <= budget_ms_per_1000
    return GateResult(
        "serving_latency", bool(passed),
        f"scoring 1000 rows takes {ms:.1f} ms, {'within' if passed else 'over'} the {budget_ms_per_1000:g} ms budget",
        {"ms_per_1000": ms, "budget_ms_per_1000": float(budget_ms_per_1000)},
    )


def data_sufficiency(
    n_train: int,
    class_counts: dict[Any, int] | None,
    *,
    min_rows: int = DEFAULT_MIN_ROWS,
    min_rows_per_class: int = DEFAULT_MIN_ROWS_PER_CLASS,
    n_holdout: int | None = None,
    holdout_class_counts: dict[Any, int] | None = None,
    min_holdout_rows: int = DEFAULT_MIN_HOLDOUT_ROWS,
) -> GateResult:
    """The candidate learnt from enough rows, and (classification) from enough rows of each of at
    least two classes; and, when the holdout is given, it is judged on enough rows holding every
    class it learnt.

    Args:
        n_train: Training rows.
        class_counts: Class → training rows (classification), or None (regression).
        min_rows: Fewest rows.
        min_rows_per_class: Fewest rows per class.
        n_holdout: Holdout rows, or None to skip the holdout checks.
        holdout_class_counts: Class → holdout rows (classification).
        min_holdout_rows: Fewest holdout rows.

    Returns:
        The verdict; metrics ``n_train``, ``min_rows`` and, with classes, ``classes``,
        ``smallest_class``, ``smallest_class_rows``, ``min_rows_per_class``, ``class_counts``;
        with a holdout, ``n_holdout``, ``min_holdout_rows`` (and ``holdout_class_counts``).
    """
    problems, facts = [], [f"{n_train} training rows (minimum {min_rows})"]
    if n_train < min_rows:
        problems.append(f"only {n_train} training rows (minimum {min_rows})")
    metrics: dict[str, Any] = {"n_train": int(n_train), "min_rows": min_rows}
    if class_counts is not None:
        counts = {k: int(v) for k, v in class_counts.items()}
        metrics.update(classes=len(counts), min_rows_per_class=min_rows_per_class, class_counts=counts)
        if len(counts) < 2:
            listed = ", ".join(map(repr, counts)) or "none"
            problems.append(f"only {len(counts)} class ({listed}); at least 2 are needed")
        if counts:
            smallest = min(counts, key=lambda k: counts[k])
            metrics.update(smallest_class=str(smallest), smallest_class_rows=counts[smallest])
            facts.append(f"smallest class {smallest!r} has {counts[smallest]} rows (minimum {min_rows_per_class})")
            rare = {k: v for k, v in counts.items() if v < min_rows_per_class}
            if rare:
                problems.append(
                    "too few rows in class(es) " + ", ".join(f"{k!r} ({v})" for k, v in rare.items())
                    + f" (minimum {min_rows_per_class})"
                )
    if n_holdout is not None:
        metrics.update(n_holdout=int(n_holdout), min_holdout_rows=min_holdout_rows)
        facts.append(f"{n_holdout} holdout rows (minimum {min_holdout_rows})")
        if n_holdout < min_holdout_rows:
            problems.append(f"only {n_holdout} holdout rows to judge on (minimum {min_holdout_rows})")
        if class_counts is not None and holdout_class_counts is not None:
            held = {k: int(v) for k, v in holdout_class_counts.items() if v}
            metrics["holdout_class_counts"] = held
            absent = [k for k in class_counts if k not in held]
            if absent:
                problems.append(
                    "the holdout has no rows of class(es) " + ", ".join(map(repr, absent))
                    + ", so the candidate cannot be judged on them"
                )
    if problems:
        return GateResult("data_sufficiency", False, "not enough data: " + "; ".join(problems), metrics)
    return GateResult("data_sufficiency", True, "enough data: " + "; ".join(facts), metrics)
