"""Training core: estimators, the pipeline on batches as landed, windows, fingerprints, data checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from retrain_assets.core.columns import BATCH_COLUMN, ROW_COLUMN, model_input
from retrain_assets.core.holdout import holdout_rows, split_newest


from retrain_assets.core.schema import DatasetSchema, infer_schema

from retrain_assets.core.synthetic import ID_COLUMN, REGRESSION_TARGET, TARGET, TIME_COLUMN
from retrain_assets.core.synthetic_batches import make_batch
from retrain_assets.core.training import build_pipeline, train
from retrain_assets.core.estimators import ESTIMATORS
from retrain_assets.core.training_data import TrainingDataError, check_training_data, data_fingerprint
from retrain_assets.core.training_window import TrainingWindow, last_n_rows, select_training_window

TARGETS = {"classification": TARGET, "regression": REGRESSION_TARGET}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Predictions too: with the default threads HistGradientBoosting scored 300 rows in 1.2 s on a busy
    2-core machine, in 0.02 s with one (train() caps its own fits)."""
    with threadpool_limits(1):
        yield
ALL_ESTIMATORS = [(task, name) for task in ESTIMATORS for name in ESTIMATORS[task]]


def _schema(frame: pd.DataFrame, task: str, target: str | None = None) -> DatasetSchema:
    """Inferred as the platform does: from a batch as it landed."""
    landed = frame.drop(columns=[c for c in (BATCH_COLUMN, ROW_COLUMN) if c in frame.columns])
    return infer_schema(landed, target=target or TARGETS[task], task=task, time_column=TIME_COLUMN, id_columns=[ID_COLUMN])


def _stored(task: str, n: int = 1500, seed: int = 1, batch: str = "batch_0001") -> pd.DataFrame:
    """A batch as the validated table holds it: platform columns included."""
    frame = make_batch(n, seed=seed, task=task)
    frame.insert(0, ROW_COLUMN, np.arange(len(frame)))
    frame.insert(0, BATCH_COLUMN, batch)
    return frame


def _as_landed(task: str, n: int = 300, seed: int = 2) -> pd.DataFrame:
    """A new batch as it lands, minus the target: ids and times present, an unseen category, NaNs."""
    frame = make_batch(n, seed=seed, task=task, batch_index=9).drop(columns=TARGETS[task])
    frame["monthly_charges"] = frame["monthly_charges"].astype(float)
    frame["age"] = frame["age"].astype(float)
    frame.loc[0, "contract"] = "lifetime"  # never seen in training
    frame.loc[1, "region"] = np.nan
    frame.loc[2, "region"] = None
    frame.loc[3, "age"] = np.nan
    frame.loc[4, "monthly_charges"] = np.nan
    return frame


@pytest.fixture(scope="module")
def data():
    return {task: _stored(task) for task in ESTIMATORS}


@pytest.fixture(scope="module")
def schemas(data):
    return {task: _schema(frame, task) for task, frame in data.items()}


@pytest.fixture(scope="module")
def models(data, schemas):
    return {(task, name): train(data[task], schemas[task], TARGETS[task], task, name, seed=0) for task, name in ALL_ESTIMATORS}


# --------------------------------------------------------------------------
# Estimators and the pipeline
# --------------------------------------------------------------------------


@pytest.mark.parametrize("task, name", ALL_ESTIMATORS)
def test_every_estimator_trains_and_scores_a_batch_as_landed(models, task, name):
    model = models[(task, name)]
    landed = _as_landed(task)
    assert {ID_COLUMN, TIME_COLUMN}.issubset(landed.columns)
    if task == "classification":
        proba = model.pipeline.predict_proba(landed)
        assert proba.shape == (len(landed), 2)
        assert np.allclose(proba.sum(axis=1), 1.0)
        assert model.classes == (0, 1) and list(model.pipeline.classes_) == [0, 1]
    else:
        predictions = model.pipeline.predict(landed)
        assert predictions.shape == (len(landed),) and np.isfinite(predictions).all()
        assert model.classes is None
    assert model.n_rows == 1500
    assert model.seconds > 0 and model.peak_memory_mb > 0
    assert model.estimator == name


