"""Which training window a candidate learns from, chosen by evidence. Pure Python.

No single window suits every stream: after a strong concept change the newest batches predict the
next one best, while on data whose population moves around, all history wins (measured in the README's
real-data benchmark). So a retrain fits a few variants of its window (the configured one, all history
with equal weights, recency weights with a few half-lives, the last k batches) and keeps the one that
predicts the newest labelled rows best. The choice is protected against luck: the variants are
ranked on the *older* half of the holdout, and a winner other than the configured window must also
beat it on the *newest* half, which played no part in the ranking; otherwise the configured window
is kept. The holdout is the gates' holdout, so no variant ever learns from it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from retrain_assets.core.scoring import holdout_scores
from retrain_assets.core.columns import BATCH_COLUMN
from retrain_assets.core.holdout import split_newest
from retrain_assets.core.performance import better_by, metric_with_ci, score_metric
from retrain_assets.core.registry import Champion
from retrain_assets.core.training import TrainedModel
from retrain_assets.core.training_window import TrainingWindow

DEFAULT_HALF_LIVES = (3.0, 1.0)
"""Recency half-lives (in batches) tried besides equal weights: a slow and a fast forgetting."""

MIN_CHOICE_ROWS = 200
"""Fewest labelled holdout rows to choose on (100 to rank on, 100 to confirm on); below this the
configured window is trained alone and the reason says so."""

INTERVAL_RESAMPLES = 200
"""Bootstrap resamples of each variant's interval on the whole holdout."""

Fit = Callable[[pd.DataFrame, "np.ndarray | None"], TrainedModel]


@dataclass(frozen=True)
class WindowVariant:
    """One way to choose the training rows: a name a person reads and the window it trains on."""

    name: str
    window: TrainingWindow


@dataclass
class VariantResult:
    """How one variant did.

    Attributes:
        name: The variant's name.
        window: Its window.
        rows: Labelled rows it trained on.
        seconds: Its fit time.
        earlier: Its metric on the older half of the holdout (the half the variants are ranked on).
        newest: Its metric on the newest half (where a winner must confirm).
        value: Its metric on the whole holdout, with ``low``/``high`` a 95% bootstrap interval.
        skipped: Why it was not fitted (too few rows, time budget), or None.
    """

    name: str
    window: TrainingWindow
    rows: int = 0
    seconds: float = 0.0
    earlier: float = float("nan")
    newest: float = float("nan")
    value: float = float("nan")
    low: float = float("nan")
    high: float = float("nan")
    skipped: str | None = None

    def row(self, chosen: str) -> dict[str, object]:
        """One row of the table shown on the candidate and recorded in MLflow."""
        r = lambda v: None if not np.isfinite(v) else round(float(v), 4)  # noqa: E731
        return {
            "window": self.name, "chosen": self.name == chosen, "training_batches": len(self.window.train_batches),
            "rows": self.rows, "earlier_half": r(self.earlier), "newest_half": r(self.newest), "holdout": r(self.value),
            "low": r(self.low), "high": r(self.high), "seconds": round(self.seconds, 2), "skipped": self.skipped or "",
        }


@dataclass
class WindowChoice:
    """The window a retrain trains on, why, and how every variant did.

    Attributes:
        window: The chosen window (its ``train_batches`` are the batches the model learnt from).
        name: The chosen variant's name.
        trained: The fitted model of the chosen variant.
        train_rows: The rows it learnt from.
        reason: One sentence: why this one.
        variants: Every variant, the chosen one included, in the order tried.
        metric: The metric they were compared on.
    """

    window: TrainingWindow
    name: str
    trained: TrainedModel
    train_rows: pd.DataFrame
    reason: str
    variants: list[VariantResult] = field(default_factory=list)
    metric: str = ""

    @property
    def seconds(self) -> float:
        """Fit seconds of every variant fitted: what the choice cost."""
        return float(sum(v.seconds for v in self.variants))

    @property
    def rows(self) -> list[dict[str, object]]:
        """The variants as table rows."""
        return [v.row(self.name) for v in self.variants]

    def as_json(self) -> str:
        """What the registered version's tag ``retrain.window_choice`` holds (at most 8 variants of bounded
        text: well under MLflow's tag limit)."""
        rows = [{**row, "skipped": str(row["skipped"])[:120]} for row in self.rows]
        return json.dumps({"chosen": self.name, "metric": self.metric, "reason": self.reason[:400], "variants": rows})


