"""Validate one batch against the dataset schema with a Great Expectations 1.x suite.

Two kinds of rule:

* **Row rules** say which rows are bad (a value that is not a number, out of range, not an
  allowed category, a missing or unknown label, a duplicated id). Bad rows are quarantined with
  every rule they broke; the rest go on.
* **Batch rules** say whether the batch as a whole can be trusted (columns match the schema, at
  least one row, no NaN flood in a feature, the target of the right kind, and the share of
  quarantined rows within ``max_invalid_fraction``). A batch that breaks one is held back.

Parsing text into numbers/timestamps happens first (GX checks values, not text), and its
failures are row rules too. Pure Python (no Dagster).
"""

from __future__ import annotations

import difflib
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np
import pandas as pd

from retrain_assets.core.columns import ROW_COLUMN
from retrain_assets.core import expectations

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


@dataclass
class ValidationReport:
    """Everything known about one batch after validation.

    Attributes:
        batch_id: The batch.
        rows: Rows in the batch.
        labelled: Whether the target column is present.
        valid: Typed rows that passed every row rule (``_row`` first).
        quarantine: One row per bad row: ``_row``, ``failed_rules``, ``reasons``, ``row_json``.
        outcomes: Every rule's outcome, in suite order.
        schema_problems: Column-level problems that break the batch (missing/extra/renamed
            columns, a column of the wrong kind, a target of the wrong kind).
        notes: Warnings that do not fail the batch (e.g. extra columns dropped by config).
        max_invalid_fraction: The configured limit on the share of quarantined rows.
        schema: The schema the batch was checked against.
    """

    batch_id: str
    rows: int
    labelled: bool
    valid: pd.DataFrame
    quarantine: pd.DataFrame
    outcomes: list[RuleOutcome]
    schema_problems: list[str]
    notes: list[str]
    max_invalid_fraction: float
    schema: DatasetSchema

    @property
    def quarantined_rows(self) -> int:
        """How many rows were quarantined."""
        return len(self.quarantine)

    @property
    def invalid_fraction(self) -> float:
        """Share of rows quarantined (0 for an empty batch)."""
        return self.quarantined_rows / self.rows if self.rows else 0.0

    @property
    def failed_batch_rules(self) -> list[RuleOutcome]:
        """Batch rules that failed."""
        return [o for o in self.outcomes if o.level == "batch" and not o.success]

    @property
    def failed_rules(self) -> list[RuleOutcome]:
        """Every rule that failed, batch rules first."""
        return self.failed_batch_rules + [o for o in self.outcomes if o.level == "row" and not o.success]

    @property
    def passed(self) -> bool:
        """True when the batch may go downstream."""
        return (
            self.rows > 0
            and not self.schema_problems
            and not self.failed_batch_rules
            and self.invalid_fraction <= self.max_invalid_fraction
        )

    @property
    def summary(self) -> str:
        """One sentence on the outcome."""
        pct = f"{self.invalid_fraction:.1%}"
        limit = f"{self.max_invalid_fraction:.1%}"
        if self.schema_problems:
            return f"batch {self.batch_id} held back: schema broken — " + "; ".join(self.schema_problems)
        if self.failed_batch_rules:
            return f"batch {self.batch_id} held back: " + "; ".join(o.sentence() for o in self.failed_batch_rules)
        if not self.passed:
            return (
                f"batch {self.batch_id} held back: {self.quarantined_rows} of {self.rows} rows ({pct}) failed "
                f"validation, above the {limit} limit"
            )
        if self.quarantined_rows:
            return (
                f"batch {self.batch_id} passed: {len(self.valid)} rows valid, {self.quarantined_rows} ({pct}) "
                f"quarantined, within the {limit} limit"
            )
        return f"batch {self.batch_id} passed: all {self.rows} rows valid"


# --- parsing ---------------------------------------------------------------------------------


def _examples(rows: np.ndarray, values: pd.Series, limit: int) -> list[tuple[int, Any]]:
    out = []
    for r, v in zip(rows[:limit], values.iloc[:limit]):
        out.append((int(r), _plain(v)))
    return out


SHOWN_CHARS = 200  # a text value shown in a message or kept in a quarantine row is cut to this


def _plain(value: Any) -> Any:
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