@pytest.mark.parametrize("task, name", ALL_ESTIMATORS)
def test_ids_time_and_column_order_do_not_change_predictions(models, task, name):
    pipeline = models[(task, name)].pipeline
    landed = _as_landed(task)
    other = landed.assign(**{ID_COLUMN: "X", TIME_COLUMN: pd.Timestamp("2030-01-01")})[landed.columns[::-1]]
    assert np.array_equal(pipeline.predict(landed), pipeline.predict(other))


@pytest.mark.parametrize("task", list(ESTIMATORS))
def test_model_input_of_a_stored_batch_is_accepted(models, data, task):
    """What monitoring feeds the champion (stored rows minus target and platform columns) scores."""
    pipeline = models[(task, "hist_gradient_boosting")].pipeline
    assert len(pipeline.predict(model_input(data[task].head(50), TARGETS[task]))) == 50


@pytest.mark.parametrize("task, name", [(t, n) for t, n in ALL_ESTIMATORS if n in ("random_forest", "hist_gradient_boosting")])
def test_same_seed_same_predictions(data, schemas, task, name):
    frame = data[task].head(600)
    landed = _as_landed(task)
    a = train(frame, schemas[task], TARGETS[task], task, name, seed=7).pipeline.predict(landed)
    b = train(frame, schemas[task], TARGETS[task], task, name, seed=7).pipeline.predict(landed)
    assert np.array_equal(a, b)


def test_the_seed_reaches_the_estimator(data, schemas):
    frame, task = data["regression"].head(600), "regression"
    landed = _as_landed(task)
    a = train(frame, schemas[task], REGRESSION_TARGET, task, "random_forest", seed=1).pipeline
    b = train(frame, schemas[task], REGRESSION_TARGET, task, "random_forest", seed=2).pipeline
    assert a["model"].random_state == 1
    assert not np.array_equal(a.predict(landed), b.predict(landed))


def test_params_are_applied(schemas):
    pipeline = build_pipeline(schemas["classification"], "random_forest", {"n_estimators": 7, "max_depth": 3}, seed=5)
    model = pipeline["model"]
    assert (model.n_estimators, model.max_depth, model.random_state) == (7, 3, 5)
    assert "random_state" not in build_pipeline(schemas["regression"], "linear")["model"].get_params()


@pytest.mark.parametrize(
    "task, name, message",
    [
        ("classification", "xgboost", "unknown classification estimator 'xgboost'; choose one of"),
        ("classification", "ridge", "'ridge' is a regression estimator"),
        ("regression", "logistic_regression", "'logistic_regression' is a classification estimator"),
    ],
)
def test_unknown_estimator_lists_the_valid_ones(schemas, task, name, message):
    with pytest.raises(ValueError, match=message) as error:
        build_pipeline(schemas[task], name)
    for valid in ESTIMATORS[task]:
        assert valid in str(error.value)


def test_unknown_params_are_named_with_the_valid_ones(schemas):
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['max_dpeth'\] for random_forest") as error:
        build_pipeline(schemas["classification"], "random_forest", {"max_dpeth": 3, "n_estimators": 10})
    assert "max_depth" in str(error.value)
    with pytest.raises(ValueError, match="pass the seed as seed=3"):
        build_pipeline(schemas["classification"], "random_forest", {"random_state": 3})


def test_schema_without_features_is_refused(schemas):
    only_ids = DatasetSchema(columns=tuple(c for c in schemas["classification"].columns if c.kind in ("id", "datetime")),
                             target=TARGET, task="classification")
    with pytest.raises(ValueError, match="no numeric or categorical columns"):
        build_pipeline(only_ids, "logistic_regression")


