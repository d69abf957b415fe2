"""Serving smoke test: does a registered model version load and score in a fresh process, and how fast?

The promotion gate needs more than "the model object in this process predicts": the version in the
registry must load by its ``models:/`` URI in a process that has nothing else imported, accept a
sample through its logged signature (``mlflow.pyfunc``), and score 1,000 rows within the budget.

* :func:`smoke_test` (parent side) writes the sample to a temporary parquet file and runs this
  module as ``python -m retrain_assets.core.serving`` in a child process with the tracking and
  registry URI in ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI`` and a temporary working folder.
  It returns a :class:`ServingProbe`; a model that fails to load or predict, a crash and a timeout
  are a *failed probe* (``ok=False``), never an exception.
* :func:`main` (child side) loads the model (timed), reads the sample, predicts once to warm up,
  then ``repeats`` times, and writes a JSON result. It imports only mlflow, pandas and numpy.
* :func:`latency_sample` makes a sample of exactly ``rows`` rows for the latency measurement
  (1,000 rows; why not fewer: docs/decisions.md, "Serving latency on 1,000 rows").

Top-level imports are stdlib only, so the parent imports this module cheaply and the child's
start-up is not slowed (or polluted) by anything but what serving needs. Pure Python (no Dagster).

Example:
    >>> probe = smoke_test("models:/churn/3", latency_sample(holdout), tracking_uri=uri)  # doctest: +SKIP
    >>> probe.ok, probe.ms_per_1000  # doctest: +SKIP
    (True, 4.1)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # imported lazily at run time: the child must stay light
    import numpy as np
    import pandas as pd

__all__ = ["ServingProbe", "smoke_test", "latency_sample", "main", "MODULE"]

MODULE = "retrain_assets.core.serving"
"""What the child runs with ``python -m``."""

DEFAULT_TIMEOUT_SECONDS = 300.0
DEFAULT_REPEATS = 7
"""Timed predictions; the best is reported. On a shared 2-core machine single calls of 1,000 rows
ranged 14–750 ms while another process was busy; the best of 7 stayed within 12–30 ms."""

SERVING_THREADS = "1"
"""OpenMP/BLAS threads of the serving child (unless the environment sets them): a serving replica
usually gets one core, and with the default threads a busy machine made scoring 40x slower."""
DEFAULT_LATENCY_ROWS = 1000
STDERR_TAIL_CHARS = 2000
MAX_ERROR_CHARS = 2000

_REPO_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the retrain_assets package
_SAMPLE_FILE = "sample.parquet"
_RESULT_FILE = "result.json"


@dataclass(frozen=True, eq=False)  # eq on an ndarray field is ambiguous: compare fields yourself
class ServingProbe:
    """What the serving smoke test measured in the child process.

    Attributes:
        ok: The model loaded and predicted the whole sample.
        load_seconds: Seconds to ``mlflow.pyfunc.load_model`` the URI (None if loading did not finish).
        ms_per_1000: Best-of-repeats milliseconds to score 1,000 rows (None unless ``ok``).
        rows: Rows in the sample.
        predictions: The model's predictions on the sample (empty unless ``ok``); a one-column
            frame output is flattened to that column.
        error: ``"<ExceptionType>: <message>"``, a timeout or a crash description (None if ``ok``).
        stage: Where the child failed: ``"load"``, ``"read_sample"`` or ``"predict"``; None when it
            succeeded, timed out or died without a result (``error`` says which).
        stderr_tail: The last characters of the child's stderr (warnings, tracebacks).
        wall_seconds: Wall-clock seconds of the whole child process, start-up included.
        imported_dagster: Whether ``dagster`` was in the child's ``sys.modules`` (it must not be;
            None when the child did not report, e.g. on a timeout).
        python: The child's ``sys.version`` (None when it did not report).
    """

    ok: bool
    load_seconds: float | None
    ms_per_1000: float | None
    rows: int
    predictions: np.ndarray
    error: str | None
    stage: str | None
    stderr_tail: str
    wall_seconds: float
    imported_dagster: bool | None = None
    python: str | None = None

    @property
    def seconds_per_1000(self) -> float | None:
        """``ms_per_1000`` in seconds, the unit :func:`retrain_assets.core.stability_gates.serving_latency` takes."""
        return None if self.ms_per_1000 is None else self.ms_per_1000 / 1000.0


def latency_sample(frame: pd.DataFrame, rows: int = DEFAULT_LATENCY_ROWS) -> pd.DataFrame:
    """Exactly ``rows`` rows of ``frame`` to time the model on.

    Args:
        frame: Feature rows (e.g. the holdout).
        rows: How many rows the sample must have.

    Returns:
        The first ``rows`` rows, or ``frame``'s rows repeated in order until there are ``rows``
        when it has fewer; the index is reset to ``0..rows-1``.

    Raises:
        ValueError: ``frame`` has no rows, or ``rows`` < 1.
    """
    import numpy as np

    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    if len(frame) == 0:
        raise ValueError("cannot make a latency sample from an empty frame: pass at least one row")
    if len(frame) >= rows:
        return frame.iloc[:rows].reset_index(drop=True)
    positions = np.resize(np.arange(len(frame)), rows)
    return frame.iloc[positions].reset_index(drop=True)


def smoke_test(
    model_uri: str,
    sample: pd.DataFrame,
    *,
    tracking_uri: str,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    repeats: int = DEFAULT_REPEATS,
    python: str = sys.executable,
) -> ServingProbe:
    """Load ``model_uri`` in a fresh Python process, score ``sample`` and time it.

    The child gets the parent's environment plus ``MLFLOW_TRACKING_URI`` and
    ``MLFLOW_REGISTRY_URI`` = ``tracking_uri`` (a relative SQLite or file path is made absolute
    first, since the child runs in a temporary folder), and this repository's root prepended to
    ``PYTHONPATH``.

    Args:
        model_uri: What to load, e.g. ``"models:/churn/3"`` or ``"models:/churn@champion"``.
        sample: Feature rows to score, with the columns the model's signature requires.
            Written to parquet: object (string), float64, int64 and datetime64[ns] columns, None
            and NaN survive as they are.
        tracking_uri: MLflow tracking (and registry) URI the model is registered in.
        timeout_seconds: Wall-clock limit for the child, start-up and model loading included.
        repeats: Timed predictions after one warm-up; the best is reported.
        python: The interpreter to run the child with (one where mlflow, pandas and numpy import).

    Returns:
        The probe. A model that fails to load or predict, a child that crashes and a timeout give
        ``ok=False`` with ``error`` set (and ``stage`` for a failure inside the child): a failed
        gate, for the caller to report.

    Raises:
        ValueError: ``sample`` is empty or cannot be written to parquet, ``repeats`` < 1,
            ``timeout_seconds`` is not positive, or ``python`` cannot be started (mistakes of the
            caller, not of the model).
    """
    import numpy as np

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if not timeout_seconds > 0:
        raise ValueError(f"timeout_seconds must be > 0, got {timeout_seconds}")
    if len(sample) == 0 or sample.shape[1] == 0:
        raise ValueError(
            f"the serving sample is empty ({sample.shape[0]} rows x {sample.shape[1]} columns): "
            "pass feature rows, e.g. latency_sample(holdout_features)"
        )
    rows = len(sample)
    empty = np.asarray([])

    with tempfile.TemporaryDirectory(prefix="retrain-serving-") as tmp:
        work = Path(tmp)
        sample_path, out_path = work / _SAMPLE_FILE, work / _RESULT_FILE
        _write_sample(sample, sample_path)
        uri = _absolute_uri(tracking_uri)
        env = {
            "OMP_NUM_THREADS": SERVING_THREADS,
            "OPENBLAS_NUM_THREADS": SERVING_THREADS,
            "MKL_NUM_THREADS": SERVING_THREADS,
            **os.environ,
            "MLFLOW_TRACKING_URI": uri,
            "MLFLOW_REGISTRY_URI": uri,
            "PYTHONPATH": os.pathsep.join(p for p in (str(_REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p),
        }
        command = [python, "-m", MODULE, "--model-uri", model_uri, "--sample", str(sample_path),
                   "--out", str(out_path), "--repeats", str(repeats)]
        started = time.perf_counter()
        try:
            completed = subprocess.run(command, env=env, cwd=work, capture_output=True, text=True,
                                       timeout=timeout_seconds)
        except OSError as exc:  # the interpreter itself cannot be started: the caller's setup
            raise ValueError(f"cannot start the serving process with python={python!r}: {exc}") from exc
        except subprocess.TimeoutExpired as exc:
            return ServingProbe(
                ok=False, load_seconds=None, ms_per_1000=None, rows=rows, predictions=empty,
                error=f"timed out after {timeout_seconds:g} s", stage=None,
                stderr_tail=_tail(exc.stderr), wall_seconds=time.perf_counter() - started,
            )
        wall_seconds = time.perf_counter() - started
        stderr_tail = _tail(completed.stderr)
        result = _read_result(out_path)

    if result is None:
        return ServingProbe(
            ok=False, load_seconds=None, ms_per_1000=None, rows=rows, predictions=empty,
            error=(f"the serving process exited with code {completed.returncode} without a result; "
                   f"stderr ends with: {stderr_tail.strip() or '(nothing)'}"),
            stage=None, stderr_tail=stderr_tail, wall_seconds=wall_seconds,
        )
    ok = bool(result.get("ok"))
    return ServingProbe(
        ok=ok,
        load_seconds=_float_or_none(result.get("load_seconds")),
        ms_per_1000=_float_or_none(result.get("ms_per_1000")) if ok else None,
        rows=int(result.get("rows", rows)),
        predictions=np.asarray(result["predictions"]) if ok else empty,
        error=None if ok else str(result.get("error")),
        stage=None if ok else result.get("stage"),
        stderr_tail=stderr_tail,
        wall_seconds=wall_seconds,
        imported_dagster=result.get("imported_dagster"),
        python=result.get("python"),
    )


def _write_sample(sample: pd.DataFrame, path: Path) -> None:
    """Write the sample to parquet (index dropped); ValueError with pyarrow's reason if it cannot."""
    try:
        sample.to_parquet(path, index=False)
    except Exception as exc:  # pyarrow's errors, named without importing pyarrow here
        raise ValueError(
            f"the serving sample cannot be written to parquet (non-string column names, or mixed "
            f"types in an object column?): {type(exc).__name__}: {exc}"
        ) from exc


