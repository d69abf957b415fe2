"""The Great Expectations 1.x suite a batch is checked with, built from the schema once per batch and
run on each chunk of it. Pure Python (no Dagster)."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pandas as pd

from retrain_assets.core.columns import ROW_COLUMN
from retrain_assets.core.schema import DatasetSchema
from retrain_assets.core.validation_rules import Level, RuleOutcome, plain

UNIQUE_RULE = "expect_column_values_to_be_unique"


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


class GxSuite:
    """The suite of one batch, built once (ephemeral GX context) and run on each of its chunks.

    Args:
        items: ``(expectation, level, column, description)`` from :func:`suite_items`.
    """

    def __init__(self, items: list[tuple[Any, Level, str | None, str]]):
        import great_expectations as gx

        self.items = items
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = {"globally": False, "metric_calculations": False, "profilers": False}
        name = f"batch_{uuid.uuid4().hex[:12]}"
        self._datasource = context.data_sources.add_pandas(name)
        self._batch_definition = self._datasource.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
        self._suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=[e for e, *_ in items]))

    def run(self, frame: pd.DataFrame, examples: int) -> list[RuleOutcome]:
        """Every expectation's outcome on ``frame`` (a chunk, or the whole batch), in suite order.

        Args:
            frame: Typed rows with ``_row``.
            examples: Failing values kept per expectation.

        Raises:
            RuntimeError: GX could not evaluate an expectation (names it and the column).
        """
        batch = self._batch_definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(
            self._suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ROW_COLUMN]}
        )
        self._forget(batch)
        # GX returns results in suite order, one per expectation; match them by id to be safe.
        by_id = {r.expectation_config.id: r for r in result.results}
        outcomes = []
        for expectation, level, column, description in self.items:
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
            mostly = getattr(expectation, "mostly", None) if level == "batch" and column is not None else None
            outcomes.append(
                RuleOutcome(expectation.expectation_type, column, level, bool(res.success), count, description,
                            shown, failed_rows if level == "row" else np.empty(0, dtype=np.int64), mostly)
            )
        return outcomes


    def _forget(self, batch) -> None:
        """Drop what GX keeps of a chunk once it is judged: its data and every metric computed on it
        (GX 1.x caches both per batch in the data source's execution engine, which lives as long as
        its context: a batch of many chunks would otherwise stay in memory whole)."""
        engine = self._datasource.get_execution_engine()
        engine.batch_manager.batch_data_cache.clear()
        engine.batch_manager.reset_batch_cache()
        cache = getattr(engine, "_metric_cache", None)  # no public way to empty it in GX 1.24
        if hasattr(cache, "clear"):
            cache.clear()
        del batch


def run_gx(frame: pd.DataFrame, items: list[tuple[Any, Level, str | None, str]], examples: int) -> list[RuleOutcome]:
    """The suite's outcomes on one frame (:class:`GxSuite` built and run once)."""
    return GxSuite(items).run(frame, examples)


def unique_outcome(outcome: RuleOutcome, values: pd.Series, rows: np.ndarray, duplicated: set, examples: int) -> RuleOutcome:
    """The uniqueness rule's outcome on one chunk, judged against the ids duplicated anywhere in the batch.

    GX sees one chunk at a time, so an id repeated in two chunks is found by the batch's pre-pass
    (:func:`retrain_assets.core.validation_tally.batch_facts`); every copy is quarantined, as GX
    does within one frame (``duplicated(keep=False)`` over non-null values).

    Args:
        outcome: GX's outcome on the chunk (its rule, column, description).
        values: The chunk's ids as compared (:func:`retrain_assets.core.validation_rules.id_text`).
        rows: The chunk's ``_row`` values.
        duplicated: Ids that occur more than once in the batch.
        examples: Failing values kept.
    """
    bad = (values.notna() & values.isin(duplicated)).to_numpy() if duplicated else np.zeros(len(values), dtype=bool)
    count = int(bad.sum())
    shown = [(int(r), plain(v)) for r, v in zip(rows[bad][:examples], values[bad].iloc[:examples])]
    return RuleOutcome(outcome.rule, outcome.column, outcome.level, count == 0, count, outcome.description, shown,
                       rows[bad].astype(np.int64))
