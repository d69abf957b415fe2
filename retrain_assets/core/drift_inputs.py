"""Which columns a drift check compares, and a clear error for every bad input (a frame that is
not one, duplicated or missing columns, a numeric column holding text). Pure Python (pandas)."""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd

from retrain_assets.core.drift_reference import PreparedReference


def _is_number(series: pd.Series) -> bool:
    dtype = series.dtype
    return bool(pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype))


def _check_frame(name: str, frame: Any) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    if frame.columns.duplicated().any():
        dups = list(frame.columns[frame.columns.duplicated()].unique())
        raise ValueError(f"{name} has duplicated column names {dups}: rename them")
    if len(frame) == 0:
        raise ValueError(f"{name} has no rows: drift needs rows on both sides (check the batch or the reference window)")


def _check_lists(numeric: Sequence[str] | None, categorical: Sequence[str] | None) -> None:
    for name, cols in (("numeric", numeric), ("categorical", categorical)):
        if isinstance(cols, str):
            raise TypeError(f"{name} must be a list of column names, e.g. [{cols!r}], not a string")
    both = sorted(set(numeric or []) & set(categorical or []), key=str)
    if both:
        raise ValueError(f"columns listed as both numeric and categorical: {both}")


def _check_present(frames: dict[str, pd.DataFrame], numeric: list, categorical: list) -> None:
    for name, frame in frames.items():
        missing = [c for c in numeric + categorical if c not in frame.columns]
        if missing:
            raise ValueError(f"columns {missing} are not in {name} (it has {list(frame.columns)})")
    for col in numeric:
        for name, frame in frames.items():
            if not (pd.api.types.is_numeric_dtype(frame[col].dtype)):
                raise ValueError(
                    f"column {col!r} is compared as numeric but holds {frame[col].dtype} in {name}: convert it "
                    f"(pd.to_numeric) or list it under categorical="
                )


def resolve_columns(reference: pd.DataFrame, current: pd.DataFrame, numeric: Sequence[str] | None,
                    categorical: Sequence[str] | None) -> tuple[list, list]:
    """The (numeric, categorical) columns to compare: as listed, or inferred from the reference's
    dtypes; raises a TypeError/ValueError saying what to change for bad frames or lists."""
    for name, frame in (("reference", reference), ("current", current)):
        _check_frame(name, frame)
    _check_lists(numeric, categorical)
    if numeric is None and categorical is None:
        only_ref = [c for c in reference.columns if c not in current.columns]
        only_cur = [c for c in current.columns if c not in reference.columns]
        if only_ref or only_cur:
            raise ValueError(
                f"reference and current must have the same columns: only in reference {only_ref}, only in current "
                f"{only_cur}. Drop or rename them, or choose the columns with numeric=/categorical=."
            )
        numeric = [c for c in reference.columns if _is_number(reference[c])]
        categorical = [c for c in reference.columns if not _is_number(reference[c])]
    else:
        numeric, categorical = list(numeric or []), list(categorical or [])
    if not numeric and not categorical:
        raise ValueError("no columns to compare: the frames have no columns")
    _check_present({"reference": reference, "current": current}, numeric, categorical)
    return numeric, categorical


def resolve_prepared_columns(reference: PreparedReference, current: pd.DataFrame, numeric: Sequence[str] | None,
                             categorical: Sequence[str] | None) -> tuple[list, list]:
    """:func:`resolve_columns` against a prepared reference: listed columns must have been prepared
    with that kind; none listed means all it has."""
    _check_frame("current", current)
    _check_lists(numeric, categorical)
    if numeric is None and categorical is None:
        numeric, categorical = list(reference.numeric), list(reference.categorical)
    else:
        numeric, categorical = list(numeric or []), list(categorical or [])
    for kind, cols, prepared in (("numeric", numeric, reference.numeric), ("categorical", categorical,
                                                                         reference.categorical)):
        unknown = [c for c in cols if c not in prepared]
        if unknown:
            raise ValueError(f"columns {unknown} were not prepared as {kind} in the reference (it has {kind} "
                             f"{list(prepared)}): prepare the reference with them")
    if not numeric and not categorical:
        raise ValueError("no columns to compare: the prepared reference has no columns")
    _check_present({"current": current}, numeric, categorical)
    return numeric, categorical
