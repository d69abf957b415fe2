"""`make demo`: write demo batches, run the platform on them, and print what happened to each.

The batches go through the real code path: the landing sensor is evaluated against the demo's own
Dagster instance (``<dir>/dagster_home``; an exported ``DAGSTER_HOME`` is never read or written),
its partitions are added and each run it requests is executed with the same tags (run key and
sensor name) a daemon-launched run would carry, so ``make ui`` afterwards shows these runs and the
running sensor does not repeat them. Everything lives under ``--dir`` (default ``data/``); a new run
removes only what the demo made there (see :mod:`retrain_assets.demo_folder`).

Usage: ``python -m retrain_assets.demo [--dir DIR] [--rows N] [--seed S] [--keep]``
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import textwrap
import time
import warnings
from pathlib import Path

# Before MLflow is imported anywhere: no download progress bars in the story.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import dagster as dg
import duckdb

# Library notices (dagster-mlflow's beta hook, ...) are for developers, not the demo's story.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

from retrain_assets.constants import (
    DEMO_CONFIG_PATH,
    DRIFT_SENSOR,
    PERFORMANCE_SENSOR,
    INGEST_JOB,
    LANDING_SENSOR,
    REPO_ROOT,
    RETRAIN_JOB,
    HEALTH_JOB,
    TAG_TRIGGER,
)
from retrain_assets.core import demo_data, metrics_store, rejected, storage, synthetic_batches
from retrain_assets.core.redact import redact_url
from retrain_assets.definitions import build_definitions
from retrain_assets.demo_folder import DemoFolder
from retrain_assets.resources import resources_for
from retrain_assets.settings import load_settings

DEFAULT_DEMO_DIR = DEMO_CONFIG_PATH.parent
INSTANCE_YAML = REPO_ROOT / "deploy" / "local" / "dagster.yaml"
WIDTH = 110
"""Lines of the story are wrapped (never cut) at this width."""


def write_bad_input_examples(landing_dir: Path, *, n_rows: int, seed: int) -> list[Path]:
    """Files a user might drop by mistake: a wrong extension, an empty file, a renamed column."""
    notes = landing_dir / "notes.txt"
    notes.write_text("this is not a batch\n", encoding="utf-8")
    empty = landing_dir / "batch_0012.csv"
    empty.write_bytes(b"")
    renamed = synthetic_batches.make_batch(n_rows, seed=seed + 13, batch_index=13).rename(columns={"age": "customer_age"})
    renamed_path = synthetic_batches.write_batch(renamed, landing_dir / "batch_0013.csv")
    return [notes, empty, renamed_path]


def prepare_instance_home(folder: DemoFolder) -> Path:
    """The demo's own Dagster home (which `make ui` shows), with the project's instance settings.
    Set for this process only: whatever ``DAGSTER_HOME`` said is not read."""
    home = folder.home
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copy(INSTANCE_YAML, home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def demo_config(folder: DemoFolder) -> Path:
    """The demo config in the demo folder: the shipped one in ``data/``, else a copy written once
    (an existing file there is used as it is, so a tweaked copy is honoured and never overwritten)."""
    path = folder.root / DEMO_CONFIG_PATH.name
    if not path.exists():
        shutil.copy(DEMO_CONFIG_PATH, path)
    return path


def wrap(text: str, indent: str = "") -> str:
    """A line of the story, wrapped at :data:`WIDTH` with a hanging indent; never cut."""
    return textwrap.fill(text, width=WIDTH, initial_indent=indent, subsequent_indent=indent + "      ",
                         break_long_words=False, break_on_hyphens=False)


def without_batch_prefix(summary: str, batch_id: str) -> str:
    """A report sentence without its leading ``batch <id>: `` (the story already names the batch)."""
    prefix = f"batch {batch_id}: "
    return summary[len(prefix):] if summary.startswith(prefix) else summary


def run_landing_once(
    defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None = None
) -> tuple[list[tuple[str, bool]], str | None]:
    """Evaluate the landing sensor once and execute the runs it requests, in batch order, skipping
    run keys the instance has already seen (as the daemon does). Returns the outcomes and the
    sensor's new cursor."""
    sensor = defs.resolve_sensor_def(LANDING_SENSOR)
    resources = resources_for(defs, sensor)
    context = dg.build_sensor_context(instance=instance, definitions=defs, resources=resources, cursor=cursor)
    result = sensor(context)
    requests = list(result.run_requests or [])
    for add in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(add.partitions_def_name, list(add.partition_keys))
    job = defs.resolve_job_def(INGEST_JOB)
    outcomes = []
    for request in requests:
        if instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": request.run_key}), limit=1):
            continue
        tags = {**request.tags, "dagster/run_key": request.run_key, "dagster/sensor_name": LANDING_SENSOR}
        run = job.execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            tags=tags,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        )
        outcomes.append((request.partition_key, run.success))
    return outcomes, result.cursor if result.cursor is not None else cursor