def _parse(raw: pd.DataFrame, schema: DatasetSchema, labelled: bool, examples: int, limits: Limits) -> _Parsed:
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
                f"{_plain(value)!r}, but it varied in the reference batch — a broken feed? A model cannot learn "
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
            shown = ", ".join(repr(_plain(v)) for v in original[bad].iloc[:3])
            problems.append(
                f"column {column!r} should hold {what}, but {count} of {present} values do not (e.g. {shown})"
            )

    for spec in schema.columns:
        if spec.name not in raw.columns:
            continue
        original = raw[spec.name]
        if spec.kind == "numeric":
            parsed = numeric_parse(original)
            parse_rule(spec.name, original, parsed, "values_parse_as_numbers", "numbers")
            infinite = np.isinf(parsed.to_numpy())
            count = int(infinite.sum())
            outcomes.append(
                RuleOutcome("values_are_finite", spec.name, "row", count == 0, count,
                            "values must be finite (not inf/-inf)",
                            _examples(rows[infinite], original[infinite], examples), rows[infinite])
            )
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
                             f"{_plain(text[stripped != text].dropna().iloc[0])!r})")
            if spec.kind == "categorical":
                constant(spec, stripped)
            frame[spec.name] = stripped

    if labelled:
        original = raw[schema.target].mask(_blank(raw[schema.target]))
        if schema.task == "regression":
            parsed = numeric_parse(original)
            parse_rule(schema.target, original, parsed, "target_parses_as_numbers", "numbers (regression target)")
            infinite = np.isinf(parsed.to_numpy())
            count = int(infinite.sum())
            outcomes.append(
                RuleOutcome("target_is_finite", schema.target, "row", count == 0, count,
                            "target values must be finite (not inf/-inf)",
                            _examples(rows[infinite], original[infinite], examples), rows[infinite])
            )
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


# --- the GX suite ----------------------------------------------------------------------------


def _suite_items(schema: DatasetSchema, present: list[str], labelled: bool, null_share: float) -> list[tuple[Any, Level, str | None, str]]:
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


def _run_gx(frame: pd.DataFrame, items: list[tuple[Any, Level, str | None, str]], examples: int) -> list[RuleOutcome]:
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
        shown = [(int(i[ROW_COLUMN]), _plain(i.get(column))) for i in index_list[:examples]]
        count = int(info.get("unexpected_count") or 0)
        if level == "batch" and column is None and not res.success:
            count = len(frame)
        outcomes.append(
            RuleOutcome(expectation.expectation_type, column, level, bool(res.success), count, description,
                        shown, failed_rows if level == "row" else np.empty(0, dtype=np.int64))
        )
    return outcomes


# --- columns against the schema ----------------------------------------------------------------


def _rename_candidates(missing: str, arrived: list[str]) -> list[str]:
    """Arrived columns that look like a renamed ``missing`` column, best first."""
    low = missing.lower()
    same = [c for c in arrived if c.lower() == low]
    containing = [c for c in arrived if c not in same and (low in c.lower() or c.lower() in low)]
    similar = [c for c in difflib.get_close_matches(missing, arrived, n=3, cutoff=0.6) if c not in same + containing]
    return same + containing + similar


def column_problems(columns: list[str], schema: DatasetSchema) -> tuple[list[str], list[str], list[str]]:
    """Compare arriving columns with the schema.

    Returns:
        ``(problems, notes, extra_columns)``: problems break the batch; notes are warnings.
    """
    expected = schema.column_names
    arriving = [c for c in columns if c not in schema.ignore_columns and c != ROW_COLUMN]
    missing = [c for c in expected if c not in arriving]
    extra = [c for c in arriving if c not in expected and c != schema.target]
    problems: list[str] = []
    notes: list[str] = []
    unmatched_extra = list(extra)
    for column in missing:
        close = _rename_candidates(column, unmatched_extra)
        if close:
            problems.append(f"column {column!r} is missing; {close[0]!r} arrived instead (renamed?)")
            unmatched_extra.remove(close[0])
        else:
            problems.append(f"column {column!r} is missing")
    if schema.target not in arriving:
        close = _rename_candidates(schema.target, unmatched_extra)
        if close:
            problems.append(
                f"target {schema.target!r} is missing but {close[0]!r} arrived (renamed target?); "
                "a batch without labels must simply leave the target column out"
            )
            unmatched_extra.remove(close[0])
    for column in unmatched_extra:
        if schema.allow_extra_columns:
            notes.append(f"unexpected column {column!r} dropped (schema.allow_extra_columns is true)")
        else:
            problems.append(
                f"unexpected column {column!r} (not in the schema; add it to schema.ignore_columns, or set "
                "schema.allow_extra_columns, if it is expected)"
            )
    return problems, notes, extra


# --- the whole batch -------------------------------------------------------------------------