def _absolute_uri(uri: str) -> str:
    """Make a relative SQLite or local-path tracking URI absolute against the current folder."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = uri[len("sqlite:///"):]
        if path and path != ":memory:" and not Path(path).is_absolute():
            return f"sqlite:///{Path(path).resolve().as_posix()}"
        return uri
    if "://" not in uri and not uri.startswith("file:") and uri not in ("", "databricks"):
        return Path(uri).resolve().as_posix()
    return uri


def _tail(text: str | bytes | None, chars: int = STDERR_TAIL_CHARS) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):  # TimeoutExpired carries bytes even in text mode
        text = text.decode("utf-8", errors="replace")
    return text[-chars:]


def _read_result(path: Path) -> dict[str, Any] | None:
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and "ok" in result else None


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


# --- child side --------------------------------------------------------------------------------


def _describe(exc: BaseException) -> str:
    """``"<ExceptionType>: <message>"``, short enough for a gate summary.

    MLflow's schema-enforcement error embeds the whole input frame (``Failed to enforce schema of
    data '<the rows>' with schema '<schema>'. Error: <reason>``); the rows are dropped, keeping the
    schema and the reason. Other long messages keep their head and tail.
    """
    message = str(exc)
    head, separator, reason = message.rpartition("'. Error: ")
    if separator and message.startswith("Failed to enforce schema of data '") and " with schema '" in head:
        schema = head.rpartition(" with schema '")[2]
        message = f"Failed to enforce the model signature {schema}: {reason}"
    if len(message) > MAX_ERROR_CHARS:
        half = MAX_ERROR_CHARS // 2
        message = f"{message[:half]} [...] {message[-half:]}"
    return f"{type(exc).__name__}: {message}"


def _predictions_to_list(result: Any) -> list[Any]:
    """JSON-safe predictions from what pyfunc returned (ndarray, Series, DataFrame, list)."""
    import numpy as np
    import pandas as pd

    if isinstance(result, pd.DataFrame):
        result = result.iloc[:, 0] if result.shape[1] == 1 else result
        result = result.to_numpy()
    elif isinstance(result, pd.Series):
        result = result.to_numpy()
    return np.asarray(result).tolist()


def _measure(model_uri: str, sample_path: str, repeats: int, report: dict[str, Any]) -> None:
    """Load, read, warm up and time; fills ``report`` as it goes, ``report["stage"]`` = current stage."""
    report["stage"] = "load"
    import mlflow.artifacts
    import mlflow.pyfunc

    from retrain_assets.core.model_files import check_safe_model

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="retrain-smoke-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
        check_safe_model(local, model_uri)  # never unpickle: the same rule as every other load
        model = mlflow.pyfunc.load_model(str(local))
    report["load_seconds"] = time.perf_counter() - started

    report["stage"] = "read_sample"
    import pandas as pd

    sample = pd.read_parquet(sample_path)
    rows = len(sample)
    if rows == 0:
        raise ValueError(f"the sample at {sample_path} has no rows")

    report["stage"] = "predict"
    result = model.predict(sample)  # warm-up: first-call caches, lazy imports
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.predict(sample)
        timings.append(time.perf_counter() - started)
    best = min(timings)
    report.update(
        predict_seconds=best,
        rows=rows,
        ms_per_1000=best / rows * 1000 * 1000,
        predictions=_predictions_to_list(result),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Child entry point: measure and write the JSON result to ``--out``.

    Args:
        argv: Command-line arguments (``--model-uri``, ``--sample``, ``--out``, ``--repeats``);
            ``sys.argv[1:]`` when None.

    Returns:
        The exit code: 0 when the model loaded and predicted, 1 otherwise (the JSON says why).
    """
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.splitlines()[0])
    parser.add_argument("--model-uri", required=True, help="models:/<name>/<version> or models:/<name>@<alias>")
    parser.add_argument("--sample", required=True, help="parquet file of feature rows")
    parser.add_argument("--out", required=True, help="where to write the JSON result")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="timed predictions after a warm-up")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")

    report: dict[str, Any] = {"stage": "load"}
    try:
        _measure(args.model_uri, args.sample, args.repeats, report)
    except Exception as exc:  # reported, not swallowed: the JSON and the exit code say it failed
        payload = {"ok": False, "error": _describe(exc), "stage": report["stage"]}
        if "load_seconds" in report:
            payload["load_seconds"] = report["load_seconds"]
        code = 1
    else:
        payload = {"ok": True, **{k: v for k, v in report.items() if k != "stage"}}
        code = 0
    payload["python"] = sys.version
    payload["imported_dagster"] = "dagster" in sys.modules
    Path(args.out).write_text(json.dumps(payload, default=str), encoding="utf-8")
    return code


if __name__ == "__main__":
    sys.exit(main())