def land(paths: list[Path], landing_dir: Path, folder: DemoFolder) -> None:
    """Move demo files into the landing folder, marked as settled (they are complete), and record
    them as the demo's own (so the next run may remove them)."""
    landing_dir.mkdir(parents=True, exist_ok=True)
    past = time.time() - 60
    for path in paths:
        target = landing_dir / path.name
        folder.record_landed(path)
        shutil.move(str(path), target)
        os.utime(target, (past, past))


AUTOMATION_SENSORS = (DRIFT_SENSOR, PERFORMANCE_SENSOR)
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
ROUTINE_SKIPS = ("no new drift report", "no new production metrics")


def run_automation(defs: dg.Definitions, instance: dg.DagsterInstance, cursors: dict[str, str | None],
                   settings) -> list[str]:
    """Tick the retrain sensors once, as the daemon would, and execute the runs they request (retrain
    or rollback) with the daemon's tags. Returns one line per sensor decision."""
    from retrain_assets.core import registry

    client = defs.resources["registry"].client()
    lines = []
    for name in AUTOMATION_SENSORS:
        sensor = defs.resolve_sensor_def(name)
        resources = resources_for(defs, sensor)
        context = dg.build_sensor_context(instance=instance, definitions=defs, resources=resources,
                                          cursor=cursors.get(name))
        result = sensor.evaluate_tick(context)
        cursors[name] = result.cursor
        if not result.run_requests:
            if result.skip_message and result.skip_message not in ROUTINE_SKIPS:
                lines.append(f"{name}: no run — {result.skip_message}")
            continue
        for request in result.run_requests:
            tags = {**request.tags, "dagster/run_key": request.run_key, "dagster/sensor_name": name}
            before = client.version(registry.CHAMPION_ALIAS)
            run = defs.resolve_job_def(request.job_name).execute_in_process(
                instance=instance, tags=tags, run_config={**QUIET, **(request.run_config or {})}, raise_on_error=False,
            )
            champion = client.version(registry.CHAMPION_ALIAS)
            failed = [c.check_name for c in run.get_asset_check_evaluations() if not c.passed]
            if request.job_name == RETRAIN_JOB:  # a refused candidate's run succeeds: its failed gates say so
                outcome = (f"blocked by {', '.join(failed)}, champion stays v{champion}" if failed else
                           "failed before the gates" if not run.success else
                           f"promoted, champion v{champion}" if champion != before else f"champion stays v{champion}")
            else:
                outcome = f"rolled back, champion v{champion}" if run.success else "rollback failed"
            lines.append(f"{name}: {request.job_name} ({request.tags.get(TAG_TRIGGER)}) -> {outcome}")
    return lines


def _missing(value) -> bool:
    return value is None or value != value


def batch_line(batch_id: str, settings) -> str:
    """What happened to a batch: rows, validation and the drift verdict, in one sentence."""
    with duckdb.connect(str(settings.duckdb_path)) as conn:
        statuses = storage.batch_statuses(conn).set_index("batch_id")
        drift = metrics_store.read_drift_reports(conn).set_index("batch_id")
    if batch_id not in statuses.index:
        refused = [r for r in rejected.list_rejections(settings.rejected_dir) if r["batch_id"] == batch_id]
        return f"REFUSED: {refused[-1]['reason']}" if refused else "not ingested"
    row = statuses.loc[batch_id]
    rows = int(row["rows"])
    if _missing(row["passed"]) or not row["passed"]:
        quarantined = "" if _missing(row["quarantined_rows"]) else f"{int(row['quarantined_rows'])} of "
        why = str(row["summary"]).removeprefix(f"batch {batch_id} held back: ")
        return f"HELD BACK ({quarantined}{rows} rows quarantined): {why}"
    quarantined = int(row["quarantined_rows"]) if not _missing(row["quarantined_rows"]) else 0
    counts = f"{rows} rows" + (f", {quarantined} quarantined" if quarantined else "")
    verdict = drift.loc[batch_id, "summary"] if batch_id in drift.index else "no drift report"
    return f"validated ({counts}); {without_batch_prefix(str(verdict), batch_id)}"


