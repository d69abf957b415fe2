"""Tests for batch validation: row rules quarantine rows, batch rules hold a batch back.

Batches are written to CSV and read back with ``read_batch`` (every value arrives as text), and the
schema is inferred from a clean batch under the demo config's hints, as in production.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrain_assets.core.columns import ROW_COLUMN
from retrain_assets.constants import DEMO_CONFIG_PATH
from retrain_assets.core.ingestion import read_batch
from retrain_assets.core.schema import DatasetSchema, apply_hints, infer_schema
from retrain_assets.core.synthetic import CATEGORIES, CORRUPTION_KINDS, FEATURES, ID_COLUMN, REGRESSION_TARGET, TARGET, TIME_COLUMN
from retrain_assets.core.synthetic_batches import make_batch, write_batch
from retrain_assets.core.validation import ValidationReport, column_problems, validate_batch
from retrain_assets.settings import load_settings

NUMERIC = [c for c, kind in FEATURES.items() if kind == "numeric"]


def demo_hints(task: str = "classification") -> dict:
    """The schema hints of data/demo_config.yaml, as keyword arguments of infer_schema/apply_hints."""
    hints = dict(
        id_columns=[ID_COLUMN],
        categorical=["contract", "payment_method", "region"],
        categories={
            "contract": ["month_to_month", "one_year", "two_year"],
            "payment_method": ["electronic_check", "mailed_check", "bank_transfer", "credit_card"],
            "region": ["north", "south", "east", "west", "central"],
        },
        ranges={
            "tenure_months": (0, 120),
            "monthly_charges": (0, 500),
            "support_calls": (0, 50),
            "age": (18, 110),
        },
        classes=[0, 1],
    )
    if task == "regression":
        hints["classes"] = None
    return hints


# Which rule catches each defect the generator injects (and in which column).
RULE_OF_DEFECT = {
    "negative_tenure": ("expect_column_values_to_be_between", "tenure_months"),
    "absurd_tenure": ("expect_column_values_to_be_between", "tenure_months"),
    "infinite_charges": ("values_are_finite", "monthly_charges"),
    "unknown_category": ("expect_column_values_to_be_in_set", None),  # contract, payment_method or region
    "missing_target": ("expect_column_values_to_not_be_null", TARGET),
    "non_numeric_age": ("values_parse_as_numbers", "age"),
    "duplicate_id": ("expect_column_values_to_be_unique", ID_COLUMN),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("validation")


def land(df: pd.DataFrame, folder: Path, batch_id: str) -> pd.DataFrame:
    """Write a batch the way it lands (CSV) and read it back the way raw_data does."""
    return read_batch(write_batch(df, folder / f"{batch_id}.csv"))


@pytest.fixture(scope="module")
def schema(folder) -> DatasetSchema:
    first = land(make_batch(300, seed=100, batch_index=1), folder, "first")
    return infer_schema(first, target=TARGET, task="classification", time_column=TIME_COLUMN,
                        batch_id="batch_0001", **demo_hints())


@pytest.fixture(scope="module")
def regression_schema(folder) -> DatasetSchema:
    first = land(make_batch(300, seed=100, batch_index=1, task="regression"), folder, "first_regression")
    return infer_schema(first, target=REGRESSION_TARGET, task="regression", time_column=TIME_COLUMN,
                        batch_id="batch_0001", **demo_hints("regression"))


@pytest.fixture(scope="module")
def clean(folder) -> pd.DataFrame:
    return make_batch(200, seed=7, batch_index=2)


def check(df: pd.DataFrame, folder: Path, schema: DatasetSchema, batch_id: str = "batch_0002", **kwargs) -> ValidationReport:
    return validate_batch(land(df, folder, batch_id), schema, batch_id=batch_id, **kwargs)


def expected_bad_rows(df: pd.DataFrame) -> set[int]:
    """1-based rows that must be quarantined: every listed defect (but a missing label, which is a late
    label: the row stays, unlabelled) plus every copy of a duplicated id."""
    rows = {pos + 1 for pos, kind in df.attrs["corrupted_rows"].items() if kind != "missing_target"}
    return rows | {int(i) + 1 for i in np.flatnonzero(df[ID_COLUMN].duplicated(keep=False))}


def outcome(report: ValidationReport, rule: str, column: str | None):
    found = [o for o in report.outcomes if o.rule == rule and o.column == column]
    assert len(found) == 1, (rule, column, [(o.rule, o.column) for o in report.outcomes])
    return found[0]


def quarantined(report: ValidationReport) -> dict[int, set[str]]:
    """_row -> failed rules."""
    return {int(r): set(rules.split(", ")) for r, rules in zip(report.quarantine[ROW_COLUMN], report.quarantine["failed_rules"])}


def assert_names_column_and_rows(report: ValidationReport, rule: str, column: str, rows: list[int]) -> None:
    """The rule's sentence names the column and its first failing rows; each row's reason names the column."""
    result = outcome(report, rule, column)
    assert not result.success and result.level == "row"
    assert sorted(result.failed_rows.tolist()) == sorted(rows)
    sentence = result.sentence()
    assert f"`{column}`" in sentence
    for row in sorted(rows)[:3]:
        assert f"row {row}:" in sentence, sentence
    reasons = dict(zip(report.quarantine[ROW_COLUMN], report.quarantine["reasons"]))
    for row in rows:
        assert f"{column}:" in reasons[row]


# --------------------------------------------------------------------------
# Good batches
# --------------------------------------------------------------------------


def test_demo_hints_helper_matches_the_demo_config():
    hints = load_settings(DEMO_CONFIG_PATH).schema_hints
    expected = demo_hints()
    assert hints.id_columns == expected["id_columns"]
    assert hints.categorical == expected["categorical"]
    assert hints.categories == expected["categories"]
    assert {k: (r.min, r.max) for k, r in hints.ranges.items()} == expected["ranges"]
    assert hints.classes == expected["classes"]


def test_clean_batch_passes_with_typed_valid_rows(folder, schema, clean):
    report = check(clean, folder, schema)
    assert report.passed, report.summary
    assert report.labelled and report.rows == len(clean) == len(report.valid)
    assert report.quarantined_rows == 0 and report.quarantine.empty
    assert report.schema_problems == [] and report.failed_rules == []
    assert report.summary == f"batch batch_0002 passed: all {len(clean)} rows valid"
    valid = report.valid
    assert list(valid.columns) == [ROW_COLUMN, *schema.column_names, TARGET]
    for column in NUMERIC:
        assert valid[column].dtype == np.float64, column
    assert pd.api.types.is_datetime64_any_dtype(valid[TIME_COLUMN])
    assert valid[TARGET].dtype == np.int64
    assert valid[ROW_COLUMN].tolist() == list(range(1, len(clean) + 1))
    # the values are the generator's, typed again
    assert np.allclose(valid["monthly_charges"], clean["monthly_charges"])
    assert (valid[TIME_COLUMN].to_numpy() == clean[TIME_COLUMN].to_numpy()).all()
    assert valid[TARGET].tolist() == clean[TARGET].tolist()
    assert valid[ID_COLUMN].tolist() == clean[ID_COLUMN].tolist()


def test_demo_like_corrupt_batch_passes_with_defects_quarantined(folder, schema):
    # 1% of 700 rows = 7 defects, one of each kind
    df = make_batch(700, seed=3, scenario="corrupt", corrupt_fraction=0.01, batch_index=3)
    assert sorted(df.attrs["corrupted_rows"].values()) == sorted(CORRUPTION_KINDS)
    report = check(df, folder, schema)

    assert report.passed, report.summary
    bad = quarantined(report)
    assert set(bad) == expected_bad_rows(df)
    assert len(report.valid) == report.rows - len(bad)
    assert not set(report.valid[ROW_COLUMN]) & set(bad)
    # a batch with a missing label still yields typed valid rows; the unlabelled row stays, label null
    assert report.valid[TARGET].dtype == "Int64"
    late = next(p + 1 for p, k in df.attrs["corrupted_rows"].items() if k == "missing_target")
    assert report.valid.loc[report.valid[ROW_COLUMN] == late, TARGET].isna().all()
    for column in NUMERIC:
        assert report.valid[column].dtype == np.float64, column
    for pos, kind in df.attrs["corrupted_rows"].items():
        if kind == "missing_target":
            continue
        rule, column = RULE_OF_DEFECT[kind]
        assert rule in bad[pos + 1], (kind, bad[pos + 1])
        if column is not None:
            assert_names_column_and_rows(report, rule, column, outcome(report, rule, column).failed_rows.tolist())
    # inf is reported once, as not finite, not also as out of range
    inf_row = next(p + 1 for p, k in df.attrs["corrupted_rows"].items() if k == "infinite_charges")
    assert bad[inf_row] == {"values_are_finite"}
    assert "passed" in report.summary and "quarantined" in report.summary


def test_corrupt_batch_above_the_limit_fails_on_the_share(folder, schema):
    df = make_batch(300, seed=4, scenario="corrupt", corrupt_fraction=0.12, batch_index=4)
    report = check(df, folder, schema)
    assert not report.passed
    assert report.schema_problems == [] and report.failed_batch_rules == []  # only the share is too high
    assert set(quarantined(report)) == expected_bad_rows(df)
    assert report.invalid_fraction > 0.05
    assert "above the 5.0% limit" in report.summary
    # with a looser limit the same batch passes
    assert check(df, folder, schema, max_invalid_fraction=0.2).passed


# --------------------------------------------------------------------------
# Columns against the schema
# --------------------------------------------------------------------------


def _all_rows_quarantined_for_schema(report: ValidationReport) -> None:
    assert report.quarantined_rows == report.rows
    assert report.valid.empty
    assert all("schema" in rules for rules in quarantined(report).values())


def test_renamed_column(folder, schema, clean):
    report = check(clean.rename(columns={"monthly_charges": "monthly_charge"}), folder, schema)
    assert not report.passed
    assert report.schema_problems == ["column 'monthly_charges' is missing; 'monthly_charge' arrived instead (renamed?)"]
    assert "renamed?" in report.summary
    rule = outcome(report, "expect_table_columns_to_match_set", None)
    assert not rule.success and "monthly_charge" in rule.description
    _all_rows_quarantined_for_schema(report)


def test_missing_column(folder, schema, clean):
    report = check(clean.drop(columns=["age"]), folder, schema)
    assert not report.passed
    assert report.schema_problems == ["column 'age' is missing"]
    _all_rows_quarantined_for_schema(report)


def test_extra_column_fails_unless_allowed(folder, schema, clean):
    with_note = clean.assign(note="call back")
    report = check(with_note, folder, schema)
    assert not report.passed
    assert len(report.schema_problems) == 1 and "unexpected column 'note'" in report.schema_problems[0]
    assert "schema.ignore_columns" in report.schema_problems[0]

    relaxed = check(with_note, folder, replace(schema, allow_extra_columns=True))
    assert relaxed.passed, relaxed.summary
    assert relaxed.notes == ["unexpected column 'note' dropped (schema.allow_extra_columns is true)"]
    assert "note" not in relaxed.valid.columns


def test_ignore_columns_are_dropped(folder, schema, clean):
    ignoring = apply_hints(schema, **demo_hints(), ignore_columns=["note", "region"])
    report = check(clean.assign(note="call back"), folder, ignoring)
    assert report.passed, report.summary
    assert report.notes == []
    assert "note" not in report.valid.columns and "region" not in report.valid.columns
    # an ignored column may also be absent
    assert check(clean.drop(columns="region"), folder, ignoring).passed


def test_numeric_column_entirely_text_is_a_schema_problem(folder, schema, clean):
    report = check(clean.assign(age="old"), folder, schema)
    assert not report.passed
    assert any("'age'" in p and "numbers" in p for p in report.schema_problems), report.schema_problems
    assert "age" in report.summary


def test_nan_flood_fails_the_batch_without_quarantining_rows(folder, schema, clean):
    flooded = clean.copy()
    flooded["monthly_charges"] = flooded["monthly_charges"].mask(np.arange(len(flooded)) % 10 < 6)  # 60% NaN
    report = check(flooded, folder, schema)
    assert not report.passed
    assert report.quarantined_rows == 0 and report.schema_problems == []
    [failed] = report.failed_batch_rules
    assert (failed.rule, failed.column) == ("expect_column_values_to_not_be_null", "monthly_charges")
    assert failed.unexpected_count == 120
    assert "monthly_charges" in report.summary and "NaN flood" in report.summary
    # the same nulls are fine when the limit allows them
    assert check(flooded, folder, replace(schema, max_null_fraction=0.7)).passed


def test_some_nulls_in_an_optional_feature_pass(folder, schema, clean):
    sparse = clean.copy()
    sparse["age"] = sparse["age"].astype(float).mask(np.arange(len(sparse)) % 10 < 3)  # 30% NaN
    report = check(sparse, folder, schema)
    assert report.passed and report.quarantined_rows == 0
    assert report.valid["age"].isna().sum() == 60


def test_required_feature_nulls_are_quarantined(folder, schema, clean):
    sparse = clean.copy()
    sparse["age"] = sparse["age"].astype(float).mask(np.arange(len(sparse)) < 3)
    report = check(sparse, folder, apply_hints(schema, **demo_hints(), required=["age"]))
    assert set(quarantined(report)) == {1, 2, 3}
    assert_names_column_and_rows(report, "expect_column_values_to_not_be_null", "age", [1, 2, 3])


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_infinite_values_are_quarantined_once(folder, schema, clean, value):
    df = clean.copy()
    df["tenure_months"] = df["tenure_months"].astype(float)
    df.loc[[0, 5], "tenure_months"] = value
    report = check(df, folder, schema)
    assert report.passed
    assert quarantined(report) == {1: {"values_are_finite"}, 6: {"values_are_finite"}}
    assert outcome(report, "expect_column_values_to_be_between", "tenure_months").success
    assert_names_column_and_rows(report, "values_are_finite", "tenure_months", [1, 6])


# --------------------------------------------------------------------------
# The target
# --------------------------------------------------------------------------


def test_batch_without_target_is_unlabelled_and_passes(folder, schema, clean):
    report = check(clean.drop(columns=TARGET), folder, schema)
    assert report.passed, report.summary
    assert report.labelled is False
    assert TARGET not in report.valid.columns and len(report.valid) == len(clean)


def test_renamed_target_fails(folder, schema, clean):
    report = check(clean.rename(columns={TARGET: "churn"}), folder, schema)
    assert not report.passed and report.labelled is False
    [problem] = report.schema_problems
    assert "'churned'" in problem and "'churn'" in problem and "renamed target?" in problem


@pytest.mark.parametrize(
    "make_target",
    [
        pytest.param(lambda n: np.linspace(0.0, 1.0, n), id="continuous-floats"),
        pytest.param(lambda n: [f"customer {i}" for i in range(n)], id="many-labels"),
    ],
)
def test_classification_target_of_the_wrong_kind(folder, schema, clean, make_target):
    df = clean.assign(**{TARGET: make_target(len(clean))})
    report = check(df, folder, schema)
    assert not report.passed
    assert any(f"target {TARGET!r}" in p and "distinct values" in p for p in report.schema_problems)


def test_classification_target_of_the_wrong_kind_within_max_classes(folder, schema, clean):
    df = clean.assign(**{TARGET: np.linspace(0.0, 1.0, len(clean))})
    report = check(df, folder, replace(schema, max_classes=500))
    assert not report.passed  # not a schema problem, but every label is unknown
    assert report.schema_problems == []
    assert report.quarantined_rows == len(clean) - 2  # only 0.0 and 1.0 are known classes


@pytest.mark.parametrize("label", ["2", "yes", "-1"])
def test_unknown_class_label_is_quarantined(folder, schema, clean, label):
    df = clean.copy()
    df[TARGET] = df[TARGET].astype(object)
    df.loc[[3, 4], TARGET] = label
    report = check(df, folder, schema)
    assert report.passed
    assert quarantined(report) == {4: {"expect_column_values_to_be_in_set"}, 5: {"expect_column_values_to_be_in_set"}}
    assert_names_column_and_rows(report, "expect_column_values_to_be_in_set", TARGET, [4, 5])
    assert report.valid[TARGET].dtype == np.int64


def test_text_labels_follow_text_classes(folder, clean):
    df = clean.assign(**{TARGET: clean[TARGET].map({1: "yes", 0: "no"})})
    raw = land(df, folder, "yes_no")
    schema = infer_schema(raw, target=TARGET, task="classification", **{**demo_hints(), "classes": None})
    assert schema.classes == ("no", "yes")
    report = validate_batch(raw, schema, batch_id="yes_no")
    assert report.passed
    assert set(report.valid[TARGET]) == {"no", "yes"}


def test_regression_target_with_some_text_quarantines_those_rows(folder, regression_schema):
    df = make_batch(200, seed=8, task="regression", batch_index=2)
    df[REGRESSION_TARGET] = df[REGRESSION_TARGET].astype(object)
    df.loc[[0, 9], REGRESSION_TARGET] = "lots"
    report = check(df, folder, regression_schema)
    assert report.passed and report.schema_problems == []
    assert set(quarantined(report)) == {1, 10}
    assert_names_column_and_rows(report, "target_parses_as_numbers", REGRESSION_TARGET, [1, 10])
    assert report.valid[REGRESSION_TARGET].dtype == np.float64


def test_regression_target_mostly_text_is_a_schema_problem(folder, regression_schema):
    df = make_batch(200, seed=8, task="regression", batch_index=2)
    df[REGRESSION_TARGET] = np.where(np.arange(200) % 4 == 0, df[REGRESSION_TARGET].astype(str), "high")
    report = check(df, folder, regression_schema)
    assert not report.passed
    assert any(REGRESSION_TARGET in p and "numbers" in p for p in report.schema_problems)


def test_parquet_with_nullable_dtypes(folder, schema, clean):
    df = clean.convert_dtypes()  # Int64, Float64 and string columns whose missing values are pd.NA
    df.loc[[0], "region"] = pd.NA  # an optional feature may be missing
    df.loc[[2], TARGET] = pd.NA
    raw = read_batch(write_batch(df, folder / "nullable.parquet"))
    assert raw[TARGET].dtype == "Int64" and raw["region"].dtype == "string"
    report = validate_batch(raw, schema, batch_id="nullable")
    assert report.passed, report.summary
    assert quarantined(report) == {}  # the row without its label is kept, unlabelled
    assert report.valid[TARGET].dtype == "Int64"
    assert report.valid[TARGET].isna().tolist() == [False, False, True] + [False] * (len(clean) - 3)
    assert report.valid.loc[report.valid[ROW_COLUMN] == 1, "region"].tolist() == [None]


# --------------------------------------------------------------------------
# Ids, timestamps, empty batches
# --------------------------------------------------------------------------


def test_every_copy_of_a_duplicated_id_is_quarantined(folder, schema, clean):
    df = clean.copy()
    df.loc[[10, 50], ID_COLUMN] = df.loc[0, ID_COLUMN]
    report = check(df, folder, schema)
    assert report.passed
    assert quarantined(report) == {r: {"expect_column_values_to_be_unique"} for r in (1, 11, 51)}
    assert_names_column_and_rows(report, "expect_column_values_to_be_unique", ID_COLUMN, [1, 11, 51])
    assert df.loc[0, ID_COLUMN] not in set(report.valid[ID_COLUMN])


def test_missing_id_is_quarantined(folder, schema, clean):
    df = clean.copy()
    df.loc[7, ID_COLUMN] = None
    report = check(df, folder, schema)
    assert quarantined(report) == {8: {"expect_column_values_to_not_be_null"}}


def test_unparseable_timestamps_are_quarantined(folder, schema, clean):
    df = clean.copy()
    df[TIME_COLUMN] = df[TIME_COLUMN].astype(str)
    df.loc[[1, 2], TIME_COLUMN] = ["not a time", "2024-13-45 99:00"]
    report = check(df, folder, schema)
    assert report.passed
    assert set(quarantined(report)) == {2, 3}
    assert all("values_parse_as_timestamps" in rules for rules in quarantined(report).values())
    assert_names_column_and_rows(report, "values_parse_as_timestamps", TIME_COLUMN, [2, 3])
    assert pd.api.types.is_datetime64_any_dtype(report.valid[TIME_COLUMN])


def test_a_batch_with_no_rows_does_not_pass(folder, schema, clean):
    raw = land(clean, folder, "empty").iloc[0:0]
    report = validate_batch(raw, schema, batch_id="empty")
    assert report.rows == 0 and not report.passed
    assert report.invalid_fraction == 0.0
    assert any(o.rule == "expect_table_row_count_to_be_between" for o in report.failed_batch_rules)
    assert "at least one row" in report.summary


def test_a_frame_without_row_numbers_is_refused(schema, clean):
    with pytest.raises(ValueError, match="read_batch"):
        validate_batch(clean, schema, batch_id="b")


# --------------------------------------------------------------------------
# The quarantine frame
# --------------------------------------------------------------------------


def test_quarantine_keeps_the_row_as_it_arrived(folder, schema):
    df = make_batch(700, seed=3, scenario="corrupt", corrupt_fraction=0.01, batch_index=3)
    raw = land(df, folder, "corrupt_json")
    report = validate_batch(raw, schema, batch_id="corrupt_json")
    assert list(report.quarantine.columns) == [ROW_COLUMN, "failed_rules", "reasons", "row_json"]
    by_row = dict(zip(report.quarantine[ROW_COLUMN], report.quarantine["row_json"]))
    raw_by_row = raw.set_index(ROW_COLUMN)
    for pos, kind in df.attrs["corrupted_rows"].items():
        if kind == "missing_target":  # not a defect: the row is valid, unlabelled
            assert pos + 1 not in by_row
            continue
        record = json.loads(by_row[pos + 1])
        assert ROW_COLUMN not in record
        assert record == raw_by_row.loc[pos + 1].to_dict()  # every value as text, as in the file
    age_row = next(p for p, k in df.attrs["corrupted_rows"].items() if k == "non_numeric_age")
    assert json.loads(by_row[age_row + 1])["age"] == df.loc[age_row, "age"]
    reasons = dict(zip(report.quarantine[ROW_COLUMN], report.quarantine["reasons"]))
    assert f"(got {df.loc[age_row, 'age']!r})" in reasons[age_row + 1]


def test_column_problems_without_validation(schema):
    problems, notes, extra = column_problems([ROW_COLUMN, *schema.column_names, TARGET, "note"], schema)
    assert extra == ["note"] and notes == [] and len(problems) == 1
    assert column_problems([ROW_COLUMN, *schema.column_names], schema) == ([], [], [])
