"""Train a candidate model: which batches it learns from, whether the data can be learnt from,
and a seeded scikit-learn pipeline that takes a batch exactly as it lands. Pure Python (no Dagster,
no MLflow).

* :func:`select_training_window` — every labelled batch except the newest one, which is the
  time-based holdout the promotion gates judge the candidate on (optionally only the last N
  batches; :func:`last_n_rows` cuts the frame to the newest N rows instead).
* :func:`check_training_data` / :func:`require_training_data` — too few rows, a missing class,
  a target of the wrong kind, an empty or constant feature: named, all at once, before fitting.
* :func:`build_pipeline` — imputation, scaling and one-hot encoding selected by the schema's
  column kinds (id and time columns are dropped inside the pipeline, so the model accepts the
  batch as landed minus the target), then one estimator from :data:`ESTIMATORS`.
* :func:`train` — fit it, timed, with its peak memory, and :func:`data_fingerprint` of what it
  learnt from for lineage.

Example:
    >>> from retrain_assets.core.schema import infer_schema
    >>> from retrain_assets.core.synthetic import make_batch
    >>> frame = make_batch(500, seed=0)
    >>> schema = infer_schema(frame, target="churned", task="classification",
    ...                       time_column="event_time", id_columns=["customer_id"])
    >>> model = train(frame, schema, "churned", "classification", "logistic_regression", seed=0)
    >>> model.classes
    (0, 1)
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Collection, Literal, Mapping

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from retrain_assets.core.columns import BATCH_COLUMN, INTERNAL_COLUMNS, ROW_COLUMN, model_input
from retrain_assets.core.holdout import split_newest
from retrain_assets.core.schema import DatasetSchema, normalise_labels, numeric_parse

Task = Literal["classification", "regression"]

ESTIMATORS: dict[str, dict[str, Callable[..., BaseEstimator]]] = {
    "classification": {
        "hist_gradient_boosting": HistGradientBoostingClassifier,
        "random_forest": RandomForestClassifier,
        # lbfgs stops at 100 iterations by default and warns on one-hot + scaled inputs now and then.
        "logistic_regression": partial(LogisticRegression, max_iter=1000),
    },
    "regression": {
        "hist_gradient_boosting": HistGradientBoostingRegressor,
        "random_forest": RandomForestRegressor,
        "ridge": Ridge,
        "linear": LinearRegression,
    },
}
"""Estimator names per task → builders of an unfitted estimator with our defaults."""

DEFAULT_ESTIMATOR = {"classification": "hist_gradient_boosting", "regression": "hist_gradient_boosting"}
"""Gradient-boosted trees: strong on tabular data without tuning, fast, and they handle NaN."""

DEFAULT_MIN_ROWS = 200
"""Fewest labelled training rows: below this a holdout-based comparison is mostly noise."""

DEFAULT_MIN_ROWS_PER_CLASS = 20
"""Fewest rows of each class: a classifier cannot learn (nor be judged on) a class it barely saw."""

MIN_CATEGORY_ROWS = 5
"""One-hot encoding: categories seen in fewer training rows share one "infrequent" column."""

MAX_CATEGORIES_PER_COLUMN = 20
"""One-hot encoding: at most this many columns per categorical feature (the rarest are grouped),
so a high-cardinality column cannot blow up the model's width."""

DEFAULT_MAX_THREADS = 1
"""OpenMP/BLAS threads during a fit. One: with one other busy process on a 2-core machine,
HistGradientBoosting on 10k rows took 6–112 s with the default threads (OpenMP's threads spin
waiting for a core) and 0.8 s with one; idle, 0.24 s vs 0.26 s (measured 2026-11)."""

MIN_LABELLED_BATCHES = 2
"""One batch to train on plus the newest one as the holdout."""

HOLDOUTS = ("last_batch",)
LEARN_NEWEST_DEFAULT_SHARE = 0.5
"""Share of the newest labelled batch held out when a retrain also learns from that batch."""
WINDOWS = ("all", "last_n_batches", "last_n_rows")

PIPELINE_FEATURES = "features"
PIPELINE_MODEL = "model"