def test_task_must_match_the_schema(data, schemas):
    with pytest.raises(ValueError, match="differs from the schema's task 'classification'"):
        train(data["classification"], schemas["classification"], TARGET, "regression", "ridge")


def test_gradient_boosting_learns_the_demo_signal(models):
    fresh = make_batch(3000, seed=99, batch_index=20)
    proba = models[("classification", "hist_gradient_boosting")].pipeline.predict_proba(model_input(fresh, TARGET))[:, 1]
    assert roc_auc_score(fresh[TARGET], proba) > 0.8


@pytest.mark.parametrize(
    "labels, expected",
    [
        ({0: "stay", 1: "leave"}, ("leave", "stay")),
        ({0: "0", 1: "1"}, (0, 1)),  # text digits, as read from a CSV: whole numbers
        ({0: 0.0, 1: 1.0}, (0, 1)),
    ],
)
def test_labels_are_kept_as_they_are(labels, expected):
    frame = make_batch(400, seed=3)
    frame[TARGET] = frame[TARGET].map(labels).astype(object if isinstance(labels[0], str) else float)
    schema = _schema(frame, "classification")
    model = train(frame, schema, TARGET, "classification", "logistic_regression")
    assert model.classes == expected
    assert set(model.pipeline.predict(_as_landed("classification"))) <= set(expected)


def test_three_classes_all_in_classes_():
    frame = make_batch(600, seed=4)
    frame[TARGET] = np.where(frame["contract"] == "two_year", "loyal", np.where(frame[TARGET] == 1, "churn", "stay"))
    model = train(frame, _schema(frame, "classification"), TARGET, "classification", "hist_gradient_boosting", {"max_iter": 20})
    assert model.classes == ("churn", "loyal", "stay")
    assert model.pipeline.predict_proba(_as_landed("classification")).shape[1] == 3


def test_rows_without_a_target_are_not_trained_on(data, schemas):
    frame = data["regression"].head(400).copy()
    frame.loc[frame.index[:30], REGRESSION_TARGET] = np.nan
    assert train(frame, schemas["regression"], REGRESSION_TARGET, "regression", "ridge").n_rows == 370


def test_mixed_labels_cannot_be_fitted():
    frame = make_batch(300, seed=5)
    frame[TARGET] = frame[TARGET].astype(object)
    frame.loc[0, TARGET] = "maybe"
    with pytest.raises(TrainingDataError, match="mixes numbers and text"):
        train(frame, _schema(frame, "classification"), TARGET, "classification", "logistic_regression")


# --------------------------------------------------------------------------
# Windows
# --------------------------------------------------------------------------

BATCHES = [f"batch_{i:04d}" for i in range(1, 8)]


@pytest.mark.parametrize(
    "labelled, kwargs, train_batches, holdout",
    [
        (set(BATCHES), {}, BATCHES[:-1], BATCHES[-1:]),
        ({b: b != "batch_0007" for b in BATCHES}, {}, BATCHES[:-2], ["batch_0006"]),  # newest is unlabelled
        (set(BATCHES) - {"batch_0003"}, {}, ["batch_0001", "batch_0002", "batch_0004", "batch_0005", "batch_0006"], ["batch_0007"]),
        (set(BATCHES), {"window": "last_n_batches", "last_n": 2}, ["batch_0005", "batch_0006"], ["batch_0007"]),
        (set(BATCHES), {"window": "last_n_batches", "last_n": 50}, BATCHES[:-1], ["batch_0007"]),
        (set(BATCHES), {"window": "last_n_rows", "last_n": 100}, BATCHES[:-1], ["batch_0007"]),
        ({"batch_0002", "batch_0005"}, {}, ["batch_0002"], ["batch_0005"]),
    ],
)
def test_training_window(labelled, kwargs, train_batches, holdout):
    window = select_training_window(BATCHES, labelled, **kwargs)
    assert window.train_batches == train_batches
    assert window.holdout_batches == holdout
    assert holdout[0] in window.summary


