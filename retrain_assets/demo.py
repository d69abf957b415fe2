"""`make demo`: write demo batches, run the platform on them, and print what happened to each.

The batches go through the real code path: the landing sensor is evaluated against the Dagster
instance in ``$DAGSTER_HOME`` (default ``data/dagster_home``), its partitions are added and each run
it requests is executed with the same tags (run key and sensor name) a daemon-launched run would
carry, so ``make ui`` afterwards shows these runs and the running sensor does not repeat them.

Usage: ``python -m retrain_assets.demo [--rows N] [--seed S] [--keep]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb

from retrain_assets.constants import (
    DEMO_CONFIG_PATH,
    INGEST_JOB,
    LANDING_SENSOR,
    REPO_ROOT,
    RETRAIN_JOB,
    TAG_REASON,
    TAG_TRIGGER,
)
from retrain_assets.core import landing, storage, synthetic
from retrain_assets.definitions import build_definitions
from retrain_assets.settings import load_settings

DEFAULT_DAGSTER_HOME = REPO_ROOT / "data" / "dagster_home"
INSTANCE_YAML = REPO_ROOT / "deploy" / "local" / "dagster.yaml"


def write_bad_input_examples(landing_dir: Path, *, n_rows: int, seed: int) -> list[Path]:
    """Files a user might drop by mistake: a wrong extension, an empty file, a renamed column."""
    notes = landing_dir / "notes.txt"
    notes.write_text("this is not a batch\n", encoding="utf-8")
    empty = landing_dir / "batch_0012.csv"
    empty.write_bytes(b"")
    renamed = synthetic.make_batch(n_rows, seed=seed + 13, batch_index=13).rename(columns={"age": "customer_age"})
    renamed_path = synthetic.write_batch(renamed, landing_dir / "batch_0013.csv")
    return [notes, empty, renamed_path]


def prepare_instance_home() -> Path:
    """The Dagster home the demo (and `make ui`) use, with the project's instance settings."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME)
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copy(INSTANCE_YAML, home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def run_landing_once(
    defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None = None
) -> tuple[list[tuple[str, bool]], str | None]:
    """Evaluate the landing sensor once and execute the runs it requests, in batch order, skipping
    run keys the instance has already seen (as the daemon does). Returns the outcomes and the
    sensor's new cursor."""
    sensor = defs.resolve_sensor_def(LANDING_SENSOR)
    resources = {key: defs.resources[key] for key in sensor.required_resource_keys}  # as the daemon binds them
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


FIRST_WAVE = ("batch_0001", "batch_0002", "batch_0003", "batch_0004")
"""Batches that land before the first retrain: the first champion learns from these."""


def land(paths: list[Path], landing_dir: Path) -> None:
    """Move demo files into the landing folder, marked as settled (they are complete)."""
    landing_dir.mkdir(parents=True, exist_ok=True)
    past = time.time() - 60
    for path in paths:
        target = landing_dir / path.name
        shutil.move(str(path), target)
        os.utime(target, (past, past))


def retrain_once(defs: dg.Definitions, instance: dg.DagsterInstance, reason: str) -> str:
    """Run the retrain job and describe its gates and the champion afterwards."""
    from retrain_assets.core import registry

    tags = {TAG_TRIGGER: "manual", TAG_REASON: reason}
    run = defs.resolve_job_def(RETRAIN_JOB).execute_in_process(
        instance=instance, tags=tags, raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
    )
    settings = load_settings(DEMO_CONFIG_PATH)
    lines = []
    for check in run.get_asset_check_evaluations():
        lines.append(f"  {'pass' if check.passed else 'FAIL':<5} {check.check_name:<21} {check.description}")
    champion = registry.alias_version(settings.mlflow_tracking_uri, settings.registered_model_name, registry.CHAMPION_ALIAS)
    if not lines:
        failures = [e.step_failure_data.error.message.splitlines()[0] for e in run.get_step_failure_events()
                    if e.step_failure_data.error]
        lines.append("  retrain failed before the gates: " + "; ".join(failures))
    verdict = "promoted" if run.success else "blocked: the champion did not move"
    lines.append(f"  -> {verdict}; champion is {'v' + champion if champion else 'unset'} "
                 f"(models:/{settings.registered_model_name}@champion)")
    return "\n".join(lines)


def report(settings_path: Path) -> str:
    """A plain-text table of every batch and refused file."""
    settings = load_settings(settings_path)
    lines = [f"{'batch':<12} {'outcome':<12} {'rows':>6} {'valid':>6} {'quar.':>6}  reason"]
    with duckdb.connect(str(settings.duckdb_path)) as conn:
        statuses = storage.batch_statuses(conn)
        drift = storage.read_drift_reports(conn).set_index("batch_id")
    for row in statuses.itertuples(index=False):
        if row.passed is None or row.passed != row.passed:
            outcome, detail = "ingested", "not validated"
        elif row.passed:
            outcome = "validated" if not row.quarantined_rows else "validated*"
            detail = row.summary
        else:
            outcome, detail = "HELD BACK", row.summary
        valid = "" if row.valid_rows != row.valid_rows else int(row.valid_rows)
        quarantined = "" if row.quarantined_rows != row.quarantined_rows else int(row.quarantined_rows)
        lines.append(f"{row.batch_id:<12} {outcome:<12} {row.rows:>6} {valid:>6} {quarantined:>6}  {detail}")
        if row.batch_id in drift.index:
            lines.append(f"{'':<12} {'drift':<12} {'':>6} {'':>6} {'':>6}  {drift.loc[row.batch_id, 'summary']}")
    for rejection in landing.list_rejections(settings.rejected_dir):
        if rejection["stage"] == "validated_data":
            continue  # already listed above as held back
        lines.append(
            f"{rejection['batch_id']:<12} {'REFUSED':<12} {'':>6} {'':>6} {'':>6}  "
            f"{rejection['reason']} [{rejection['stage']}]"
        )
    lines.append("")
    lines.append("validated* = passed with some rows quarantined; HELD BACK = the blocking check failed.")
    lines.append(f"Refused and held-back files are kept under {settings.rejected_dir}")
    lines.append(f"DuckDB tables (raw.*, validated, quarantine, batch_validation, drift_reports) are in {settings.duckdb_path}")
    lines.append(f"Drift plots and HTML reports are in {settings.reports_dir / 'drift'}")
    lines.append(f"Models: MLflow registry {settings.mlflow_tracking_uri} (`mlflow ui --backend-store-uri` it); "
                 "promotions in the DuckDB table promotion_ledger")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="rows per demo batch")
    parser.add_argument("--seed", type=int, default=7, help="base seed of the demo data")
    parser.add_argument("--keep", action="store_true", help="keep earlier demo state instead of starting afresh")
    args = parser.parse_args(argv)

    config_path = DEMO_CONFIG_PATH
    settings = load_settings(config_path)
    home = prepare_instance_home()
    if not args.keep:
        for folder in (settings.dataset.landing_dir, settings.storage.root):
            shutil.rmtree(folder, ignore_errors=True)
        for item in home.iterdir():
            if item.name != "dagster.yaml":
                shutil.rmtree(item) if item.is_dir() else item.unlink()
    settings.dataset.landing_dir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    staging = settings.storage.root / "demo_staging"
    shutil.rmtree(staging, ignore_errors=True)
    paths = synthetic.write_demo_batches(staging, n_rows=args.rows, seed=args.seed)
    paths += write_bad_input_examples(staging, n_rows=args.rows, seed=args.seed)
    first_wave = [p for p in paths if p.stem in FIRST_WAVE]
    print(f"wrote {len(paths)} demo files; they land in two waves in {settings.dataset.landing_dir}")
    for batch_id, scenario, _ in synthetic.DEMO_PLAN:
        print(f"  {batch_id}: {scenario}")
    print("  notes.txt: wrong extension; batch_0012.csv: empty; batch_0013.csv: column 'age' renamed")

    defs = build_definitions(config_path)
    with dg.DagsterInstance.get() as instance:
        land(first_wave, settings.dataset.landing_dir)
        outcomes, cursor = run_landing_once(defs, instance)
        print(f"\nwave 1: ran {len(outcomes)} ingest runs; then retrain (the first champion)")
        print(retrain_once(defs, instance, reason="demo: first champion from the first clean batches"))
        land([p for p in paths if p not in first_wave], settings.dataset.landing_dir)
        outcomes, _ = run_landing_once(defs, instance, cursor)
        print(f"\nwave 2: ran {len(outcomes)} ingest runs (drift now measured against the champion); retrain again")
        print(retrain_once(defs, instance, reason="demo: retrain after drifted batches"))
    shutil.rmtree(staging, ignore_errors=True)
    print(f"\ndone in {time.perf_counter() - started:.1f} s (Dagster home: {home})\n")
    print(report(config_path))
    print("\nNext: `make ui` opens the Dagster UI on these runs (sensors running).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
