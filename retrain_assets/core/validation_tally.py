"""A batch judged chunk by chunk: what must be known of the whole batch before its rows are judged (the
pre-pass), and its chunks' outcomes and findings added up into the batch's. Pure Python (no Dagster).

Row rules look at one row and run on each chunk. What needs the whole batch is gathered here: the
pre-pass reads only the target, id and time columns (is the target empty everywhere, which ids
occur twice anywhere in the batch, how its dates are written); then each chunk's outcomes are
summed (counts, the first examples, a ``mostly`` share judged on the batch's totals) and its
findings merged (values that do not parse, a constant column, padded text, too many classes).
A batch read as one chunk gives exactly what it gave before chunks existed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Protocol

import numpy as np
import pandas as pd

from retrain_assets.core import expectations
from retrain_assets.core.columns import ROW_COLUMN
from retrain_assets.core.schema import DatasetSchema
from retrain_assets.core.validation_rules import Finding, RuleOutcome, blank, id_text

ChunkReader = Callable[[list[str] | None], Iterable[pd.DataFrame]]
"""``chunks(columns)``: the batch in ``_row`` order, chunk by chunk (at least one chunk, maybe empty),
with ``_row`` and the given columns (all when None)."""


class IdCounter(Protocol):
    """Counts a batch's ids chunk by chunk and says which occur more than once."""

    def add(self, column: str, values: pd.Series) -> None:
        """Count one chunk's ids (as compared: :func:`id_text`; None is not an id)."""

    def duplicated(self, column: str) -> set:
        """The ids of ``column`` seen more than once."""


class FrameIdCounter:
    """:class:`IdCounter` in memory (a batch held as one frame)."""

    def __init__(self) -> None:
        self._values: dict[str, list[pd.Series]] = defaultdict(list)

    def add(self, column: str, values: pd.Series) -> None:
        self._values[column].append(values.dropna())

    def duplicated(self, column: str) -> set:
        pieces = self._values.get(column)
        if not pieces:
            return set()
        counts = pd.concat(pieces, ignore_index=True).value_counts()
        return set(counts.index[counts > 1].tolist())


@dataclass(frozen=True)
class BatchFacts:
    """What the rows of a batch are judged with, known only from the whole batch.

    Attributes:
        rows: Rows in the batch.
        drop_target: The target is blank in every row: the batch is taken in as unlabelled.
        labelled: Whether the batch has labels (its target column stays).
        notes_on_labels: Notes on missing labels, for the report.
        duplicated_ids: Id column -> ids that occur more than once in the batch.
        written_formats: Datetime column -> how its dates are written (:func:`expectations.date_format`
            of its first non-null values).
    """

    rows: int
    drop_target: bool
    labelled: bool
    notes_on_labels: list[str]
    duplicated_ids: dict[str, set]
    written_formats: dict[str, str | None]


def batch_facts(chunks: ChunkReader, columns: list[str], schema: DatasetSchema, ids: IdCounter) -> BatchFacts:
    """Read the target, id and time columns of a batch once, chunk by chunk, for :class:`BatchFacts`.

    Args:
        chunks: The batch (:data:`ChunkReader`).
        columns: Its columns as stored, ignored ones included.
        schema: The enforced schema.
        ids: Where ids are counted (in memory, or in DuckDB for a large batch).
    """
    arriving = [c for c in columns if c not in schema.ignore_columns and c != ROW_COLUMN]
    target = schema.target if schema.target in arriving else None
    id_columns = [s.name for s in schema.columns if s.kind == "id" and s.name in arriving]
    time_columns = [s.name for s in schema.columns if s.kind == "datetime" and s.name in arriving]
    rows = blanks = 0
    dates: dict[str, list[pd.Series]] = {c: [] for c in time_columns}
    dated = dict.fromkeys(time_columns, 0)
    for chunk in chunks([*([target] if target else []), *id_columns, *time_columns]):
        rows += len(chunk)
        if target:
            blanks += int(blank(chunk[target]).sum())
        for column in id_columns:
            ids.add(column, id_text(chunk[column]))
        for column in time_columns:
            if dated[column] < expectations.DATE_SAMPLE:
                present = chunk[column].dropna()
                dates[column].append(present)
                dated[column] += len(present)
    notes: list[str] = []
    drop_target = target is not None and blanks == rows
    if drop_target:
        # A target column with no value at all is an unlabelled batch (labels come later), not a failed one.
        notes.append(f"target {target!r} is empty in every row: taken in as an unlabelled batch")
    elif target is not None and blanks:
        notes.append(
            f"{blanks} of {rows} rows have no {target!r} yet: kept as unlabelled rows (used for drift "
            "and label-free estimates, not for training or scoring until their labels arrive)"
        )
    written = {c: expectations.date_format(pd.concat(dates[c], ignore_index=True) if dates[c] else pd.Series(dtype=object))
               for c in time_columns}
    return BatchFacts(rows, drop_target, target is not None and not drop_target, notes,
                      {c: ids.duplicated(c) for c in id_columns}, written)


class Tally:
    """The outcomes and findings of a batch's chunks, added up in suite order.

    Args:
        examples: Failing values kept per rule.
        keep_failed_rows: Keep every failing row number in the batch's outcomes (a batch held in
            memory); a batch streamed through the warehouse keeps them per chunk only.
    """

    def __init__(self, examples: int, *, keep_failed_rows: bool = True) -> None:
        self.examples = examples
        self.keep_failed_rows = keep_failed_rows
        self.rows = 0
        self._outcomes: list[RuleOutcome] | None = None
        self._failed: list[list[np.ndarray]] = []
        self._findings: list[Finding] = []

    def add(self, rows: int, outcomes: list[RuleOutcome], findings: list[Finding]) -> None:
        """Add one chunk of ``rows`` rows: its outcomes and findings (same rules in the same order each chunk)."""
        self.rows += rows
        if self._outcomes is None:
            self._outcomes = [replace(o, examples=list(o.examples)) for o in outcomes]
            self._failed = [[o.failed_rows] for o in outcomes]
            self._findings = list(findings)
            return
        if [(o.rule, o.column) for o in outcomes] != [(o.rule, o.column) for o in self._outcomes]:
            raise ValueError("chunks of one batch were judged with different rules")
        for i, (total, chunk) in enumerate(zip(self._outcomes, outcomes)):
            total.success = total.success and chunk.success
            total.unexpected_count += chunk.unexpected_count
            if len(total.examples) < self.examples:
                total.examples = (total.examples + chunk.examples)[: self.examples]
            if self.keep_failed_rows and len(chunk.failed_rows):
                self._failed[i].append(chunk.failed_rows)
        for total, chunk in zip(self._findings, findings):
            total.merge(chunk)

    def outcomes(self) -> list[RuleOutcome]:
        """Every rule's outcome on the whole batch."""
        out = []
        for total, failed in zip(self._outcomes or [], self._failed):
            if total.mostly is not None:  # GX's rule for a share of a column's values, on the batch's totals
                total.success = self.rows == 0 or (self.rows - total.unexpected_count) / self.rows >= total.mostly
            rows = np.concatenate(failed) if self.keep_failed_rows and failed else np.empty(0, dtype=np.int64)
            out.append(replace(total, failed_rows=rows.astype(np.int64)))
        return out

    def problems(self) -> list[str]:
        """What breaks the batch as a whole, in column order."""
        return [p for p in (f.problem() for f in self._findings) if p]

    def notes(self) -> list[str]:
        """Warnings that do not fail the batch, in column order."""
        return [n for n in (f.note() for f in self._findings) if n]