@pytest.mark.parametrize("labelled, found", [(set(), "0 of 7"), ({"batch_0004"}, "1 of 7 batches are labelled (batch_0004)")])
def test_too_few_labelled_batches(labelled, found):
    with pytest.raises(ValueError, match=r"at least 2 labelled batches") as error:
        select_training_window(BATCHES, labelled)
    assert found in str(error.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"window": "last_n_batches"}, "needs last_n"),
        ({"window": "last_n_batches", "last_n": 0}, "needs last_n"),
        ({"window": "newest"}, "unknown training window 'newest'"),
        ({"holdout": "random"}, "unknown holdout 'random'"),
    ],
)
def test_window_arguments_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        select_training_window(BATCHES, set(BATCHES), **kwargs)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.booleans(), min_size=2, max_size=12), st.none() | st.integers(1, 5))
def test_window_properties(flags, last_n):
    ids = [f"b{i:02d}" for i in range(len(flags))]
    labelled = {b: f for b, f in zip(ids, flags)}
    usable = [b for b in ids if labelled[b]]
    kwargs = {"window": "last_n_batches", "last_n": last_n} if last_n else {}
    if len(usable) < 2:
        with pytest.raises(ValueError):
            select_training_window(ids, labelled, **kwargs)
        return
    window = select_training_window(ids, labelled, **kwargs)
    assert isinstance(window, TrainingWindow)
    assert window.holdout_batches == [usable[-1]]
    assert window.train_batches == usable[:-1][-(last_n or len(usable)):]
    assert max(window.train_batches) < window.holdout_batches[0]  # the holdout is newer than all training data


def test_last_n_rows_keeps_the_newest_rows():
    frame = pd.DataFrame({BATCH_COLUMN: ["b2", "b2", "b1", "b1", "b1"], ROW_COLUMN: [1, 0, 0, 2, 1], "x": range(5)})
    newest = last_n_rows(frame, 3)
    assert list(zip(newest[BATCH_COLUMN], newest[ROW_COLUMN])) == [("b1", 2), ("b2", 0), ("b2", 1)]
    assert len(last_n_rows(frame, 100)) == 5
    with pytest.raises(ValueError, match="n must be a whole number"):
        last_n_rows(frame, 0)


# --------------------------------------------------------------------------
# Fingerprint
# --------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(st.permutations(list(range(10))))
def test_fingerprint_ignores_column_order_and_index(order):
    frame = make_batch(200, seed=6)
    columns = [frame.columns[i] for i in order]
    assert data_fingerprint(frame[columns]) == data_fingerprint(frame)
    assert data_fingerprint(frame.set_axis(range(1000, 1200))) == data_fingerprint(frame)


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f.assign(age=f["age"].where(f.index != 17, 99)),
        lambda f: f.assign(region=f["region"].where(f.index != 0, "atlantis")),
        lambda f: f.rename(columns={"age": "years"}),
        lambda f: f.head(199),
    ],
)
def test_fingerprint_changes_with_the_data(change):
    frame = make_batch(200, seed=6)
    before = data_fingerprint(frame)
    assert len(before) == 64 and before == data_fingerprint(make_batch(200, seed=6))
    assert data_fingerprint(change(frame)) != before


# --------------------------------------------------------------------------
# Data checks
# --------------------------------------------------------------------------


def _single_class(f):
    f[TARGET] = 0
    return f


def _rare_class(f):
    f[TARGET] = 0
    f.loc[f.index[:5], TARGET] = 1
    return f


def _many_classes(f):
    f[TARGET] = np.arange(len(f))
    return f


def _fractional(f):
    f[TARGET] = f[TARGET].astype(float)
    f.loc[f.index[0], TARGET] = 0.5
    return f


def _empty_feature(f):
    f["age"] = np.nan
    return f


def _constant_feature(f):
    f["region"] = "north"
    return f


