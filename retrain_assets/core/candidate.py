"""Judge a trained candidate against the champion on the same holdout: the six promotion gates.
Pure Python (no Dagster, no MLflow): the caller trains, registers and probes; this module scores
both models on the holdout rows and decides.

Gates, in order (:data:`GATE_NAMES`): ``metric_floor``, ``champion_comparison``,
``slice_regression``, ``prediction_stability``, ``serving_smoke_test``, ``data_sufficiency``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from retrain_assets.core import gates, slice_gate, stability_gates
from retrain_assets.core.gates import GateResult

from retrain_assets.core.performance import score_metric
from retrain_assets.core.registry import Champion
from retrain_assets.core.scoring import HoldoutScores, labels_of
from retrain_assets.core.schema import DatasetSchema

GATE_NAMES = (
    "metric_floor",
    "champion_comparison",
    "slice_regression",
    "prediction_stability",
    "serving_smoke_test",
    "data_sufficiency",
)

GATE_DESCRIPTIONS = {
    "metric_floor": "The candidate's holdout metric reaches the configured floor (gates.metric_floor).",
    "champion_comparison": (
        "On the same holdout rows the candidate is not worse than the champion beyond gates.comparison_tolerance "
        "(lower bound of a paired bootstrap 95% interval; McNemar for accuracy)."
    ),
    "slice_regression": "No slice of the configured (or most frequent categorical) columns regresses vs the champion.",
    "prediction_stability": (
        "At most gates.max_flip_rate of holdout predictions differ from the champion's (waived on confirmed concept drift)."
    ),
    "serving_smoke_test": (
        "The registered version loads by its models:/ URI in a fresh process, predicts through its signature "
        "as the trained model does, within gates.latency_budget_ms_per_1000."
    ),
    "data_sufficiency": "Enough training and holdout rows, every class present.",
}


def stability_waiver(trigger: str | None, drift_reports: pd.DataFrame, champion: Champion | None) -> tuple[bool, str]:
    """Whether the prediction-stability limit is waived, and why (or why not).

    It is waived only when the retrain was triggered by concept drift *and* a drift report of a
    batch the champion has not learnt from confirms it (the champion's metric on that labelled
    batch fell significantly): then the champion's predictions are the ones that are wrong, and
    flips are the point of retraining.

    Args:
        trigger: The run's trigger (``retrain/trigger`` tag), e.g. ``concept_drift``.
        drift_reports: The stored drift reports (``batch_id``, ``concept_drift``, ``summary``).
        champion: The production model, or None.

    Returns:
        (waived, note).
    """
    if champion is None:
        return False, "no champion yet"
    if trigger != "concept_drift":
        return False, f"trigger is {trigger or 'manual'!r}, not a confirmed concept drift"
    seen = set(champion.training_batches) | set(champion.holdout_batches)
    if drift_reports.empty or "concept_drift" not in drift_reports:
        return False, "trigger says concept drift but no drift report confirms it"
    confirmed = drift_reports[
        drift_reports["concept_drift"].fillna(False).astype(bool) & ~drift_reports["batch_id"].isin(seen)
    ]
    if confirmed.empty:
        return False, "trigger says concept drift but no drift report of a newer batch confirms it"
    batch = confirmed.iloc[-1]
    return True, f"concept drift confirmed on batch {batch['batch_id']} (drift_report): {batch['summary']}"


def serving_smoke_test(probe: Any, expected: np.ndarray, budget_ms_per_1000: float) -> GateResult:
    """The fresh-process probe loaded and predicted like the trained model, within the budget.

    Args:
        probe: A :class:`retrain_assets.core.serving.ServingProbe`.
        expected: The trained model's predictions on the same sample.
        budget_ms_per_1000: Latency budget.
    """
    metrics: dict[str, Any] = {"budget_ms_per_1000": float(budget_ms_per_1000), "rows": int(getattr(probe, "rows", 0) or 0)}
    if not probe.ok:
        metrics.update(stage=probe.stage or "unknown", error=probe.error or "")
        return GateResult(
            "serving_smoke_test", False,
            f"the registered model failed to {probe.stage or 'run'} in a fresh process: {probe.error}", metrics,
        )
    got = np.asarray(probe.predictions)
    want = np.asarray(expected)
    if got.shape != want.shape:
        differ = len(want)
    elif want.dtype.kind == "f" or got.dtype.kind == "f":
        differ = int(np.sum(~np.isclose(got.astype(float), want.astype(float), rtol=1e-6, atol=1e-9)))
    else:
        differ = int(np.sum(got.astype(str) != want.astype(str)))
    latency = stability_gates.serving_latency(probe.ms_per_1000 / 1000.0, budget_ms_per_1000)
    metrics.update(latency.metrics, load_seconds=float(probe.load_seconds), differing_predictions=differ)
    if differ:
        return GateResult(
            "serving_smoke_test", False,
            f"the registered model predicts differently from the trained one on {differ} of {len(want)} rows", metrics,
        )
    loaded = f"loaded in {probe.load_seconds:.2f} s in a fresh process, predictions identical on {len(want)} rows; "
    return GateResult("serving_smoke_test", latency.passed, loaded + latency.summary, metrics)


def slices_verdict(
    metric: str, scores: HoldoutScores, holdout: pd.DataFrame, columns: list[str], *, tolerance: float, min_rows: int
) -> GateResult:
    """:func:`slice_gate.slice_regression` over every slice column, as one verdict."""
    rows = holdout.reset_index(drop=True)
    if not columns:
        return GateResult("slice_regression", True, "no categorical column to slice by: nothing compared",
                          {"columns": "none", "slices": []})
    results = [
        slice_gate.slice_regression(metric, scores.y_true, scores.candidate_scores, scores.champion_scores,
                               rows[column].rename(column), tolerance=tolerance, min_rows=min_rows)
        for column in columns
    ]
    table = [dict(row, column=r.metrics["column"]) for r in results for row in r.metrics["slices"]]
    skipped = [dict(row, column=r.metrics["column"]) for r in results for row in r.metrics["skipped"]]
    metrics = {"metric": metric, "columns": ", ".join(columns), "tolerance": tolerance, "min_rows": min_rows,
               "slices": table, "skipped": skipped, "failed": sum(int(r.metrics.get("failed", 0)) for r in results)}
    return GateResult(
        "slice_regression", all(r.passed for r in results), " | ".join(r.summary for r in results), metrics,
        waived=all(r.waived for r in results),
    )


def judge(
    cfg,
    schema: DatasetSchema,
    *,
    scores: HoldoutScores,
    holdout: pd.DataFrame,
    train_labels: pd.Series,
    probe: Any,
    probe_expected: np.ndarray,
    waiver: tuple[bool, str],
    seed: int = 0,
) -> list[GateResult]:
    """All six gates, in :data:`GATE_NAMES` order.

    Args:
        cfg: The settings (``retrain_assets.settings.Settings``: metric, gates, training).
        schema: The dataset schema (default slice columns).
        scores: Both models on the holdout (:func:`holdout_scores`).
        holdout: The labelled holdout rows, in the order scored.
        train_labels: Labels of the training rows.
        probe: The fresh-process serving probe.
        probe_expected: The trained model's predictions on the probe's sample.
        waiver: (waived, note) for prediction stability (:func:`stability_waiver`).
        seed: Bootstrap seed.
    """
    metric, g, task = cfg.metric, cfg.gates, cfg.dataset.task
    candidate_value = score_metric(metric, scores.y_true, scores.candidate_scores)
    holdout = holdout[holdout[cfg.dataset.target].notna()].reset_index(drop=True)
    columns = list(g.slice_columns) if g.slice_columns else slice_gate.default_slice_columns(schema, holdout)
    missing = [c for c in columns if c not in holdout.columns]
    if missing:
        raise ValueError(f"gates.slice_columns names column(s) not in the data: {', '.join(missing)}")
    classification = task == "classification"
    train_counts = train_labels.value_counts().to_dict() if classification else None
    holdout_counts = labels_of(holdout, cfg.dataset.target, task).value_counts().to_dict() if classification else None
    waived, note = waiver
    stability = stability_gates.prediction_stability(
        scores.candidate_pred, scores.champion_pred, max_flip_rate=g.max_flip_rate, waive=waived, waive_reason=note,
        task=task,
    )
    if not waived and scores.champion_pred is not None:
        stability.metrics["waiver"] = f"not waived: {note}"
    return [
        gates.metric_floor(metric, candidate_value, g.metric_floor),
        gates.champion_comparison(
            metric, scores.y_true, scores.candidate_scores, scores.champion_scores,
            tolerance=g.comparison_tolerance, n_boot=g.bootstrap_resamples, seed=seed,
        ),
        slices_verdict(metric, scores, holdout, columns, tolerance=g.slice_tolerance, min_rows=g.slice_min_rows),
        stability,
        serving_smoke_test(probe, probe_expected, g.latency_budget_ms_per_1000),
        stability_gates.data_sufficiency(
            len(train_labels), train_counts, min_rows=cfg.training.min_rows,
            min_rows_per_class=cfg.training.min_rows_per_class, n_holdout=len(holdout),
            holdout_class_counts=holdout_counts, min_holdout_rows=cfg.training.min_holdout_rows,
        ),
    ]