# --------------------------------------------------------------------------
# Estimators and the pipeline
# --------------------------------------------------------------------------


def _check_task(task: str) -> None:
    if task not in ESTIMATORS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(ESTIMATORS)}")


def make_estimator(task: Task, estimator: str, params: Mapping[str, Any] | None = None, seed: int = 0) -> BaseEstimator:
    """One unfitted estimator with ``random_state=seed`` (where it has one) and ``params`` applied.

    Args:
        task: classification or regression.
        estimator: A name from ``ESTIMATORS[task]``.
        params: Constructor parameters (e.g. ``{"max_depth": 6}``); the seed is given by ``seed``.
        seed: Random seed.

    Returns:
        The estimator.

    Raises:
        ValueError: For an unknown task or estimator name (listing the valid ones), an unknown
            parameter (listing the estimator's parameters), or ``random_state`` in ``params``.
    """
    _check_task(task)
    builders = ESTIMATORS[task]
    if estimator not in builders:
        other = "regression" if task == "classification" else "classification"
        hint = f" ({estimator!r} is a {other} estimator)" if estimator in ESTIMATORS[other] else ""
        raise ValueError(
            f"unknown {task} estimator {estimator!r}{hint}; choose one of {sorted(builders)}"
        )
    model = builders[estimator]()
    valid = model.get_params(deep=False)
    params = dict(params or {})
    if "random_state" in params:
        raise ValueError(f"pass the seed as seed={params['random_state']!r}, not as params['random_state']")
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} for {estimator} ({type(model).__name__}); "
            f"valid parameters: {sorted(valid)}"
        )
    if "random_state" in valid:
        params["random_state"] = seed
    return model.set_params(**params)


def feature_columns(schema: DatasetSchema) -> tuple[list[str], list[str]]:
    """The schema's numeric and categorical columns (what the pipeline selects), in file order.

    The target and the platform columns (``_batch_id``, ``_row``) are never features, even if a
    schema inferred from a stored frame lists them.
    """
    never = {schema.target, *INTERNAL_COLUMNS}
    numeric = [c.name for c in schema.columns if c.kind == "numeric" and c.name not in never]
    categorical = [c.name for c in schema.columns if c.kind == "categorical" and c.name not in never]
    return numeric, categorical


def build_pipeline(
    schema: DatasetSchema, estimator: str, params: Mapping[str, Any] | None = None, seed: int = 0
) -> Pipeline:
    """The unfitted model: feature preparation chosen by column kind, then the estimator.

    Numeric columns: median imputation, then standard scaling. Categorical columns: most-frequent
    imputation of NaN (a ``None`` passes through and is one-hot encoded as its own value), then
    one-hot encoding that ignores categories unseen in training and groups rare ones
    (:data:`MIN_CATEGORY_ROWS`, :data:`MAX_CATEGORIES_PER_COLUMN`). Every other column (ids, the
    time column, platform columns) is dropped, so the pipeline takes a batch as it lands.

    Args:
        schema: The dataset schema (its task and column kinds).
        estimator: A name from ``ESTIMATORS[schema.task]``.
        params: Estimator parameters.
        seed: Random seed of the estimator (the preparation steps are deterministic).

    Returns:
        A scikit-learn pipeline with steps ``features`` and ``model``.

    Raises:
        ValueError: See :func:`make_estimator`; also when the schema has no feature columns.
    """
    model = make_estimator(schema.task, estimator, params, seed)
    numeric, categorical = feature_columns(schema)
    if not numeric and not categorical:
        raise ValueError("the schema has no numeric or categorical columns to train on (only ids/time)")
    steps = []
    if numeric:
        steps.append(("numeric", Pipeline([
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler()),
        ]), numeric))
    if categorical:
        steps.append(("categorical", Pipeline([
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("encode", OneHotEncoder(
                handle_unknown="ignore",
                min_frequency=MIN_CATEGORY_ROWS,
                max_categories=MAX_CATEGORIES_PER_COLUMN,
                sparse_output=False,  # HistGradientBoosting does not take sparse input; the width is bounded
            )),
        ]), categorical))
    features = ColumnTransformer(steps, remainder="drop", sparse_threshold=0.0)
    return Pipeline([(PIPELINE_FEATURES, features), (PIPELINE_MODEL, model)])


