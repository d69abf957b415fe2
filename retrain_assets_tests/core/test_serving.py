"""Serving smoke test: a registered version loads by URI in a fresh process, scores, and is timed.

Real MLflow (a SQLite store in a temp folder), a real child process, no mocks. The model is logged
once per module; each smoke test starts one child (a few seconds each, mostly importing mlflow).
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrain_assets.core.serving import (
    MAX_ERROR_CHARS,
    ServingProbe,
    _absolute_uri,
    _describe,
    _predictions_to_list,
    latency_sample,
    smoke_test,
)

MODEL = "m"
NUMERIC = ["tenure", "charges"]
CATEGORICAL = "plan"

_URI_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@dataclass
class Registered:
    uri: str
    pipe: object
    X: pd.DataFrame


@contextlib.contextmanager
def _mlflow_uri(uri: str):
    """Point mlflow's process-global tracking and registry URIs at ``uri``, then put back what was there.

    ``mlflow.set_tracking_uri`` also writes ``os.environ["MLFLOW_TRACKING_URI"]`` (and
    ``set_registry_uri`` ``MLFLOW_REGISTRY_URI``), so both the module globals and the environment are
    restored; the globals are private, read here only to restore them.
    """
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved_env = {key: os.environ.get(key) for key in _URI_ENV}
    saved_tracking, saved_registry = tracking_utils._tracking_uri, registry_utils._registry_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved_tracking)
        mlflow.set_registry_uri(saved_registry)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _features(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "tenure": rng.uniform(0, 72, n),
            "charges": rng.normal(70, 20, n),
            "plan": rng.choice(["monthly", "yearly", "two_year"], n),
        }
    )
    X.loc[rng.random(n) < 0.05, "tenure"] = np.nan  # the imputer has something to do
    logit = 1.5 - 0.05 * X["tenure"].fillna(36) + 0.02 * (X["charges"] - 70) + (X["plan"] == "monthly") * 1.0
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64")
    return X, y.to_numpy()


@pytest.fixture(scope="module")
def registered(tmp_path_factory) -> Registered:
    """A sklearn pipeline logged and registered as version 1 of ``m`` in a fresh SQLite store."""
    import mlflow
    import skops.io
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    root = tmp_path_factory.mktemp("serving")
    uri = f"sqlite:///{(root / 'mlflow.db').as_posix()}"
    X, y = _features(300)
    prep = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), NUMERIC),
            ("cat", OneHotEncoder(handle_unknown="ignore"), [CATEGORICAL]),
        ]
    )
    pipe = Pipeline([("prep", prep), ("model", LogisticRegression(max_iter=500))]).fit(X, y)

    with _mlflow_uri(uri):
        client = mlflow.MlflowClient(uri, uri)
        experiment_id = client.create_experiment("serving", artifact_location=str(root / "artifacts"))
        with mlflow.start_run(experiment_id=experiment_id):
            info = mlflow.sklearn.log_model(
                pipe,
                name="model",
                registered_model_name=MODEL,
                signature=infer_signature(X, pipe.predict(X)),
                pip_requirements=["scikit-learn"],
                skops_trusted_types=skops.io.get_untrusted_types(data=skops.io.dumps(pipe)),
            )
    assert str(info.registered_model_version) == "1"
    return Registered(uri=uri, pipe=pipe, X=X)


# --- smoke_test against the real registry ------------------------------------------------------


def test_registered_model_loads_and_scores_in_a_fresh_process(registered, monkeypatch, tmp_path):
    """It also ignores the parent's MLflow URI (``mlflow.set_tracking_uri`` leaves one in
    ``os.environ``) and runs in its own temp folder, so nothing (./mlruns) lands in the caller's."""
    elsewhere = f"sqlite:///{(tmp_path / 'elsewhere.db').as_posix()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", elsewhere)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", elsewhere)
    monkeypatch.chdir(tmp_path)
    sample = registered.X.head(50)

    probe = smoke_test(f"models:/{MODEL}/1", sample, tracking_uri=registered.uri)

    assert probe.ok, probe.error
    assert probe.error is None and probe.stage is None
    assert probe.rows == 50
    np.testing.assert_array_equal(probe.predictions, registered.pipe.predict(sample))
    assert probe.ms_per_1000 > 0
    assert probe.seconds_per_1000 == pytest.approx(probe.ms_per_1000 / 1000)
    assert probe.load_seconds > 0
    assert probe.wall_seconds > probe.load_seconds
    assert probe.imported_dagster is False  # this test process has dagster loaded; the child must not
    assert "dagster" in sys.modules
    assert probe.python == sys.version
    assert list(tmp_path.iterdir()) == []
    print(f"\nserving probe: load {probe.load_seconds:.2f} s, {probe.ms_per_1000:.2f} ms/1000 rows "
          f"(50-row sample), wall {probe.wall_seconds:.2f} s")


@pytest.mark.parametrize(
    ("column", "reason"),
    [
        # required in the signature: MLflow's schema enforcement refuses the input
        (CATEGORICAL, f"missing inputs ['{CATEGORICAL}']"),
        # had NaNs when the signature was inferred, so it is *optional* there: schema enforcement
        # lets the frame through and the pipeline itself fails (still a predict-stage failure)
        ("tenure", "columns are missing: {'tenure'}"),
    ],
)
def test_missing_column_fails_at_predict_and_names_it(registered, column, reason):
    sample = registered.X.head(50).drop(columns=[column])

    probe = smoke_test(f"models:/{MODEL}/1", sample, tracking_uri=registered.uri)

    assert not probe.ok
    assert probe.stage == "predict"
    assert reason in probe.error
    assert "\n" not in probe.error  # MLflow's message embeds the frame's repr; _describe drops it
    assert probe.load_seconds is not None and probe.load_seconds > 0  # it did load
    assert probe.ms_per_1000 is None
    assert probe.predictions.size == 0