def validate_batch(
    raw: pd.DataFrame,
    schema: DatasetSchema,
    *,
    batch_id: str,
    max_invalid_fraction: float = 0.05,
    examples: int = 5,
    limits: Limits | None = None,
) -> ValidationReport:
    """Validate one batch as read from its file.

    Args:
        raw: The batch as read by :func:`retrain_assets.core.ingestion.read_batch` (``_row`` first).
        schema: The enforced schema.
        batch_id: The batch id (for messages).
        max_invalid_fraction: Largest share of quarantined rows for the batch to pass.
        examples: Failing values to keep per rule.
        limits: How far values may stray from the reference (default :class:`Limits`).

    Returns:
        The report with valid rows, quarantined rows and every rule's outcome.
    """
    if ROW_COLUMN not in raw.columns:
        raise ValueError(f"batch {batch_id}: the frame has no {ROW_COLUMN!r} column; read it with read_batch()")
    raw = raw.drop(columns=[c for c in schema.ignore_columns if c in raw.columns])
    notes_on_labels: list[str] = []
    if schema.target in raw.columns and _blank(raw[schema.target]).all():
        # A target column with no value at all is an unlabelled batch (labels come later), not a failed one.
        raw = raw.drop(columns=[schema.target])
        notes_on_labels.append(f"target {schema.target!r} is empty in every row: taken in as an unlabelled batch")
    labelled = schema.target in raw.columns
    if labelled:
        missing = int(_blank(raw[schema.target]).sum())
        if missing:
            notes_on_labels.append(
                f"{missing} of {len(raw)} rows have no {schema.target!r} yet: kept as unlabelled rows (used for drift "
                "and label-free estimates, not for training or scoring until their labels arrive)"
            )
    problems, notes, extra = column_problems(list(raw.columns), schema)
    parsed = _parse(raw, schema, labelled, examples, limits or Limits())
    problems += parsed.problems
    notes = notes + parsed.notes + notes_on_labels
    frame = parsed.frame
    present = [c for c in schema.column_names if c in frame.columns]

    items = _suite_items(schema, present, labelled, schema.max_null_fraction)
    gx_frame = frame
    if extra and not schema.allow_extra_columns:
        gx_frame = frame.assign(**{c: raw[c].to_numpy() for c in extra})
    outcomes = parsed.outcomes + _run_gx(gx_frame, items, examples)
    column_rule = next(o for o in outcomes if o.rule == "expect_table_columns_to_match_set")
    if not column_rule.success:
        column_rule.description = "; ".join(p for p in problems if p.startswith(("column", "unexpected", "target")))
        column_rule.description = column_rule.description or "columns do not match the schema"

    rows = raw[ROW_COLUMN].to_numpy()
    reasons: dict[int, list[str]] = {}
    rules: dict[int, set[str]] = {}
    if problems:
        for r in rows:
            reasons[int(r)] = ["schema: " + "; ".join(problems)]
            rules[int(r)] = {"schema"}
    values_by_row = {}
    for outcome in outcomes:
        if outcome.level != "row" or outcome.success:
            continue
        for r in outcome.failed_rows.tolist():
            shown = raw_value(raw, outcome.column, r, values_by_row)
            reasons.setdefault(r, []).append(f"{outcome.column}: {outcome.description} (got {shown!r})")
            rules.setdefault(r, set()).add(outcome.rule)

    bad_rows = np.array(sorted(reasons), dtype=np.int64)
    is_bad = np.isin(rows, bad_rows)
    valid = frame.loc[~is_bad].reset_index(drop=True)
    if labelled and schema.task == "classification" and len(valid):
        labels = valid[schema.target]
        if pd.api.types.infer_dtype(labels, skipna=True) == "integer":
            # rows whose label is late keep a null: nullable integers then, plain int64 otherwise
            valid[schema.target] = labels.astype("Int64" if labels.isna().any() else "int64")
    raw_bad = raw.loc[is_bad]
    quarantine = pd.DataFrame({
        ROW_COLUMN: raw_bad[ROW_COLUMN].to_numpy(dtype=np.int64),
        "failed_rules": [", ".join(sorted(rules[int(r)])) for r in raw_bad[ROW_COLUMN]],
        "reasons": ["; ".join(reasons[int(r)]) for r in raw_bad[ROW_COLUMN]],
        "row_json": rows_as_json(raw_bad.drop(columns=[ROW_COLUMN])),
    })
    return ValidationReport(
        batch_id=batch_id,
        rows=len(raw),
        labelled=labelled,
        valid=valid,
        quarantine=quarantine,
        outcomes=outcomes,
        schema_problems=problems,
        notes=notes,
        max_invalid_fraction=max_invalid_fraction,
        schema=schema,
    )


def _blank(series: pd.Series) -> pd.Series:
    """Missing or white-space-only cells."""
    return series.isna() | series.map(lambda v: isinstance(v, str) and not v.strip())


def raw_value(raw: pd.DataFrame, column: str | None, row: int, cache: dict) -> Any:
    """The value as it arrived in the file for ``row`` (1-based) of ``column``."""
    if column is None or column not in raw.columns:
        return None
    if column not in cache:
        cache[column] = dict(zip(raw[ROW_COLUMN].tolist(), raw[column].tolist()))
    return _plain(cache[column].get(row))


def rows_as_json(frame: pd.DataFrame) -> list[str]:
    """Each row as the JSON kept in the quarantine table (values as they arrived, long text cut)."""
    records = frame.to_dict(orient="records")
    return [json.dumps({k: _plain(v) for k, v in rec.items()}, default=str) for rec in records]
