"""Scoring a candidate and the champion on the same holdout rows, new to both. Pure Python.

The gates (:mod:`retrain_assets.core.candidate`), the window choice and the backtester all score
models through :func:`holdout_scores`, on rows :func:`comparable_holdout` keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from retrain_assets.core.columns import BATCH_COLUMN, model_input
from retrain_assets.core.holdout import unseen_rows
from retrain_assets.core.registry import Champion
from retrain_assets.core.schema import normalise_labels


@dataclass
class HoldoutScores:
    """Both models on the same holdout rows.

    Attributes:
        y_true: 0/1 with the candidate's positive class as 1 (binary), class indices (multiclass,
            see :meth:`Champion.label_codes`) or values.
        candidate_scores: Positive-class probabilities, a probability matrix (multiclass) or predictions.
        candidate_pred: Class labels or predictions.
        champion_scores: The champion's, or None without a champion.
        champion_pred: The champion's labels/predictions, or None.
        positive_class: The class scored as 1 (classification), else None.
    """

    y_true: np.ndarray
    candidate_scores: np.ndarray
    candidate_pred: np.ndarray
    champion_scores: np.ndarray | None
    champion_pred: np.ndarray | None
    positive_class: Any = None


class IncomparableModels(ValueError):
    """The champion cannot be scored like the candidate (e.g. other classes)."""


def labels_of(frame: pd.DataFrame, target: str, task: str) -> pd.Series:
    y = frame[target]
    if task == "classification":
        return normalise_labels(y)
    return pd.to_numeric(y, errors="coerce")


def comparable_holdout(holdout: pd.DataFrame, champion: Champion | None, *, time_column: str | None = None
                       ) -> pd.DataFrame:
    """The holdout rows the champion never trained on (:func:`~retrain_assets.core.holdout.unseen_rows`),
    so that candidate and champion are compared on rows new to both: a champion that learnt from part
    of the newest batch is not judged on that part.

    Raises:
        IncomparableModels: the champion trained on every holdout row (wait for a new labelled batch).
    """
    if champion is None or holdout.empty or BATCH_COLUMN not in holdout.columns:
        return holdout
    kept = [unseen_rows(champion, str(b), part, time_column=time_column)[0]
            for b, part in holdout.groupby(BATCH_COLUMN, sort=False)]
    rows = pd.concat(kept).reset_index(drop=True)
    if rows.empty:
        raise IncomparableModels(f"the champion (v{champion.version}) trained on every row of the holdout; they "
                                 "cannot be compared fairly until a new labelled batch arrives")
    return rows


def holdout_scores(
    task: str, target: str, candidate: Champion, champion: Champion | None, holdout: pd.DataFrame
) -> HoldoutScores:
    """Score the candidate and the champion on the labelled holdout rows.

    Args:
        task: classification (binary or multiclass) or regression.
        target: The label column.
        candidate: The trained candidate (wrapped as a :class:`Champion` for its scoring).
        champion: The production model, or None.
        holdout: The holdout rows as stored (target included).

    Returns:
        The scores.

    Raises:
        IncomparableModels: When the champion's classes differ from the candidate's.
        ValueError: When the holdout has no labelled rows.
    """
    rows = holdout[holdout[target].notna()].reset_index(drop=True)
    if rows.empty:
        raise ValueError(f"the holdout has no labelled rows (target {target!r} is missing everywhere)")
    X = model_input(rows, target)
    y = labels_of(rows, target, task)
    cand_scores = candidate.scores(X)
    with threadpool_limits(1):  # see Champion.scores: default OpenMP threads stall on a busy machine
        cand_pred = np.asarray(candidate.model.predict(X))
    positive = None
    if task == "classification":
        classes = candidate.classes
        positive = classes[1] if len(classes) == 2 else None  # multiclass: scores are a matrix, labels indices
        y_true = candidate.label_codes(y)
    else:
        y_true = y.to_numpy(dtype=float)
    champ_scores = champ_pred = None
    if champion is not None:
        if task == "classification":
            theirs = [v.item() if hasattr(v, "item") else v for v in getattr(champion.model, "classes_", [])]
            ours = [v.item() if hasattr(v, "item") else v for v in candidate.model.classes_]
            if theirs != ours:
                raise IncomparableModels(
                    f"the champion (v{champion.version}) predicts classes {theirs} but the candidate {ours}; "
                    "they cannot be compared on the same holdout"
                )
        champ_scores = champion.scores(X)
        with threadpool_limits(1):
            champ_pred = np.asarray(champion.model.predict(X))
    return HoldoutScores(y_true, cand_scores, cand_pred, champ_scores, champ_pred, positive)