def test_unknown_version_fails_at_load(registered):
    probe = smoke_test(f"models:/{MODEL}/99", registered.X.head(5), tracking_uri=registered.uri)

    assert not probe.ok
    assert probe.stage == "load"
    assert probe.error and ":" in probe.error  # "<ExceptionType>: <message>"
    assert probe.load_seconds is None


def test_timeout_is_a_failed_probe_not_an_exception(registered):
    probe = smoke_test(f"models:/{MODEL}/1", registered.X.head(5), tracking_uri=registered.uri, timeout_seconds=0.01)

    assert not probe.ok
    assert probe.stage is None
    assert "timed out" in probe.error
    assert probe.imported_dagster is None


def test_a_child_that_dies_without_a_result_reports_its_stderr(tmp_path):
    fake_python = tmp_path / "python"
    fake_python.write_text("#!/bin/sh\necho 'Fatal Python error: boom' >&2\nexit 3\n")
    fake_python.chmod(fake_python.stat().st_mode | stat.S_IEXEC)

    probe = smoke_test("models:/m/1", pd.DataFrame({"x": [1.0]}), tracking_uri="sqlite:///unused.db",
                       python=str(fake_python))

    assert not probe.ok
    assert probe.stage is None
    assert "code 3" in probe.error and "boom" in probe.error
    assert "boom" in probe.stderr_tail


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sample": pd.DataFrame({"x": []})}, "empty"),
        ({"sample": pd.DataFrame(index=range(3))}, "empty"),
        ({"repeats": 0}, "repeats"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"sample": pd.DataFrame({"x": [1, "a"]})}, "parquet"),
        ({"python": "/nonexistent/python3"}, "cannot start"),
    ],
)
def test_caller_mistakes_raise(kwargs, message):
    arguments = {"sample": pd.DataFrame({"x": [1.0]}), "tracking_uri": "sqlite:///unused.db", **kwargs}
    with pytest.raises(ValueError, match=message):
        smoke_test("models:/m/1", **arguments)


def test_probe_is_frozen():
    probe = ServingProbe(ok=True, load_seconds=1.0, ms_per_1000=2.0, rows=1, predictions=np.array([0]),
                         error=None, stage=None, stderr_tail="", wall_seconds=3.0)
    with pytest.raises(AttributeError):
        probe.ok = False  # type: ignore[misc]


# --- pure helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (np.array([0, 1, 1]), [0, 1, 1]),
        (pd.Series([0.5, np.nan]), [0.5, np.nan]),
        (pd.DataFrame({"p": ["a", "b"]}), ["a", "b"]),
        (pd.DataFrame({"p0": [0.1, 0.2], "p1": [0.9, 0.8]}), [[0.1, 0.9], [0.2, 0.8]]),
        ([1, 2], [1, 2]),
    ],
    ids=["ndarray", "series", "one-column-frame", "two-column-frame", "list"],
)
def test_predictions_become_json_safe_lists(result, expected):
    converted = _predictions_to_list(result)
    assert type(converted) is list
    np.testing.assert_equal(converted, expected)
    assert all(not isinstance(v, np.generic) for v in np.ravel(np.asarray(converted, dtype=object)))


def test_describe_drops_the_rows_from_mlflow_schema_errors_and_caps_length():
    class MlflowException(Exception):
        pass

    schema_error = MlflowException(
        "Failed to enforce schema of data '   a\n0  123.456' with schema '['a': double (required), "
        "'b': string (required)]'. Error: Model is missing inputs ['b']."
    )
    assert _describe(schema_error) == (
        "MlflowException: Failed to enforce the model signature ['a': double (required), "
        "'b': string (required)]: Model is missing inputs ['b']."
    )
    assert _describe(KeyError("x")) == "KeyError: 'x'"
    long = _describe(RuntimeError("head " + "x" * 10_000 + " the reason"))
    assert len(long) < MAX_ERROR_CHARS + 50
    assert long.startswith("RuntimeError: head") and long.endswith("the reason")


@pytest.mark.parametrize(("rows", "expected_x"), [(7, [0, 1, 2, 0, 1, 2, 0]), (3, [0, 1, 2]), (2, [0, 1])])
def test_latency_sample_repeats_or_cuts_to_exactly_rows(rows, expected_x):
    frame = pd.DataFrame({"x": [0, 1, 2], "s": ["a", None, "c"]}, index=[10, 20, 30])

    sample = latency_sample(frame, rows)

    assert len(sample) == rows
    assert sample["x"].tolist() == expected_x
    assert list(sample.index) == list(range(rows))
    assert sample.dtypes.equals(frame.dtypes)


def test_latency_sample_rejects_empty_frame_and_bad_rows():
    with pytest.raises(ValueError, match="empty"):
        latency_sample(pd.DataFrame({"x": []}))
    with pytest.raises(ValueError, match="rows"):
        latency_sample(pd.DataFrame({"x": [1]}), 0)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sqlite:///data/mlflow.db", lambda cwd: f"sqlite:///{(cwd / 'data' / 'mlflow.db').as_posix()}"),
        ("sqlite:////abs/mlflow.db", lambda cwd: "sqlite:////abs/mlflow.db"),
        ("mlruns", lambda cwd: (cwd / "mlruns").as_posix()),
        ("http://localhost:5000", lambda cwd: "http://localhost:5000"),
        ("file:///abs/mlruns", lambda cwd: "file:///abs/mlruns"),
    ],
)
def test_relative_store_uris_are_made_absolute_for_the_child(uri, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _absolute_uri(uri) == expected(Path.cwd().resolve())