def report(settings) -> str:
    """A plain-text table of every batch and refused file."""
    lines = [f"{'batch':<12} {'outcome':<12} {'rows':>6} {'valid':>6} {'quar.':>6}  reason"]
    with duckdb.connect(str(settings.duckdb_path)) as conn:
        statuses = storage.batch_statuses(conn)
        drift = metrics_store.read_drift_reports(conn).set_index("batch_id")
    for row in statuses.itertuples(index=False):
        if _missing(row.passed):
            outcome, detail = "ingested", "not validated"
        elif row.passed:
            outcome = "validated" if not row.quarantined_rows else "validated*"
            detail = row.summary
        else:
            outcome, detail = "HELD BACK", row.summary
        valid = "" if _missing(row.valid_rows) else int(row.valid_rows)
        quarantined = "" if _missing(row.quarantined_rows) else int(row.quarantined_rows)
        lines.append(_row(f"{row.batch_id:<12} {outcome:<12} {row.rows:>6} {valid:>6} {quarantined:>6}  ", detail))
        if row.batch_id in drift.index:
            verdict = without_batch_prefix(str(drift.loc[row.batch_id, "summary"]), row.batch_id)
            lines.append(_row(f"{'':<12} {'drift':<12} {'':>6} {'':>6} {'':>6}  ", verdict))
    for rejection in rejected.list_rejections(settings.rejected_dir):
        if rejection["stage"] == "validated_data":
            continue  # already listed above as held back
        lines.append(_row(f"{rejection['batch_id']:<12} {'REFUSED':<12} {'':>6} {'':>6} {'':>6}  ",
                          f"{rejection['reason']} [{rejection['stage']}]"))
    lines.append("")
    for line in (
        "validated* = passed with some rows quarantined; HELD BACK = its batch_passes_validation check failed (the run succeeds; nothing uses the batch).",
        f"Refused and held-back files are kept under {settings.rejected_dir}",
        f"DuckDB tables (raw.*, validated, quarantine, batch_validation, drift_reports) are in {settings.duckdb_path}",
        f"Drift plots and HTML reports are in {settings.reports_dir / 'drift'}",
        f"Models: MLflow registry {redact_url(settings.mlflow_tracking_uri)} (`mlflow ui --backend-store-uri` it); "
        "promotions in the DuckDB table promotion_ledger",
    ):
        lines.append(wrap(line))
    return "\n".join(lines)


def _row(columns: str, text: str) -> str:
    """A table row whose last column is wrapped beneath itself."""
    return textwrap.fill(text, width=WIDTH, initial_indent=columns, subsequent_indent=" " * len(columns),
                         break_long_words=False, break_on_hyphens=False)


def quiet_libraries() -> None:
    """Keep library log lines and warnings out of the story: the story says what the sensors decided
    and the runs' own logs stay in the Dagster instance (the sensors' console loggers, which Dagster
    makes afresh for every tick, would otherwise repeat each decision with a timestamp)."""
    logging.disable(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DEMO_DIR,
                        help="the demo's folder: config, landing/, state/, dagster_home/ (default: data/)")
    parser.add_argument("--rows", type=int, default=2000, help="rows per demo batch")
    parser.add_argument("--seed", type=int, default=7, help="base seed of the demo data")
    parser.add_argument("--keep", action="store_true", help="keep earlier demo state instead of starting afresh")
    args = parser.parse_args(argv)
    quiet_libraries()

    folder = DemoFolder(args.dir)
    if not args.keep:
        for note in folder.reset().notes():
            print(wrap(note))
    config_path = demo_config(folder)
    settings = load_settings(config_path)
    home = prepare_instance_home(folder)
    settings.dataset.landing_dir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    staging = settings.storage.root / "demo_staging"
    staging.mkdir(parents=True, exist_ok=True)
    paths = demo_data.write_demo_batches(staging, n_rows=args.rows, seed=args.seed)
    paths += write_bad_input_examples(staging, n_rows=args.rows, seed=args.seed)
    scenarios = {batch_id: scenario for batch_id, scenario, _ in demo_data.DEMO_PLAN}
    scenarios.update({"notes": "wrong extension", "batch_0012": "empty file", "batch_0013": "column 'age' renamed"})
    print(wrap(f"Demo folder {folder.root} (its own Dagster home: {home})."))
    print(wrap(f"Landing {len(paths)} demo files one at a time in {settings.dataset.landing_dir}; after each, the "
               "landing, drift and performance sensors tick once, as the daemon would, and the runs they "
               "request are executed:"))
    print()

    defs = build_definitions(config_path)
    cursors: dict[str, str | None] = {}
    with dg.DagsterInstance.get() as instance:
        for path in paths:
            land([path], settings.dataset.landing_dir, folder)
            outcomes, cursors[LANDING_SENSOR] = run_landing_once(defs, instance, cursors.get(LANDING_SENSOR))
            print(wrap(f"{path.name}  [{scenarios.get(path.stem, '')}]  {batch_line(path.stem, settings)}"))
            for line in run_automation(defs, instance, cursors, settings):
                print(wrap(line, indent="    "))
        # The daemon's model_health_sensor would refresh the health view now; the demo does it once.
        health = defs.resolve_job_def(HEALTH_JOB).execute_in_process(instance=instance, run_config=QUIET,
                                                                     raise_on_error=False)
        verdict = next((e.materialization.metadata for e in health.get_asset_materialization_events()), {})
    staging.rmdir()  # every file in it was landed
    print(f"\ndone in {time.perf_counter() - started:.1f} s\n")
    print(report(settings))
    if "summary" in verdict:
        print("\n" + wrap(f"model_health: {verdict['verdict'].value} — {verdict['summary'].value}"))
    print("\n" + wrap("Next: `make ui` opens the Dagster UI on these runs (sensors running); Assets → model_health "
                      "answers \"is my model healthy?\"."))
    return 0


if __name__ == "__main__":
    sys.exit(main())
