"""Tests for the dataset schema: inference, hints, storage and label normalisation."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrain_assets.core.columns import ROW_COLUMN
from retrain_assets.core.ingestion import read_batch
from retrain_assets.core.schema import (
    ColumnSpec,
    DatasetSchema,
    SchemaStore,
    apply_hints,
    infer_schema,
    normalise_label,
    numeric_parse,
    with_classes,
)
from retrain_assets.core.synthetic import CATEGORIES, FEATURES, ID_COLUMN, REGRESSION_TARGET, TARGET, TIME_COLUMN
from retrain_assets.core.synthetic_batches import make_batch, write_batch

NUMERIC = [c for c, kind in FEATURES.items() if kind == "numeric"]
CATEGORICAL = [c for c, kind in FEATURES.items() if kind == "categorical"]
HINTS = dict(
    id_columns=[ID_COLUMN],
    categorical=CATEGORICAL,
    categories=CATEGORIES,
    ranges={"tenure_months": (0, 120), "age": (18, 110)},
    classes=[0, 1],
)


@pytest.fixture(scope="module")
def csv_batch(tmp_path_factory) -> pd.DataFrame:
    """A clean batch as it arrives from a CSV file: every value is text."""
    path = write_batch(make_batch(300, seed=1), tmp_path_factory.mktemp("schema") / "batch_0001.csv")
    return read_batch(path)


def _infer(batch: pd.DataFrame, **kwargs) -> DatasetSchema:
    kwargs.setdefault("target", TARGET)
    kwargs.setdefault("task", "classification")
    return infer_schema(batch, **kwargs)


# --------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------


def test_infer_without_hints_from_text(csv_batch):
    schema = _infer(csv_batch, batch_id="batch_0001")
    kinds = {c.name: c.kind for c in schema.columns}
    assert list(kinds) == [ID_COLUMN, TIME_COLUMN, *FEATURES]  # file order, no _row, no target
    for column in NUMERIC:
        assert kinds[column] == "numeric", column  # text of numbers is numeric
    for column in CATEGORICAL:
        assert kinds[column] == "categorical", column
    assert kinds[ID_COLUMN] == "categorical"  # not hinted: ids look like text
    assert kinds[TIME_COLUMN] == "categorical"  # not declared as the time column
    assert schema.classes == (0, 1)
    assert all(isinstance(c, int) for c in schema.classes)  # CSV "1"/"0" become ints
    assert schema.source == "inferred from batch batch_0001"
    assert schema.feature_columns == [ID_COLUMN, TIME_COLUMN, *FEATURES]  # unhinted text columns are features


def test_infer_records_observations_but_enforces_nothing_unhinted(csv_batch):
    schema = _infer(csv_batch)
    tenure = schema.column("tenure_months")
    assert (tenure.min, tenure.max, tenure.categories) == (None, None, None)
    assert tenure.observed["min"] >= 0 and tenure.observed["max"] <= 72
    assert tenure.observed["null_fraction"] == 0.0
    contract = schema.column("contract")
    assert contract.categories is None
    assert contract.observed["categories"] == sorted(CATEGORIES["contract"])
    assert not any(c.required for c in schema.columns)


def test_infer_with_hints(csv_batch):
    schema = _infer(csv_batch, time_column=TIME_COLUMN, required=["age"], batch_id="b1", **HINTS)
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds[ID_COLUMN] == "id" and schema.column(ID_COLUMN).required
    assert kinds[TIME_COLUMN] == "datetime"
    assert TARGET not in kinds
    assert schema.target == TARGET and schema.time_column == TIME_COLUMN
    assert (schema.column("tenure_months").min, schema.column("tenure_months").max) == (0, 120)
    assert (schema.column("monthly_charges").min, schema.column("monthly_charges").max) == (None, None)
    assert schema.column("region").categories == tuple(CATEGORIES["region"])
    assert schema.column("age").required and not schema.column("tenure_months").required
    assert schema.classes == (0, 1)
    assert schema.feature_columns == list(FEATURES)
    assert schema.source == "hints + inferred from batch b1"


def test_hints_override_what_the_data_looks_like(csv_batch):
    schema = _infer(csv_batch, categorical=["support_calls"], numeric=["region"])
    assert schema.column("support_calls").kind == "categorical"
    assert schema.column("region").kind == "numeric"


def test_hinted_columns_absent_from_the_batch_are_still_listed(csv_batch):
    schema = _infer(
        csv_batch.drop(columns=["age", ID_COLUMN, TIME_COLUMN]),
        time_column=TIME_COLUMN,
        numeric=["age", "discount"],
        categorical=["segment"],
        id_columns=[ID_COLUMN],
        ranges={"discount": (0, 1)},
        categories={"segment": ["a", "b"]},
    )
    for name, kind in [("age", "numeric"), ("discount", "numeric"), ("segment", "categorical"),
                       (ID_COLUMN, "id"), (TIME_COLUMN, "datetime")]:
        assert schema.column(name).kind == kind, name
    assert (schema.column("discount").min, schema.column("discount").max) == (0, 1)
    assert schema.column("segment").categories == ("a", "b")
    assert schema.column(ID_COLUMN).required
    assert len(schema.column_names) == len(set(schema.column_names))


def test_ignored_columns_and_target_are_not_in_the_schema(csv_batch):
    schema = _infer(csv_batch.assign(note="x"), ignore_columns=["note", "region"], numeric=["region"])
    assert "note" not in schema.column_names and "region" not in schema.column_names
    assert TARGET not in schema.column_names and ROW_COLUMN not in schema.column_names
    assert schema.ignore_columns == ("note", "region")


@pytest.mark.parametrize(
    "labels, expected",
    [
        (["1", "0", "1", None], (0, 1)),
        (["1.0", "0.0"], (0, 1)),
        ([" yes", "no ", "yes"], ("no", "yes")),
        ([True, False], (0, 1)),
        ([2, 0, 1, 1.0], (0, 1, 2)),
        (["b", "a", 3], (3, "a", "b")),  # numbers first, then text
    ],
)
def test_inferred_classes_are_normalised(labels, expected):
    batch = pd.DataFrame({"x": ["1"] * len(labels), "y": pd.Series(labels, dtype=object)})
    schema = infer_schema(batch, target="y", task="classification")
    assert schema.classes == expected
    assert [type(c) for c in schema.classes] == [type(c) for c in expected]


def test_classes_from_hints_are_normalised_and_win():
    batch = pd.DataFrame({"x": ["1", "2"], "y": ["0", "1"]})
    schema = infer_schema(batch, target="y", task="classification", classes=["1", "0", 2.0])
    assert schema.classes == (1, 0, 2)


@pytest.mark.parametrize(
    "labels, task",
    [
        (["1", "0"], "regression"),
        ([str(i / 7) for i in range(60)], "classification"),  # too many distinct values to be classes
        ([None, None], "classification"),
    ],
)
def test_no_classes_inferred(labels, task):
    batch = pd.DataFrame({"x": ["1"] * len(labels), "y": pd.Series(labels, dtype=object)})
    assert infer_schema(batch, target="y", task=task).classes is None


def test_unlabelled_first_batch_gives_no_classes(csv_batch):
    schema = _infer(csv_batch.drop(columns=TARGET))
    assert schema.classes is None and TARGET not in schema.column_names
    assert with_classes(schema, ["1", "0", None, 1.0]).classes == (0, 1)


def test_regression_target_is_excluded(tmp_path):
    batch = read_batch(write_batch(make_batch(50, seed=2, task="regression"), tmp_path / "r.csv"))
    schema = _infer(batch, target=REGRESSION_TARGET, task="regression")
    assert REGRESSION_TARGET not in schema.column_names
    assert schema.task == "regression" and schema.classes is None


def test_mostly_numeric_text_is_numeric_but_mostly_words_is_not():
    n = 100
    mostly = ["1"] * 96 + ["n/a?"] * 4
    half = ["1"] * 50 + ["word"] * 50
    batch = pd.DataFrame({"a": mostly, "b": half, "c": [None] * n, "y": ["0"] * n})
    schema = infer_schema(batch, target="y", task="classification")
    assert [schema.column(c).kind for c in "abc"] == ["numeric", "categorical", "categorical"]


# --------------------------------------------------------------------------
# Re-applying the config's hints to a stored schema
# --------------------------------------------------------------------------


@pytest.fixture()
def stored(csv_batch) -> DatasetSchema:
    return _infer(csv_batch, time_column=TIME_COLUMN, **HINTS)


def test_apply_hints_replaces_ranges_and_categories(stored):
    schema = apply_hints(stored, **{**HINTS, "ranges": {"age": (21, 99)}, "categories": {"region": ["north"]}})
    assert (schema.column("age").min, schema.column("age").max) == (21, 99)
    # a hint removed from the config no longer applies
    assert (schema.column("tenure_months").min, schema.column("tenure_months").max) == (None, None)
    assert schema.column("contract").categories is None
    assert schema.column("region").categories == ("north",)
    # what was inferred is kept
    assert schema.column("age").observed == stored.column("age").observed
    assert schema.column_names == stored.column_names
    assert schema.time_column == TIME_COLUMN and schema.source == stored.source


def test_apply_hints_new_ignore_column_removes_it(stored):
    schema = apply_hints(stored, **HINTS, ignore_columns=["region"])
    assert "region" not in schema.column_names
    assert schema.ignore_columns == ("region",)


def test_apply_hints_new_id_and_new_columns(stored):
    schema = apply_hints(stored, **{**HINTS, "id_columns": [ID_COLUMN, "age"], "numeric": ["discount"]})
    assert schema.column("age").kind == "id" and schema.column("age").required
    assert schema.column("discount").kind == "numeric"
    assert schema.column_names[-1] == "discount"


def test_apply_hints_kind_override_and_settings(stored):
    schema = apply_hints(
        stored, **{**HINTS, "categorical": [*CATEGORICAL, "support_calls"], "classes": ["no", "yes"]},
        required=["monthly_charges"], allow_extra_columns=True, max_null_fraction=0.2, max_classes=3,
    )
    assert schema.column("support_calls").kind == "categorical"
    assert schema.column("monthly_charges").required
    assert schema.classes == ("no", "yes")
    assert (schema.allow_extra_columns, schema.max_null_fraction, schema.max_classes) == (True, 0.2, 3)


def test_apply_hints_without_classes_keeps_the_stored_ones(stored):
    assert apply_hints(stored).classes == (0, 1)


# --------------------------------------------------------------------------
# JSON and the schema file
# --------------------------------------------------------------------------


@pytest.mark.parametrize("labels", [None, ["no", "yes"], [0, 1, 2]])
def test_schema_json_round_trip(csv_batch, labels):
    schema = _infer(csv_batch, time_column=TIME_COLUMN, **{**HINTS, "classes": labels}, ignore_columns=["x"])
    text = schema.to_json()
    assert json.loads(text)["target"] == TARGET  # readable JSON
    back = DatasetSchema.from_json(text)
    assert back == schema
    assert isinstance(back.columns, tuple) and isinstance(back.column("region").categories, tuple)


def test_schema_json_handles_numpy_values():
    spec = ColumnSpec("x", "numeric", min=np.float64(0.5), max=np.int64(3), observed={"mean": np.float32(1.5)})
    schema = DatasetSchema(columns=(spec,), target="y", task="classification", classes=(np.int64(0), np.int64(1)))
    back = DatasetSchema.from_json(schema.to_json())
    assert back.column("x").max == 3 and back.classes == (0, 1)


def test_schema_store_missing_file_is_none(tmp_path):
    assert SchemaStore(tmp_path / "schema.json").load() is None


def test_schema_store_first_writer_wins(tmp_path, stored):
    store = SchemaStore(tmp_path / "state" / "schema.json")
    first = store.save(stored)
    assert first == stored and store.load() == stored
    other = replace(stored, source="someone else")
    assert store.save(other) == stored  # the file already there wins
    assert store.load() == stored
    assert store.save(other, overwrite=True) == other
    assert store.load() == other
    assert [p.name for p in store.path.parent.iterdir()] == ["schema.json"]  # no temporary files left


def test_schema_store_concurrent_saves_agree(tmp_path, stored):
    store = SchemaStore(tmp_path / "schema.json")
    candidates = [replace(stored, source=f"writer {i}") for i in range(8)]
    results: list[DatasetSchema] = []
    threads = [threading.Thread(target=lambda s=s: results.append(store.save(s))) for s in candidates]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winner = store.load()
    assert winner in candidates
    assert results == [winner] * len(candidates)


@pytest.mark.parametrize("text", ["", "{", "{}", "[]", "null", "42", '"schema"', '{"columns": 3, "classes": null}',
                                  '{"columns": [{"name": "x"}], "classes": null, "target": "y", "task": "regression"}'])
def test_corrupt_schema_file_names_the_file(tmp_path, text):
    path = tmp_path / "schema.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as info:
        SchemaStore(path).load()
    assert str(path) in str(info.value)
    assert "delete it" in str(info.value)


# --------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (True, 1),
        (np.bool_(False), 0),
        (1, 1),
        (np.int64(3), 3),
        (1.0, 1),
        (np.float32(0.0), 0),
        ("1", 1),
        ("1.0", 1),
        (" 0 ", 0),
        (" a ", "a"),
        ("yes", "yes"),
        ("1.5", "1.5"),
        (2.5, 2.5),
        (None, None),
        (float("nan"), None),
        (np.float64("nan"), None),
        (np.float32("nan"), None),
        (pd.NA, None),
    ],
)
def test_normalise_label(value, expected):
    result = normalise_label(value)
    assert result == expected if expected is not None else result is None
    assert type(result) is type(expected)


def test_numeric_parse():
    parsed = numeric_parse(pd.Series([" 12 ", "1e3", "twelve", None, "inf", "-3.5"], dtype=object))
    assert parsed.dtype == float
    assert parsed.iloc[[0, 1, 5]].tolist() == [12.0, 1000.0, -3.5]
    assert parsed.iloc[[2, 3]].isna().all()
    assert np.isposinf(parsed.iloc[4])
    assert numeric_parse(pd.Series([True, False])).tolist() == [1.0, 0.0]
