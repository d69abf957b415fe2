"""Whether the data can be learnt from, checked before anything is fitted. Pure Python.

Too few rows, a missing class, a target of the wrong kind, an empty or constant feature: each is
named, all at once. Also the fingerprint of what a model learnt from, for lineage.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd

from retrain_assets.core.gate_defaults import DEFAULT_MIN_ROWS, DEFAULT_MIN_ROWS_PER_CLASS
from retrain_assets.core.columns import INTERNAL_COLUMNS, model_input
from retrain_assets.core.schema import DatasetSchema, Task, normalise_labels, numeric_parse

TASKS = ("classification", "regression")


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


class TrainingDataError(ValueError):
    """The training data cannot give a trustworthy model; the message lists every problem."""


def plain_value(value: Any) -> Any:
    """NumPy scalars as Python values, so messages read 0, not np.int64(0)."""
    return value.item() if isinstance(value, np.generic) else value


def _sample(values: Any, limit: int = 3) -> str:
    return ", ".join(repr(plain_value(v)) for v in list(values)[:limit])


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
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {list(TASKS)}")
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
                        f"target {target!r} has a single class ({plain_value(counts.index[0])!r} in all {n} rows); "
                        "a classifier needs at least two"
                    )
                else:
                    rare = counts[counts < min_rows_per_class]
                    if len(rare):
                        listed = ", ".join(f"{plain_value(k)!r}: {v} rows" for k, v in rare.sort_index().items())
                        problems.append(
                            f"class(es) with too few rows ({listed}); each class needs at least {min_rows_per_class}"
                        )
        else:
            values, problem = _regression_target(y)
            if problem:
                problems.append(problem)
            elif values.nunique() == 1:
                problems.append(f"target {target!r} is constant ({plain_value(values.iloc[0])!r} in all {n} rows)")
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
                problems.append(f"feature {column!r} is constant ({plain_value(present.iloc[0])!r} in every {where})")
    return problems


def feature_columns(schema: DatasetSchema) -> tuple[list[str], list[str]]:
    """The schema's numeric and categorical columns (what the pipeline selects), in file order.

    The target and the platform columns (``_batch_id``, ``_row``) are never features, even if a
    schema inferred from a stored frame lists them.
    """
    never = {schema.target, *INTERNAL_COLUMNS}
    numeric = [c.name for c in schema.columns if c.kind == "numeric" and c.name not in never]
    categorical = [c.name for c in schema.columns if c.kind == "categorical" and c.name not in never]
    return numeric, categorical


def training_xy(frame: pd.DataFrame, target: str, task: Task) -> tuple[pd.DataFrame, pd.Series]:
    """Model input and labels of the labelled rows.

    Input: the rows as landed minus the target and the platform columns (``_batch_id``, ``_row``),
    exactly what the model gets later. Labels: classes as int64 (whole numbers) or text, or floats
    for regression.

    Raises:
        TrainingDataError: No target column, no labelled rows, or labels of the wrong kind.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {list(TASKS)}")
    if target not in frame.columns:
        raise TrainingDataError(f"target column {target!r} is not in the training data")
    rows = frame[frame[target].notna()]
    if rows.empty:
        raise TrainingDataError(f"no labelled rows: target {target!r} is missing in all {len(frame)} rows")
    y, problem = _class_labels(rows[target]) if task == "classification" else _regression_target(rows[target])
    if problem:
        raise TrainingDataError(problem)
    return model_input(rows, target), y.rename(target)
