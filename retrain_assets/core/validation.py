"""Validate one batch against the dataset schema with a Great Expectations 1.x suite.

Two kinds of rule:

* **Row rules** say which rows are bad (a value that is not a number, out of range, not an
  allowed category, a missing or unknown label, a duplicated id). Bad rows are quarantined with
  every rule they broke; the rest go on.
* **Batch rules** say whether the batch as a whole can be trusted (columns match the schema, at
  least one row, no NaN flood in a feature, the target of the right kind, and the share of
  quarantined rows within ``max_invalid_fraction``). A batch that breaks one is held back.

Parsing text into numbers/timestamps happens first (GX checks values, not text), and its
failures are row rules too. A batch is judged chunk by chunk (:func:`judge_batch`; one chunk when
it is held in memory): row rules on each chunk, batch rules on totals added up over the chunks
(:mod:`retrain_assets.core.validation_tally`), so a large batch never has to be one frame.
Pure Python (no Dagster).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, replace as dc_replace
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, Protocol

import numpy as np
import pandas as pd

from retrain_assets.core.columns import ROW_COLUMN

from retrain_assets.core.schema import DatasetSchema
from retrain_assets.core.gx_suite import UNIQUE_RULE, GxSuite, suite_items, unique_outcome
from retrain_assets.core.validation_rules import Limits, RuleOutcome, parse_chunk, plain
from retrain_assets.core.validation_tally import ChunkReader, FrameIdCounter, IdCounter, Tally, batch_facts


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
        stored_counts: ``(valid, quarantined)`` rows when they were written to the warehouse as
            the batch was judged (:mod:`retrain_assets.core.validation_store`); ``valid`` and
            ``quarantine`` then hold only the first of them. None: both frames are whole.
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
    stored_counts: tuple[int, int] | None = None

    @property
    def valid_rows(self) -> int:
        """How many rows passed every row rule."""
        return self.stored_counts[0] if self.stored_counts is not None else len(self.valid)

    @property
    def quarantined_rows(self) -> int:
        """How many rows were quarantined."""
        return self.stored_counts[1] if self.stored_counts is not None else len(self.quarantine)

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
                f"batch {self.batch_id} passed: {self.valid_rows} rows valid, {self.quarantined_rows} ({pct}) "
                f"quarantined, within the {limit} limit"
            )
        return f"batch {self.batch_id} passed: all {self.rows} rows valid"


# --- parsing ---------------------------------------------------------------------------------


# --- the GX suite ----------------------------------------------------------------------------


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


# --- the whole batch, chunk by chunk ----------------------------------------------------------


class ValidationSink(Protocol):
    """Where a batch's judged rows go, chunk by chunk: kept in memory, or written to the warehouse."""

    def add(self, valid: pd.DataFrame, quarantine: pd.DataFrame) -> None:
        """One chunk's typed valid rows and quarantined rows."""

    def hold_back_all(self, reason: str, raw_chunks: Iterable[pd.DataFrame]) -> None:
        """The batch's schema is broken: quarantine every row with ``reason`` first (``raw_chunks``: the
        batch as read, again)."""

    def result(self) -> tuple[pd.DataFrame, pd.DataFrame, tuple[int, int] | None]:
        """``(valid, quarantine, stored_counts)`` for the :class:`ValidationReport`."""