def window_variants(
    window: TrainingWindow,
    labelled_rows: Mapping[str, int],
    *,
    min_rows: int,
    limit: int,
    half_lives: Sequence[float] = DEFAULT_HALF_LIVES,
) -> list[WindowVariant]:
    """The windows a retrain chooses among, broadest first, the configured one (``window``) first.

    Besides the configured window: all of its batches with equal weights, recency weights for each
    half-life, and the last k batches with equal weights, k being the fewest newest batches that hold
    ``min_rows`` labelled rows (the data_sufficiency gate's minimum), so the narrowest variant is as
    narrow as the data allows. Variants equal to one already listed are dropped; at most ``limit``.

    Args:
        window: The configured window (it stays the default).
        labelled_rows: Labelled training rows per batch (:func:`labelled_rows`; for the newest batch, its
            learnt part only).
        min_rows: Fewest training rows (``training.min_rows``).
        limit: ``training.window_candidates``.
        half_lives: Recency half-lives to try, in batches.
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    out = [WindowVariant(describe(window, configured=True), window)]
    batches = list(window.train_batches)
    plain = dataclasses.replace(window, window="all", last_n=None, half_life=None)
    spans = len(batches) + (1 if window.holdout_share is not None else 0)  # batches whose rows it learns from
    tries = [plain, *(dataclasses.replace(plain, half_life=float(h)) for h in half_lives if spans >= 2)]
    # The last k batches: fewest newest that reach min_rows (the newest batch's learnt part counts).
    extra = 0
    if window.holdout_share is not None and window.holdout_batches:
        extra = int(labelled_rows.get(window.holdout_batches[-1], 0))
    total, k = extra, 0
    for batch in reversed(batches):
        if total >= min_rows:
            break
        total += int(labelled_rows.get(batch, 0))
        k += 1
    k = max(k, 1)  # at least one whole batch: the drift reference is the batches a model trained on
    if k < len(batches):
        tries.append(dataclasses.replace(plain, train_batches=batches[-k:], window="last_n_batches", last_n=k))
    seen = {_key(window)}
    for candidate in tries:
        if len(out) >= limit:
            break
        if _key(candidate) in seen:
            continue
        seen.add(_key(candidate))
        out.append(WindowVariant(describe(candidate), candidate))
    return out


def labelled_rows(train_rows: pd.DataFrame, target: str) -> dict[str, int]:
    """Labelled training rows per batch."""
    labelled = train_rows[train_rows[target].notna()] if target in train_rows.columns else train_rows.iloc[:0]
    return {str(b): int(n) for b, n in labelled.groupby(BATCH_COLUMN, sort=False).size().items()}


def _key(window: TrainingWindow) -> tuple:
    return tuple(window.train_batches), window.half_life, window.holdout_share


def describe(window: TrainingWindow, *, configured: bool = False) -> str:
    """A variant's name: "all 7 batches", "last 2 batches", "all 7 batches, half-life 3"."""
    n = len(window.train_batches)
    newest = " + oldest part of the newest" if window.holdout_share is not None else ""
    if window.window == "last_n_batches":
        base = f"last {n} batch{'es' if n != 1 else ''}{newest}"
    elif window.window == "last_n_rows":
        base = f"last {window.last_n} rows"
    else:
        base = f"all {n} batch{'es' if n != 1 else ''}{newest}"
    weights = f", half-life {window.half_life:g}" if window.half_life is not None else ""
    return f"{base}{weights}" + (" (configured)" if configured else "")


