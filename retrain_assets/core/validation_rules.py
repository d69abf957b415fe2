"""The rules a batch is checked with, and their outcomes: parsing text into the schema's kinds (its
failures are row rules) and the batch-level findings each chunk of a batch adds to. The Great
Expectations 1.x suite is :mod:`retrain_assets.core.gx_suite`; the batch's verdict is
:mod:`retrain_assets.core.validation`. Pure Python (no Dagster)."""

from __future__ import annotations

import logging
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
        failed_rows: The rows that broke a row rule (those of one chunk while a batch is judged).
        mostly: For a batch rule on one column, the share of its values that must satisfy it.
    """

    rule: str
    column: str | None
    level: Level
    success: bool
    unexpected_count: int
    description: str
    examples: list[tuple[int, Any]] = field(default_factory=list)
    failed_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64), repr=False)
    mostly: float | None = field(default=None, repr=False)  # a batch rule on a share of a column's values

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


@dataclass
class _Parsed:
    frame: pd.DataFrame
    outcomes: list[RuleOutcome]
    findings: list[Finding]


# --- batch-level findings, added up over the chunks of a batch -----------------------------------


@dataclass
class WrongKind:
    """A column where more than half the values fail to parse is of the wrong kind (a batch problem)."""

    column: str
    what: str
    bad: int = 0
    present: int = 0
    shown: list[Any] = field(default_factory=list)

    def merge(self, other: WrongKind) -> None:
        self.bad, self.present, self.shown = self.bad + other.bad, self.present + other.present, (self.shown + other.shown)[:3]

    def problem(self) -> str | None:
        if self.present and self.bad / self.present > WRONG_KIND_SHARE:
            shown = ", ".join(repr(plain(v)) for v in self.shown)
            return (f"column {self.column!r} should hold {self.what}, but {self.bad} of {self.present} values do not "
                    f"(e.g. {shown})")
        return None

    def note(self) -> None:
        return None


@dataclass
class ConstantColumn:
    """A column that varied in the reference but holds one value in every row: a broken feed."""

    column: str
    varied: bool
    summary: expectations.ConstantSummary

    def merge(self, other: ConstantColumn) -> None:
        self.summary = self.summary.merge(other.summary)

    def problem(self) -> str | None:
        value = self.summary.value()
        if value is None or not self.varied:
            return None
        return (
            f"column {self.column!r} is constant: every one of its {self.summary.present} values is "
            f"{plain(value)!r}, but it varied in the reference batch — a broken feed? A model cannot learn "
            "from it; fix the export, or declare the change by editing schema.json"
        )

    def note(self) -> None:
        return None


@dataclass
class DateOrder:
    """Dates written in another order than the reference's (one verdict per batch, from its first values)."""

    message: str | None

    def merge(self, other: DateOrder) -> None:
        pass

    def problem(self) -> str | None:
        return self.message

    def note(self) -> None:
        return None


@dataclass
class PaddedText:
    """White space removed around text values (a note, not a failure)."""

    column: str
    count: int = 0
    example: Any = None

    def merge(self, other: PaddedText) -> None:
        if not self.count:
            self.example = other.example
        self.count += other.count

    def problem(self) -> None:
        return None

    def note(self) -> str | None:
        if not self.count:
            return None
        return f"column {self.column!r}: white space around {self.count} value(s) removed (e.g. {plain(self.example)!r})"


MAX_COUNTED_CLASSES = 100_000
"""Distinct target values counted at most (a regression target read as classes need not fill memory)."""


@dataclass
class ClassCount:
    """More distinct target values than a classification target may have: the target is of the wrong kind."""

    target: str
    max_classes: int
    labels: set = field(default_factory=set)

    def merge(self, other: ClassCount) -> None:
        if len(self.labels) < MAX_COUNTED_CLASSES:
            self.labels |= other.labels

    def problem(self) -> str | None:
        distinct = len(self.labels)
        if distinct <= self.max_classes:
            return None
        counted = f"at least {distinct}" if distinct >= MAX_COUNTED_CLASSES else str(distinct)
        return (f"target {self.target!r} has {counted} distinct values; a classification target has at most "
                f"{self.max_classes} classes (is this a regression target? set dataset.task)")

    def note(self) -> None:
        return None