def judge_batch(
    chunks: ChunkReader,
    columns: list[str],
    schema: DatasetSchema,
    *,
    batch_id: str,
    sink: ValidationSink,
    ids: IdCounter,
    max_invalid_fraction: float = 0.05,
    examples: int = 5,
    limits: Limits | None = None,
    keep_failed_rows: bool = True,
) -> ValidationReport:
    """Validate a batch read chunk by chunk; a batch held in memory is one chunk (:func:`validate_batch`).

    A pre-pass reads the target, id and time columns (:func:`batch_facts`); then each chunk is parsed,
    checked by the GX suite (built once) and split into valid and quarantined rows, which go to
    ``sink``; batch rules are judged on the totals (:class:`Tally`). Rows keep every reason they
    got; when the schema turns out broken, every row is quarantined with the schema's reason first.

    Args:
        chunks: The batch as read (:data:`ChunkReader`).
        columns: Its columns as stored (``_row`` included).
        schema: The enforced schema.
        batch_id: The batch id (for messages).
        sink: Where valid and quarantined rows go.
        ids: Where ids are counted to find duplicates across chunks.
        max_invalid_fraction: Largest share of quarantined rows for the batch to pass.
        examples: Failing values to keep per rule.
        limits: How far values may stray from the reference (default :class:`Limits`; its ``now``
            is fixed once for the whole batch).
        keep_failed_rows: Keep every failing row in the report's outcomes.

    Returns:
        The report; its valid and quarantined rows are what ``sink`` says.
    """
    limits = limits or Limits()
    limits = dc_replace(limits, now=limits.now or datetime.now(timezone.utc))
    facts = batch_facts(chunks, columns, schema, ids)
    dropped = [c for c in schema.ignore_columns if c in columns] + ([schema.target] if facts.drop_target else [])
    arriving = [c for c in columns if c not in dropped]
    labelled = facts.labelled

    def prepared(pieces: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for raw in pieces:
            yield raw.drop(columns=[c for c in dropped if c in raw.columns])

    problems, notes, extra = column_problems(arriving, schema)
    present = [c for c in schema.column_names if c in arriving]
    suite = GxSuite(suite_items(schema, present, labelled, schema.max_null_fraction))
    tally = Tally(examples, keep_failed_rows=keep_failed_rows)
    for raw in prepared(chunks(None)):
        parsed = parse_chunk(raw, schema, labelled, examples, limits, facts.written_formats)
        frame = parsed.frame
        gx_frame = frame
        if extra and not schema.allow_extra_columns:
            gx_frame = frame.assign(**{c: raw[c].to_numpy() for c in extra})
        rows = raw[ROW_COLUMN].to_numpy()
        checked = [
            unique_outcome(o, frame[o.column], rows, facts.duplicated_ids.get(o.column, set()), examples)
            if o.rule == UNIQUE_RULE else o
            for o in suite.run(gx_frame, examples)
        ]
        outcomes = parsed.outcomes + checked
        tally.add(len(raw), outcomes, parsed.findings)
        sink.add(*_split_chunk(raw, frame, outcomes, schema, labelled))

    outcomes = tally.outcomes()
    problems += tally.problems()
    notes = notes + tally.notes() + facts.notes_on_labels
    column_rule = next(o for o in outcomes if o.rule == "expect_table_columns_to_match_set")
    if not column_rule.success:
        column_rule.description = "; ".join(p for p in problems if p.startswith(("column", "unexpected", "target")))
        column_rule.description = column_rule.description or "columns do not match the schema"
    if problems:
        sink.hold_back_all("schema: " + "; ".join(problems), prepared(chunks(None)))
    valid, quarantine, stored_counts = sink.result()
    return ValidationReport(
        batch_id=batch_id,
        rows=tally.rows,
        labelled=labelled,
        valid=valid,
        quarantine=quarantine,
        outcomes=outcomes,
        schema_problems=problems,
        notes=notes,
        max_invalid_fraction=max_invalid_fraction,
        schema=schema,
        stored_counts=stored_counts,
    )


def _split_chunk(raw: pd.DataFrame, frame: pd.DataFrame, outcomes: list[RuleOutcome], schema: DatasetSchema,
                 labelled: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One chunk's typed valid rows, and its quarantined rows with every row rule they broke."""
    reasons: dict[int, list[str]] = {}
    rules: dict[int, set[str]] = {}
    values_by_row: dict = {}
    for outcome in outcomes:
        if outcome.level != "row" or outcome.success:
            continue
        for r in outcome.failed_rows.tolist():
            shown = raw_value(raw, outcome.column, r, values_by_row)
            reasons.setdefault(r, []).append(f"{outcome.column}: {outcome.description} (got {shown!r})")
            rules.setdefault(r, set()).add(outcome.rule)
    rows = raw[ROW_COLUMN].to_numpy()
    is_bad = np.isin(rows, np.array(sorted(reasons), dtype=np.int64))
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
    return valid, quarantine


def held_back_rows(reason: str, raw: pd.DataFrame, quarantined: pd.DataFrame) -> pd.DataFrame:
    """Every row of a chunk quarantined because the batch's schema is broken: ``reason`` first, then
    the row rules a row broke already (``quarantined``: the chunk's quarantined rows so far)."""
    earlier = quarantined.set_index(ROW_COLUMN) if len(quarantined) else None
    rules, reasons, row_json = [], [], []
    fresh = rows_as_json(raw.drop(columns=[ROW_COLUMN]))
    for r, json_text in zip(raw[ROW_COLUMN].tolist(), fresh):
        if earlier is not None and r in earlier.index:
            old = earlier.loc[r]
            rules.append(", ".join(sorted({"schema", *old["failed_rules"].split(", ")})))
            reasons.append(f"{reason}; {old['reasons']}")
            row_json.append(old["row_json"])
        else:
            rules.append("schema")
            reasons.append(reason)
            row_json.append(json_text)
    return pd.DataFrame({ROW_COLUMN: raw[ROW_COLUMN].to_numpy(dtype=np.int64), "failed_rules": rules,
                         "reasons": reasons, "row_json": row_json})


class _FrameSink:
    """:class:`ValidationSink` in memory: the report holds every valid and quarantined row."""

    def __init__(self) -> None:
        self.valid: list[pd.DataFrame] = []
        self.quarantine: list[pd.DataFrame] = []

    def add(self, valid: pd.DataFrame, quarantine: pd.DataFrame) -> None:
        self.valid.append(valid)
        self.quarantine.append(quarantine)

    def hold_back_all(self, reason: str, raw_chunks: Iterable[pd.DataFrame]) -> None:
        quarantined = pd.concat(self.quarantine, ignore_index=True)
        self.quarantine = [held_back_rows(reason, raw, quarantined) for raw in raw_chunks]
        self.valid = [v.iloc[0:0] for v in self.valid[:1]]

    def result(self) -> tuple[pd.DataFrame, pd.DataFrame, None]:
        valid = self.valid[0] if len(self.valid) == 1 else pd.concat(self.valid, ignore_index=True)
        quarantine = self.quarantine[0] if len(self.quarantine) == 1 else pd.concat(self.quarantine, ignore_index=True)
        return valid, quarantine, None


def validate_batch(
    raw: pd.DataFrame,
    schema: DatasetSchema,
    *,
    batch_id: str,
    max_invalid_fraction: float = 0.05,
    examples: int = 5,
    limits: Limits | None = None,
) -> ValidationReport:
    """Validate one batch held in memory as read from its file (one chunk of :func:`judge_batch`).

    A batch too large for memory is validated where it is stored, chunk by chunk
    (:func:`retrain_assets.core.validation_store.validate_stored_batch`), with the same result.

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

    def chunks(columns: list[str] | None) -> Iterator[pd.DataFrame]:
        yield raw if columns is None else raw[[ROW_COLUMN, *columns]]

    return judge_batch(chunks, list(raw.columns), schema, batch_id=batch_id, sink=_FrameSink(), ids=FrameIdCounter(),
                       max_invalid_fraction=max_invalid_fraction, examples=examples, limits=limits)


def raw_value(raw: pd.DataFrame, column: str | None, row: int, cache: dict) -> Any:
    """The value as it arrived in the file for ``row`` (1-based) of ``column``."""
    if column is None or column not in raw.columns:
        return None
    if column not in cache:
        cache[column] = dict(zip(raw[ROW_COLUMN].tolist(), raw[column].tolist()))
    return plain(cache[column].get(row))


def rows_as_json(frame: pd.DataFrame) -> list[str]:
    """Each row as the JSON kept in the quarantine table (values as they arrived, long text cut)."""
    records = frame.to_dict(orient="records")
    return [json.dumps({k: plain(v) for k, v in rec.items()}, default=str) for rec in records]
