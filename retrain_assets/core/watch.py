"""The champion in production, batch by batch: its metric on labelled batches (with an interval and
River's detectors on the error stream), a label-free estimate on unlabelled ones, and, right after
a promotion, whether the new champion does worse than the one it replaced. No Dagster.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from retrain_assets.core.columns import model_input
from retrain_assets.core import gate_defaults, gates
from retrain_assets.core.holdout import holdout_rows, unseen_rows
from retrain_assets.core.monitoring import missing_classes_note, scored_holdout
from retrain_assets.core.performance import score_metric
from retrain_assets.core.estimation import estimate_performance
from retrain_assets.core.registry import Champion


@dataclass
class ProductionMetrics:
    """One batch as the champion saw it (the row of the ``production_metrics`` table)."""

    batch_id: str
    champion_version: str | None
    labelled: bool
    metric: str
    batch_metric: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    holdout_metric: float | None = None
    floor: float | None = None
    below_floor: bool | None = None
    degraded: bool | None = None
    detectors_fired: list[str] = field(default_factory=list)
    estimated_metric: float | None = None
    watch_previous_version: str | None = None
    watch_difference: float | None = None
    watch_ci_low: float | None = None
    rollback_recommended: bool = False
    summary: str = ""

    def as_record(self) -> dict[str, Any]:
        """The table row."""
        return asdict(self)

    @property
    def declining(self) -> bool:
        """The champion is measurably failing on this batch: below the floor, significantly worse
        than on its holdout, or a streaming detector fired while the metric got worse."""
        return bool(self.below_floor or self.degraded)


def _labels(model: Champion, frame: pd.DataFrame, target: str, task: str):
    return model.label_codes(frame[target]) if task == "classification" else frame[target].to_numpy(float)


def measure_batch(
    cfg,
    batch_id: str,
    batch: pd.DataFrame,
    champion: Champion | None,
    *,
    holdout: pd.DataFrame | None = None,
    previous: Champion | None = None,
    concept: dict[str, Any] | None = None,
) -> ProductionMetrics:
    """The champion's performance on one validated batch.

    Args:
        cfg: The settings (metric, gates.metric_floor, drift.performance_tolerance, automation.rollback_tolerance).
        batch_id: The batch.
        batch: Its validated rows.
        champion: The production model (None: nothing to measure).
        holdout: The champion's holdout rows (primes the detectors; gives the holdout metric if untagged).
        previous: The champion it replaced, when this batch falls inside the post-promotion watch.
        concept: The champion's concept-drift verdict on this batch from its drift report
            (:func:`~retrain_assets.core.monitoring.concept_record`): judged once, there; None when
            it could not be judged (no holdout metric), then the metric is computed plainly here.

    Returns:
        The measurements with a one-sentence summary.
    """
    target, task, metric = cfg.dataset.target, cfg.dataset.task, cfg.metric
    labelled = target in batch.columns and bool(batch[target].notna().any())
    out = ProductionMetrics(batch_id, champion.version if champion else None, labelled, metric)
    if champion is None:
        out.summary = f"batch {batch_id}: no champion yet, nothing to measure"
        return out
    floor = cfg.gates.metric_floor if cfg.gates.metric_floor is not None else gate_defaults.DEFAULT_FLOORS.get(metric)
    out.floor = floor
    batch, left_out = unseen_rows(champion, batch_id, batch, time_column=cfg.dataset.time_column)
    if batch.empty:
        out.summary = f"batch {batch_id}: {left_out}"
        return out
    if previous is not None:
        batch, _ = unseen_rows(previous, batch_id, batch, time_column=cfg.dataset.time_column)
    labelled = target in batch.columns and bool(batch[target].notna().any())
    out.labelled = labelled
    if holdout is not None:
        holdout = holdout_rows(holdout, champion.holdout_share, time_column=cfg.dataset.time_column)
    holdout_pair = scored_holdout(champion, holdout, target, task)
    if not labelled:
        if task == "classification":
            estimate = estimate_performance(metric if metric in ("roc_auc", "accuracy") else "accuracy",
                                            champion.scores(model_input(batch, target)), reference=holdout_pair)
            out.estimated_metric = float(estimate["estimate"])
            out.summary = (f"batch {batch_id}: no labels; champion v{champion.version} estimated "
                           f"{estimate['metric']} {out.estimated_metric:.3f} (confidence-based)")
        else:
            out.summary = f"batch {batch_id}: no labels and no label-free estimate for regression"
        return out

    rows = batch[batch[target].notna()]
    y = _labels(champion, rows, target, task)
    scores = champion.scores(model_input(rows, target))
    if concept is not None and concept.get("batch_metric") is not None:
        out.batch_metric, out.ci_low, out.ci_high = concept["batch_metric"], concept["ci_low"], concept["ci_high"]
        out.holdout_metric = concept["holdout_metric"]
        out.degraded = bool(concept["concept_drift"])
        out.detectors_fired = list(concept.get("detectors_fired") or [])
    else:
        out.batch_metric = score_metric(metric, y, scores)
    holdout_metric = out.holdout_metric
    if floor is not None and out.batch_metric is not None:
        higher = gates.HIGHER_IS_BETTER[metric]
        out.below_floor = bool(out.batch_metric < floor if higher else out.batch_metric > floor)
    parts = [f"champion v{champion.version} {metric} {out.batch_metric:.3f}"]
    if out.ci_low is not None:
        parts[0] += f" (95% CI {out.ci_low:.3f}–{out.ci_high:.3f}) vs {holdout_metric:.3f} on its holdout"
    if out.below_floor:
        parts.append(f"below the floor of {floor:g}")
    if out.degraded:
        parts.append("significantly worse than on its holdout" + (
            f" (detectors: {', '.join(out.detectors_fired)})" if out.detectors_fired else ""))

    if previous is not None:
        out.watch_previous_version = previous.version
        prev_scores = previous.scores(model_input(rows, target))
        verdict = gates.champion_comparison(
            metric, y, scores, prev_scores, tolerance=cfg.automation.rollback_tolerance,
            n_boot=cfg.gates.bootstrap_resamples,
        )
        out.watch_difference = float(verdict.metrics["difference"])
        out.watch_ci_low = float(verdict.metrics.get("ci_low", float("nan")))
        out.rollback_recommended = not verdict.passed
        parts.append(
            f"post-promotion watch vs v{previous.version}: difference {out.watch_difference:+.3f} "
            f"(95% CI from {out.watch_ci_low:+.3f})"
            + ("; significantly worse: roll back" if out.rollback_recommended else "; no significant loss")
        )
    absent = missing_classes_note(champion, y, metric) if task == "classification" else None
    if absent:
        parts.append(absent)
    out.summary = f"batch {batch_id}: " + "; ".join(parts)
    return out
