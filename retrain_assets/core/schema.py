"""The dataset schema: which columns exist, their kinds and rules. Pure Python (no Dagster).

The schema comes from the user's hints where given and is otherwise inferred from the first batch
that is accepted; from then on it is enforced on every batch. It is stored as readable JSON under
``storage.root/schema.json`` so a person can inspect it, edit it, or delete it to infer again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd

from retrain_assets.core.columns import ROW_COLUMN
from retrain_assets.core import expectations, files


Kind = Literal["numeric", "categorical", "datetime", "id"]
Task = Literal["classification", "regression"]

NUMERIC_SHARE_FOR_INFERENCE = 0.95  # a text column whose values parse as numbers this often is numeric


@dataclass(frozen=True)
class ColumnSpec:
    """One column's rules.

    Attributes:
        name: Column name.
        kind: numeric, categorical, datetime (the time column) or id.
        required: Nulls are not allowed (each null row is quarantined).
        min: Inclusive lower bound (numeric), or None.
        max: Inclusive upper bound (numeric), or None.
        categories: Allowed values (categorical), or None for "any".
        observed: What the first batch showed (range or categories), for people, not enforced.
    """

    name: str
    kind: Kind
    required: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None
    observed: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetSchema:
    """The enforced shape of every batch.

    Attributes:
        columns: Feature, id and time columns in file order (the target is separate).
        target: Label column name.
        task: classification or regression.
        classes: Allowed target classes (classification), or None until a labelled batch is seen.
        time_column: Event-time column, or None.
        ignore_columns: Dropped on arrival.
        allow_extra_columns: Whether unexpected columns are dropped instead of failing the batch.
        max_null_fraction: Largest null share per feature before the batch fails.
        max_classes: More distinct target values than this means the target is of the wrong kind.
        source: Where the schema came from (e.g. "hints + inferred from batch batch_0001").
    """

    columns: tuple[ColumnSpec, ...]
    target: str
    task: Task
    classes: tuple[Any, ...] | None = None
    time_column: str | None = None
    ignore_columns: tuple[str, ...] = ()
    allow_extra_columns: bool = False
    max_null_fraction: float = 0.5
    max_classes: int = 50
    source: str = ""

    @property
    def column_names(self) -> list[str]:
        """Every non-target column, in order."""
        return [c.name for c in self.columns]

    @property
    def feature_columns(self) -> list[str]:
        """Columns a model may use (not ids, not the time column, not the target)."""
        return [c.name for c in self.columns if c.kind in ("numeric", "categorical")]

    def column(self, name: str) -> ColumnSpec:
        """The spec of one column."""
        for spec in self.columns:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def to_json(self) -> str:
        """Readable JSON."""
        data = asdict(self)
        return json.dumps(data, indent=2, default=_json_default)

    @classmethod
    def from_json(cls, text: str) -> DatasetSchema:
        """Parse what :meth:`to_json` wrote."""
        data = json.loads(text)
        columns = tuple(
            ColumnSpec(**{**c, "categories": tuple(c["categories"]) if c.get("categories") is not None else None})
            for c in data.pop("columns")
        )
        classes = data.pop("classes")
        return cls(
            columns=columns,
            classes=tuple(classes) if classes is not None else None,
            ignore_columns=tuple(data.pop("ignore_columns", ())),
            **data,
        )


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (pd.Timestamp,)):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def numeric_parse(series: pd.Series) -> pd.Series:
    """Parse values as numbers; what does not parse becomes NaN (text like 'n/a', 'twelve')."""
    if pd.api.types.is_bool_dtype(series):
        return series.astype(float)
    if pd.api.types.is_numeric_dtype(series):
        return series.astype(float)
    return pd.to_numeric(strip_text(series), errors="coerce").astype(float)


def strip_text(series: pd.Series) -> pd.Series:
    """Strip surrounding white space from text values (vectorised when the column is all text)."""
    if pd.api.types.infer_dtype(series, skipna=True) == "string":
        return series.str.strip()
    return series.map(lambda v: v.strip() if isinstance(v, str) else v)


def normalise_labels(series: pd.Series) -> pd.Series:
    """:func:`normalise_label` over a column, vectorised for the common all-text and all-int cases.

    Returns an object column holding ints, text and None.
    """
    kind = pd.api.types.infer_dtype(series, skipna=True)
    if kind == "string":
        text = series.str.strip()
        numbers = pd.to_numeric(text, errors="coerce")
        integral = (numbers.notna() & np.isfinite(numbers) & (numbers % 1 == 0)).to_numpy()
        out = text.astype(object).where(text.notna(), None)
        if integral.any():
            values = out.to_numpy(dtype=object, copy=True)
            values[integral] = numbers[integral].astype("int64").tolist()
            out = pd.Series(values, index=series.index, dtype=object)
        return out
    if kind == "integer" and not series.hasnans and series.dtype != object:
        return pd.Series(series.astype("int64").tolist(), index=series.index, dtype=object)
    return pd.Series([normalise_label(v) for v in series], index=series.index, dtype=object)


def normalise_label(value: Any) -> Any:
    """A class label in one canonical form: integral numbers as int, everything else as text."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (float, np.floating)) and np.isnan(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return int(value) if float(value).is_integer() else float(value)
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    if np.isfinite(number) and number.is_integer():
        return int(number)
    return text