# --------------------------------------------------------------------------
# Which data
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingWindow:
    """Which batches a candidate learns from and which it is judged on.

    Attributes:
        train_batches: Labelled batches to fit on, in arrival order.
        holdout_batches: The newest labelled batch(es): the time-based holdout.
        window: How the training batches were chosen (``all``, ``last_n_batches``, ``last_n_rows``).
        last_n: N for the ``last_n_*`` windows.
    """

    train_batches: list[str]
    holdout_batches: list[str]
    window: str = "all"
    last_n: int | None = None
    holdout_share: float | None = None
    half_life: float | None = None

    @property
    def summary(self) -> str:
        """One sentence."""
        rows = f"; then the newest {self.last_n} rows of them" if self.window == "last_n_rows" else ""
        weights = (f"; a batch weighs half as much for every {self.half_life:g} newer batches"
                   if self.half_life is not None else "")
        if self.holdout_share is None:
            return (
                f"train on {len(self.train_batches)} batch(es) {_span(self.train_batches)}{rows}, "
                f"hold out {_span(self.holdout_batches)}{weights}"
            )
        return (
            f"train on {len(self.train_batches)} batch(es) {_span(self.train_batches)}{rows} and the oldest "
            f"{1 - self.holdout_share:.0%} of {_span(self.holdout_batches)}, hold out its newest "
            f"{self.holdout_share:.0%}{weights}"
        )

    def weights(self, train_rows: pd.DataFrame) -> np.ndarray | None:
        """One sample weight per training row, 0.5 ** (age / half_life) where age counts the window's batches newer than the row's
        (the newest batch trained on has age 0); None without a half-life.

        Raises:
            ValueError: Rows without a ``_batch_id`` or from a batch outside the window.
        """
        if self.half_life is None:
            return None
        if BATCH_COLUMN not in train_rows.columns:
            raise ValueError(f"recency weights need the {BATCH_COLUMN} column")
        order = [*self.train_batches, *(self.holdout_batches if self.holdout_share is not None else [])]
        age = {batch: len(order) - 1 - i for i, batch in enumerate(order)}
        batches = train_rows[BATCH_COLUMN].astype(str)
        outside = sorted(set(batches) - set(age))
        if outside:
            raise ValueError(f"training rows from batches outside the window: {outside[:5]}")
        return np.power(0.5, batches.map(age).to_numpy(dtype=float) / self.half_life)

    def frames(self, train_frame: pd.DataFrame, newest_frame: pd.DataFrame, *,
               time_column: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The training rows and the holdout rows, from the rows of ``train_batches`` and of
        ``holdout_batches`` as stored: applies the ``last_n_rows`` cut and, with a
        ``holdout_share``, moves the oldest part of the newest batch into training.

        Args:
            train_frame: Validated rows of ``train_batches``.
            newest_frame: Validated rows of ``holdout_batches``.
            time_column: The event-time column, if any (orders rows within a batch).

        Returns:
            (training rows, holdout rows).
        """
        if self.window == "last_n_rows":
            train_frame = last_n_rows(train_frame, self.last_n, time_column=time_column)
        if self.holdout_share is None:
            return train_frame, newest_frame
        learn, judge = split_newest(newest_frame, self.holdout_share, time_column=time_column)
        if train_frame.empty:  # a first champion from one batch: nothing older to learn from
            return learn.reset_index(drop=True), judge
        return pd.concat([train_frame, learn], ignore_index=True), judge


def _span(ids: list[str]) -> str:
    if not ids:
        return "(none)"
    return ids[0] if len(ids) == 1 else f"{ids[0]}…{ids[-1]}"


def select_training_window(
    batch_ids: list[str],
    labelled: Mapping[str, bool] | Collection[str],
    *,
    holdout: str = "last_batch",
    window: str = "all",
    last_n: int | None = None,
    holdout_share: float | None = None,
    half_life: float | None = None,
) -> TrainingWindow:
    """Split the labelled batches into training batches and a time-based holdout.

    The newest labelled batch is the holdout: the candidate is judged on data newer than anything
    it learnt from, as it will be used. Training uses every older labelled batch by default (on
    drifting data, "all labelled data so far" usually beats "newest batch only"; see FACTS), or the
    last ``last_n`` of them. ``window="last_n_rows"`` keeps all batches here; the cut happens in
    :meth:`TrainingWindow.frames` once the rows are loaded.

    With ``holdout_share``, only the newest that share of the newest batch (by event time, then
    landing order) is held out, and the candidate also learns from the rest of it: after a concept
    change the newest batch is the only one labelled under the new rule, and a candidate that never
    sees it cannot learn the change (see :func:`split_newest`). One labelled batch is then enough
    (a first champion from one large batch: ``core.policy.first_champion_plan``).

    Args:
        batch_ids: Batches in arrival order (oldest first).
        labelled: Batch id → whether it has labels, or the set of labelled batch ids.
        holdout: ``last_batch``.
        window: ``all``, ``last_n_batches`` or ``last_n_rows``.
        last_n: N batches (``last_n_batches``) or rows (``last_n_rows``).
        holdout_share: Share of the newest batch to hold out (0 < share < 1), the rest trained on;
            None holds out the whole batch.
        half_life: Recency weighting of the training rows (see :meth:`TrainingWindow.weights`), in
            batches; None weighs every row the same.

    Returns:
        The window.

    Raises:
        ValueError: Unknown holdout/window, a missing or non-positive ``last_n``, a share outside
            (0, 1), or fewer than two labelled batches (saying how many exist).
    """
    if holdout not in HOLDOUTS:
        raise ValueError(f"unknown holdout {holdout!r}; choose one of {HOLDOUTS}")
    if window not in WINDOWS:
        raise ValueError(f"unknown training window {window!r}; choose one of {WINDOWS}")
    if window != "all" and (last_n is None or isinstance(last_n, bool) or int(last_n) != last_n or last_n < 1):
        raise ValueError(f"window {window!r} needs last_n, a whole number >= 1 (got {last_n!r})")
    if holdout_share is not None and not 0 < holdout_share < 1:
        raise ValueError(f"holdout_share must be between 0 and 1 (exclusive), got {holdout_share!r}")
    if half_life is not None and not half_life > 0:
        raise ValueError(f"half_life must be > 0 batches, got {half_life!r}")
    if isinstance(labelled, Mapping):
        is_labelled = lambda b: bool(labelled.get(b, False))  # noqa: E731
    else:
        labelled_set = set(labelled)
        is_labelled = lambda b: b in labelled_set  # noqa: E731
    usable = [b for b in batch_ids if is_labelled(b)]
    if not usable or (len(usable) < MIN_LABELLED_BATCHES and holdout_share is None):
        raise ValueError(
            f"training needs at least {MIN_LABELLED_BATCHES} labelled batches (at least one to train on, "
            f"the newest as the holdout); {len(usable)} of {len(batch_ids)} batches are labelled"
            + (f" ({', '.join(usable)})" if usable else "")
        )
    train_batches, holdout_batches = usable[:-1], usable[-1:]
    if window == "last_n_batches":
        train_batches = train_batches[-int(last_n):]
    return TrainingWindow(train_batches, holdout_batches, window, int(last_n) if last_n is not None else None,
                          holdout_share, half_life)


def last_n_rows(frame: pd.DataFrame, n: int, *, time_column: str | None = None) -> pd.DataFrame:
    """The newest ``n`` rows of a training frame (the ``last_n_rows`` window).

    Rows are ordered by batch (``_batch_id``), then event time (when ``time_column`` is given and
    present), then landing order (``_row``) — whichever of those columns exist — with a stable
    sort, so ties keep the frame's order.

    Args:
        frame: Training rows.
        n: How many to keep (>= 1).
        time_column: The event-time column, if any.

    Returns:
        At most ``n`` rows, oldest first.
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n must be a whole number >= 1, got {n!r}")
    keys = [c for c in (BATCH_COLUMN, time_column, ROW_COLUMN) if c is not None and c in frame.columns]
    ordered = frame.sort_values(keys, kind="mergesort") if keys else frame
    return ordered.tail(int(n))


def data_fingerprint(frame: pd.DataFrame) -> str:
    """A stable SHA-256 of the data (column names and values, row order included), for lineage.

    Columns are sorted by name first, so the column order does not matter; the index is ignored.

    Args:
        frame: The training data.

    Returns:
        64 hex characters.
    """
    columns = sorted(frame.columns, key=str)
    digest = hashlib.sha256()
    digest.update(repr([str(c) for c in columns]).encode())
    digest.update(str(len(frame)).encode())
    for column in columns:  # column by column: memory stays at one uint64 per row
        hashed = pd.util.hash_pandas_object(frame[column], index=False).to_numpy()
        digest.update(hashed.tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------
# Can it be learnt from
# --------------------------------------------------------------------------


class TrainingDataError(ValueError):
    """The training data cannot give a trustworthy model; the message lists every problem."""


def _py(value: Any) -> Any:
    """NumPy scalars as Python values, so messages read 0, not np.int64(0)."""
    return value.item() if isinstance(value, np.generic) else value


def _sample(values: Any, limit: int = 3) -> str:
    return ", ".join(repr(_py(v)) for v in list(values)[:limit])


def _class_labels(series: pd.Series) -> tuple[pd.Series | None, str | None]:
    """Labelled rows' classes as int64 (integral numbers) or text; or a problem."""
    labels = normalise_labels(series.dropna())
    labels = labels[labels.notna()]
    is_int = labels.map(lambda v: isinstance(v, int)).to_numpy(bool)
    is_text = labels.map(lambda v: isinstance(v, str)).to_numpy(bool)
    if is_int.all():
        return labels.astype("int64"), None
    if is_text.all():
        return labels.astype(object), None
    if is_int.any() and is_text.any():
        return None, (
            f"target {series.name!r} mixes numbers and text (e.g. {_sample(labels[is_int].unique(), 2)} and "
            f"{_sample(labels[is_text].unique(), 2)}); make the labels consistent"
        )
    odd = labels[~(is_int | is_text)].unique()
    return None, (
        f"target {series.name!r} has non-integral values (e.g. {_sample(odd)}): a class label must be a whole number "
        "or text; is this a regression target?"
    )


def _regression_target(series: pd.Series) -> tuple[pd.Series | None, str | None]:
    present = series.dropna()
    values = numeric_parse(present)
    bad = present[values.isna() | ~np.isfinite(values)]
    if len(bad):
        return None, (
            f"target {series.name!r} is not numeric for regression "
            f"({len(bad)} value(s) such as {_sample(bad.unique())})"
        )
    return values, None


def check_training_data(
    frame: pd.DataFrame,
    schema: DatasetSchema,
    target: str,
    task: Task,
    *,
    min_rows: int = DEFAULT_MIN_ROWS,
    min_rows_per_class: int = DEFAULT_MIN_ROWS_PER_CLASS,
) -> list[str]:
    """Everything that makes the data unfit to train on, each as one sentence.

    Only labelled rows count (rows whose target is missing are not trained on). Checked: the target
    column exists; enough rows; for classification, at least two classes, each with enough rows,
    at most ``schema.max_classes`` of them, labels that are whole numbers or text (not a mix); for
    regression, a numeric, non-constant target; every schema feature present, not entirely
    missing, not constant, and numeric features holding numbers.

    Args:
        frame: Training rows (the batches as landed plus the target; platform columns allowed).
        schema: The dataset schema.
        target: The label column.
        task: classification or regression.
        min_rows: Fewest labelled rows.
        min_rows_per_class: Fewest rows of each class (classification).

    Returns:
        The problems; an empty list means the data is fine.
    """
    _check_task(task)
    if target not in frame.columns:
        return [f"target column {target!r} is not in the training data (columns: {', '.join(map(str, frame.columns))})"]
    problems: list[str] = []
    labelled = frame[target].notna()
    n = int(labelled.sum())
    if n < min_rows:
        problems.append(f"only {n} labelled rows; training needs at least {min_rows}")
    y = frame.loc[labelled, target]
    if n:
        if task == "classification":
            labels, problem = _class_labels(y)
            if problem:
                problems.append(problem)
            else:
                counts = labels.value_counts()
                if len(counts) > schema.max_classes:
                    problems.append(
                        f"target {target!r} has {len(counts)} distinct values, more than schema.max_classes="
                        f"{schema.max_classes}: is this a regression target?"
                    )
                elif len(counts) == 1:
                    problems.append(
                        f"target {target!r} has a single class ({_py(counts.index[0])!r} in all {n} rows); "
                        "a classifier needs at least two"
                    )
                else:
                    rare = counts[counts < min_rows_per_class]
                    if len(rare):
                        listed = ", ".join(f"{_py(k)!r}: {v} rows" for k, v in rare.sort_index().items())
                        problems.append(
                            f"class(es) with too few rows ({listed}); each class needs at least {min_rows_per_class}"
                        )
        else:
            values, problem = _regression_target(y)
            if problem:
                problems.append(problem)
            elif values.nunique() == 1:
                problems.append(f"target {target!r} is constant ({_py(values.iloc[0])!r} in all {n} rows)")
    numeric, categorical = feature_columns(schema)
    missing = [c for c in numeric + categorical if c not in frame.columns]
    if missing:
        problems.append(f"feature column(s) missing from the training data: {', '.join(missing)}")
    if n:
        for column in [c for c in numeric + categorical if c in frame.columns]:
            values = frame.loc[labelled, column]
            present = values.dropna()
            if present.empty:
                problems.append(f"feature {column!r} is empty: every value is missing")
                continue
            numbers = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
            if column in numeric and not numbers:
                parsed = numeric_parse(present)
                if parsed.isna().any():
                    problems.append(
                        f"numeric feature {column!r} holds text (dtype {values.dtype}, e.g. "
                        f"{_sample(present[parsed.isna()].unique())})"
                    )
                    continue
            if present.nunique() == 1:
                where = "row" if len(present) == len(values) else "non-missing row"
                problems.append(f"feature {column!r} is constant ({_py(present.iloc[0])!r} in every {where})")
    return problems


def require_training_data(
    frame: pd.DataFrame,
    schema: DatasetSchema,
    target: str,
    task: Task,
    *,
    min_rows: int = DEFAULT_MIN_ROWS,
    min_rows_per_class: int = DEFAULT_MIN_ROWS_PER_CLASS,
) -> None:
    """:func:`check_training_data`, raising :class:`TrainingDataError` with every problem.

    Raises:
        TrainingDataError: When any problem is found.
    """
    problems = check_training_data(
        frame, schema, target, task, min_rows=min_rows, min_rows_per_class=min_rows_per_class
    )
    if problems:
        raise TrainingDataError(
            f"the training data cannot be used ({len(problems)} problem(s)): " + "; ".join(problems)
        )


# --------------------------------------------------------------------------
# Fit
# --------------------------------------------------------------------------


@dataclass
class TrainedModel:
    """A fitted pipeline and what it cost.

    Attributes:
        pipeline: The fitted pipeline (takes a batch as landed minus the target).
        seconds: Wall-clock seconds of the fit.
        peak_memory_mb: Peak resident memory of the process up to the end of the fit
            (``resource.getrusage(...).ru_maxrss``): everything, native buffers included, at no
            cost to the fit. It is the process's peak, not the fit's alone: in Dagster's
            multiprocess executor (one process per step) that is the training step with its data.
            :mod:`tracemalloc` was rejected: it slowed fits 2–4x (10k rows, one thread:
            HistGradientBoosting 0.30 → 0.84 s, random forest 0.77 → 1.41 s, logistic regression
            0.035 → 0.13 s) and misses memory that native code allocates outside NumPy.
            NaN where the ``resource`` module does not exist (Windows).
        n_rows: Labelled rows fitted on.
        classes: The pipeline's ``classes_`` (classification), else None.
        estimator: Estimator name.
        params: Parameters given (the seed excluded).
        seed: Random seed.
    """

    pipeline: Pipeline
    seconds: float
    peak_memory_mb: float
    n_rows: int
    classes: tuple[Any, ...] | None
    estimator: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def as_metadata(self) -> dict[str, Any]:
        """Plain values for metadata and MLflow params."""
        out: dict[str, Any] = {
            "estimator": self.estimator,
            "seed": self.seed,
            "n_rows": self.n_rows,
            "fit_seconds": round(self.seconds, 3),
            "peak_memory_mb": round(self.peak_memory_mb, 1),
        }
        if self.classes is not None:
            out["classes"] = ", ".join(map(str, self.classes))
        for key, value in self.params.items():
            out[f"param.{key}"] = value if isinstance(value, (int, float, str, bool)) else repr(value)
        return out


def peak_memory_mb() -> float:
    """The process's peak resident memory so far in MiB (NaN without the ``resource`` module)."""
    try:
        import resource
    except ImportError:  # Windows
        return float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def training_xy(frame: pd.DataFrame, target: str, task: Task) -> tuple[pd.DataFrame, pd.Series]:
    """Model input and labels of the labelled rows.

    Input: the rows as landed minus the target and the platform columns (``_batch_id``, ``_row``),
    exactly what the model gets later. Labels: classes as int64 (whole numbers) or text, or floats
    for regression.

    Raises:
        TrainingDataError: No target column, no labelled rows, or labels of the wrong kind.
    """
    _check_task(task)
    if target not in frame.columns:
        raise TrainingDataError(f"target column {target!r} is not in the training data")
    rows = frame[frame[target].notna()]
    if rows.empty:
        raise TrainingDataError(f"no labelled rows: target {target!r} is missing in all {len(frame)} rows")
    y, problem = _class_labels(rows[target]) if task == "classification" else _regression_target(rows[target])
    if problem:
        raise TrainingDataError(problem)
    return model_input(rows, target), y.rename(target)


def train(
    frame: pd.DataFrame,
    schema: DatasetSchema,
    target: str,
    task: Task,
    estimator: str,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    *,
    sample_weight: np.ndarray | None = None,
    max_threads: int | None = DEFAULT_MAX_THREADS,
) -> TrainedModel:
    """Fit the pipeline of :func:`build_pipeline` on the labelled rows of ``frame``.

    Rows without a target are left out. Call :func:`require_training_data` first with the
    configured thresholds: this function only refuses data it cannot fit at all.

    Args:
        frame: Training rows: the batches as landed plus the target (``_batch_id``/``_row`` allowed).
        schema: The dataset schema.
        target: The label column.
        task: classification or regression (must match ``schema.task``).
        estimator: A name from ``ESTIMATORS[task]``.
        params: Estimator parameters.
        seed: Random seed; the same seed and data give the same model.
        sample_weight: One weight per row of ``frame`` (e.g. :meth:`TrainingWindow.weights`), or None.
        max_threads: Cap on BLAS/OpenMP threads during the fit (threadpoolctl); None leaves the
            libraries' default. See :data:`DEFAULT_MAX_THREADS` for why the default is 1.

    Returns:
        The fitted model with its cost.

    Raises:
        ValueError: Bad estimator/params, or ``task`` differing from the schema's.
        TrainingDataError: No target column, no labelled rows, or labels of the wrong kind.
    """
    if task != schema.task:
        raise ValueError(f"task {task!r} differs from the schema's task {schema.task!r}")
    pipeline = build_pipeline(schema, estimator, params, seed)
    X, y = training_xy(frame, target, task)
    fit_params = {}
    if sample_weight is not None:
        weights = np.asarray(sample_weight, dtype=float)
        if weights.shape != (len(frame),):
            raise ValueError(f"sample_weight has {weights.shape} values for {len(frame)} rows")
        fit_params[f"{PIPELINE_MODEL}__sample_weight"] = weights[frame[target].notna().to_numpy()]
    start = time.perf_counter()
    with threadpool_limits(limits=max_threads):
        pipeline.fit(X, y, **fit_params)
    seconds = time.perf_counter() - start
    classes = tuple(_py(v) for v in pipeline.classes_) if task == "classification" else None
    return TrainedModel(
        pipeline=pipeline,
        seconds=seconds,
        peak_memory_mb=peak_memory_mb(),
        n_rows=len(X),
        classes=classes,
        estimator=estimator,
        params=dict(params or {}),
        seed=seed,
    )
