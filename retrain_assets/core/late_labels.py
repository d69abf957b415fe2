"""Labels that arrive after their rows. Pure Python (no Dagster).

A batch may land before its outcomes are known: rows with an empty target are kept as unlabelled
rows (used for drift and label-free estimates). Their labels are delivered later as a **labels
file**, landed like any batch (``labels_2024-05-08.csv`` or any batch id) whose columns are exactly
the id columns (``schema.id_columns``) and the target::

    customer_id,churned
    C0007000012,1
    C0007000013,0

Each label is attached to the earlier validated row with that id whose label is still empty;
nothing else about a row changes, and a label already known is never overwritten. A row of the
labels file is quarantined (with its reason) when its id is missing, duplicated in the file, not
found among earlier validated rows, found in several unlabelled rows, or when its label is empty,
not a known class or not a finite number, or differs from the label that row already has. The
labels file itself adds no rows; the batches it labelled are scored again (drift_report,
production_metrics) and their new labelled rows count for training and retrain triggers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd


from retrain_assets.core.columns import BATCH_COLUMN, ROW_COLUMN
from retrain_assets.core.schema import DatasetSchema, normalise_labels, numeric_parse, strip_text
from retrain_assets.core.validation import ValidationReport, rows_as_json
from retrain_assets.core.validation_rules import RuleOutcome



def id_columns(schema: DatasetSchema) -> list[str]:
    """The schema's identifier columns, in file order."""
    return [c.name for c in schema.columns if c.kind == "id"]


def _arriving(columns: Sequence[str], schema: DatasetSchema) -> list[str]:
    return [c for c in columns if c != ROW_COLUMN and c not in schema.ignore_columns]


def is_labels_file(columns: Sequence[str], schema: DatasetSchema) -> bool:
    """Whether a landed batch is a labels file: exactly the id columns and the target."""
    ids = id_columns(schema)
    arriving = set(_arriving(columns, schema))
    return bool(ids) and arriving == {*ids, schema.target}


def labels_file_hint(columns: Sequence[str], schema: DatasetSchema) -> str | None:
    """What to do when a batch looks like labels for earlier rows but cannot be read as such."""
    arriving = set(_arriving(columns, schema))
    features = set(schema.feature_columns)
    if schema.target not in arriving or arriving & features:
        return None
    ids = id_columns(schema)
    if not ids:
        return (f"it holds the target {schema.target!r} and no feature: if these are labels for earlier rows, set "
                "schema.id_columns to the columns that identify a row, and land a file with exactly those columns "
                "and the target")
    return (f"it holds the target {schema.target!r} and no feature: a labels file for earlier rows must have exactly "
            f"the id columns {ids} and {schema.target!r} (it has {sorted(arriving)})")


@dataclass
class LateLabels:
    """What a labels file attached, and what it could not.

    Attributes:
        batch_id: The labels file's batch id.
        rows: Rows in the file.
        updates: One row per label to attach: ``_batch_id``, ``_row`` (of the earlier row), ``label``.
        already_known: Rows whose row already had exactly this label (nothing to do).
        quarantine: One row per rejected line: ``_row``, ``failed_rules``, ``reasons``, ``row_json``.
        rules: Rule name → how many rows broke it.
    """

    batch_id: str
    rows: int
    updates: pd.DataFrame
    already_known: int
    quarantine: pd.DataFrame
    rules: dict[str, int] = field(default_factory=dict)

    @property
    def labelled_batches(self) -> list[str]:
        """Batches that received at least one label, in order."""
        return sorted(set(self.updates[BATCH_COLUMN].tolist()))

    def summary(self) -> str:
        """One sentence a person reads."""
        per_batch = self.updates.groupby(BATCH_COLUMN).size() if len(self.updates) else pd.Series(dtype=int)
        where = ", ".join(f"{n} in {b}" for b, n in per_batch.items()) or "none"
        text = (f"labels file {self.batch_id}: {len(self.updates)} of {self.rows} labels attached to earlier rows "
                f"({where})")
        if self.already_known:
            text += f"; {self.already_known} already known"
        if len(self.quarantine):
            broke = ", ".join(f"{rule} {n}" for rule, n in sorted(self.rules.items()))
            text += f"; {len(self.quarantine)} quarantined ({broke})"
        return text


