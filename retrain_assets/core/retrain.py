"""One retrain, the parts that need no Dagster: which data the candidate learns from and is held out
on, and what is recorded on its registered version (lineage and gate verdicts). candidate_model
calls these; training itself is :mod:`retrain_assets.core.training`, judging :mod:`retrain_assets.core.candidate`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import duckdb
import pandas as pd

from retrain_assets.core import label_store, metrics_store, registry as reg, storage
from retrain_assets.core.gates import GateResult
from retrain_assets.core.memory_budget import MemoryBudget
from retrain_assets.core.training import TrainedModel, train as train_model
from retrain_assets.core.training_data import check_training_data
from retrain_assets.core.training_window import TrainingWindow, select_training_window
from retrain_assets.core.window_choice import (
    DEFAULT_HALF_LIVES,
    WindowChoice,
    choose_training_window,
    labelled_rows,
    window_variants,
)


class CannotTrain(ValueError):
    """Nothing can be trained now; the message says why. The champion is untouched."""


@dataclass
class TrainingData:
    """What one retrain learns from and is judged on.

    Attributes:
        window: The batches trained on and held out, with their weights.
        train: The training rows.
        holdout: The newest labelled rows, held out (time-ordered).
        drift_reports: Every stored drift report (for the stability gate's waiver).
        plan: The first champion's plan, in words, when there is no champion yet (else None).
        sampling: How the rows were sampled, in words, when the window holds more labelled rows
            than ``training.max_rows`` (else None; :func:`storage.read_validated_sample`).
    """

    window: TrainingWindow
    train: pd.DataFrame
    holdout: pd.DataFrame
    drift_reports: pd.DataFrame
    plan: str | None = None
    sampling: str | None = None


def read_capped(conn: duckdb.DuckDBPyConnection, cfg, batch_ids: list[str]) -> storage.ValidatedSample:
    """Valid rows of these batches as a retrain reads them: at most ``training.max_rows`` labelled rows,
    a seeded sample (``model.seed``) beyond (:func:`storage.read_validated_sample`)."""
    return storage.read_validated_sample(conn, batch_ids, target=cfg.dataset.target,
                                         max_rows=cfg.training.max_rows, seed=cfg.model.seed)


def champion_holdout(conn: duckdb.DuckDBPyConnection, cfg, champion: reg.Champion | None,
                     passed: list[str] | set[str]) -> pd.DataFrame | None:
    """The champion's holdout rows as its retrain read them (the same sample, from its holdout batches
    still passed), or None without a champion: what drift_report and production_metrics prime with."""
    if champion is None:
        return None
    return read_capped(conn, cfg, [b for b in champion.holdout_batches if b in passed]).rows


def training_data(conn: duckdb.DuckDBPyConnection, cfg, *, trigger: str, has_champion: bool) -> TrainingData:
    """The training window for a retrain launched by ``trigger``, read from the warehouse.

    Without a champion the first-champion plan decides (the drift sensor's own rule): as soon as the
    labelled rows allow, part of the newest batch is held out. Training and holdout rows are each read
    whole up to ``training.max_rows`` labelled rows, beyond it as a seeded sample drawn in DuckDB with
    each batch in proportion (:func:`storage.read_validated_sample`); with ``last_n_rows`` the cut
    is then made on the sample.

    Raises:
        CannotTrain: too little labelled data, or no window can be chosen.
    """
    labelled = label_store.labelled_batches(conn)
    adaptation = cfg.training.adaptation(trigger)
    plan = None
    if not has_champion:
        first = cfg.training.first_champion_plan(label_store.labelled_row_counts(conn, cfg.dataset.target))
        if not first.ready and sum(labelled.values()) < 2:
            raise CannotTrain(f"cannot train: {first.reason}. The champion is untouched.")
        if first.ready:
            adaptation = {"holdout_share": first.holdout_share, "half_life": None}
            plan = first.reason
    try:
        window = select_training_window(
            list(labelled), labelled, window=cfg.training.window, last_n=cfg.training.last_n, **adaptation,
        )
    except ValueError as error:
        raise CannotTrain(f"cannot train: {error}") from None
    MemoryBudget(cfg.storage.memory_limit_mb).apply(conn)  # DuckDB draws the sample within its share
    train_rows = read_capped(conn, cfg, window.train_batches)
    holdout_rows = read_capped(conn, cfg, window.holdout_batches)
    train, holdout = window.frames(train_rows.rows, holdout_rows.rows, time_column=cfg.dataset.time_column)
    sampling = "; ".join(f"{what}: {s.summary}" for what, s in (("training", train_rows), ("holdout", holdout_rows))
                         if s.summary) or None
    return TrainingData(window, train, holdout, metrics_store.read_drift_reports(conn), plan, sampling)


def fit_candidate(cfg, schema, window: TrainingWindow, train: pd.DataFrame, holdout: pd.DataFrame, *,
                  choose: bool = True) -> WindowChoice:
    """Train the candidate of a retrain: on the window chosen by evidence among the variants of
    ``window`` (:mod:`retrain_assets.core.window_choice`), or on ``window`` alone when ``choose`` is
    false or the config forces it (``training.window`` set, or ``training.window_candidates: 1``).

    candidate_model and the backtester's platform policy both train through this.

    Args:
        cfg: The settings.
        schema: The dataset schema.
        window: The configured window (:func:`training_data`).
        train: Its training rows.
        holdout: Its holdout rows (the gates'; no variant learns from them).
        choose: Whether to choose among variants at all.
    """
    training, target, task = cfg.training, cfg.dataset.target, cfg.dataset.task
    limit = training.window_candidates if choose and training.chooses_window else 1
    half_lives = tuple(dict.fromkeys((training.recency_half_life_batches or DEFAULT_HALF_LIVES[0], *DEFAULT_HALF_LIVES)))
    variants = window_variants(window, labelled_rows(train, target), min_rows=training.min_rows, limit=limit,
                               half_lives=half_lives)

    def fit(rows: pd.DataFrame, weights) -> TrainedModel:
        return train_model(rows, schema, target, task, cfg.model.estimator, cfg.model.params, cfg.model.seed,
                           sample_weight=weights)

    def rows_problem(rows: pd.DataFrame) -> str | None:
        problems = check_training_data(rows, schema, target, task, min_rows=training.min_rows,
                                       min_rows_per_class=training.min_rows_per_class)
        return "; ".join(problems) or None

    return choose_training_window(
        variants, train, holdout, fit=fit, task=task, target=target, metric=cfg.metric, rows_problem=rows_problem,
        budget_seconds=training.window_budget_seconds, time_column=cfg.dataset.time_column, seed=cfg.model.seed,
    )


def run_params(cfg, window: TrainingWindow) -> dict[str, Any]:
    """The tracking run's parameters: estimator, seed, task, metric, window and model parameters."""
    params = {
        "estimator": cfg.model.estimator, "seed": cfg.model.seed, "task": cfg.dataset.task,
        "target": cfg.dataset.target, "metric": cfg.metric, "training_window": window.window,
        "training_last_n": window.last_n,
        "holdout_share": window.holdout_share if window.holdout_share is not None else 1.0,
        "recency_half_life_batches": window.half_life,
        **{f"model.{k}": v for k, v in cfg.model.params.items()},
    }
    return {k: ("none" if v is None else v) for k, v in params.items()}


def lineage_tags(
    window: TrainingWindow, *, metric: str, holdout_value: float, fingerprint: str, code_version: str, run_id: str,
    trigger: str, reason: str, launched_by: str, champion_version: str | None, window_choice: str | None = None,
) -> dict[str, str]:
    """What a registered version was trained on, held out on and judged against, why it was made, and
    (``window_choice``, :meth:`WindowChoice.as_json`) which training windows it was chosen among."""
    return {
        **({reg.TAG_WINDOW_CHOICE: window_choice} if window_choice is not None else {}),
        reg.TAG_TRAINING_BATCHES: json.dumps(window.train_batches),
        reg.TAG_HOLDOUT_BATCHES: json.dumps(window.holdout_batches),
        reg.TAG_METRIC: metric,
        reg.TAG_HOLDOUT_METRIC: repr(holdout_value),
        **({reg.TAG_HOLDOUT_SHARE: repr(window.holdout_share)} if window.holdout_share is not None else {}),
        reg.TAG_DATA_FINGERPRINT: fingerprint,
        reg.TAG_CODE_VERSION: code_version,
        reg.TAG_DAGSTER_RUN: run_id,
        reg.TAG_TRIGGER: trigger,
        reg.TAG_REASON: reason,
        reg.TAG_COMPARED_TO: champion_version or "none",
        "retrain.launched_by": launched_by,
    }


def gate_tags(results: list[GateResult]) -> dict[str, str]:
    """The gate verdicts recorded on a version: production_model promotes only ``gates_passed`` true."""
    failed = [r.name for r in results if not r.passed]
    return {
        reg.TAG_GATES_PASSED: "false" if failed else "true",
        reg.TAG_FAILED_GATES: ",".join(failed),
        reg.TAG_GATES: json.dumps([
            {"gate": r.name, "passed": bool(r.passed), "waived": bool(r.waived), "summary": r.summary[:400]}
            for r in results
        ]),
    }