def _looks_numeric(series: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(series):
        return False
    if pd.api.types.is_numeric_dtype(series):
        return True
    present = series.dropna()
    if present.empty:
        return False
    parsed = numeric_parse(present)
    return parsed.notna().mean() >= NUMERIC_SHARE_FOR_INFERENCE


@dataclass(frozen=True)
class SchemaHints:
    """What the config says about the columns (``schema``): hints always win over what a batch shows.

    Attributes:
        categorical, numeric, id_columns, ignore_columns, required: Column hints.
        ranges: Column -> (min, max).
        categories: Column -> allowed values.
        classes: Allowed target classes.
        allow_extra_columns: Whether unexpected columns are dropped instead of failing a batch.
        max_null_fraction: Largest null share per feature.
        max_classes: Distinct target values above which the target is refused as the wrong kind.
    """

    categorical: Sequence[str] = ()
    numeric: Sequence[str] = ()
    id_columns: Sequence[str] = ()
    ignore_columns: Sequence[str] = ()
    required: Sequence[str] = ()
    ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    categories: dict[str, Sequence[str]] = field(default_factory=dict)
    classes: Sequence[Any] | None = None
    allow_extra_columns: bool = False
    max_null_fraction: float = 0.5
    max_classes: int = 50

    def kind(self, name: str, otherwise: Kind) -> Kind:
        """The hinted kind of ``name``, else ``otherwise``."""
        return ("id" if name in self.id_columns else "categorical" if name in self.categorical
                else "numeric" if name in self.numeric else otherwise)

    def spec(self, name: str, kind: Kind, observed: dict[str, Any] | None = None) -> ColumnSpec:
        """The column as the hints make it: required if an id or hinted so, with its range and categories."""
        low, high = (self.ranges or {}).get(name, (None, None))
        allowed = tuple(str(v) for v in self.categories[name]) if name in (self.categories or {}) else None
        return ColumnSpec(name=name, kind=kind, required=kind == "id" or name in self.required, min=low, max=high,
                          categories=allowed, **({"observed": observed} if observed is not None else {}))

    def hinted(self) -> list[str]:
        """Columns named by a kind hint, in hint order."""
        return [*self.id_columns, *self.categorical, *self.numeric]

    def applied(self, schema: DatasetSchema, columns: Sequence[ColumnSpec]) -> DatasetSchema:
        """``schema`` with ``columns`` and the hints' schema-wide settings."""
        return replace(
            schema, columns=tuple(columns), ignore_columns=tuple(self.ignore_columns),
            allow_extra_columns=self.allow_extra_columns, max_null_fraction=self.max_null_fraction,
            max_classes=self.max_classes,
            classes=tuple(normalise_label(c) for c in self.classes) if self.classes is not None else schema.classes,
        )


def _observe(series: pd.Series, kind: Kind) -> dict[str, Any]:
    """What one batch shows of a column of this kind (kept under ``observed``)."""
    observed: dict[str, Any] = {"null_fraction": round(float(series.isna().mean()), 4)}
    if kind == "numeric":
        values = numeric_parse(series)
        finite = values[np.isfinite(values)]
        if len(finite):
            observed.update(min=float(finite.min()), max=float(finite.max()), mean=float(finite.mean()))
            observed.update(expectations.learn_numeric(values))
    elif kind == "categorical":
        counts = strip_text(series.dropna().astype(str)).value_counts()
        observed["categories"] = sorted(counts.index.tolist())[:200]
    elif kind == "datetime":
        fmt = expectations.date_format(series)
        observed.update(expectations.learn_datetime(series, expectations.parse_times(series, fmt)))
    return observed


def infer_schema(
    batch: pd.DataFrame, *, target: str, task: Task, time_column: str | None = None, batch_id: str = "",
    **hints: Any,
) -> DatasetSchema:
    """Build the schema from hints plus what one batch shows.

    Hints always win. A column not hinted is numeric if its values parse as numbers (95% of
    non-null values), else categorical. Ranges and categories are enforced as hinted; what the
    batch shows is recorded under ``observed``, and validation enforces the expectations learnt
    there (:mod:`retrain_assets.core.expectations`) where no hint says otherwise.

    Args:
        batch: The first accepted batch as read (``_row`` included or not).
        target: Label column (may be absent from an unlabelled batch).
        task: classification or regression.
        time_column: Event-time column, if any.
        batch_id: Which batch the inference saw, recorded in ``source``.
        **hints: The fields of :class:`SchemaHints`.

    Returns:
        The schema.
    """
    given = SchemaHints(**hints)
    specs: list[ColumnSpec] = []
    for name in batch.columns:
        if name in (ROW_COLUMN, target) or name in given.ignore_columns:
            continue
        series = batch[name]
        kind: Kind = "datetime" if name == time_column else given.kind(
            name, "numeric" if _looks_numeric(series) else "categorical")
        specs.append(given.spec(name, kind, _observe(series, kind)))
    # Hinted columns absent from this batch are still part of the schema (and so reported missing).
    present = {s.name for s in specs}
    for name in [*given.hinted(), *([time_column] if time_column else [])]:
        if name not in present and name not in given.ignore_columns and name != target:
            specs.append(given.spec(name, "datetime" if name == time_column else given.kind(name, "numeric")))
            present.add(name)

    schema_classes: tuple[Any, ...] | None = None
    if task == "classification" and given.classes is None and target in batch.columns:
        labels = {normalise_label(v) for v in batch[target].dropna()}
        labels.discard(None)
        if 0 < len(labels) <= given.max_classes:
            schema_classes = tuple(sorted(labels, key=lambda v: (isinstance(v, str), v)))
    parts = ["hints"] if any([given.categorical, given.numeric, given.id_columns, given.ranges, given.categories,
                              given.classes]) else []
    parts.append(f"inferred from batch {batch_id}" if batch_id else "inferred")
    schema = DatasetSchema(columns=(), target=target, task=task, classes=schema_classes, time_column=time_column,
                           source=" + ".join(parts))
    schema = given.applied(schema, specs)
    return schema if task == "classification" else replace(schema, classes=None)


def with_classes(schema: DatasetSchema, labels: Sequence[Any]) -> DatasetSchema:
    """The schema with target classes learnt from a labelled batch (when none were known)."""
    found = sorted({normalise_label(v) for v in labels} - {None}, key=lambda v: (isinstance(v, str), v))
    return replace(schema, classes=tuple(found))


class SchemaStore:
    """The schema file under storage.root: read it, or write it once (atomically, first writer wins)."""

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> DatasetSchema | None:
        """The stored schema, or None if none has been stored yet."""
        if not self.path.is_file():
            return None
        try:
            return DatasetSchema.from_json(self.path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, TypeError, KeyError, AttributeError) as error:
            raise ValueError(
                f"schema file {self.path} is not a valid schema ({error}); fix it or delete it to infer it again"
            ) from None

    def save(self, schema: DatasetSchema, *, overwrite: bool = False) -> DatasetSchema:
        """Store the schema; without ``overwrite`` an existing file wins and is returned instead.

        Written whole or not at all (:func:`files.write_atomic`): a full disk raises
        :class:`files.StorageUnavailable` and never leaves a truncated schema.json.
        """
        try:
            files.write_atomic(self.path, schema.to_json(), exclusive=not overwrite)
        except FileExistsError:
            existing = self.load()
            assert existing is not None
            return existing
        return schema


def apply_hints(schema: DatasetSchema, **hints: Any) -> DatasetSchema:
    """Re-apply the config's hints (the fields of :class:`SchemaHints`) to a stored schema, so edits
    to the config take effect.

    The stored schema keeps what was inferred (column order, kinds not hinted, observations);
    every hint in the config overrides it. Columns newly listed in ``ignore_columns`` leave the
    schema; hinted columns the schema did not have are added (and so required in batches).
    """
    given = SchemaHints(**hints)
    specs = []
    for spec in schema.columns:
        if spec.name not in given.ignore_columns:
            specs.append(replace(given.spec(spec.name, given.kind(spec.name, spec.kind)), observed=spec.observed))
    known = {s.name for s in specs}
    for name in given.hinted():
        if name not in known and name not in given.ignore_columns:
            specs.append(given.spec(name, given.kind(name, "numeric")))
            known.add(name)
    return given.applied(schema, specs)
