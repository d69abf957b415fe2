"""Label quality: a labelled batch whose labels cannot be trusted is held out of training until a person decides.

Two kinds of suspect labels, each judged once, in ``drift_report`` (where the champion scores the batch):

* **one value** — every labelled row carries the same class (or the same number) where the
  reference knew several: an export that filled the column with a default.
* **against the features** — the champion scores the batch significantly *below* chance (the upper
  end of its ROC AUC interval under 0.5, i.e. it ranks the classes the wrong way round), or its
  predicted class equals the label significantly less often than predictions unrelated to the
  labels would (accuracy and f1 deployments, binary or multiclass: permuted class codes), or, for
  regression, its RMSE interval lies entirely above 1.5× the labels' own spread (predicting the mean
  would do far better; for ``mae``, above 1.5× their mean absolute deviation): inverted or misaligned labels. Real concept drift moves a model towards
  chance, not past it.

A flagged batch counts as unlabelled for training windows, first-champion plans and retrain
triggers until a person accepts it (``review_labels`` job); a rejected one stays out for good.
Pure Python, no Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

MIN_ROWS = 30  # fewer labelled rows than this say too little to doubt them
CHANCE_AUC = 0.5
REGRESSION_SPREAD_FACTOR = 1.5
STATUSES = ("flagged", "accepted", "rejected")
HELD = ("flagged", "rejected")  # statuses that keep a batch's labels out of training and triggers


@dataclass(frozen=True)
class Agreement:
    """How often the champion's predicted class equals the label, against what chance gives.

    Attributes:
        n: Labelled rows compared.
        accuracy: Share of rows whose predicted class is the label.
        high: Upper end of its 95% (Wilson) interval.
        chance: Accuracy of predictions independent of the labels with the same class shares:
            Σ_k share_predicted(k) · share_labels(k).
    """

    n: int
    accuracy: float
    high: float
    chance: float

    @property
    def below_chance(self) -> bool:
        return self.n >= MIN_ROWS and self.high < self.chance


def agreement(label_codes: np.ndarray, scores: np.ndarray) -> Agreement | None:
    """The champion's agreement with the labels (classification); None without labelled rows.

    ``label_codes`` as :meth:`Champion.label_codes` gives them (−1: a class the model does not
    know), ``scores`` the positive-class probability (binary) or the probability matrix.
    """
    codes = np.asarray(label_codes)
    scores = np.asarray(scores, dtype=float)
    predicted = (scores >= 0.5).astype(int) if scores.ndim == 1 else scores.argmax(axis=1)
    n = len(codes)
    if n == 0:
        return None
    k = max(int(codes.max(initial=0)), int(predicted.max(initial=0))) + 1
    label_share = np.bincount(codes[codes >= 0], minlength=k) / n
    predicted_share = np.bincount(predicted, minlength=k) / n
    chance = float(label_share @ predicted_share)
    accuracy = float(np.mean(predicted == codes))
    z = 1.959964
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Agreement(n=n, accuracy=accuracy, high=float(centre + half), chance=chance)


@dataclass(frozen=True)
class LabelVerdict:
    """Why a batch's labels are suspect.

    Attributes:
        kind: ``one_value`` or ``against_features``.
        reason: The sentence a person reads, with the numbers.
    """

    kind: str
    reason: str


def label_verdict(
    labels: pd.Series,
    *,
    task: str,
    known_classes: Sequence[Any] | None,
    metric: str | None = None,
    metric_value: float | None = None,
    metric_low: float | None = None,
    metric_high: float | None = None,
    agreement: Agreement | None = None,
) -> LabelVerdict | None:
    """Judge a batch's labels; None when nothing is suspect (or too few labelled rows to say).

    Args:
        labels: The batch's target column (null for rows whose label has not arrived).
        task: classification or regression.
        known_classes: The classes the schema knows (classification).
        metric: The champion's metric on the batch (``roc_auc``, ``rmse``, ...), if scored.
        metric_value, metric_low, metric_high: Its value and confidence interval.
        agreement: The champion's predicted classes against the labels (classification): judged
            for every metric, so accuracy/f1 deployments and multiclass models are covered too.

    Returns:
        The verdict, or None.
    """
    present = labels.dropna()
    n = len(present)
    if n < MIN_ROWS:
        return None
    if task == "classification":
        distinct = present.astype(str).unique()
        if len(distinct) == 1 and known_classes is not None and len(known_classes) > 1:
            return LabelVerdict(
                "one_value",
                f"all {n} labels are {distinct[0]!r} where the reference has classes {list(known_classes)}: "
                "a default filled in by the export?",
            )
        if metric == "roc_auc" and metric_high is not None and metric_high < CHANCE_AUC:
            return LabelVerdict(
                "against_features",
                f"the champion's roc_auc on these labels is {metric_value:.3f} (95% CI {metric_low:.3f}–{metric_high:.3f}), "
                "significantly below chance (0.5): the labels look inverted or misaligned with the features",
            )
        if metric != "roc_auc" and agreement is not None and agreement.below_chance:  # roc_auc: the rule above
            return LabelVerdict(
                "against_features",
                f"the champion's predicted class equals the label on {agreement.accuracy:.1%} of {agreement.n} rows "
                f"(95% CI up to {agreement.high:.1%}), significantly below the {agreement.chance:.1%} that predictions "
                "unrelated to the labels would get: the labels look permuted or misaligned with the features",
            )
        return None
    spread = float(np.std(pd.to_numeric(present, errors="coerce").dropna()))
    if spread == 0:
        return LabelVerdict("one_value", f"all {n} labels are {present.iloc[0]!r}: a default filled in by the export?")
    if metric == "mae" and metric_low is not None:
        values = pd.to_numeric(present, errors="coerce").dropna()
        deviation = float(np.mean(np.abs(values - values.median())))
        if metric_low > REGRESSION_SPREAD_FACTOR * deviation:
            return LabelVerdict(
                "against_features",
                f"the champion's mae on these labels is {metric_value:.4g} (95% CI {metric_low:.4g}–{metric_high:.4g}), "
                f"above {REGRESSION_SPREAD_FACTOR}× the labels' own mean absolute deviation ({deviation:.4g}; predicting "
                "their median does far better): the labels look misaligned with the features",
            )
    if metric == "rmse" and metric_low is not None and metric_low > REGRESSION_SPREAD_FACTOR * spread:
        return LabelVerdict(
            "against_features",
            f"the champion's rmse on these labels is {metric_value:.4g} (95% CI {metric_low:.4g}–{metric_high:.4g}), "
            f"above {REGRESSION_SPREAD_FACTOR}× the labels' own spread ({spread:.4g}; predicting their mean does "
            "far better): the labels look misaligned with the features",
        )
    return None