def _missing_feature(f):
    return f.drop(columns="support_calls")


def _text_in_numeric(f):
    f["age"] = f["age"].astype(object)
    f.loc[f.index[3], "age"] = "twelve"
    return f


@pytest.mark.parametrize(
    "task, corrupt, expected",
    [
        ("classification", lambda f: f.head(150), "only 150 labelled rows; training needs at least 200"),
        ("classification", _single_class, "single class (0 in all 400 rows)"),
        ("classification", _rare_class, "1: 5 rows); each class needs at least 20"),
        ("classification", _many_classes, "400 distinct values, more than schema.max_classes=50"),
        ("classification", _fractional, "non-integral values (e.g. 0.5)"),
        ("classification", _empty_feature, "feature 'age' is empty"),
        ("classification", _constant_feature, "feature 'region' is constant ('north' in every row)"),
        ("classification", _missing_feature, "missing from the training data: support_calls"),
        ("classification", _text_in_numeric, "numeric feature 'age' holds text"),
        ("classification", lambda f: f.drop(columns=TARGET), "target column 'churned' is not in the training data"),
        ("regression", lambda f: f.assign(**{REGRESSION_TARGET: "lots"}), "is not numeric for regression"),
        ("regression", lambda f: f.assign(**{REGRESSION_TARGET: 5.0}), "target 'monthly_spend_next' is constant"),
    ],
)
def test_check_training_data_names_the_problem(schemas, task, corrupt, expected):
    frame = make_batch(400, seed=8, task=task)
    assert check_training_data(frame, schemas[task], TARGETS[task], task) == []
    problems = check_training_data(corrupt(frame.copy()), schemas[task], TARGETS[task], task)
    assert any(expected in p for p in problems), problems


def test_unlabelled_rows_do_not_count(schemas):
    frame = make_batch(400, seed=8)
    frame[TARGET] = frame[TARGET].astype(float)
    frame.loc[frame.index[:300], TARGET] = np.nan
    assert check_training_data(frame, schemas["classification"], TARGET, "classification", min_rows_per_class=5) == [
        "only 100 labelled rows; training needs at least 200"
    ]


def _newest(n: int = 10) -> pd.DataFrame:
    # Landing order differs from event time: the split follows event time, then landing order.
    times = pd.to_datetime("2026-01-01") + pd.to_timedelta(np.array([9, 0, 8, 1, 7, 2, 6, 3, 5, 4])[:n], unit="h")
    return pd.DataFrame({BATCH_COLUMN: "b3", ROW_COLUMN: range(n), TIME_COLUMN: times, "x": range(n)})


def test_split_newest_holds_out_the_newest_rows_by_event_time():
    learn, judge = split_newest(_newest(), 0.3, time_column=TIME_COLUMN)
    assert len(learn) == 7 and len(judge) == 3
    assert learn[TIME_COLUMN].max() < judge[TIME_COLUMN].min()
    assert sorted(judge[ROW_COLUMN]) == [0, 2, 4]  # hours 9, 8, 7
    # Without an event time, landing order decides.
    learn, judge = split_newest(_newest(), 0.3)
    assert list(judge[ROW_COLUMN]) == [7, 8, 9]
    # Same input, same split: monitoring rebuilds a champion's holdout from its tags.
    assert holdout_rows(_newest(), 0.3, time_column=TIME_COLUMN)[ROW_COLUMN].tolist() == [4, 2, 0]
    assert len(holdout_rows(_newest(), None)) == 10


@pytest.mark.parametrize("n, share, held", [(1, 0.5, 1), (2, 0.01, 1), (2, 0.99, 1), (3, 0.5, 2), (0, 0.5, 0)])
def test_split_newest_keeps_a_row_on_each_side(n, share, held):
    learn, judge = split_newest(_newest(10).head(n), share)
    assert len(judge) == held and len(learn) == n - held


