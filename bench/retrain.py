"""Benchmark: the whole retrain (candidate + six gates + promotion) through Dagster and MLflow, beside
a plain script (no Dagster, no MLflow) doing the same training on the same data, in the same run.

Setup (timed apart, as context): a temp workspace with the demo config, ``--batches`` clean demo
batches of ``--rows / --batches`` rows each plus one holdout batch of the same size, landed as
Parquet and ingested with the ``ingest_batch`` job against a persistent instance (DAGSTER_HOME in
the workspace).

Measured, each in a fresh process so that its peak RSS is its own (ru_maxrss; per-step peaks come
from a 10 ms RSS sampler in the process):

* **Dagster run 1**: the ``retrain`` job with ``execute_in_process`` before any champion exists
  (the comparison gates have nothing to compare with and are waived); it promotes v1.
* **Dagster run 2**: the same job again, now against champion v1: all six gates computed (paired
  bootstrap, slices, flip rate), and the promotion of v2. This is the steady-state retrain.
* **Plain script** (twice, interleaved with the Dagster runs): read the same training and holdout
  rows from the landed Parquet files with pandas, fit the same scikit-learn pipeline written out by
  hand (median impute + scale / most-frequent impute + one-hot, HistGradientBoostingClassifier
  random_state=0, under ``threadpool_limits(1)`` as the product fits), score ROC AUC on the holdout
  and save the model with ``skops.io.dump``.

Per-step times of a Dagster run come from its event log (STEP_START → STEP_SUCCESS/FAILURE); inside
``candidate_model`` the package functions it calls (read, fit, scoring, MLflow logging and
registration, smoke test, gates) are wrapped with timers in the benchmark process only. Targets:
retrain wall time and the candidate_model step each ≤ 2× the plain script. Not part of
`make test`; run on demand:

    .venv/bin/python bench/retrain.py            # 100k training rows, ~70 s on 2 cores
    .venv/bin/python bench/retrain.py --quick    # 20k training rows, ~50 s
    .venv/bin/python bench/retrain.py --rows 500000 --keep /tmp/retrain-bench
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = "churned"
TARGET_RATIO = 2.0


# --- measuring (used in the child processes) -------------------------------------------------


class RssSampler(threading.Thread):
    """Samples this process's resident memory every ``interval`` seconds (epoch time, bytes)."""

    def __init__(self, interval: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop_event = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self._page

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.samples.append((time.time(), self.rss()))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.samples.append((time.time(), self.rss()))

    def peak_mb(self, start: float | None, end: float | None) -> float | None:
        """Highest sampled RSS between two epoch times, in MiB."""
        if start is None or end is None:
            return None
        inside = [rss for t, rss in self.samples if start <= t <= end]
        return round(max(inside) / 2**20, 1) if inside else None


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)  # KiB on Linux


def workspace_paths(workdir: Path) -> dict[str, Path]:
    return {
        "config": workdir / "config.yaml",
        "landing": workdir / "landing",
        "state": workdir / "state",
        "home": workdir / "dagster_home",
        "cwd": workdir / "cwd",
        "plain": workdir / "plain",
    }


