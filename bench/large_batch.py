"""Benchmark: one large Parquet batch (10M rows × 20 columns by default) landed, validated, drift-checked
and sampled for training within ``storage.memory_limit_mb``, with the peak memory of every stage.

Setup (its own process): a temp workspace (config, landing folder, Dagster home) and two seeded
Parquet batches written by pyarrow in row groups: ``b0001`` (the reference) and ``b0002``, both of
``--rows`` rows (``--reference-rows`` to change the reference's). Columns: an id, an event time,
14 numeric features (one shifted 0.2σ in b0002, one with 1% missing), 3 text categories and a 0/1
label; 0.05% of rows hold an implausible value and one id repeats across row groups, so a few
rows are quarantined.

Stages, each in a fresh process so that its peak RSS (``ru_maxrss``) is its own:

* ``raw_data``, ``validated_data`` (for b0001, then b0002) and ``drift_report`` (b0002 against b0001)
  are materialized exactly as the platform does, through the ``ingest_batch`` job with
  ``execute_in_process`` and that asset selected, against the workspace's instance;
* ``training sample``: what a retrain reads first, :func:`retrain_assets.core.retrain.training_data`
  (``training.max_rows`` labelled rows at most, sampled in DuckDB).

Each stage prints its rows, the step's seconds (from the run's event log; the process's wall time
beside it) and its peak RSS, PASS when that stays within ``--memory-limit-mb``. Not part of
`make test`; run on demand:

    .venv/bin/python bench/large_batch.py                       # 10M rows, ~4.5 min on 2 cores
    .venv/bin/python bench/large_batch.py --rows 1000000        # 1M rows, ~1 min
    .venv/bin/python bench/large_batch.py --memory-limit-mb 1024 --max-rows 200000
    .venv/bin/python bench/large_batch.py --keep /tmp/lb                         # keep the workspace, then
    .venv/bin/python bench/large_batch.py --reuse /tmp/lb --memory-limit-mb 1024 --stages drift_report

``--reuse`` runs the stages again on a workspace kept with ``--keep`` (its batches as generated;
``--rows`` is not used), with ``storage.memory_limit_mb`` set to ``--memory-limit-mb``;
``--stages`` picks stages by asset name (``raw_data``, ``validated_data``, ``drift_report``,
``training``). Before drift_report the drift reference cache is removed, so that the stage
prepares the reference as it does in a fresh run.
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROW_GROUP = 500_000
NUMERIC, CATEGORIES = 14, 3
REFERENCE, CURRENT = "b0001", "b0002"
STAGES = (  # (label, asset or None, batch)
    ("raw_data (reference)", "raw_data", REFERENCE),
    ("validated_data (reference)", "validated_data", REFERENCE),
    ("raw_data", "raw_data", CURRENT),
    ("validated_data", "validated_data", CURRENT),
    ("drift_report", "drift_report", CURRENT),
    ("training sample", None, CURRENT),
)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def paths(workdir: Path) -> dict[str, Path]:
    return {"config": workdir / "config.yaml", "landing": workdir / "landing", "state": workdir / "state",
            "home": workdir / "dagster_home"}


# --- setup (child) ---------------------------------------------------------------------------


def write_batch(path: Path, rows: int, *, seed: int, day: int, shift: float) -> None:
    """A seeded Parquet batch written ``ROW_GROUP`` rows at a time (never whole in memory)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    start_time = np.datetime64(f"2024-01-{day:02d}T00:00:00", "ns")
    step = np.timedelta64(max(86_400_000_000_000 // max(rows, 1), 1), "ns")
    levels = [np.array([f"level_{k}_{i}" for i in range(4 + k)]) for k in range(CATEGORIES)]
    writer = None
    for start in range(0, rows, ROW_GROUP):
        n = min(ROW_GROUP, rows - start)
        position = np.arange(start, start + n)
        features = rng.normal(size=(n, NUMERIC))
        features[:, 0] += shift
        features[rng.random(n) < 0.01, 3] = np.nan
        features[rng.random(n) < 0.0005, 1] = 1e12  # implausible: quarantined
        cats = [rng.integers(0, len(lv), n) for lv in levels]
        logit = features[:, 0] - 0.8 * features[:, 2] + 0.5 * (cats[0] == 1) - 0.2
        label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
        ids = np.char.add(f"{day:02d}-", np.char.zfill(position.astype(str), 10))
        if start + n == rows and rows > ROW_GROUP:
            ids[-1] = f"{day:02d}-{0:010d}"  # the first row's id again, in another chunk
        columns = {"id": pa.array(ids), "event_time": pa.array(start_time + position * step)}
        columns |= {f"f{i:02d}": pa.array(features[:, i]) for i in range(NUMERIC)}
        columns |= {f"c{k}": pa.array(levels[k][cats[k]]) for k in range(CATEGORIES)}
        columns["label"] = pa.array(label)
        table = pa.table(columns)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=ROW_GROUP)
    writer.close()


def setup(workdir: Path, rows: int, reference_rows: int, memory_limit_mb: int, max_rows: int) -> dict:
    import yaml

    p = paths(workdir)
    for key in ("landing", "state", "home"):
        p[key].mkdir(parents=True, exist_ok=True)
    (p["home"] / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    config = {
        "dataset": {"name": "large", "landing_dir": str(p["landing"]), "target": "label",
                    "task": "classification", "time_column": "event_time"},
        "schema": {"id_columns": ["id"]},
        "storage": {"root": str(p["state"]), "memory_limit_mb": memory_limit_mb},
        "training": {"max_rows": max_rows},
        "automation": {"settle_seconds": 0},
    }
    p["config"].write_text(yaml.safe_dump(config, sort_keys=False))
    t0 = time.perf_counter()
    past = time.time() - 60
    for batch_id, n, seed, day, shift in ((REFERENCE, reference_rows, 1, 1, 0.0), (CURRENT, rows, 2, 2, 0.2)):
        path = p["landing"] / f"{batch_id}.parquet"
        write_batch(path, n, seed=seed, day=day, shift=shift)
        os.utime(path, (past, past))
    sizes = {b: round((p["landing"] / f"{b}.parquet").stat().st_size / 1e6) for b in (REFERENCE, CURRENT)}
    return {"seconds": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb(), "file_mb": sizes}


# --- one stage (child) -----------------------------------------------------------------------


def run_asset(workdir: Path, asset: str, batch_id: str) -> dict:
    """Materialize one asset of the ingest_batch job for one batch, in this process."""
    sys.path.insert(0, str(ROOT))
    import dagster as dg

    from retrain_assets.constants import BATCH_PARTITIONS, INGEST_JOB
    from retrain_assets.definitions import build_definitions

    defs = build_definitions(paths(workdir)["config"])
    job = defs.resolve_job_def(INGEST_JOB)
    with dg.DagsterInstance.get() as instance:
        if not instance.has_dynamic_partition(BATCH_PARTITIONS, batch_id):
            instance.add_dynamic_partitions(BATCH_PARTITIONS, [batch_id])
        base = peak_rss_mb()
        t0 = time.perf_counter()
        result = job.execute_in_process(instance=instance, partition_key=batch_id, raise_on_error=False,
                                        asset_selection=[dg.AssetKey(asset)])
        wall = time.perf_counter() - t0
        records = instance.all_logs(result.run_id)
    starts = {r.step_key: r.timestamp for r in records if r.dagster_event and r.dagster_event.event_type_value == "STEP_START"}
    ends = {r.step_key: r.timestamp for r in records if r.dagster_event
            and r.dagster_event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE")}
    step_s = sum(ends[k] - starts[k] for k in starts if k in ends)
    metadata = {}
    for event in result.get_asset_materialization_events():
        metadata |= {k: v.value for k, v in event.materialization.metadata.items()
                     if isinstance(v.value, (int, float, str, bool))}
    failed_checks = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
    failure = None if result.success else _failure_text(result)
    rows = metadata.get("rows_in", metadata.get("dagster/row_count"))
    if rows is None:  # drift_report: the rows it compared (the batch and its reference, as validated)
        import duckdb

        from retrain_assets.settings import load_settings

        with duckdb.connect(str(load_settings(paths(workdir)["config"]).duckdb_path), read_only=True) as conn:
            rows = int(conn.execute("SELECT sum(valid_rows) FROM batch_validation").fetchone()[0])
    note = {"raw_data": lambda m: f"{m.get('size_bytes', 0) / 1e6:,.0f} MB file",
            "validated_data": lambda m: f"{m.get('valid_rows', '?'):,} valid, {m.get('quarantined_rows', '?'):,} quarantined"
            if isinstance(m.get("valid_rows"), int) else "",
            "drift_report": lambda m: str(m.get("summary", m.get("reason", "")))[:90]}[asset](metadata)
    return {"rows": rows, "seconds": step_s, "wall": wall, "peak_rss_mb": peak_rss_mb(), "base_rss_mb": base,
            "ok": result.success, "note": note + (f"; failed check(s) {failed_checks}" if failed_checks else ""),
            "failure": failure}


def _failure_text(result) -> str:
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            data = event.step_failure_data
            return f"{event.step_key}: {data.error.message.strip()[:600] if data and data.error else 'failed'}"
    return "the run failed"


def run_training_sample(workdir: Path) -> dict:
    """What a retrain reads first: the training window, sampled to training.max_rows in DuckDB."""
    sys.path.insert(0, str(ROOT))
    import duckdb

    from retrain_assets.core.retrain import training_data
    from retrain_assets.settings import load_settings

    cfg = load_settings(paths(workdir)["config"])
    base = peak_rss_mb()
    t0 = time.perf_counter()
    with duckdb.connect(str(cfg.duckdb_path)) as conn:
        data = training_data(conn, cfg, trigger="manual", has_champion=True)
    seconds = time.perf_counter() - t0
    return {"rows": len(data.train) + len(data.holdout), "seconds": seconds, "wall": seconds,
            "peak_rss_mb": peak_rss_mb(), "base_rss_mb": base, "ok": True, "failure": None,
            "note": f"{len(data.train):,} train + {len(data.holdout):,} holdout rows; {data.sampling or 'not sampled'}"}


# --- parent ----------------------------------------------------------------------------------


def child(workdir: Path, *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RETRAIN_CONFIG", "MLFLOW_TRACKING_URI")}
    env |= {"DAGSTER_HOME": str(paths(workdir)["home"]), "PYTHONWARNINGS": "ignore",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, *args, "--workdir", str(workdir)], capture_output=True,
                          text=True, env=env, cwd=workdir)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"stage {args} failed (exit {done.returncode}): {done.stdout[-2000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["process_s"] = time.perf_counter() - t0
    return out


def versions() -> str:
    from importlib.metadata import version

    return ", ".join(f"{p} {version(p)}" for p in ("dagster", "duckdb", "pyarrow", "pandas", "great-expectations"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of the batch (default 10,000,000)")
    parser.add_argument("--reference-rows", type=int, help="rows of the reference batch (default: --rows)")
    parser.add_argument("--memory-limit-mb", type=int, default=2048, help="storage.memory_limit_mb (default 2048)")
    parser.add_argument("--max-rows", type=int, default=500_000, help="training.max_rows (default 500,000)")
    parser.add_argument("--keep", type=Path, help="use (and keep) this new folder as the workspace")
    parser.add_argument("--reuse", type=Path, help="run again on a workspace kept with --keep (no setup)")
    parser.add_argument("--stages", nargs="+", choices=("raw_data", "validated_data", "drift_report", "training"),
                        help="only these stages (by asset name; default all)")
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--setup", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stage", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    reference_rows = args.reference_rows or args.rows
    if args.setup:
        print(json.dumps(setup(args.workdir, args.rows, reference_rows, args.memory_limit_mb, args.max_rows)))
        return 0
    if args.stage is not None:
        label, asset, batch_id = STAGES[args.stage]
        out = run_training_sample(args.workdir) if asset is None else run_asset(args.workdir, asset, batch_id)
        print(json.dumps(out, default=str))
        return 0

    print("$ " + " ".join([Path(sys.executable).name, *sys.argv]))
    cores = len(os.sched_getaffinity(0))
    print(f"cores: {cores}, python {platform.python_version()}, {versions()}")
    print(f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())} (other work on the machine "
          "slows the seconds, not the memory)")
    if args.reuse:
        return rerun(args)
    print(f"batch: {args.rows:,} rows × 20 columns (reference {reference_rows:,} rows); storage.memory_limit_mb = "
          f"{args.memory_limit_mb:,}; training.max_rows = {args.max_rows:,}")
    if args.keep:
        if args.keep.exists() and any(args.keep.iterdir()):
            parser.error(f"--keep {args.keep}: the folder must be new or empty")
        args.keep.mkdir(parents=True, exist_ok=True)
        workdir = args.keep.resolve()
    else:
        workdir = Path(tempfile.mkdtemp(prefix="large-batch-bench-"))
    started = time.perf_counter()
    try:
        made = child(workdir, "--setup", "--rows", str(args.rows), "--reference-rows", str(reference_rows),
                     "--memory-limit-mb", str(args.memory_limit_mb), "--max-rows", str(args.max_rows))
        print(f"setup: wrote {', '.join(f'{b}.parquet {mb:,} MB' for b, mb in made['file_mb'].items())} in "
              f"{made['seconds']:.1f} s (row groups of {ROW_GROUP:,}; peak RSS {made['peak_rss_mb']:,.0f} MB, not a stage)")
        print()
        failed = run_stages(workdir, args.memory_limit_mb, None)
        print_footer(workdir, args.memory_limit_mb, failed, started)
        return 1 if failed else 0
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def rerun(args) -> int:
    """The stages again on a kept workspace, at ``--memory-limit-mb``."""
    import yaml

    workdir = args.reuse.resolve()
    config_path = paths(workdir)["config"]
    if not config_path.is_file():
        raise SystemExit(f"--reuse {workdir}: no config.yaml there (keep a workspace with --keep first)")
    config = yaml.safe_load(config_path.read_text())
    config["storage"]["memory_limit_mb"] = args.memory_limit_mb
    config["training"]["max_rows"] = args.max_rows
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    sizes = {p.stem: round(p.stat().st_size / 1e6) for p in sorted(paths(workdir)["landing"].glob("*.parquet"))}
    print(f"reusing {workdir} ({', '.join(f'{b}.parquet {mb:,} MB' for b, mb in sizes.items())}); "
          f"storage.memory_limit_mb = {args.memory_limit_mb:,}; training.max_rows = {args.max_rows:,}")
    print()
    started = time.perf_counter()
    failed = run_stages(workdir, args.memory_limit_mb, args.stages)
    print_footer(workdir, args.memory_limit_mb, failed, started)
    return 1 if failed else 0


def run_stages(workdir: Path, memory_limit_mb: int, only: list[str] | None) -> int:
    """Run the stages (``only`` these asset names), print a row each; returns how many failed."""
    header = f"{'stage':<28} {'rows':>12} {'step s':>8} {'process s':>9} {'base MB':>8} {'peak RSS MB':>11} {'limit':>6}  note"
    print(header)
    print("-" * len(header))
    failed = 0
    for index, (label, asset, _) in enumerate(STAGES):
        if only is not None and (asset or "training") not in only:
            continue
        if asset == "drift_report":  # prepare the reference as a fresh run does
            shutil.rmtree(paths(workdir)["state"] / "cache" / "drift_reference", ignore_errors=True)
        out = child(workdir, "--stage", str(index))
        within = out["peak_rss_mb"] <= memory_limit_mb and out["ok"]
        failed += not within
        rows = f"{out['rows']:,}" if isinstance(out["rows"], int) else str(out["rows"])
        print(f"{label:<28} {rows:>12} {out['seconds']:>8.1f} {out['process_s']:>9.1f} {out['base_rss_mb']:>8,.0f} "
              f"{out['peak_rss_mb']:>11,.0f} {'PASS' if within else 'FAIL':>6}  {out['note']}", flush=True)
        if out.get("failure"):
            print(f"    the run failed: {out['failure']}")
    return failed


def print_footer(workdir: Path, memory_limit_mb: int, failed: int, started: float) -> None:
    print()
    print(f"limit: storage.memory_limit_mb = {memory_limit_mb:,} MB; base MB = the process's peak before the "
          "step (Python, Dagster, the definitions); peak RSS = ru_maxrss of the stage's process")
    disk = sum(f.stat().st_size for f in workdir.rglob("*") if f.is_file()) / 1e9
    print(f"{'all stages within the limit' if not failed else f'{failed} stage(s) over the limit or failed'}; "
          f"total {time.perf_counter() - started:.0f} s; the workspace holds {disk:.1f} GB (landed files, DuckDB)")


if __name__ == "__main__":
    sys.exit(main())