@pytest.mark.parametrize("share", [0, 1, -0.1, 1.5])
def test_holdout_share_is_checked(share):
    with pytest.raises(ValueError, match="holdout_share must be between 0 and 1"):
        select_training_window(BATCHES, set(BATCHES), holdout_share=share)
    with pytest.raises(ValueError, match="holdout_share must be between 0 and 1"):
        split_newest(_newest(), share)


def test_window_that_learns_from_the_newest_batch():
    window = select_training_window(BATCHES[:3], set(BATCHES[:3]), holdout_share=0.25)
    assert window.train_batches == BATCHES[:2] and window.holdout_batches == ["batch_0003"]
    assert "oldest 75% of batch_0003" in window.summary and "newest 25%" in window.summary
    older = pd.DataFrame({BATCH_COLUMN: ["batch_0001"] * 4 + ["batch_0002"] * 4, ROW_COLUMN: list(range(4)) * 2, "x": range(8)})
    newest = pd.DataFrame({BATCH_COLUMN: "batch_0003", ROW_COLUMN: range(8), "x": range(100, 108)})
    train_rows, holdout = window.frames(older, newest)
    assert len(train_rows) == 8 + 6 and list(holdout["x"]) == [106, 107]
    assert not set(train_rows["x"]) & set(holdout["x"])
    # The default window holds the whole newest batch out; last_n_rows still cuts the older rows.
    plain = select_training_window(BATCHES[:3], set(BATCHES[:3]), window="last_n_rows", last_n=3)
    train_rows, holdout = plain.frames(older, newest)
    assert list(train_rows["x"]) == [5, 6, 7] and len(holdout) == 8


def test_recency_weights_halve_per_half_life():
    window = select_training_window(BATCHES[:4], set(BATCHES[:4]), holdout_share=0.5, half_life=1)
    rows = pd.DataFrame({BATCH_COLUMN: ["batch_0001", "batch_0003", "batch_0004", "batch_0002"]})
    # The newest batch trained on (the learned part of batch_0004) has age 0.
    assert window.weights(rows).tolist() == [0.125, 0.5, 1.0, 0.25]
    assert "weighs half as much for every 1 newer batches" in window.summary
    plain = select_training_window(BATCHES[:4], set(BATCHES[:4]), half_life=2)
    assert plain.weights(rows.head(2)).tolist() == [0.5 ** (2 / 2), 1.0]
    assert select_training_window(BATCHES[:4], set(BATCHES[:4])).weights(rows) is None
    with pytest.raises(ValueError, match="outside the window"):
        plain.weights(rows)  # batch_0004 is the holdout of a plain window
    with pytest.raises(ValueError, match="half_life must be > 0"):
        select_training_window(BATCHES, set(BATCHES), half_life=0)


def test_sample_weights_change_the_fit_and_are_checked():
    old = make_batch(600, seed=1, batch_index=1).assign(**{BATCH_COLUMN: "b1"})
    new = make_batch(600, seed=2, batch_index=2, scenario="concept_drift").assign(**{BATCH_COLUMN: "b2"})
    frame = pd.concat([old, new], ignore_index=True)
    schema = _schema(frame, "classification")
    equal = train(frame, schema, TARGET, "classification", "logistic_regression")
    weights = np.where(frame[BATCH_COLUMN] == "b2", 1.0, 0.05)
    recent = train(frame, schema, TARGET, "classification", "logistic_regression", sample_weight=weights)
    X = model_input(new, TARGET)
    auc_equal = roc_auc_score(new[TARGET], equal.pipeline.predict_proba(X)[:, 1])
    auc_recent = roc_auc_score(new[TARGET], recent.pipeline.predict_proba(X)[:, 1])
    assert auc_recent > auc_equal  # weighting the new concept fits it better (in-sample)
    with pytest.raises(ValueError, match="sample_weight has"):
        train(frame, schema, TARGET, "classification", "logistic_regression", sample_weight=weights[:-1])