RULES = {
    "id_present": "the id must be present",
    "id_unique_in_file": "an id may appear once in a labels file",
    "label_present": "a labels file must give a label",
    "label_is_known_class": "the label must be one of the known classes",
    "label_is_finite_number": "the label must be a finite number",
    "id_known": "the id must name an earlier validated row",
    "id_unambiguous": "the id must name one unlabelled row",
    "label_not_overwritten": "a label already known is never overwritten",
}


@dataclass
class LabelsFileReport(ValidationReport):
    """A labels file's outcome, stored like a batch's validation (it adds no rows of its own)."""

    late: LateLabels | None = None

    @property
    def summary(self) -> str:
        text = self.late.summary() if self.late is not None else f"labels file {self.batch_id}"
        if not self.passed:
            return (f"labels file {self.batch_id} held back: {self.quarantined_rows} of {self.rows} rows "
                    f"({self.invalid_fraction:.1%}) could not be attached, above the {self.max_invalid_fraction:.1%} "
                    f"limit; no label was attached — {text}")
        return text


def as_report(late: LateLabels, schema: DatasetSchema, max_invalid_fraction: float) -> LabelsFileReport:
    """The validation record of a labels file: its quarantine and one row rule per reason."""
    outcomes = []
    for rule, count in sorted(late.rules.items()):
        mask = late.quarantine["failed_rules"].str.contains(rule, regex=False)
        rows = late.quarantine.loc[mask]
        failed = rows[ROW_COLUMN].to_numpy(dtype=np.int64)
        examples = [(int(r), json.loads(j)) for r, j in zip(failed[:3], rows["row_json"].head(3))]
        outcomes.append(RuleOutcome(rule, None, "row", False, count, RULES.get(rule, rule), examples, failed))
    return LabelsFileReport(
        batch_id=late.batch_id, rows=late.rows, labelled=False, valid=pd.DataFrame(), quarantine=late.quarantine,
        outcomes=outcomes, schema_problems=[], notes=[], max_invalid_fraction=max_invalid_fraction, schema=schema,
        late=late,
    )


def _key(frame: pd.DataFrame, ids: list[str]) -> pd.Series:
    """One text key per row from its id columns (ids are compared as stripped text)."""
    parts = [strip_text(frame[c].astype(object).where(frame[c].notna(), None)).map(
        lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) or v == "" else str(v))
        for c in ids]
    key = parts[0]
    for part in parts[1:]:
        key = key.combine(part, lambda a, b: None if a is None or b is None else f"{a}\x1f{b}")
    return key