def child_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["DAGSTER_HOME"] = str(workspace_paths(workdir)["home"])
    env.pop("RETRAIN_CONFIG", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_REGISTRY_URI", None)
    env["PYTHONWARNINGS"] = "ignore"
    return env


# --- setup (child) ---------------------------------------------------------------------------


def setup(workdir: Path, rows: int, batches: int) -> dict:
    """Write the config, land the batches and ingest them (in a child process)."""
    sys.path.insert(0, str(ROOT))
    import yaml

    from retrain_assets.constants import DEMO_CONFIG_PATH
    from retrain_assets.core import synthetic_batches

    paths = workspace_paths(workdir)
    for key in ("landing", "state", "home", "cwd", "plain"):
        paths[key].mkdir(parents=True, exist_ok=True)
    (paths["home"] / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    config = yaml.safe_load(DEMO_CONFIG_PATH.read_text())
    config["dataset"]["landing_dir"] = str(paths["landing"])
    config["storage"]["root"] = str(paths["state"])
    config["automation"]["settle_seconds"] = 0
    paths["config"].write_text(yaml.safe_dump(config, sort_keys=False))

    per_batch = rows // batches
    t0 = time.perf_counter()
    ids = []
    past = time.time() - 60
    for index in range(1, batches + 2):  # the last one is the holdout
        batch_id = f"batch_{index:04d}"
        frame = synthetic_batches.make_batch(per_batch, seed=100 + index, batch_index=index)
        path = synthetic_batches.write_batch(frame, paths["landing"] / f"{batch_id}.parquet")
        os.utime(path, (past, past))
        ids.append(batch_id)
    make_s = time.perf_counter() - t0

    import dagster as dg

    from retrain_assets.constants import BATCH_PARTITIONS, INGEST_JOB
    from retrain_assets.definitions import build_definitions

    defs = build_definitions(paths["config"])
    job = defs.resolve_job_def(INGEST_JOB)
    ingest_s = []
    with dg.DagsterInstance.get() as instance:
        for batch_id in ids:
            instance.add_dynamic_partitions(BATCH_PARTITIONS, [batch_id])
            t0 = time.perf_counter()
            result = job.execute_in_process(instance=instance, partition_key=batch_id, raise_on_error=False)
            ingest_s.append(time.perf_counter() - t0)
            if not result.success:
                raise SystemExit(f"ingest of {batch_id} failed: {_failure_text(result)}")
    return {"per_batch": per_batch, "batches": ids, "make_s": make_s, "ingest_s": ingest_s,
            "peak_rss_mb": peak_rss_mb()}


def _failure_text(result) -> str:
    parts = []
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        parts.append(data.error.message if data.error else "")
        if data.user_failure_data is not None:
            parts.append(data.user_failure_data.description or "")
    failed = [f"{e.check_name}: {e.description}" for e in result.get_asset_check_evaluations() if not e.passed]
    return " | ".join(p.strip() for p in [*parts, *failed] if p)


# --- the retrain through Dagster (child) -----------------------------------------------------

# (label, module, attribute) of what candidate_model/production_model call; wrapped with timers.
TIMED = [
    ("read window (DuckDB)", "retrain_assets.core.storage", "read_validated"),
    ("load champion", "retrain_assets.core.registry", "load_champion"),
    ("check training data", "retrain_assets.assets.training", "check_training_data"),
    ("split X/y (training_xy)", "retrain_assets.assets.training", "training_xy"),
    ("fit: train()", "retrain_assets.assets.training", "train"),
    ("score holdout (both models)", "retrain_assets.assets.training", "holdout_scores"),
    ("data fingerprint", "retrain_assets.assets.training", "data_fingerprint"),
    ("code version (git)", "retrain_assets.core.registry", "code_version"),
    ("MLflow log_model + register", "retrain_assets.core.registry", "log_candidate"),
    ("MLflow aliases", "retrain_assets.core.registry", "move_alias"),
    ("MLflow version tags", "retrain_assets.core.registry", "set_version_tags"),
    ("serving smoke test (child)", "retrain_assets.core.serving", "smoke_test"),
    ("gates: judge()", "retrain_assets.assets.training", "judge"),
]
MLFLOW_CALLS = ("log_params", "log_metrics", "log_metric", "set_tags", "end_run")


def instrument(calls: list[tuple[str, float, float]]) -> list[str]:
    """Wrap the functions in TIMED (and the dagster-mlflow resource's tracking calls) with timers."""
    import functools
    import importlib

    missing = []

    def timed(label, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            start = time.time()
            try:
                return fn(*args, **kwargs)
            finally:
                calls.append((label, start, time.time()))

        return wrapper

    for label, module_name, attribute in TIMED:
        module = importlib.import_module(module_name)
        if not hasattr(module, attribute):
            missing.append(f"{module_name}.{attribute}")
            continue
        setattr(module, attribute, timed(label, getattr(module, attribute)))
    from dagster_mlflow.resources import MlFlow

    for name in MLFLOW_CALLS:
        fn = MlFlow.__dict__.get(name)
        if isinstance(fn, staticmethod):
            setattr(MlFlow, name, staticmethod(timed("MLflow params/metrics/tags/end_run", fn.__func__)))
        else:
            missing.append(f"MlFlow.{name}")
    return missing


def dagster_retrain(workdir: Path) -> dict:
    """Run the retrain job once in this (fresh) process and report its timings."""
    started = time.time()
    sys.path.insert(0, str(ROOT))
    import dagster as dg

    from retrain_assets.constants import CANDIDATE_MODEL, PRODUCTION_MODEL, RETRAIN_JOB
    from retrain_assets.definitions import build_definitions

    defs = build_definitions(workspace_paths(workdir)["config"])
    job = defs.resolve_job_def(RETRAIN_JOB)
    calls: list[tuple[str, float, float]] = []
    missing = instrument(calls)
    sampler = RssSampler()
    with dg.DagsterInstance.get() as instance:
        ready = time.time()
        rss_ready = sampler.rss() / 2**20
        sampler.start()
        t0 = time.time()
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        t1 = time.time()
        sampler.stop()
        records = instance.all_logs(result.run_id)

    steps: dict[str, dict] = {}
    resource_init: dict[str | None, float] = {}
    init_start: dict[str | None, float] = {}
    first_event = records[0].timestamp if records else None
    for record in records:
        event = record.dagster_event
        if event is None:
            continue
        kind = event.event_type_value
        key = record.step_key
        if kind == "RESOURCE_INIT_STARTED":
            init_start[key] = record.timestamp
        elif kind in ("RESOURCE_INIT_SUCCESS", "RESOURCE_INIT_FAILURE") and key in init_start:
            resource_init[key] = resource_init.get(key, 0.0) + record.timestamp - init_start.pop(key)
        if key is None:
            continue
        step = steps.setdefault(key, {})
        if kind == "STEP_START":
            step["start"] = record.timestamp
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
            step["end"] = record.timestamp
            step["status"] = kind

    candidate_meta, checks = {}, {}
    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey(CANDIDATE_MODEL):
            candidate_meta = {k: v.value for k, v in event.materialization.metadata.items()}
    for evaluation in result.get_asset_check_evaluations():
        checks[evaluation.check_name] = {
            "passed": evaluation.passed, **{k: v.value for k, v in evaluation.metadata.items()
                                            if isinstance(v.value, (int, float, str, bool))}}

    out_steps = {}
    for key in (CANDIDATE_MODEL, PRODUCTION_MODEL):
        step = steps.get(key, {})
        start, end = step.get("start"), step.get("end")
        inside = [c for c in calls if start is not None and end is not None and start <= c[1] <= end]
        parts: dict[str, float] = {}
        for label, a, b in inside:
            parts[label] = parts.get(label, 0.0) + (b - a)
        parts_peak = {}
        for label in parts:
            windows = [(a, b) for lab, a, b in inside if lab == label]
            peaks = [sampler.peak_mb(a, b) for a, b in windows]
            peaks = [p for p in peaks if p is not None]
            parts_peak[label] = max(peaks) if peaks else None
        out_steps[key] = {
            "status": step.get("status", "not run"),
            "seconds": (end - start) if start is not None and end is not None else None,
            "peak_mb": sampler.peak_mb(start, end),
            "resource_init_s": resource_init.get(key),
            "parts": parts,
            "parts_peak_mb": parts_peak,
        }
    stepped = sum(s["seconds"] or 0.0 for s in out_steps.values())
    return {
        "success": result.success,
        "failure": "" if result.success else _failure_text(result),
        "imports_s": ready - started,
        "rss_ready_mb": round(rss_ready, 1),
        "run_s": t1 - t0,
        "outside_steps_s": (t1 - t0) - stepped,
        "before_first_event_s": (first_event - t0) if first_event is not None else None,
        "run_resource_init_s": resource_init.get(None),
        "steps": out_steps,
        "peak_rss_mb": peak_rss_mb(),
        "training_seconds": candidate_meta.get("training_seconds"),
        "training_peak_memory_mb": candidate_meta.get("training_peak_memory_mb"),
        "holdout_auc": candidate_meta.get("holdout_roc_auc"),
        "training_rows": candidate_meta.get("training_rows"),
        "holdout_rows": candidate_meta.get("holdout_rows"),
        "version": candidate_meta.get("version"),
        "champion_version": candidate_meta.get("champion_version"),
        "gates": {name: c["passed"] for name, c in checks.items()},
        "gates_waived": [name for name, c in checks.items() if c.get("waived")],
        "smoke": {k: checks.get("serving_smoke_test", {}).get(k) for k in ("load_seconds", "ms_per_1000")},
        "uninstrumented": missing,
    }


# --- the plain script (child) ----------------------------------------------------------------


def plain_retrain(workdir: Path) -> dict:
    """Read, fit, score and save like a hand-written script: pandas + scikit-learn + skops only."""
    started = time.time()
    import pandas as pd
    import skops.io
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from threadpoolctl import threadpool_limits

    numeric = ["tenure_months", "monthly_charges", "support_calls", "age"]
    categorical = ["contract", "payment_method", "region"]
    paths = workspace_paths(workdir)
    files = sorted(paths["landing"].glob("*.parquet"))
    sampler = RssSampler()
    ready = time.time()
    sampler.start()
    marks = {"start": time.time()}

    train = pd.concat([pd.read_parquet(p) for p in files[:-1]], ignore_index=True)
    holdout = pd.read_parquet(files[-1])
    marks["read"] = time.time()

    pipeline = Pipeline([
        ("features", ColumnTransformer([
            ("numeric", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), numeric),
            ("categorical", Pipeline([
                ("impute", SimpleImputer(strategy="most_frequent")),
                ("encode", OneHotEncoder(handle_unknown="ignore", min_frequency=5, max_categories=20,
                                         sparse_output=False)),
            ]), categorical),
        ], remainder="drop", sparse_threshold=0.0)),
        ("model", HistGradientBoostingClassifier(random_state=0)),
    ])
    X, y = train.drop(columns=[TARGET]), train[TARGET]
    with threadpool_limits(limits=1):
        pipeline.fit(X, y)
    marks["fit"] = time.time()

    with threadpool_limits(limits=1):  # as the product scores (Champion.scores); see core/training.py on why
        scores = pipeline.predict_proba(holdout.drop(columns=[TARGET]))[:, 1]
    auc = float(roc_auc_score(holdout[TARGET], scores))
    marks["score"] = time.time()

    model_path = paths["plain"] / "model.skops"
    skops.io.dump(pipeline, model_path)
    marks["save"] = time.time()
    sampler.stop()

    order = ["start", "read", "fit", "score", "save"]
    steps = {b: {"seconds": marks[b] - marks[a], "peak_mb": sampler.peak_mb(marks[a], marks[b])}
             for a, b in zip(order, order[1:])}
    return {
        "imports_s": ready - started,
        "rss_ready_mb": round(sampler.samples[0][1] / 2**20, 1),
        "steps": steps,
        "total_s": marks["save"] - marks["start"],
        "peak_rss_mb": peak_rss_mb(),
        "holdout_auc": auc,
        "training_rows": len(train),
        "holdout_rows": len(holdout),
        "model_kb": round(model_path.stat().st_size / 1024),
    }


# --- parent ----------------------------------------------------------------------------------


def run_child(mode: str, workdir: Path, extra: list[str] | None = None) -> tuple[dict, float]:
    """Run this script in ``mode`` in a fresh process; its JSON result and its wall time."""
    cmd = [sys.executable, __file__, mode, str(workdir), *(extra or [])]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=child_env(workdir),
                          cwd=workspace_paths(workdir)["cwd"] if mode != "--setup" else workdir)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"{mode} failed (exit {done.returncode}): {done.stdout[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), wall


def fmt_s(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def fmt_mb(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def versions() -> str:
    from importlib.metadata import version

    names = ["dagster", "dagster-mlflow", "mlflow", "scikit-learn", "pandas", "numpy", "duckdb", "skops"]
    out = []
    for name in names:
        try:
            out.append(f"{name} {version(name)}")
        except Exception:  # noqa: BLE001 - a missing distribution is reported, not fatal
            out.append(f"{name} ?")
    return ", ".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="training rows in total (default 100000)")
    parser.add_argument("--batches", type=int, default=5, help="training batches (plus one holdout batch of the same size)")
    parser.add_argument("--quick", action="store_true", help="20k training rows")
    parser.add_argument("--keep", type=Path, help="use (and keep) this folder as the workspace instead of a temp one")
    parser.add_argument("--setup", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--dagster", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--plain", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    rows = 20_000 if args.quick else args.rows
    if args.setup:
        print(json.dumps(setup(args.setup, rows, args.batches)))
        return 0
    if args.dagster:
        print(json.dumps(dagster_retrain(args.dagster)))
        return 0
    if args.plain:
        print(json.dumps(plain_retrain(args.plain)))
        return 0
    if rows // args.batches < 200:
        parser.error("each batch needs at least 200 rows (--rows / --batches)")

    started = time.perf_counter()
    print("$ " + " ".join([Path(sys.executable).name, *sys.argv]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"cores: {cores} (os.cpu_count()={os.cpu_count()}), python {platform.python_version()}, {versions()}")
    print(f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"mode: {'quick' if args.quick else 'full'}; {rows} training rows in {args.batches} batches "
          f"+ 1 holdout batch of {rows // args.batches} rows (clean demo data, Parquet)")

    if args.keep:
        if args.keep.exists() and any(args.keep.iterdir()):
            parser.error(f"--keep {args.keep}: the folder must be new or empty")
        args.keep.mkdir(parents=True, exist_ok=True)
        workdir = args.keep.resolve()
    else:
        workdir = Path(tempfile.mkdtemp(prefix="retrain-bench-"))
    try:
        return report(workdir, rows, args.batches, started)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def report(workdir: Path, rows: int, batches: int, started: float) -> int:
    cmd_extra = ["--rows", str(rows), "--batches", str(batches)]
    setup_out, setup_wall = run_child("--setup", workdir, cmd_extra)
    ingest = setup_out["ingest_s"]
    print(f"\n## Setup (not part of the comparison)")
    print(f"made and landed {len(ingest)} Parquet batches of {setup_out['per_batch']} rows in {setup_out['make_s']:.1f} s; "
          f"ingest_batch job per batch (raw_data, validated_data, drift_report): "
          f"{', '.join(f'{s:.1f}' for s in ingest)} s (total {sum(ingest):.1f} s); setup process {setup_wall:.1f} s, "
          f"peak RSS {setup_out['peak_rss_mb']:.0f} MB")

    # Interleaved, each in a fresh process: D1 (no champion), P1, D2 (champion v1), P2.
    d1, d1_wall = run_child("--dagster", workdir)
    p1, p1_wall = run_child("--plain", workdir)
    d2, d2_wall = run_child("--dagster", workdir)
    p2, p2_wall = run_child("--plain", workdir)
    for n, d in ((1, d1), (2, d2)):
        if not d["success"]:
            print(f"\n!! Dagster run {n} did not succeed: {d['failure']}")
    if d1["uninstrumented"] or d2["uninstrumented"]:
        print(f"\n!! not found, so not timed inside the step: {', '.join(sorted(set(d1['uninstrumented'])))}")

    print("\n## Retrain through Dagster + MLflow: `retrain` job, execute_in_process, fresh process per run")
    for n, d in ((1, d1), (2, d2)):
        before = d["champion_version"]
        against = "no champion yet (comparison gates waived)" if before in (None, "none yet") else (
            f"against champion v{before} (all six gates computed)")
        outcome = f"promoted v{d['version']}" if d["success"] else f"v{d['version']} NOT promoted"
        print(f"run {n}: {against}; {outcome}")
    print("peak MB: highest RSS sampled (10 ms) in that span; the process peak is ru_maxrss")
    header = f"{'step':<46} {'run 1 s':>8} {'peak MB':>8} {'run 2 s':>8} {'peak MB':>8}"
    print(header)
    print("-" * len(header))

    def row(label: str, a: tuple, b: tuple) -> None:
        print(f"{label:<46} {fmt_s(a[0]):>8} {fmt_mb(a[1]):>8} {fmt_s(b[0]):>8} {fmt_mb(b[1]):>8}")

    row("process: start-up, imports, Definitions", (d1["imports_s"], d1["rss_ready_mb"]), (d2["imports_s"], d2["rss_ready_mb"]))
    row("execute_in_process (the retrain)", (d1["run_s"], d1["peak_rss_mb"]), (d2["run_s"], d2["peak_rss_mb"]))
    row("  outside steps (run start/end, plan, hooks)", (d1["outside_steps_s"], None), (d2["outside_steps_s"], None))
    row("    run record, snapshot, planned events", (d1["before_first_event_s"], None), (d2["before_first_event_s"], None))
    row("    resource init (MLflow run start, DuckDB…)", (d1["run_resource_init_s"], None),
        (d2["run_resource_init_s"], None))
    labels = [label for label, _, _ in TIMED] + ["MLflow params/metrics/tags/end_run"]
    for key in ("candidate_model", "production_model"):
        s1, s2 = d1["steps"][key], d2["steps"][key]
        row(f"  {key} step", (s1["seconds"], s1["peak_mb"]), (s2["seconds"], s2["peak_mb"]))
        if s1["resource_init_s"] is not None or s2["resource_init_s"] is not None:
            row("    resource init", (s1["resource_init_s"], None), (s2["resource_init_s"], None))
        for label in labels:
            if label in s1["parts"] or label in s2["parts"]:
                row(f"    {label}", (s1["parts"].get(label), s1["parts_peak_mb"].get(label)),
                    (s2["parts"].get(label), s2["parts_peak_mb"].get(label)))

        def rest(s):
            if s["seconds"] is None:
                return None
            return s["seconds"] - sum(s["parts"].values()) - (s["resource_init_s"] or 0.0)

        row("    rest of the step (untimed code, events)", (rest(s1), None), (rest(s2), None))
    row("process wall (parent's view)", (d1_wall, d1["peak_rss_mb"]), (d2_wall, d2["peak_rss_mb"]))
    for n, d in ((1, d1), (2, d2)):
        print(f"run {n}: v{d['version']} (champion before: {d['champion_version']}), gates "
              f"{'all passed' if all(d['gates'].values()) else 'FAILED ' + str([k for k, v in d['gates'].items() if not v])}"
              f"{', waived: ' + ', '.join(d['gates_waived']) if d['gates_waived'] else ''}; fit {fmt_s(d['training_seconds'])} s, "
              f"peak RSS at end of fit {fmt_mb(d['training_peak_memory_mb'])} MB; smoke test: load "
              f"{fmt_s(d['smoke']['load_seconds'])} s, {fmt_s(d['smoke']['ms_per_1000'])} ms/1000 rows")

    print("\n## Plain script: pandas + scikit-learn + skops, no Dagster, no MLflow; fresh process per run")
    header = f"{'step':<46} {'run 1 s':>8} {'peak MB':>8} {'run 2 s':>8} {'peak MB':>8}"
    print(header)
    print("-" * len(header))
    row("process: start-up, imports", (p1["imports_s"], p1["rss_ready_mb"]), (p2["imports_s"], p2["rss_ready_mb"]))
    for step, label in (("read", "read Parquet (training + holdout)"), ("fit", "fit (threadpool_limits(1))"),
                        ("score", "score holdout (ROC AUC)"), ("save", "save (skops.io.dump)")):
        row(f"  {label}", (p1["steps"][step]["seconds"], p1["steps"][step]["peak_mb"]),
            (p2["steps"][step]["seconds"], p2["steps"][step]["peak_mb"]))
    row("read → save (the retrain)", (p1["total_s"], p1["peak_rss_mb"]), (p2["total_s"], p2["peak_rss_mb"]))
    row("process wall (parent's view)", (p1_wall, p1["peak_rss_mb"]), (p2_wall, p2["peak_rss_mb"]))
    print(f"model file {p2['model_kb']} KB; {p2['training_rows']} training rows, {p2['holdout_rows']} holdout rows")

    print("\n## Same data, same model?")
    print(f"training rows: Dagster {d2['training_rows']}, plain {p2['training_rows']}; holdout rows: Dagster "
          f"{d2['holdout_rows']}, plain {p2['holdout_rows']}")
    auc_d, auc_p = d2["holdout_auc"], p2["holdout_auc"]
    same = auc_d is not None and abs(auc_d - auc_p) < 1e-9
    print(f"holdout ROC AUC: Dagster {auc_d:.6f} (run 1 {d1['holdout_auc']:.6f}), plain {auc_p:.6f} (run 1 "
          f"{p1['holdout_auc']:.6f}){' — identical' if same else ' — DIFFERENT'}")
    print(f"fit alone: Dagster {fmt_s(d1['training_seconds'])} / {fmt_s(d2['training_seconds'])} s, plain "
          f"{p1['steps']['fit']['seconds']:.2f} / {p2['steps']['fit']['seconds']:.2f} s")

    print("\n## Overhead ratios (Dagster ÷ plain, same-numbered runs)")
    print(f"{'ratio':<62} {'run 1':>7} {'run 2':>7}")

    def plain_train(p):
        return p["steps"]["fit"]["seconds"] + p["steps"]["score"]["seconds"] + p["steps"]["save"]["seconds"]

    ratios = {
        "retrain: execute_in_process ÷ plain read→save": [d["run_s"] / p["total_s"] for d, p in ((d1, p1), (d2, p2))],
        "training: candidate_model step ÷ plain fit+score+save": [
            (d["steps"]["candidate_model"]["seconds"] or float("nan")) / plain_train(p) for d, p in ((d1, p1), (d2, p2))],
        "whole process incl. start-up and imports (context)": [d1_wall / p1_wall, d2_wall / p2_wall],
        "peak RSS of the process (context)": [d["peak_rss_mb"] / p["peak_rss_mb"] for d, p in ((d1, p1), (d2, p2))],
    }
    for label, (r1, r2) in ratios.items():
        print(f"{label:<62} {r1:>6.2f}× {r2:>6.2f}×")

    print("\n## Where the extra time goes (run 2, seconds beyond the plain script's read→save)"
          + ("" if d2["champion_version"] not in (None, "none yet") else " — NB: run 2 had no champion to compare with"))
    s = d2["steps"]["candidate_model"]
    extra = {
        "Dagster run outside steps (run start/end, plan, hooks)": d2["outside_steps_s"],
        "production_model step (promotion: aliases, ledger, tags)": d2["steps"]["production_model"]["seconds"] or 0.0,
        "  of which resource init (MLflow run start, DuckDB…)": 0.0,
    }
    for label in labels:
        if label in s["parts"] and label not in ("fit: train()", "read window (DuckDB)"):
            extra[f"candidate_model: {label}"] = s["parts"][label]
    extra["candidate_model: rest of the step (metadata, check events, …)"] = (
        (s["seconds"] or 0.0) - sum(s["parts"].values()) - (s["resource_init_s"] or 0.0))
    extra["read: DuckDB window − plain Parquet read"] = s["parts"].get("read window (DuckDB)", 0.0) - p2["steps"]["read"]["seconds"]
    extra["fit: train() (incl. its X/y split) − plain fit"] = (
        s["parts"].get("fit: train()", 0.0) - p2["steps"]["fit"]["seconds"])
    extra["minus the plain script's score + save (the product does these inside the lines above)"] = -(
        p2["steps"]["score"]["seconds"] + p2["steps"]["save"]["seconds"])
    init = d2["run_resource_init_s"] or 0.0
    extra.pop("  of which resource init (MLflow run start, DuckDB…)")
    for label, value in sorted(extra.items(), key=lambda kv: -kv[1]):
        print(f"{value:>7.2f}  {label}")
        if label.startswith("Dagster run outside steps"):
            print(f"{'':>7}    of which resource init (MLflow run start, DuckDB…) {init:.2f} s")
    overhead = sum(extra.values())
    print(f"{overhead:>7.2f}  total = {d2['run_s']:.2f} − {p2['total_s']:.2f}")
    scaling = s["parts"].get("gates: judge()", 0.0) + s["parts"].get("score holdout (both models)", 0.0)
    print(f"of which grows with the holdout rows: {scaling:.2f} s (judge(): paired bootstrap and slice bootstraps; "
          f"scoring both models); roughly fixed per run: {overhead - scaling:.2f} s (smoke test, MLflow, Dagster, "
          f"loading the champion)")

    print("\n## Targets")
    targets = []
    for n in (1, 2):
        r_total = ratios["retrain: execute_in_process ÷ plain read→save"][n - 1]
        r_train = ratios["training: candidate_model step ÷ plain fit+score+save"][n - 1]
        targets.append((f"run {n}: retrain wall ≤ {TARGET_RATIO:g}× plain", r_total <= TARGET_RATIO, f"{r_total:.2f}×"))
        targets.append((f"run {n}: candidate_model step ≤ {TARGET_RATIO:g}× plain fit+score+save",
                        r_train <= TARGET_RATIO, f"{r_train:.2f}×"))
    targets.append(("same holdout AUC both sides", same, f"{auc_d:.6f} vs {auc_p:.6f}"))
    targets.append(("both Dagster runs succeeded and promoted", d1["success"] and d2["success"],
                    f"v{d1['version']}, v{d2['version']}"))
    for name, ok, detail in targets:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    print(f"\nload average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0 if all(ok for _, ok, _ in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
