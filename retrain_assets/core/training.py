"""Train a candidate model: which batches it learns from, whether the data can be learnt from,
and a seeded scikit-learn pipeline that takes a batch exactly as it lands. Pure Python (no Dagster,
no MLflow).

* :func:`select_training_window` — every labelled batch except the newest one, which is the
  time-based holdout the promotion gates judge the candidate on (optionally only the last N
  batches; :func:`last_n_rows` cuts the frame to the newest N rows instead).
* :func:`check_training_data` — too few rows, a missing class,
  a target of the wrong kind, an empty or constant feature: named, all at once, before fitting.
* :func:`build_pipeline` — imputation, scaling and one-hot encoding selected by the schema's
  column kinds (id and time columns are dropped inside the pipeline, so the model accepts the
  batch as landed minus the target), then one estimator from :data:`~retrain_assets.core.estimators.ESTIMATORS`.
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

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from retrain_assets.core.estimators import make_estimator
from retrain_assets.core.schema import DatasetSchema, Task
from retrain_assets.core.training_data import feature_columns, plain_value, training_xy


MIN_CATEGORY_ROWS = 5
"""One-hot encoding: categories seen in fewer training rows share one "infrequent" column."""

MAX_CATEGORIES_PER_COLUMN = 20
"""One-hot encoding: at most this many columns per categorical feature (the rarest are grouped),
so a high-cardinality column cannot blow up the model's width."""

DEFAULT_MAX_THREADS = 1
"""OpenMP/BLAS threads during a fit (why one: docs/decisions.md, "Fitting with one thread")."""


PIPELINE_FEATURES = "features"
PIPELINE_MODEL = "model"


# --------------------------------------------------------------------------
# Estimators and the pipeline
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# Can it be learnt from
# --------------------------------------------------------------------------


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
            cost to the fit (why not tracemalloc: docs/decisions.md, "Peak memory of a fit"). It is
            the process's peak, not the fit's alone: in Dagster's multiprocess executor (one process
            per step) that is the training step with its data. NaN without ``resource`` (Windows).
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


def peak_memory_mb() -> float:
    """The process's peak resident memory so far in MiB (NaN without the ``resource`` module)."""
    try:
        import resource
    except ImportError:  # Windows
        return float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


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
    classes = tuple(plain_value(v) for v in pipeline.classes_) if task == "classification" else None
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