def rows_of(window: TrainingWindow, train_rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``train_rows`` (the configured window's) that a variant learns from."""
    keep = set(window.train_batches) | (set(window.holdout_batches) if window.holdout_share is not None else set())
    if BATCH_COLUMN not in train_rows.columns:
        raise ValueError(f"choosing a window needs the {BATCH_COLUMN} column")
    return train_rows[train_rows[BATCH_COLUMN].astype(str).isin(keep)].reset_index(drop=True)


def choose_training_window(
    variants: Sequence[WindowVariant],
    train_rows: pd.DataFrame,
    holdout: pd.DataFrame,
    *,
    fit: Fit,
    task: str,
    target: str,
    metric: str,
    rows_problem: Callable[[pd.DataFrame], str | None] = lambda rows: None,
    budget_seconds: float = float("inf"),
    time_column: str | None = None,
    seed: int = 0,
    clock: Callable[[], float] = time.perf_counter,
) -> WindowChoice:
    """Fit each variant and keep the one that predicts the newest labelled rows best, by evidence.

    The first variant (the configured window) is always fitted and is the default. The others are
    fitted in order while the time budget lasts, and skipped (with the reason) when their rows would
    fail the data_sufficiency gate (``rows_problem``). The holdout's labelled rows are split in time:
    the variants are ranked on the older half; a winner other than the default is kept only if it also
    beats the default on the newest half. With fewer than :data:`MIN_CHOICE_ROWS` labelled holdout
    rows, or one variant, the default is trained alone.

    Args:
        variants: From :func:`window_variants`, the default first.
        train_rows: The default window's training rows (with ``_batch_id``).
        holdout: The holdout rows (the gates' holdout; no variant learns from it).
        fit: Fits a model on (rows, sample weights).
        task, target, metric: The dataset's.
        rows_problem: Why a variant's rows cannot be trained on, or None.
        budget_seconds: Fit seconds the extra variants may use in all (``training.window_budget_seconds``).
        time_column: Orders the holdout rows within a batch.
        seed: Bootstrap seed of the intervals.
        clock: Seconds (tests pass a fake).

    Returns:
        The choice.
    """
    if not variants:
        raise ValueError("no window variant to train")
    labelled = holdout[holdout[target].notna()].reset_index(drop=True)
    default = variants[0]
    if len(variants) == 1 or len(labelled) < MIN_CHOICE_ROWS:
        rows = rows_of(default.window, train_rows)
        trained = fit(rows, default.window.weights(rows))
        why = ("only the configured window applies" if len(variants) == 1 else
               f"the holdout has {len(labelled)} labelled rows, fewer than the {MIN_CHOICE_ROWS} a fair choice needs")
        result = VariantResult(default.name, default.window, trained.n_rows, trained.seconds)
        return WindowChoice(default.window, default.name, trained, rows, f"trained on {default.name}: {why}",
                            [result], metric)
    earlier, newest = split_newest(labelled, 0.5, time_column=time_column)
    labelled = pd.concat([earlier, newest], ignore_index=True)  # in time order: its first rows are the older half
    results: list[VariantResult] = []
    fitted: dict[str, tuple[TrainedModel, pd.DataFrame]] = {}
    start = clock()
    for i, variant in enumerate(variants):
        result = VariantResult(variant.name, variant.window)
        results.append(result)
        rows = rows_of(variant.window, train_rows)
        result.rows = int(rows[target].notna().sum()) if target in rows.columns else 0
        spent = clock() - start
        if i > 0 and spent >= budget_seconds:
            result.skipped = f"time budget spent ({spent:.0f} s of {budget_seconds:g} s)"
            continue
        problem = rows_problem(rows) if i > 0 else None
        if problem:
            result.skipped = problem
            continue
        trained = fit(rows, variant.window.weights(rows))
        result.seconds = trained.seconds
        fitted[variant.name] = (trained, rows)
        model = Champion("window", variant.name, trained.pipeline, None)
        scores = holdout_scores(task, target, model, None, labelled)
        n_old = len(earlier)
        result.earlier = score_metric(metric, scores.y_true[:n_old], scores.candidate_scores[:n_old])
        result.newest = score_metric(metric, scores.y_true[n_old:], scores.candidate_scores[n_old:])
        estimate = metric_with_ci(metric, scores.y_true, scores.candidate_scores, n_boot=INTERVAL_RESAMPLES,
                                  seed=seed)
        result.value, result.low, result.high = estimate.value, estimate.low, estimate.high
    ranked = [r for r in results if r.skipped is None and np.isfinite(r.earlier)]
    base = results[0]
    best = base
    for r in ranked:  # broadest first: a tie keeps the broader window
        if better_by(metric, r.earlier, best.earlier) > 0:
            best = r
    if best is base:
        reason = (f"{base.name} ranked first on the older half of the holdout ({metric} {_f(base.earlier)}); "
                  f"{len(ranked) - 1} other window(s) tried")
    else:
        gain_earlier = better_by(metric, best.earlier, base.earlier)
        gain_newest = better_by(metric, best.newest, base.newest)
        if gain_newest > 0:
            reason = (f"{best.name} beat {base.name} on the older half of the holdout by {_f(gain_earlier)} "
                      f"{metric} and confirmed it on the newest half by {_f(gain_newest)}")
        else:
            reason = (f"{best.name} ranked first on the older half (+{_f(gain_earlier)} {metric}) but not on the "
                      f"newest half ({_f(gain_newest)}): kept {base.name}, as a win on one half may be luck")
            best = base
    trained, rows = fitted[best.name]
    return WindowChoice(best.window, best.name, trained, rows, reason, results, metric)


def _f(value: float) -> str:
    return f"{value:+.4f}" if value < 0 else f"{value:.4f}"