def match_late_labels(
    raw: pd.DataFrame,
    schema: DatasetSchema,
    known: pd.DataFrame,
    *,
    batch_id: str,
) -> LateLabels:
    """Match a labels file against earlier validated rows.

    Args:
        raw: The labels file as read (``_row`` first; values as text).
        schema: The stored schema (its id columns, target, task and classes).
        known: Earlier validated rows: the id columns, ``_batch_id``, ``_row`` and the target
            (null where the label has not arrived).
        batch_id: The labels file's batch id (for messages).
    """
    ids = id_columns(schema)
    target = schema.target
    rows = raw[ROW_COLUMN].to_numpy(dtype=np.int64)
    key = _key(raw, ids)
    original = raw[target].astype(object).where(raw[target].notna(), None)
    original = original.where(strip_text(original).fillna("") != "", None)
    if schema.task == "regression":
        labels = numeric_parse(original)
        bad_label = original.notna() & ~np.isfinite(labels.fillna(np.nan).to_numpy(dtype=float))
    else:
        labels = normalise_labels(original)
        bad_label = labels.notna() & ~labels.isin(list(schema.classes)) if schema.classes else labels.isna() & False

    reasons: dict[int, list[str]] = {}
    broke: dict[int, set[str]] = {}

    def quarantine(mask: np.ndarray, rule: str, why) -> None:
        for position in np.flatnonzero(mask):
            row = int(rows[position])
            reasons.setdefault(row, []).append(why(position) if callable(why) else why)
            broke.setdefault(row, set()).add(rule)

    quarantine(key.isna().to_numpy(), "id_present", f"id {ids} must be present")
    quarantine((key.notna() & key.duplicated(keep=False)).to_numpy(), "id_unique_in_file",
               "the same id appears more than once in this labels file (every copy is quarantined)")
    quarantine(original.isna().to_numpy(), "label_present", f"{target!r} is empty: a labels file must give a label")
    if schema.task == "regression":
        quarantine(np.asarray(bad_label), "label_is_finite_number", f"{target!r} must be a finite number")
    else:
        known_classes = list(schema.classes) if schema.classes else []
        quarantine(np.asarray(bad_label), "label_is_known_class",
                   lambda p: f"{target!r} must be one of the known classes {known_classes} (got {original.iloc[p]!r})")

    known = known.reset_index(drop=True)
    known_key = _key(known, ids) if len(known) else pd.Series([], dtype=object)
    by_key: dict[str, list[int]] = {}
    for index, value in enumerate(known_key.tolist()):
        if value is not None:
            by_key.setdefault(value, []).append(index)

    updates = []
    already = 0
    for position, value in enumerate(key.tolist()):
        row = int(rows[position])
        if row in reasons:
            continue
        matches = by_key.get(value, [])
        label = labels.iloc[position]
        if not matches:
            quarantine(_only(position, len(rows)), "id_known",
                       f"no earlier validated row has id {value!r} (its batch may not have landed, or was held back): "
                       "land this label again after the row's batch is in")
            continue
        open_rows = [m for m in matches if pd.isna(known.at[m, target])]
        same = [m for m in matches if not pd.isna(known.at[m, target]) and _equal(known.at[m, target], label)]
        if not open_rows:
            if same:
                already += 1
                continue
            m = matches[0]
            quarantine(_only(position, len(rows)), "label_not_overwritten",
                       f"row {int(known.at[m, ROW_COLUMN])} of batch {known.at[m, BATCH_COLUMN]} already has label "
                       f"{_plain(known.at[m, target])!r}; this file says {_plain(label)!r}. Labels are never "
                       f"overwritten: correct that batch with the replace_batch job")
            continue
        if len(open_rows) > 1:
            batches = sorted({str(known.at[m, BATCH_COLUMN]) for m in open_rows})
            quarantine(_only(position, len(rows)), "id_unambiguous",
                       f"id {value!r} matches {len(open_rows)} unlabelled rows (batches {batches}); ids must name "
                       "one row")
            continue
        m = open_rows[0]
        updates.append({BATCH_COLUMN: str(known.at[m, BATCH_COLUMN]), ROW_COLUMN: int(known.at[m, ROW_COLUMN]),
                        "label": _plain(label)})

    bad = np.array(sorted(reasons), dtype=np.int64)
    raw_bad = raw.loc[np.isin(rows, bad)]
    q = pd.DataFrame({
        ROW_COLUMN: raw_bad[ROW_COLUMN].to_numpy(dtype=np.int64),
        "failed_rules": [", ".join(sorted(broke[int(r)])) for r in raw_bad[ROW_COLUMN]],
        "reasons": ["; ".join(reasons[int(r)]) for r in raw_bad[ROW_COLUMN]],
        "row_json": rows_as_json(raw_bad.drop(columns=[ROW_COLUMN])),
    })
    counts: dict[str, int] = {}
    for rules in broke.values():
        for rule in rules:
            counts[rule] = counts.get(rule, 0) + 1
    return LateLabels(
        batch_id=batch_id,
        rows=len(raw),
        updates=pd.DataFrame(updates, columns=[BATCH_COLUMN, ROW_COLUMN, "label"]),
        already_known=already,
        quarantine=q,
        rules=counts,
    )


def _only(position: int, n: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[position] = True
    return mask


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _equal(a: Any, b: Any) -> bool:
    a, b = _plain(a), _plain(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return str(a) == str(b)