Finding = WrongKind | ConstantColumn | DateOrder | PaddedText | ClassCount
"""What one chunk shows of a batch-level rule; the findings of all chunks are merged (core.validation_tally)."""


def date_order_problem(column: str, reference_format: str | None, written: str | None) -> str | None:
    """Why dates written as ``written`` cannot be read like the reference's, or None."""
    if not expectations.format_conflict(reference_format, written):
        return None
    return (
        f"column {column!r}: dates are written as {expectations.DATE_FORMATS[written]} in this batch but "
        f"as {expectations.DATE_FORMATS[reference_format]} in the reference batch, so the same text would "
        f"mean other dates; write them in one format ({expectations.DATE_FORMATS[reference_format]})"
    )


def parse_chunk(raw: pd.DataFrame, schema: DatasetSchema, labelled: bool, examples: int, limits: Limits,
                written_formats: dict[str, str | None] | None = None) -> _Parsed:
    """Turn text into typed columns; record what does not parse and what breaks the learnt expectations.

    Args:
        raw: One chunk of the batch as read (``_row`` first; the whole batch is one chunk).
        schema: The enforced schema.
        labelled: Whether the batch has labels.
        examples: Failing values kept per rule.
        limits: How far values may stray (``limits.now`` fixed for the whole batch).
        written_formats: How each datetime column's dates are written in the whole batch
            (:func:`expectations.date_format` of its first values); default: judged from ``raw``.

    Returns:
        The typed chunk, its row rules' outcomes and its batch-level findings.
    """
    frame = pd.DataFrame({ROW_COLUMN: raw[ROW_COLUMN].to_numpy()})
    outcomes: list[RuleOutcome] = []
    findings: list[Finding] = []
    rows = raw[ROW_COLUMN].to_numpy()
    now = limits.now or datetime.now(timezone.utc)

    def row_rule(rule: str, column: str, bad: np.ndarray, description: str, original: pd.Series) -> None:
        count = int(bad.sum())
        outcomes.append(RuleOutcome(rule, column, "row", count == 0, count, description,
                                    _examples(rows[bad], original[bad], examples), rows[bad]))

    def constant(spec, values: pd.Series) -> None:
        findings.append(ConstantColumn(spec.name, expectations.varied(spec.observed),
                                       expectations.ConstantSummary.of(values)))

    def parse_rule(column: str, original: pd.Series, parsed: pd.Series, rule: str, what: str) -> None:
        bad = original.notna().to_numpy() & parsed.isna().to_numpy()
        count = int(bad.sum())
        outcomes.append(
            RuleOutcome(rule, column, "row", count == 0, count, f"values must be {what}",
                        _examples(rows[bad], original[bad], examples), rows[bad])
        )
        findings.append(WrongKind(column, what, count, int(original.notna().sum()), list(original[bad].iloc[:3])))

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
            written = (written_formats[spec.name] if written_formats is not None and spec.name in written_formats
                       else expectations.date_format(original))
            findings.append(DateOrder(date_order_problem(spec.name, reference_format, written)))
            parsed = expectations.parse_times(original, reference_format)
            parse_rule(spec.name, original, parsed, "values_parse_as_timestamps", "timestamps")
            latest = expectations.latest_plausible(now, limits.future_tolerance_hours)
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
            changed = stripped.notna() & (stripped != text)
            padded = int(changed.sum())
            findings.append(PaddedText(spec.name, padded, text[changed].iloc[0] if padded else None))
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
            findings.append(ClassCount(schema.target, schema.max_classes, set(labels.dropna().unique().tolist())))
            frame[schema.target] = labels
    return _Parsed(frame, outcomes, findings)


def id_text(series: pd.Series) -> pd.Series:
    """An id column's values as validation compares them: text, stripped (None where missing)."""
    return strip_text(_categorical_text(series))


def blank(series: pd.Series) -> pd.Series:
    """Missing or white-space-only cells."""
    return series.isna() | series.map(lambda v: isinstance(v, str) and not v.strip())
