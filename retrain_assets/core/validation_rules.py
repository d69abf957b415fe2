"""The rules a batch is checked with, and their outcomes: parsing text into the schema's kinds (its
failures are row rules) and the Great Expectations 1.x suite built from the schema. The batch's
verdict is :mod:`retrain_assets.core.validation`. Pure Python (no Dagster)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np
import pandas as pd

from retrain_assets.core import expectations
from retrain_assets.core.columns import ROW_COLUMN
from retrain_assets.core.schema import DatasetSchema, normalise_labels, numeric_parse, strip_text


Level = Literal["row", "batch"]


WRONG_KIND_SHARE = 0.5  # a column where more than half the values fail to parse is of the wrong kind


_log = logging.getLogger(__name__)


@dataclass
class RuleOutcome:
    """The result of one rule (a GX expectation or a parsing rule) on one batch.

    Attributes:
        rule: The GX expectation type (``expect_column_values_to_be_between``) or parsing rule
            (``values_parse_as_numbers``).
        column: The column it concerns, or None for table rules.
        level: ``row`` (bad rows are quarantined) or ``batch`` (the batch is held back).
        success: Whether the batch satisfied it.
        unexpected_count: How many rows broke it.
        description: What the rule says, in words.
        examples: Up to N ``(row, value)`` pairs that broke it.
    """

    rule: str
    column: str | None
    level: Level
    success: bool
    unexpected_count: int
    description: str
    examples: list[tuple[int, Any]] = field(default_factory=list)
    failed_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64), repr=False)

    def sentence(self) -> str:
        """One line a person reads: what failed, how often, with examples."""
        where = f"`{self.column}`: " if self.column else ""
        shown = ", ".join(f"row {r}: {v!r}" for r, v in self.examples)
        tail = f" (e.g. {shown})" if shown else ""
        return f"{where}{self.description} — {self.unexpected_count} row(s){tail}"


def _examples(rows: np.ndarray, values: pd.Series, limit: int) -> list[tuple[int, Any]]:
    out = []
    for r, v in zip(rows[:limit], values.iloc[:limit]):
        out.append((int(r), plain(v)))
    return out


SHOWN_CHARS = 200  # a text value shown in a message or kept in a quarantine row is cut to this


def plain(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, str) and len(value) > SHOWN_CHARS:
        return f"{value[:SHOWN_CHARS]}… [{len(value):,} characters in all]"
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return None if np.isnan(v) else v
    if isinstance(value, (pd.Timestamp,)):
        return value.isoformat()
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return value if isinstance(value, (int, str, bool)) else str(value)


def _categorical_text(series: pd.Series) -> pd.Series:
    kind = pd.api.types.infer_dtype(series, skipna=True)
    if kind == "string":
        return series.astype(object).where(series.notna(), None)
    if kind == "integer" and series.dtype != object:
        text = series.astype("string")
        return text.astype(object).where(text.notna(), None)

    def one(v: Any) -> Any:
        if v is None or v is pd.NA or (isinstance(v, (float, np.floating)) and np.isnan(v)):
            return None
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            return str(int(v))
        if isinstance(v, (bool, np.bool_)):
            return str(bool(v)).lower()
        return str(v)

    return series.map(one).astype(object)


@dataclass
class _Parsed:
    frame: pd.DataFrame
    outcomes: list[RuleOutcome]
    problems: list[str]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Limits:
    """How far values may stray from what the reference showed (validation.* settings).

    Attributes:
        range_margin: A numeric value further than this many times the reference's 0.5–99.5 %
            spread outside that span is implausible (columns without a declared range).
        future_tolerance_hours: Event times later than now plus this are in the future.
        max_cell_chars: Longest text value accepted in a categorical or id column.
        now: The time "now" is judged at (UTC); default: the wall clock.
    """

    range_margin: float = 3.0
    future_tolerance_hours: float = 24.0
    max_cell_chars: int = 1000
    now: datetime | None = None


def parse_batch(raw: pd.DataFrame, schema: DatasetSchema, labelled: bool, examples: int, limits: Limits) -> _Parsed:
    """Turn text into typed columns; record what does not parse and what breaks the learnt expectations."""
    frame = pd.DataFrame({ROW_COLUMN: raw[ROW_COLUMN].to_numpy()})
    outcomes: list[RuleOutcome] = []
    problems: list[str] = []
    notes: list[str] = []
    rows = raw[ROW_COLUMN].to_numpy()

    def row_rule(rule: str, column: str, bad: np.ndarray, description: str, original: pd.Series) -> None:
        count = int(bad.sum())
        outcomes.append(RuleOutcome(rule, column, "row", count == 0, count, description,
                                    _examples(rows[bad], original[bad], examples), rows[bad]))

    def constant(spec, values: pd.Series) -> None:
        value = expectations.constant_value(values)
        if value is not None and expectations.varied(spec.observed):
            problems.append(
                f"column {spec.name!r} is constant: every one of its {int(values.notna().sum())} values is "
                f"{plain(value)!r}, but it varied in the reference batch — a broken feed? A model cannot learn "
                "from it; fix the export, or declare the change by editing schema.json"
            )

    def parse_rule(column: str, original: pd.Series, parsed: pd.Series, rule: str, what: str) -> None:
        bad = original.notna().to_numpy() & parsed.isna().to_numpy()
        count = int(bad.sum())
        present = int(original.notna().sum())
        outcomes.append(
            RuleOutcome(rule, column, "row", count == 0, count, f"values must be {what}",
                        _examples(rows[bad], original[bad], examples), rows[bad])
        )
        if present and count / present > WRONG_KIND_SHARE:
            shown = ", ".join(repr(plain(v)) for v in original[bad].iloc[:3])
            problems.append(
                f"column {column!r} should hold {what}, but {count} of {present} values do not (e.g. {shown})"
            )

    def finite_rule(column: str, original: pd.Series, parsed: pd.Series, rule: str, what: str) -> None:
        infinite = np.isinf(parsed.to_numpy())
        count = int(infinite.sum())
        outcomes.append(RuleOutcome(rule, column, "row", count == 0, count, f"{what} must be finite (not inf/-inf)",
                                    _examples(rows[infinite], original[infinite], examples), rows[infinite]))

    for spec in schema.columns:
        if spec.name not in raw.columns:
            continue
        original = raw[spec.name]
        if spec.kind == "numeric":
            parsed = numeric_parse(original)
            parse_rule(spec.name, original, parsed, "values_parse_as_numbers", "numbers")
            finite_rule(spec.name, original, parsed, "values_are_finite", "values")
            # inf is reported once (above); GX then sees it as missing, not also as out of range.
            parsed = parsed.mask(np.isinf(parsed))
            learnt = expectations.plausible_range(spec.observed, limits.range_margin)
            if learnt is not None and spec.min is None and spec.max is None:
                low, high = learnt
                bad = (parsed.notna() & ((parsed < low) | (parsed > high))).to_numpy()
                row_rule("values_in_plausible_range", spec.name, bad,
                         f"values must lie in the plausible range [{low:.4g}, {high:.4g}] learnt from the reference "
                         f"batch (its 0.5–99.5% span widened {limits.range_margin:g}× each way; declare "
                         "schema.ranges to set it yourself)", original)
            constant(spec, parsed)
            frame[spec.name] = parsed
        elif spec.kind == "datetime":
            reference_format = spec.observed.get("date_format")
            written = expectations.date_format(original)
            if expectations.format_conflict(reference_format, written):
                problems.append(
                    f"column {spec.name!r}: dates are written as {expectations.DATE_FORMATS[written]} in this batch but "
                    f"as {expectations.DATE_FORMATS[reference_format]} in the reference batch, so the same text would "
                    f"mean other dates; write them in one format ({expectations.DATE_FORMATS[reference_format]})"
                )
            parsed = expectations.parse_times(original, reference_format)
            parse_rule(spec.name, original, parsed, "values_parse_as_timestamps", "timestamps")
            latest = expectations.latest_plausible(limits.now or datetime.now(timezone.utc), limits.future_tolerance_hours)
            row_rule("time_not_in_future", spec.name, (parsed > latest).to_numpy(),
                     f"event times must not be in the future (after {latest:%Y-%m-%d %H:%M} UTC, now plus "
                     f"{limits.future_tolerance_hours:g} h)", original)
            earliest = expectations.earliest_plausible(spec.observed)
            if earliest is not None:
                row_rule("time_after_earliest_plausible", spec.name, (parsed < earliest).to_numpy(),
                         f"event times must not be before {earliest:%Y-%m-%d} (the reference began "
                         f"{spec.observed['earliest'][:10]}; ten times its span earlier, at least a year)", original)
            frame[spec.name] = parsed
        else:
            text = _categorical_text(original)
            lengths = text.map(lambda v: len(v) if isinstance(v, str) else 0).to_numpy()
            row_rule("value_length", spec.name, lengths > limits.max_cell_chars,
                     f"text values may be at most {limits.max_cell_chars:,} characters long "
                     "(validation.max_cell_chars); longer ones are quarantined, never stored as a category", original)
            stripped = strip_text(text)
            padded = int((stripped.notna() & (stripped != text)).sum())
            if padded:
                notes.append(f"column {spec.name!r}: white space around {padded} value(s) removed (e.g. "
                             f"{plain(text[stripped != text].dropna().iloc[0])!r})")
            if spec.kind == "categorical":
                constant(spec, stripped)
            frame[spec.name] = stripped

    if labelled:
        original = raw[schema.target].mask(blank(raw[schema.target]))
        if schema.task == "regression":
            parsed = numeric_parse(original)
            parse_rule(schema.target, original, parsed, "target_parses_as_numbers", "numbers (regression target)")
            finite_rule(schema.target, original, parsed, "target_is_finite", "target values")
            frame[schema.target] = parsed
        else:
            # not Series.map: map() turns ints mixed with None (or an Int64 column) into floats
            labels = normalise_labels(original)
            distinct = labels.dropna().nunique()
            if distinct > schema.max_classes:
                problems.append(
                    f"target {schema.target!r} has {distinct} distinct values; a classification target has at "
                    f"most {schema.max_classes} classes (is this a regression target? set dataset.task)"
                )
            frame[schema.target] = labels
    return _Parsed(frame, outcomes, problems, notes)


def suite_items(schema: DatasetSchema, present: list[str], labelled: bool, null_share: float) -> list[tuple[Any, Level, str | None, str]]:
    """(expectation, level, column, description) for the columns that are present."""
    import great_expectations.expectations as gxe

    expected_columns = [ROW_COLUMN, *schema.column_names, *([schema.target] if labelled else [])]
    items: list[tuple[Any, Level, str | None, str]] = [
        (gxe.ExpectTableRowCountToBeBetween(min_value=1), "batch", None, "the batch must have at least one row"),
        (gxe.ExpectTableColumnsToMatchSet(column_set=expected_columns, exact_match=True), "batch", None,
         "columns must match the schema"),
    ]
    for spec in schema.columns:
        if spec.name not in present:
            continue
        col = spec.name
        if spec.kind == "id":
            items.append((gxe.ExpectColumnValuesToNotBeNull(column=col), "row", col, "id must be present"))
            items.append((gxe.ExpectColumnValuesToBeUnique(column=col), "row", col,
                          "ids must be unique within the batch (every copy of a duplicated id is quarantined)"))
            continue
        if spec.required or spec.kind == "datetime":
            items.append((gxe.ExpectColumnValuesToNotBeNull(column=col), "row", col, "value must be present"))
        else:
            items.append((
                gxe.ExpectColumnValuesToNotBeNull(column=col, mostly=round(1.0 - null_share, 6)), "batch", col,
                f"at most {null_share:.0%} of values may be missing (more is a NaN flood)",
            ))
        if spec.kind == "numeric" and (spec.min is not None or spec.max is not None):
            items.append((gxe.ExpectColumnValuesToBeBetween(column=col, min_value=spec.min, max_value=spec.max),
                          "row", col, f"values must lie in [{_bound(spec.min)}, {_bound(spec.max)}]"))
        if spec.kind == "categorical" and spec.categories is not None:
            shown = ", ".join(spec.categories[:12]) + (" …" if len(spec.categories) > 12 else "")
            items.append((gxe.ExpectColumnValuesToBeInSet(column=col, value_set=list(spec.categories)), "row", col,
                          f"values must be one of: {shown}"))
    if labelled:
        target = schema.target
        if schema.task == "classification" and schema.classes is not None:
            items.append((gxe.ExpectColumnValuesToBeInSet(column=target, value_set=list(schema.classes)), "row", target,
                          f"target must be one of the known classes {list(schema.classes)}"))
    return items


def _bound(value: float | None) -> str:
    return "−∞" if value is None else f"{value:g}"


def run_gx(frame: pd.DataFrame, items: list[tuple[Any, Level, str | None, str]], examples: int) -> list[RuleOutcome]:
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False, "profilers": False}
    name = f"batch_{uuid.uuid4().hex[:12]}"
    batch_definition = (
        context.data_sources.add_pandas(name).add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
    )
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=[e for e, *_ in items]))
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(
        suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ROW_COLUMN]}
    )
    # GX returns results in suite order, one per expectation; match them by id to be safe.
    by_id = {r.expectation_config.id: r for r in result.results}
    outcomes = []
    for expectation, level, column, description in items:
        res = by_id[expectation.id]
        info = res.result or {}
        if res.exception_info and res.exception_info.get("raised_exception"):
            raise RuntimeError(
                f"Great Expectations could not evaluate {expectation.expectation_type} on column {column!r}: "
                f"{res.exception_info.get('exception_message')}"
            )
        index_list = info.get("unexpected_index_list") or []
        failed_rows = np.array([int(i[ROW_COLUMN]) for i in index_list], dtype=np.int64)
        shown = [(int(i[ROW_COLUMN]), plain(i.get(column))) for i in index_list[:examples]]
        count = int(info.get("unexpected_count") or 0)
        if level == "batch" and column is None and not res.success:
            count = len(frame)
        outcomes.append(
            RuleOutcome(expectation.expectation_type, column, level, bool(res.success), count, description,
                        shown, failed_rows if level == "row" else np.empty(0, dtype=np.int64))
        )
    return outcomes


def blank(series: pd.Series) -> pd.Series:
    """Missing or white-space-only cells."""
    return series.isna() | series.map(lambda v: isinstance(v, str) and not v.strip())
